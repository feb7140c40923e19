"""The optimizer's telemetry stores: InfluxDB (InfluxQL) and the embedded SQLite file.

Both implement :class:`~wattwise.optimizer.telemetry.TelemetryStore` and pass
the same contract tests (``tests/optimizer/store/test_contract.py``).
"""

from __future__ import annotations

from wattwise.optimizer.store.embedded import EmbeddedSqliteStore
from wattwise.optimizer.store.influx import InfluxStore
from wattwise.optimizer.store.settings import StoreSettings, open_store

__all__ = ["EmbeddedSqliteStore", "InfluxStore", "StoreSettings", "open_store"]
