"""What an operator types for a power event: limits, lengths and times, and the errors
that name the option before anything is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from wattwise.errors import ConfigError
from wattwise.optimizer.service.event_args import iso_z, length_s, limit_w, moment

NOW = datetime(2026, 12, 4, 13, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "watts"),
    [("480kW", 480e3), ("480 kw", 480e3), ("1.2MW", 1.2e6), ("30000", 30e3), ("750W", 750.0)],
)
def test_limits_read_in_watts_kilowatts_or_megawatts(text: str, watts: float) -> None:
    assert limit_w("LIMIT", text) == pytest.approx(watts)


@pytest.mark.parametrize("text", ["0", "0kW", "-5kW", "480 kWh", "lots", ""])
def test_a_limit_that_is_not_a_power_above_zero_names_the_argument(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^LIMIT: .* it must be a power above 0"):
        limit_w("LIMIT", text)


@pytest.mark.parametrize(
    ("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d", 86400)]
)
def test_lengths_add_up_their_parts(text: str, seconds: float) -> None:
    assert length_s("--for", text) == seconds


@pytest.mark.parametrize("text", ["2", "h", "2 hours", "0m", "1h-5m"])
def test_a_length_without_units_or_of_nothing_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--for: "):
        length_s("--for", text)


def test_now_and_times_from_now() -> None:
    assert moment("--start", "now", NOW) == NOW
    assert iso_z(moment("--end", "+1h30m", NOW)) == "2026-12-04T14:37:30Z"


def test_a_time_with_an_offset_is_sent_in_utc() -> None:
    assert iso_z(moment("--end", "2026-12-04T16:00+01:00", NOW)) == "2026-12-04T15:00:00Z"
    assert iso_z(moment("--end", "2026-12-04T16:00Z", NOW)) == "2026-12-04T16:00:00Z"


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("paris")
def test_a_time_without_an_offset_is_this_machines_local_time() -> None:
    # Paris is UTC+1 in December: what `date` shows there as 16:00 is 15:00 UTC.
    assert iso_z(moment("--end", "2026-12-04 16:00", NOW)) == "2026-12-04T15:00:00Z"


def test_a_time_that_cannot_be_read_says_what_can() -> None:
    with pytest.raises(ConfigError, match=r"^--start: 'tomorrow' is not allowed; it must be now"):
        moment("--start", "tomorrow", NOW)
