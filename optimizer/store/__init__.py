"""The optimizer's telemetry stores: InfluxDB (InfluxQL), the embedded SQLite file, and
Prometheus-compatible stores (Prometheus, VictoriaMetrics, Thanos, Mimir).

All implement :class:`~wattwise.optimizer.telemetry.TelemetryStore` and pass
the same contract tests (``tests/optimizer/store/test_contract.py``).
"""

from __future__ import annotations

from wattwise.optimizer.store.embedded import EmbeddedSqliteStore
from wattwise.optimizer.store.influx import InfluxStore
from wattwise.optimizer.store.prometheus import PrometheusStore
from wattwise.optimizer.store.settings import StoreSettings, open_store

__all__ = ["EmbeddedSqliteStore", "InfluxStore", "PrometheusStore", "StoreSettings", "open_store"]
