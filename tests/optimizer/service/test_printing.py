"""The optimizer commands' tables and lines of text."""

from __future__ import annotations

from rich.console import Console

from wattwise.optimizer.service.printing import table


def test_table_cells_are_text_not_markup() -> None:
    # Names come from the fleet's own labels: "[dc1]" read as rich markup was dropped as
    # an unknown style, and "[/b]" raised MarkupError.
    console = Console(width=80, record=True)
    console.print(table([{"host": "node-[dc1]", "zone": "[/b]"}], ("host", "zone")))
    shown = console.export_text()
    assert "node-[dc1]" in shown and "[/b]" in shown
