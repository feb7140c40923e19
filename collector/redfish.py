"""Inlet temperature and node input power from a Redfish BMC over HTTPS.

The walk is ``/redfish/v1/Chassis`` → each chassis → its ``Thermal`` resource
(``Temperatures[]`` whose ``PhysicalContext`` is ``Intake``) and its ``Power``
resource (``PowerControl[].PowerConsumedWatts``). The resource addresses found
on the first walk are kept and walked again only when one disappears.
Credentials are used for HTTP basic authentication and never logged.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from wattwise.collector.bmc import BmcValues
from wattwise.common.http import deadline_client
from wattwise.errors import ConfigError, SourceError, SourceUnavailable

CHASSIS_COLLECTION = "/redfish/v1/Chassis"


@dataclass(frozen=True, slots=True)
class _ChassisLinks:
    thermal: list[str]
    power: list[str]


class RedfishBackend:
    """Polls one Redfish service; each request is bounded by ``timeout_s``."""

    def __init__(
        self,
        *,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        verify: bool | str | Path = True,
        timeout_s: float = 5.0,
    ) -> None:
        auth = httpx.BasicAuth(username, password or "") if username else None
        # The whole request, not only each read: a BMC answering a byte at a time
        # would otherwise hold the tick loop.
        self._client = deadline_client(
            base_url.rstrip("/"),
            auth=auth,
            verify=_tls_verification(verify),
            timeout_s=timeout_s,
            total_s=timeout_s,
            headers={"Accept": "application/json"},
        )
        self._links: _ChassisLinks | None = None

    def poll(self) -> BmcValues:
        """Read the inlet temperature and node power once."""
        return self._read(self._links or self._walk())

    def close(self) -> None:
        self._client.close()

    def _read(self, links: _ChassisLinks) -> BmcValues:
        inlets_c = [t for doc in self._documents(links.thermal) for t in _intake_temps_c(doc)]
        powers_w = [w for doc in self._documents(links.power) for w in _consumed_watts(doc)]
        # Several intake sensors: the hottest is what the cooling must answer for.
        # Several chassis with power: the first (the node itself in the
        # collection's order) — enclosures also listed would count it twice.
        return BmcValues(
            inlet_temp_c=max(inlets_c) if inlets_c else None,
            node_power_w=powers_w[0] if powers_w else None,
        )

    def _documents(self, paths: list[str]) -> Iterator[dict[str, Any]]:
        for path in paths:
            document = self._get(path)
            if document is None:
                self._links = None  # gone (BMC reset, firmware update): walk again next poll
            else:
                yield document

    def _walk(self) -> _ChassisLinks:
        collection = self._get(CHASSIS_COLLECTION)
        if collection is None:
            raise SourceUnavailable(f"BMC serves no {CHASSIS_COLLECTION}")
        thermal: list[str] = []
        power: list[str] = []
        for chassis_path in _member_paths(collection):
            chassis = self._get(chassis_path) or {}
            thermal.extend(_link(chassis, "Thermal"))
            power.extend(_link(chassis, "Power"))
        self._links = _ChassisLinks(thermal, power)
        return self._links

    def _get(self, path: str) -> dict[str, Any] | None:
        """GET one resource as JSON, None if absent; httpx errors are converted here only."""
        try:
            response = self._client.get(path)
        except httpx.TimeoutException as e:
            raise SourceUnavailable(f"BMC did not answer {path} in time") from e
        except httpx.TransportError as e:
            raise SourceUnavailable(f"BMC unreachable for {path}: {_transport_failure(e)}") from e
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise SourceError(
                f"BMC refused the credentials ({response.status_code}): check bmc.username "
                "and the password file"
            )
        if response.status_code != 200:
            raise SourceError(f"BMC answered {response.status_code} for {path}")
        try:
            document = response.json()
        except ValueError as e:
            raise SourceError(f"BMC sent invalid JSON for {path}") from e
        if not isinstance(document, dict):
            raise SourceError(f"BMC sent a non-object for {path}")
        return document


def _tls_verification(verify: bool | str | Path) -> bool | ssl.SSLContext:
    """True/False as given; a CA file (BMCs mostly carry self-signed certificates) as a context."""
    if isinstance(verify, bool):
        return verify
    try:
        return ssl.create_default_context(cafile=str(verify))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("bmc.ca_file", str(verify), f"a readable PEM file ({e})") from e


def _member_paths(collection: dict[str, Any]) -> Iterator[str]:
    for member in collection.get("Members") or []:
        if isinstance(member, dict) and isinstance(member.get("@odata.id"), str):
            yield member["@odata.id"]


def _link(resource: dict[str, Any], name: str) -> list[str]:
    target = resource.get(name)
    if isinstance(target, dict) and isinstance(target.get("@odata.id"), str):
        return [target["@odata.id"]]
    return []


def _enabled(item: dict[str, Any]) -> bool:
    status = item.get("Status")
    return not (isinstance(status, dict) and status.get("State") in ("Disabled", "Absent"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _intake_temps_c(thermal: dict[str, Any]) -> list[float]:
    """Readings of enabled intake sensors; a null reading is missing, never zero."""
    temps: list[float] = []
    for sensor in thermal.get("Temperatures") or []:
        if isinstance(sensor, dict) and sensor.get("PhysicalContext") == "Intake":
            reading = _number(sensor.get("ReadingCelsius"))
            if reading is not None and _enabled(sensor):
                temps.append(reading)
    return temps


def _consumed_watts(power: dict[str, Any]) -> list[float]:
    watts: list[float] = []
    for control in power.get("PowerControl") or []:
        if isinstance(control, dict) and _enabled(control):
            reading = _number(control.get("PowerConsumedWatts"))
            if reading is not None:
                watts.append(reading)
    return watts


def _transport_failure(error: httpx.TransportError) -> str:
    """Why a connection failed, in words an operator can act on (never the URL or auth)."""
    detail = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return f"its TLS certificate is not trusted (give its CA in bmc.ca_file): {detail}"
    return detail
