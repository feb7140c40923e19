from __future__ import annotations

import pytest

from tests.dashboards.fleet_data import FleetData, write_fleet
from tests.influxd import InfluxServer


@pytest.fixture(scope="session")
def fleet_db(influxd: InfluxServer) -> FleetData:
    """The simulated fleet's ten minutes, written once for every dashboard test."""
    return write_fleet(influxd, "dashboards")
