"""The fault-injection suite (``-m faults``): real processes, sockets, files and a tmpfs.

Each test records what it measured with :func:`reliability`; with
``WATTWISE_FAULT_REPORT=FILE`` set, the rows are written to FILE as JSON when the
session ends, and ``python -m tests.faults.report FILE`` prints the tables of
docs/reliability.md from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

Record = Callable[..., None]
_ROWS: list[dict[str, Any]] = []


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Record:
    """Record one row of the reliability tables: the fault and what was measured."""

    def record(table: str, fault: str, behaviour: str, **figures: object) -> None:
        _ROWS.append(
            {"table": table, "test": request.node.name, "fault": fault,
             "behaviour": behaviour, **figures}
        )  # fmt: skip

    return record


@pytest.fixture(scope="session", autouse=True)
def _write_report() -> Iterator[None]:
    yield
    target = os.environ.get("WATTWISE_FAULT_REPORT")
    if target and _ROWS:
        Path(target).write_text(json.dumps(_ROWS, indent=2) + "\n")
