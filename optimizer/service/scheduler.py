"""Scheduled refits and refreshes on an APScheduler ``BackgroundScheduler``.

Both jobs run once right away and then every interval; a run that is still
going when the next is due is not doubled (``max_instances=1``, missed runs
coalesced). A failing job is logged and counted, and the next run tries again:
the API keeps serving the last good recommendations meanwhile. With power events, the
refresh also runs when an event's limit starts to count (``budgets.event_lead_s`` before
its start), at its end, and when one is added or cancelled (:mod:`.event_edges`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler

from wattwise.errors import Busy, WattwiseError
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.event_edges import EventEdges
from wattwise.optimizer.service.metrics import ServiceMetrics
from wattwise.optimizer.service.power_events import EventBook

log = logging.getLogger(__name__)
REFIT, REFRESH = "refit", "refresh"


def run_job(name: str, job: Callable[[], object], metrics: ServiceMetrics) -> bool:
    """Run one job, log and count its outcome; True when it succeeded."""
    try:
        job()
    except Busy:
        metrics.jobs.labels(name, "skipped").inc()
        return False
    except WattwiseError as e:
        metrics.jobs.labels(name, "failed").inc()
        log.warning("%s failed: %s", name, e)
        return False
    except Exception:
        # a bug in one run must not stop the schedule; the traceback goes to the log
        metrics.jobs.labels(name, "failed").inc()
        log.exception("%s failed unexpectedly", name)
        return False
    metrics.jobs.labels(name, "ok").inc()
    metrics.last_success.labels(name).set_to_current_time()
    return True


def build_scheduler(
    engine: Engine,
    metrics: ServiceMetrics,
    *,
    refit_interval_s: float,
    refresh_interval_s: float,
    start_delay_s: float = 0.0,
    events: EventBook | None = None,
) -> BackgroundScheduler:
    """A started-later scheduler with the refit and refresh jobs, and refreshes at the edges
    of ``events`` (on the engine's clock); call ``.start()``."""
    scheduler = BackgroundScheduler(timezone="UTC")
    first = datetime.now().astimezone() + timedelta(seconds=start_delay_s)
    scheduler.add_job(
        run_job,
        "interval",
        args=(REFIT, engine.refit, metrics),
        seconds=refit_interval_s,
        id=REFIT,
        next_run_time=first,
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        run_job,
        "interval",
        args=(REFRESH, engine.refresh, metrics),
        seconds=refresh_interval_s,
        id=REFRESH,
        # after the first refit has had its start (refresh refits itself if none exists)
        next_run_time=first + timedelta(seconds=0.1),
        max_instances=1,
        coalesce=True,
    )
    if events is not None:
        refresh = partial(run_job, REFRESH, engine.refresh, metrics)
        lead_ns = int(engine.config.budgets.event_lead_s * 1e9)
        EventEdges(scheduler, events, refresh, engine.clock, lead_ns).follow()
    return scheduler
