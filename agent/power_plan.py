"""This node's part of the optimizer's power-budget plans, and the limit each GPU gets.

:class:`PlanClient` asks ``GET /v1/recommendations/power-budget?host=<this node>``
through :class:`~wattwise.common.api_client.ApiClient`, whose errors become
:class:`~wattwise.errors.PlanUnavailable` or :class:`~wattwise.errors.PlanAuthError`
in one place, :meth:`PlanClient.fetch`. :func:`parse_plan` keeps the caps of this
host only (an optimizer that ignores ``?host=`` cannot make a node take another's
caps), and :func:`decide` gives each local GPU the LOWEST limit any plan gives it (a
GPU of a capped rack inside a capped site is in both plans), clamped to the GPU's
range. A GPU no plan caps gets no target: it belongs at its default limit. A cap for
a GPU index this node does not have is refused. docs/power-budgets.md has the rules.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from wattwise.agent.power_limits import GpuLimits
from wattwise.common.api_client import ApiClient
from wattwise.common.secrets import Secret
from wattwise.errors import ApiAuthError, ApiError, ApiRefused, PlanAuthError, PlanUnavailable

PLAN_PATH = "/v1/recommendations/power-budget"


@dataclass(frozen=True)
class PlannedCap:
    """One cap of one plan for a GPU of this host."""

    scope: str
    gpu: int
    limit_w: float


@dataclass(frozen=True)
class Target:
    """The limit a GPU gets: the lowest planned one (``planned_w``) clamped to its range."""

    gpu: int
    limit_w: float
    planned_w: float
    scopes: tuple[str, ...]
    """The plans that asked for ``planned_w``."""


@dataclass(frozen=True)
class Decision:
    targets: dict[int, Target]
    refused: tuple[PlannedCap, ...]
    """Caps for GPU indices this node does not have."""


class PlanSource(Protocol):
    """Where the applier gets this host's caps."""

    def fetch(self) -> list[PlannedCap]:
        """Every cap of every plan for this host; PowerPlanError if there is no answer."""
        ...


class PlanClient:
    """The optimizer's power-budget endpoint, asked for one host's caps."""

    def __init__(
        self,
        url: str,
        token: Secret,
        host: str,
        *,
        timeout_s: float = 10.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.host = host
        self._api = ApiClient(url, token, timeout_s=timeout_s, verify=verify)

    def fetch(self) -> list[PlannedCap]:
        """This host's caps; the API client's errors become the applier's: silence rolls
        the limits back after ``silent_after_s``, whatever its cause."""
        try:
            body = self._api.call("GET", PLAN_PATH, params={"host": self.host})
        except ApiAuthError as e:
            raise PlanAuthError(
                f"{e}: check the token file and that its token has the read scope"
            ) from e
        except ApiRefused as e:
            if e.status == 404:
                raise PlanUnavailable(
                    f"the optimizer at {self.url} has no {PLAN_PATH} (HTTP 404): is it up to date?"
                ) from e
            raise PlanUnavailable(str(e)) from e
        except ApiError as e:
            raise PlanUnavailable(str(e)) from e
        try:
            return parse_plan(body, self.host)
        except ValueError as e:
            raise PlanUnavailable(
                f"the optimizer at {self.url} answered with no power-budget plan: {e}"
            ) from e

    def close(self) -> None:
        self._api.close()


def parse_plan(body: object, host: str) -> list[PlannedCap]:
    """The caps for ``host`` in an answer of the endpoint; ValueError if it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ValueError("no list of items")
    caps = []
    for item in body["items"]:
        if not isinstance(item, dict) or not isinstance(item.get("caps"), list):
            raise ValueError("an item without a list of caps")
        scope = str(item.get("scope", "?"))
        for cap in item["caps"]:
            if not isinstance(cap, dict):
                raise ValueError(f"a cap of {scope} is not an object")
            if cap.get("host") != host:
                continue
            gpu, limit = cap.get("gpu"), cap.get("planned_limit_w")
            if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
                raise ValueError(f"a cap of {scope} has no GPU index: {gpu!r}")
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
                raise ValueError(f"{scope} gpu{gpu}: no planned_limit_w: {limit!r}")
            caps.append(PlannedCap(scope, gpu, float(limit)))
    return caps


def decide(caps: Sequence[PlannedCap], gpus: Mapping[int, GpuLimits]) -> Decision:
    """Each GPU's target: the lowest planned limit over all plans, clamped to its range."""
    lowest: dict[int, list[PlannedCap]] = {}
    refused = []
    for cap in caps:
        if cap.gpu not in gpus:
            refused.append(cap)
            continue
        held = lowest.setdefault(cap.gpu, [cap])
        if cap.limit_w < held[0].limit_w:
            lowest[cap.gpu] = [cap]
        elif cap.limit_w == held[0].limit_w and cap is not held[0]:
            held.append(cap)
    targets = {}
    for gpu, chosen in sorted(lowest.items()):
        planned = chosen[0].limit_w
        limits = gpus[gpu]
        clamped = min(max(planned, limits.min_w), limits.max_w)
        scopes = tuple(sorted({c.scope for c in chosen}))
        targets[gpu] = Target(gpu, clamped, planned, scopes)
    return Decision(targets, tuple(refused))
