"""The optimizer's HTTP API: :func:`create_app` builds it around one :class:`Engine`.

Everything the app needs is passed in; nothing lives in module globals.
Errors are answered by :mod:`.errors`, tokens checked by :mod:`.auth`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from wattwise.optimizer.service import placing
from wattwise.optimizer.service.auth import BearerScope, Principal, TokenTable, check
from wattwise.optimizer.service.bodies import json_body, read_json, read_model
from wattwise.optimizer.service.engine import Engine, Snapshot
from wattwise.optimizer.service.errors import install_error_handlers
from wattwise.optimizer.service.limits import BodyLimit
from wattwise.optimizer.service.metrics import RequestMetrics, ServiceMetrics
from wattwise.optimizer.service.power_events import EventBook, store_writer
from wattwise.optimizer.service.queries import FilterQuery
from wattwise.optimizer.service.schemas import (
    ErrorOut,
    HealthOut,
    ItemsOut,
    ModelsOut,
    PlacementBody,
    PlacementOut,
    PowerEventBody,
    PowerEventOut,
    PowerEventsOut,
    RefreshOut,
)
from wattwise.optimizer.service.settings import OptimizerConfig
from wattwise.optimizer.service.views import (
    BudgetItems,
    IndexedItems,
    SnapshotView,
    event_dict,
    iso,
)

JSON = "application/json"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
EXTENDER_ARGS: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "kube-scheduler ExtenderArgs"}
            }
        },
    }
}


class ViewCache:
    """The JSON view of the engine's newest snapshot, built once per snapshot by the
    refresh's listener, off the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._view: SnapshotView | None = None

    def rebuild(self, snapshot: Snapshot) -> None:
        # Built aside, then installed in one reference assignment: readers never see half.
        self._view = SnapshotView.build(snapshot)

    def get(self) -> SnapshotView:
        # Only the first read ever builds here (an engine refreshed before the app existed).
        # After that a read always answers from the newest built view: building one on the
        # event loop (~0.3 s at 1,000 nodes, longer beside a refresh) stalled every request
        # whenever a read slipped in between a refresh's new snapshot and its listener.
        view = self._view
        if view is None:
            self.rebuild(self._engine.snapshot)
            view = self._view
        assert view is not None
        return view


def event_book(engine: Engine) -> EventBook:
    """The power events the engine plans with and the API manages: the engine's book, or,
    for an engine built without one, a new book kept in memory that both then share."""
    if isinstance(engine.events, EventBook):
        return engine.events
    if engine.events is not None:
        raise TypeError("the engine plans with events the API cannot manage: give it an EventBook")
    book = EventBook(None, engine.clock, store_writer(engine.store))
    engine.events = book
    return book


