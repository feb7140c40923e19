from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.optimizer.service.support import config, fill_store, serve
from wattwise.clock import ManualClock
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.store import EmbeddedSqliteStore


@pytest.fixture(scope="session")
def twin_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The twin's telemetry in an embedded store file, and the time its data ends."""
    path = tmp_path_factory.mktemp("twin") / "wattwise.sqlite"
    clock = fill_store(path)
    return path, clock.time_ns()


@pytest.fixture(scope="module")
def engine(twin_data: tuple[Path, int]) -> Iterator[Engine]:
    path, end_ns = twin_data
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    yield engine
    store.close()


@pytest.fixture(scope="module")
def api(engine: Engine) -> Iterator[str]:
    """Base URL of the live API over ``engine`` (refreshed once before serving)."""
    app = create_app(engine, engine.config)
    engine.refresh()
    with serve(app) as url:
        yield url


@pytest.fixture
def client(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=30) as c:
        yield c
