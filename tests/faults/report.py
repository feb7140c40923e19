"""Print the tables of docs/reliability.md from a fault-suite report (``WATTWISE_FAULT_REPORT``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = {
    "agent": ("fault", "behaviour", "appended", "delivered", "dropped", "kept"),
    "optimizer": ("fault", "behaviour", "answers", "5xx", "peak_rss_mib", "tracebacks", "secrets"),
}


def tables(rows: list[dict[str, object]]) -> str:
    out = []
    for table, columns in COLUMNS.items():
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        for row in rows:
            if row["table"] == table:
                out.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def _cell(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1]).read_text())))