def create_app(
    engine: Engine, config: OptimizerConfig, *, metrics: ServiceMetrics | None = None
) -> FastAPI:
    """The API for ``engine`` under ``config``; serve it with uvicorn. Power events are
    kept in the engine's :class:`EventBook` (``optimizer serve`` gives it one on
    ``budgets.events_file``; without one they are kept in memory only)."""
    metrics = metrics or ServiceMetrics()
    book = event_book(engine)
    app = FastAPI(
        title="wattwise optimizer",
        version="1",
        description="Power caps, placement and cooling recommendations (docs/api.md).",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.api.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    table = TokenTable(config.api.tokens)
    views = ViewCache(engine)
    engine.add_listener(views.rebuild)
    engine.add_listener(lambda s: _count(metrics, s))
    metrics.watch_dropped(engine.telemetry.dropped)
    read = Depends(BearerScope(table, "read"))
    admin = Depends(BearerScope(table, "admin"))
    _open_routes(app, engine, config, metrics, read)
    _read_routes(app, engine, config, views, read)
    _admin_routes(app, engine, metrics, admin)
    _event_routes(app, engine, book, read, admin)
    _extender_routes(app, engine, table)
    return app


def _count(metrics: ServiceMetrics, snapshot: Snapshot) -> None:
    metrics.recommendations.labels("power_cap").set(len(snapshot.caps))
    metrics.recommendations.labels("cooling").set(len(snapshot.cooling))
    metrics.recommendations.labels("power_budget").set(len(snapshot.budget))


def _open_routes(
    app: FastAPI, engine: Engine, config: OptimizerConfig, metrics: ServiceMetrics, read: Any
) -> None:
    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz() -> dict[str, object]:
        snap = engine.snapshot if engine.ready else None
        fitted = engine.fitted if engine.has_models else None
        return {
            "status": "ok",
            "ready": snap is not None,
            "last_refresh": iso(snap.computed_at_ns) if snap else None,
            "last_refit": iso(fitted.fitted_at_ns) if fitted else None,
        }

    metrics_deps = [] if config.api.metrics_public else [read]

    @app.get("/metrics", dependencies=metrics_deps, tags=["service"], response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/openapi.json", dependencies=[read], include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())


def _check_shard(config: OptimizerConfig, cluster: Sequence[str], zone: Sequence[str]) -> None:
    for name, asked, served in (
        ("cluster", cluster, config.shard.clusters),
        ("zone", zone, config.shard.zones),
    ):
        outside = sorted(set(asked) - set(served)) if served else []
        if outside:
            raise HTTPException(
                404,
                f"{name} {', '.join(outside)} not served here; this instance serves "
                f"{', '.join(served)}",
            )


def _read_routes(
    app: FastAPI, engine: Engine, config: OptimizerConfig, views: ViewCache, read: Any
) -> None:
    caps_query = FilterQuery(("cluster", "zone", "host"))
    cooling_query = FilterQuery(("cluster", "zone"))
    budget_query = FilterQuery(("scope", "host"))

    @app.get(
        "/v1/recommendations/power-caps",
        dependencies=[read],
        response_model=ItemsOut,
        tags=["recommendations"],
        openapi_extra=caps_query.openapi(),
    )
    async def power_caps(request: Request) -> Response:
        return _read(caps_query.parse(request), lambda view: view.caps)

    @app.get(
        "/v1/recommendations/cooling",
        dependencies=[read],
        response_model=ItemsOut,
        tags=["recommendations"],
        openapi_extra=cooling_query.openapi(),
    )
    async def cooling(request: Request) -> Response:
        return _read(cooling_query.parse(request), lambda view: view.cooling)

    @app.get(
        "/v1/recommendations/power-budget",
        dependencies=[read],
        response_model=ItemsOut,
        tags=["recommendations"],
        openapi_extra=budget_query.openapi(),
    )
    async def power_budget(request: Request) -> Response:
        """One plan per power budget in force; ``host`` keeps the plans that cap that
        host, each with that host's caps only."""
        return _read(budget_query.parse(request), lambda view: view.budget)

    def _read(
        filters: dict[str, list[str]],
        items: Callable[[SnapshotView], IndexedItems | BudgetItems],
    ) -> Response:
        _check_shard(config, filters.get("cluster", ()), filters.get("zone", ()))
        view = views.get()
        return Response(view.body(items(view).select(filters)), media_type=JSON)

    @app.post(
        "/v1/placement",
        dependencies=[read],
        response_model=PlacementOut,
        tags=["placement"],
        openapi_extra=json_body(PlacementBody),
    )
    async def placement(request: Request, explain: bool = False) -> Response:
        """Ranked candidates; ``explain=true`` adds why every other host was rejected."""
        # On the event loop, not the thread pool: a placement is ~0.2 ms of vectorised work,
        # and 40 pool threads taking turns at the GIL (5 ms slices) made each wait for the
        # others; in arrival order, one at a time, a request waits for the queue ahead.
        body = await read_model(request, PlacementBody)
        if body.zone is not None:
            _check_shard(config, [], [body.zone])
        result = placing.place(engine, body, explain=explain)
        return Response(json.dumps(result, allow_nan=False).encode(), media_type=JSON)

    @app.get("/v1/models", dependencies=[read], response_model=ModelsOut, tags=["models"])
    def models() -> dict[str, object]:
        """Every version the model registry keeps (without one: the models in use)."""
        fitted = engine.fitted
        return {
            "fitted_at": iso(fitted.fitted_at_ns),
            "models": [placing.model_dict(info) for info in engine.stored_models()],
            "dropped_values": placing.dropped_values(engine),
        }


def _admin_routes(app: FastAPI, engine: Engine, metrics: ServiceMetrics, admin: Any) -> None:
    @app.post("/v1/refit", dependencies=[admin], response_model=ModelsOut, tags=["admin"])
    def refit() -> dict[str, object]:
        fitted = engine.refit()
        return {
            "fitted_at": iso(fitted.fitted_at_ns),
            "models": [placing.model_dict(info) for info in fitted.infos],
            "dropped_values": placing.dropped_values(engine),
        }

    @app.post("/v1/refresh", dependencies=[admin], response_model=RefreshOut, tags=["admin"])
    def refresh() -> dict[str, object]:
        snap = engine.refresh()
        return {
            "computed_at": iso(snap.computed_at_ns),
            "power_caps": len(snap.caps),
            "cooling": len(snap.cooling),
            "power_budget": len(snap.budget),
        }


def _event_routes(app: FastAPI, engine: Engine, book: EventBook, read: Any, admin: Any) -> None:
    # Adding and cancelling write and fsync the events file and write to the store: off
    # the event loop. Listing and getting read memory only.
    def answer(event: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(event_dict(event, engine.clock.time_ns()), status_code=status)

    @app.post(
        "/v1/power-events",
        dependencies=[admin],
        response_model=PowerEventOut,
        status_code=201,
        tags=["power budgets"],
        openapi_extra=json_body(PowerEventBody),
    )
    async def add_power_event(request: Request) -> JSONResponse:
        """Limit a scope's power for a window (201 with the event)."""
        body = await read_model(request, PowerEventBody)
        event = await run_in_threadpool(
            book.add, body.scope, body.limit_w, _ns(body.start), _ns(body.end), body.reason
        )
        return answer(event, 201)

    @app.get(
        "/v1/power-events",
        dependencies=[read],
        response_model=PowerEventsOut,
        tags=["power budgets"],
    )
    async def list_power_events(all: bool = False) -> JSONResponse:
        """Scheduled and active events by start; ``all=true`` adds the ended and cancelled."""
        now_ns = engine.clock.time_ns()
        items = [event_dict(e, now_ns) for e in book.list(include_ended=all)]
        return JSONResponse({"count": len(items), "items": items})

    @app.get(
        "/v1/power-events/{event_id}",
        dependencies=[read],
        response_model=PowerEventOut,
        tags=["power budgets"],
    )
    async def get_power_event(event_id: str) -> JSONResponse:
        return answer(book.get(event_id))

    @app.delete(
        "/v1/power-events/{event_id}",
        dependencies=[admin],
        response_model=PowerEventOut,
        tags=["power budgets"],
    )
    async def cancel_power_event(event_id: str) -> JSONResponse:
        """End the event now (409 once it ended or was cancelled)."""
        return answer(await run_in_threadpool(book.cancel, event_id))


def _ns(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1) * 1000


def _extender_routes(app: FastAPI, engine: Engine, table: TokenTable) -> None:
    # The body is read after the token is checked (a route with a body parameter would
    # have FastAPI read and parse it first), then parsed and answered off the event loop.
    extender = Depends(BearerScope(table, "extender"))

    async def path_token(token: str) -> Principal:
        return check(table.lookup(token), "extender")

    by_path = Depends(path_token)
    for prefix, dependency in (("/v1/extender", extender), ("/v1/extender/k/{token}", by_path)):

        @app.post(
            f"{prefix}/filter",
            dependencies=[dependency],
            tags=["kubernetes"],
            openapi_extra=EXTENDER_ARGS,
        )
        async def extender_filter(request: Request) -> JSONResponse:
            args = await read_json(request)
            return JSONResponse(await run_in_threadpool(placing.extender_filter, engine, args))

        @app.post(
            f"{prefix}/prioritize",
            dependencies=[dependency],
            tags=["kubernetes"],
            openapi_extra=EXTENDER_ARGS,
        )
        async def extender_prioritize(request: Request) -> JSONResponse:
            args = await read_json(request)
            result = await run_in_threadpool(placing.extender_prioritize, engine, args)
            return JSONResponse(result)
