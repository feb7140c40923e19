"""Run the optimizer: store, engine, webhooks, scheduler and the API under uvicorn."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from wattwise.clock import SystemClock
from wattwise.common.secrets import read_secret
from wattwise.errors import MISSING, ConfigError
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.auth import RedactPathTokens
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.latency import GcPauses
from wattwise.optimizer.service.limits import deadline_protocol
from wattwise.optimizer.service.metrics import ServiceMetrics
from wattwise.optimizer.service.power_events import open_event_book, store_writer
from wattwise.optimizer.service.scheduler import build_scheduler
from wattwise.optimizer.service.settings import OptimizerConfig, WebhookSettings
from wattwise.optimizer.service.webhooks import WebhookNotifier
from wattwise.optimizer.store import open_store

log = logging.getLogger(__name__)


def webhook_secret(settings: WebhookSettings) -> bytes:
    secret = read_secret(None, settings.secret_file, setting="webhooks.secret_file")
    if secret is None:
        raise ConfigError(
            "webhooks.secret_file",
            MISSING,
            "a file holding the signing secret",
            describes_source=True,
        )
    return secret.reveal().encode()


def serving_app(engine: Engine, config: OptimizerConfig, metrics: ServiceMetrics) -> FastAPI:
    """The API as the server runs it: collections timed, the engine's objects frozen per
    snapshot and a short GIL switch interval (process-wide, see :mod:`.latency`)."""
    app = create_app(engine, config, metrics=metrics)
    pauses = GcPauses(metrics)
    pauses.install()
    engine.add_listener(pauses.settle)
    return app


def redact_every_log_line() -> None:
    """Mask extender path tokens in whatever the process logs: the access log, uvicorn's
    error log and ours (a handler's filter sees every record that reaches it)."""
    redact = RedactPathTokens()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(redact)


def run_server(config: OptimizerConfig) -> None:
    """Serve until SIGINT/SIGTERM; the first refit and refresh start at once in the background."""
    if not config.api.tokens:
        log.warning("no API tokens configured: every endpoint but /healthz will answer 401")
    clock = SystemClock()
    store = open_store(config.store, clock)
    metrics = ServiceMetrics()
    # Timed power events: kept in budgets.events_file across restarts (in memory without).
    events = open_event_book(config.budgets.events_file, clock, store_writer(store))
    engine = Engine(store, config, clock, events=events)
    notifier = None
    if config.webhooks.targets:
        secret = webhook_secret(config.webhooks)
        notifier = WebhookNotifier(
            config.webhooks, secret, clock, lambda r: metrics.webhooks.labels(r).inc()
        )
        engine.add_listener(notifier)
    app = serving_app(engine, config, metrics)
    scheduler = build_scheduler(
        engine,
        metrics,
        refit_interval_s=config.models.refit_interval_s,
        refresh_interval_s=config.recommend.refresh_interval_s,
        events=events,
    )
    redact_every_log_line()
    scheduler.start()
    try:
        uvicorn.run(
            app,
            host=config.api.host,
            port=config.api.port,
            ssl_certfile=config.api.ssl_certfile,
            ssl_keyfile=config.api.ssl_keyfile,
            log_config=None,
            access_log=config.api.access_log,
            # httptools parses requests in C: a third less time per request than h11;
            # with a deadline for each request to arrive whole (slow clients, 408).
            http=deadline_protocol(config.api.request_timeout_s),
            # asyncio's own loop, not uvloop: with 50 clients sending placements back to
            # back, uvloop served some connections far behind the others (p99 411 ms at a
            # 45 ms median) where asyncio's loop kept them in turn (p99 81 ms), and reads
            # were as fast on either (docs/benchmarks.md, "API latency").
            loop="asyncio",
        )
    finally:
        scheduler.shutdown(wait=False)
        if notifier is not None:
            notifier.close()
        store.close()
