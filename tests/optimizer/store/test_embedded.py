"""What only the embedded store does: open a file the agent has not written yet."""

from __future__ import annotations

from pathlib import Path

from wattwise.clock import ManualClock
from wattwise.optimizer.store import EmbeddedSqliteStore, StoreSettings, open_store
from wattwise.optimizer.telemetry import Scope


def test_a_new_file_answers_empty_and_then_what_is_written(tmp_path: Path) -> None:
    path = tmp_path / "new" / "wattwise.sqlite"
    store = open_store(StoreSettings(kind="embedded", embedded_path=path), ManualClock())
    assert isinstance(store, EmbeddedSqliteStore)
    assert store.latest_zones(Scope()) == []
    assert len(store.zone_series(0, 10**18, every_s=60, scope=Scope())) == 0
    store.write([b"cooling,cluster=c,zone=z1 setpoint_c=22.0,supply_temp_c=21.5 60000000000"])
    (zone,) = store.latest_zones(Scope())
    assert (zone.zone, zone.setpoint_c, zone.supply_temp_c, zone.time_ns) == (
        "z1",
        22.0,
        21.5,
        60_000_000_000,
    )
    store.close()


def test_a_reader_sees_what_another_connection_wrote_after_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "wattwise.sqlite"
    reader = EmbeddedSqliteStore(path)
    writer = EmbeddedSqliteStore(path)  # stands for the agent writing the same file
    writer.write([b"host,host=n1,zone=z1 inlet_temp_c=24.5 1000000000"])
    (host,) = reader.latest_hosts(Scope(zones=("z1",)))
    assert host.inlet_temp_c == 24.5
    reader.close()
    writer.close()
