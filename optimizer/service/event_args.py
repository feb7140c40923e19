"""What an operator types for a power event, read into what the API takes.

- a limit: ``480kW``, ``1.2 MW``, ``30000`` or ``30000W`` (watts when no unit);
- a time: ``now``; ``+2h`` or ``+1h30m`` from now; or ISO 8601 (``2026-12-04T14:00Z``,
  ``2026-12-04 14:00+01:00``). A time without an offset is this machine's local time,
  as ``date`` shows it: the command prints the UTC time it sent;
- a length: ``2h``, ``90m``, ``1h30m``, ``1d``.

Each parser raises :class:`~wattwise.errors.ConfigError` naming the option, so a typo
exits 2 before anything is sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from wattwise.errors import ConfigError

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|kw|mw)?\s*$", re.IGNORECASE)
_WATTS_PER = {"w": 1.0, "kw": 1e3, "mw": 1e6}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_LENGTH = re.compile(r"^(?:\d+(?:\.\d+)?[dhms])+$")
_SECONDS_PER = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def limit_w(option: str, text: str) -> float:
    """Watts from ``480kW``, ``1.2MW``, ``30000W`` or ``30000``; more than 0."""
    match = _LIMIT.match(text)
    value = float(match.group(1)) * _WATTS_PER[(match.group(2) or "w").lower()] if match else 0.0
    if not value > 0:
        raise ConfigError(option, text, "a power above 0 such as 480kW, 1.2MW or 30000 (watts)")
    return value


def length_s(option: str, text: str) -> float:
    """Seconds from ``2h``, ``90m``, ``1h30m`` or ``1d``; more than 0."""
    compact = text.strip().lower().replace(" ", "")
    seconds = (
        sum(float(n) * _SECONDS_PER[unit] for n, unit in _PART.findall(compact))
        if _LENGTH.match(compact)
        else 0.0
    )
    if not seconds > 0:
        raise ConfigError(option, text, "a length above 0 such as 2h, 90m, 1h30m or 1d")
    return seconds


def moment(option: str, text: str, now: datetime) -> datetime:
    """A UTC time from ``now``, ``+<length>`` or ISO 8601 (local time without an offset)."""
    stripped = text.strip()
    if stripped.lower() == "now":
        return now.astimezone(UTC)
    if stripped.startswith("+"):
        return now.astimezone(UTC) + timedelta(seconds=length_s(option, stripped[1:]))
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError as e:
        raise ConfigError(
            option, text, "now, +2h (from now), or a time such as 2026-12-04T14:00Z"
        ) from e
    # astimezone() on a naive time takes it as this machine's local time
    return parsed.astimezone(UTC)


def iso_z(at: datetime) -> str:
    """``at`` as the API takes it: ISO 8601 in UTC with ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
