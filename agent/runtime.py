"""The running agent: sources → tick loop → WAL → sender thread → store.

:class:`AgentRuntime` wires the parts built from the settings and owns their
lifetimes: the sender runs on its own thread, the tick loop on the caller's;
on stop, the loop ends, the sender finishes the request under way (which ends
by its deadline), gets a bounded time to flush what is left (the rest stays in
the WAL for the next start), and everything is closed.

The sender's loop outlives any exception, but should its thread end anyway,
sampling into a WAL nobody drains would only fill the disk: the agent stops
and :meth:`AgentRuntime.run` raises :class:`~wattwise.errors.AgentError`, so the
process exits 1 and systemd restarts it (``Restart=on-failure``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from wattwise.agent.config import AgentConfig, SenderSettings
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
from wattwise.errors import AgentError, ConfigError

log = logging.getLogger(__name__)

_JOIN_MARGIN_S = 5.0
"""Beyond the store's timeout, how long a stopping agent waits for its sender thread."""


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
        prometheus_port: int = 0,
        prometheus_address: str = "127.0.0.1",
        export_readings: bool = False,
        request_timeout_s: float = 10.0,
        dead_letter_max_bytes: int = 64 << 20,
    ) -> None:
        self.wal = wal
        self.transport = transport
        self.clock = clock
        self.sender_settings = sender or SenderSettings()
        self.request_timeout_s = request_timeout_s
        self.sender = Sender(
            wal,
            transport,
            clock=clock,
            dead_letter_dir=dead_letter_dir,
            rng=random.Random(),
            batch_max_lines=self.sender_settings.batch_max_lines,
            backoff_initial_s=self.sender_settings.backoff_initial_s,
            backoff_max_s=self.sender_settings.backoff_max_s,
            hold_after_rejected_batches=self.sender_settings.hold_after_rejected_batches,
            dead_letter_max_bytes=dead_letter_max_bytes,
        )
        self.sender_failure: str | None = None
        self.export = ReadingsExport(clock) if export_readings else None
        self.loop = TickLoop(
            list(schedules),
            wal,
            clock=clock,
            encode=encode,
            labels=labels,
            observe=self.export.observe if self.export is not None else None,
        )
        self.stats = StatsProvider(
            lambda: self.loop.stats, wal.stats, self.sender.stats, self._sender_up
        )
        self.loop.schedules.append(
            Schedule(SelfMetricsSource(self.stats, host=host, clock=clock), self_metrics_interval_s)
        )
        self.prometheus_port = prometheus_port
        self.prometheus_address = prometheus_address

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
            dead_letter_dir=config.wal.dead_letters(),
            sender=config.sender,
            labels=config.agent.labels,
            self_metrics_interval_s=config.agent.host_interval_s,
            prometheus_port=config.metrics.prometheus_port,
            prometheus_address=config.metrics.prometheus_address,
            export_readings=config.metrics.export_readings,
            request_timeout_s=config.influx.timeout_s,
            dead_letter_max_bytes=config.wal.dead_letter_max_bytes,
        )

    def run(self, stop: threading.Event) -> None:
        """Sample and deliver until ``stop`` is set, then flush briefly and close.

        Raises AgentError if the sender thread ended before it was told to."""
        if self.prometheus_port:
            self._serve_metrics()
        sending = threading.Event()
        self._sender_thread = threading.Thread(
            target=self._send, args=(sending, stop), name="wattwise-sender", daemon=True
        )
        self._sender_thread.start()
        log.info("agent started: %d sources", len(self.loop.schedules))
        try:
            self.loop.run(stop)
        finally:
            sending.set()
            self._sender_thread.join(self.request_timeout_s + _JOIN_MARGIN_S)
            # A sender that ended or hangs is not asked to flush: its lines wait in the WAL.
            healthy = self.sender_failure is None and not self._sender_thread.is_alive()
            self.shutdown(flush=healthy)
        if self.sender_failure is not None:
            raise AgentError(self.sender_failure)

    def _serve_metrics(self) -> None:
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(self.stats))
        if self.export is not None:
            registry.register(self.export)
        try:
            start_http_server(self.prometheus_port, addr=self.prometheus_address, registry=registry)
        except OSError as e:
            raise ConfigError(
                "metrics.prometheus_port",
                self.prometheus_port,
                "a free port",
                problem=f"cannot be listened on ({e.strerror})",
            ) from e

    def _send(self, sending: threading.Event, stop: threading.Event) -> None:
        try:
            self.sender.run(sending)
        finally:
            if not sending.is_set():
                self.sender_failure = "the sender thread ended; nothing would be delivered"
                log.critical(
                    "%s: stopping so that the service manager restarts the agent",
                    self.sender_failure,
                )
                stop.set()

    def _sender_up(self) -> bool:
        thread = getattr(self, "_sender_thread", None)
        return thread is None or thread.is_alive()

    def shutdown(self, *, flush: bool = True) -> None:
        # A stopping agent keeps sending for a bounded time; what is left waits in the WAL.
        if not flush:
            log.error(
                "stopping without a flush: %d lines stay in the WAL for the next start",
                self.wal.stats().queue_lines,
            )
        elif not self.sender.flush(self.sender_settings.flush_on_stop_s):
            log.warning(
                "stopping with %d lines not yet delivered; they stay in the WAL for the next start",
                self.wal.stats().queue_lines,
            )
        for schedule in self.loop.schedules:
            schedule.source.close()
        self.transport.close()
        queue, sent = self.wal.stats(), self.sender.stats()
        log.info(
            "agent stopped: %d lines read, %d sent, %d dead-lettered, %d dropped, "
            "%d left in the WAL",
            self.loop.stats.lines_total,
            sent.sent_lines_total,
            sent.dead_lettered_lines_total,
            queue.dropped_lines_total,
            queue.queue_lines,
        )
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
