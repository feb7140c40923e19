"""Write the report: refit, refresh, render, and replace the file atomically."""

from __future__ import annotations

import os
from pathlib import Path

from wattwise.optimizer.report.build import ReportData, gather
from wattwise.optimizer.report.html import render
from wattwise.optimizer.service.engine import Engine, Progress


def write_report(
    engine: Engine, since_s: float, out: Path, progress: Progress | None = None
) -> ReportData:
    """Refit and refresh ``engine``, render the last ``since_s`` seconds to ``out``.

    Written to a temporary file first and renamed, so ``out`` is never half a page.
    """
    data = gather(engine, since_s, progress)
    page = render(data)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, out)
    return data
