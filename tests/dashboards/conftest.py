from __future__ import annotations

import pytest

from tests.influxd import InfluxServer

from .fleet_data import FleetData, write_fleet


@pytest.fixture(scope="session")
def fleet_db(influxd: InfluxServer) -> FleetData:
    """The simulated fleet's ten minutes, written once for every dashboard test."""
    return write_fleet(influxd, "dashboards")
