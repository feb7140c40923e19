"""The running agent: sources → tick loop → WAL → sender thread → store.

:class:`AgentRuntime` wires the parts built from the settings and owns their
lifetimes: the sender runs on its own thread, the tick loop on the caller's;
on stop, the loop ends, the sender gets a bounded time to flush what is left
(the rest stays in the WAL for the next start), and everything is closed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from wattwise.agent.config import AgentConfig, MetricsSettings, SenderSettings
from wattwise.agent.export import ReadingsExport
from wattwise.agent.loop import Schedule, TickLoop
from wattwise.agent.metrics import PrometheusCollector, SelfMetricsSource, StatsProvider
from wattwise.agent.sender import Sender
from wattwise.agent.sources import build_schedules
from wattwise.agent.wal import Wal
from wattwise.clock import Clock, SystemClock
from wattwise.common.lineproto import encode
from wattwise.common.secrets import Secret, read_secret
from wattwise.common.transport import Transport

log = logging.getLogger(__name__)


class AgentRuntime:
    """One agent: its sources, WAL, sender and transport."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        wal: Wal,
        transport: Transport,
        *,
        host: str,
        clock: Clock,
        dead_letter_dir: Path,
        sender: SenderSettings | None = None,
        labels: dict[str, str] | None = None,
        self_metrics_interval_s: float = 10.0,
        metrics: MetricsSettings | None = None,
    ) -> None:
        self.wal = wal
        self.transport = transport
        self.clock = clock
        self.sender_settings = sender or SenderSettings()
        self.sender = Sender(
            wal,
            transport,
            clock=clock,
            dead_letter_dir=dead_letter_dir,
            rng=random.Random(),
            batch_max_lines=self.sender_settings.batch_max_lines,
            backoff_initial_s=self.sender_settings.backoff_initial_s,
            backoff_max_s=self.sender_settings.backoff_max_s,
        )
        self.metrics = metrics or MetricsSettings()
        self.export = ReadingsExport(clock) if self.metrics.export_readings else None
        self.loop = TickLoop(
            list(schedules),
            wal,
            clock=clock,
            encode=encode,
            labels=labels,
            observe=self.export.observe if self.export is not None else None,
        )
        self.stats = StatsProvider(lambda: self.loop.stats, wal.stats, self.sender.stats)
        self.loop.schedules.append(
            Schedule(SelfMetricsSource(self.stats, host=host, clock=clock), self_metrics_interval_s)
        )

    @classmethod
    def from_config(
        cls, config: AgentConfig, clock: Clock | None = None, environ: dict[str, str] | None = None
    ) -> AgentRuntime:
        clock = clock or SystemClock()
        environ = dict(os.environ) if environ is None else environ
        wal = Wal(config.wal.dir, max_bytes=config.wal.max_bytes, sync=config.wal.sync, clock=clock)
        return cls(
            build_schedules(config, clock, environ),
            wal,
            build_transport(config, clock, environ),
            host=config.agent.host_name(),
            clock=clock,
            dead_letter_dir=config.wal.dead_letter_dir or config.wal.dir.parent / "dead-letter",
            sender=config.sender,
            labels=config.agent.labels,
            self_metrics_interval_s=config.agent.host_interval_s,
            metrics=config.metrics,
        )

    def run(self, stop: threading.Event) -> None:
        """Sample and deliver until ``stop`` is set, then flush briefly and close."""
        if self.metrics.prometheus_port:
            registry = CollectorRegistry()
            registry.register(PrometheusCollector(self.stats))
            if self.export is not None:
                registry.register(self.export)
            address, port = self.metrics.prometheus_address, self.metrics.prometheus_port
            start_http_server(port, addr=address, registry=registry)
        sending = threading.Event()
        sender = threading.Thread(
            target=self.sender.run, args=(sending,), name="wattwise-sender", daemon=True
        )
        sender.start()
        log.info("agent started: %d sources", len(self.loop.schedules))
        try:
            self.loop.run(stop)
        finally:
            sending.set()
            sender.join()
            self.shutdown()

    def shutdown(self) -> None:
        # A stopping agent keeps sending for a bounded time; what is left waits in the WAL.
        if not self.sender.flush(self.sender_settings.flush_on_stop_s):
            log.warning(
                "stopping with %d lines not yet delivered; they stay in the WAL for the next start",
                self.wal.stats().queue_lines,
            )
        for schedule in self.loop.schedules:
            schedule.source.close()
        self.transport.close()
        self.wal.close()


def build_transport(config: AgentConfig, clock: Clock, environ: dict[str, str]) -> Transport:
    """The embedded SQLite store or InfluxDB, as configured."""
    if config.store.kind == "embedded":
        from wattwise.common.embedded import EmbeddedStore

        config.store.embedded_path.parent.mkdir(parents=True, exist_ok=True)
        return EmbeddedStore(config.store.embedded_path)
    from wattwise.common.influx import InfluxTransport

    influx = config.influx
    return InfluxTransport(
        influx.url,
        api=influx.api,
        database=influx.database,
        retention_policy=influx.retention_policy or None,
        username=influx.username or None,
        password=_secret("WATTWISE_INFLUX_PASSWORD", influx.password_file, environ, "password"),
        org=influx.org or None,
        bucket=influx.bucket or None,
        token=_secret("WATTWISE_INFLUX_TOKEN", influx.token_file, environ, "token"),
        timeout_s=influx.timeout_s,
        ca_file=influx.ca_file,
        client_cert=influx.client_cert,
        client_key=influx.client_key,
        clock=clock,
    )


def _secret(env_var: str, file: Path | None, environ: dict[str, str], what: str) -> Secret | None:
    setting = f"influx.{what}_file"
    return read_secret(
        env_var if env_var in environ else None, file, environ=environ, setting=setting
    )
