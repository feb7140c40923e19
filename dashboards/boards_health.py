"""The GPU health dashboard: XIDs with their codes, ECC, remapped rows, NVLink, throttling."""

from __future__ import annotations

from wattwise.collector.xid import FATAL_XIDS, XID_MEANINGS
from wattwise.dashboards.boards_infra import EVERY, TS, T, reason_mappings, stat
from wattwise.dashboards.build import GPU_FILTER, GPU_WHERE, Board, Json, field_override, targets

G = "$tag_host/$tag_gpu"
FATAL = "(" + " OR ".join(f"\"xid\" = '{code}'" for code in sorted(FATAL_XIDS)) + ")"
XID_WHERE = f"WHERE {T} AND {GPU_FILTER}"


def _last_per_gpu(field: str) -> str:
    return f'SELECT last("{field}") FROM "gpu" {GPU_WHERE} GROUP BY {EVERY}, "host", "gpu"'


def xid_mappings() -> list[Json]:
    """Each known XID code in words, red when it is one the health rule calls fatal."""
    options = {
        str(code): {
            "text": f"{code}: {meaning}",
            "color": "red" if code in FATAL_XIDS else "orange",
            "index": i,
        }
        for i, (code, meaning) in enumerate(sorted(XID_MEANINGS.items()))
    }
    return [{"type": "value", "options": options}]


def gpu_health() -> Board:
    b = Board(
        "wattwise-gpu-health",
        "GPU health",
        "XID errors, ECC, remapped rows, NVLink and throttling per GPU. GPUs with a pending "
        "or failed row remap or a recent fatal XID get no new work from wattwise.",
        ["health"],
    )
    fatal_gpus = (
        f'SELECT count("v") FROM (SELECT sum("count") AS "v" FROM "gpu_xid" '
        f'{XID_WHERE} AND {FATAL} GROUP BY "host", "gpu")'
    )
    b.add(
        "stat",
        "GPUs with fatal XIDs",
        6,
        5,
        targets((fatal_gpus, ""), table=True),
        noValue="0",
        thresholds={
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
        },
        **stat(),
        description="Distinct GPUs that reported XID 48, 63, 64, 74, 79, 94 or 95 in the range.",
    )
    pending = (
        'SELECT count("v") FROM (SELECT last("remapped_rows_pending") AS "v" FROM "gpu" '
        f'{GPU_WHERE} GROUP BY "host", "gpu") WHERE "v" > 0'
    )
    b.add(
        "stat",
        "GPUs waiting for a reset (row remap pending)",
        6,
        5,
        targets((pending, ""), table=True),
        noValue="0",
        **stat(),
    )
    failed_remap = pending.replace("remapped_rows_pending", "remapped_rows_failed")
    b.add(
        "stat",
        "GPUs with a failed row remap",
        6,
        5,
        targets((failed_remap, ""), table=True),
        noValue="0",
        **stat(),
        description="A failed remap (XID 64) means the GPU needs replacing.",
    )
    uncorrected = (
        'SELECT sum("v") FROM (SELECT last("ecc_uncorrected_total") AS "v" FROM "gpu" '
        f'{GPU_WHERE} GROUP BY "host", "gpu")'
    )
    b.add(
        "stat",
        "Uncorrectable ECC errors (since driver load)",
        6,
        5,
        targets((uncorrected, ""), table=True),
        noValue="0",
        **stat(),
    )
    b.row("XID errors")
    per_code = (
        f'SELECT sum("count") FROM "gpu_xid" {XID_WHERE} '
        f'GROUP BY {EVERY}, "host", "gpu", "xid" fill(none)'
    )
    b.add(
        TS,
        "XID events over time",
        14,
        9,
        targets((per_code, f"{G} XID $tag_xid")),
        unit="none",
        custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}},
        description="One series per GPU and XID code; the table beside says what each code means.",
    )
    table = (
        f'SELECT sum("count") AS "events", last("count") AS "last" FROM "gpu_xid" {XID_WHERE} '
        'GROUP BY "host", "gpu", "xid"'
    )
    b.add(
        "table",
        "XID events by GPU and code",
        10,
        9,
        targets((table, ""), table=True),
        overrides=[field_override("xid", {"id": "mappings", "value": xid_mappings()})],
        description="Codes in red are those after which wattwise sends the GPU no new work.",
    )
    b.row("Memory errors")
    b.add(
        TS,
        "ECC errors (since driver load)",
        12,
        8,
        targets(
            (_last_per_gpu("ecc_corrected_total"), f"{G} corrected"),
            (_last_per_gpu("ecc_uncorrected_total"), f"{G} uncorrected"),
        ),
        unit="none",
    )
    b.add(
        TS,
        "ECC errors over the GPU's life",
        12,
        8,
        targets(
            (_last_per_gpu("ecc_corrected_aggregate_total"), f"{G} corrected"),
            (_last_per_gpu("ecc_uncorrected_aggregate_total"), f"{G} uncorrected"),
        ),
        unit="none",
    )
    b.add(
        TS,
        "Remapped rows",
        12,
        8,
        targets(
            (_last_per_gpu("remapped_rows_uncorrectable"), f"{G} uncorrectable"),
            (_last_per_gpu("remapped_rows_correctable"), f"{G} correctable"),
            (_last_per_gpu("remapped_rows_pending"), f"{G} pending"),
            (_last_per_gpu("remapped_rows_failed"), f"{G} failed"),
        ),
        unit="none",
        description="Pending: reset the GPU to apply the remap. Failed: replace the GPU.",
    )
    b.row("Links and throttling")
    b.add(
        TS,
        "NVLink",
        12,
        8,
        targets(
            (_last_per_gpu("nvlink_replay_errors_total"), f"{G} replay errors"),
            (_last_per_gpu("nvlink_links_up"), f"{G} links up"),
        ),
        unit="none",
    )
    b.add(
        "state-timeline",
        "Throttling (clock-event reasons)",
        24,
        8,
        targets((_last_per_gpu("clock_event_reasons"), G)),
        mappings=reason_mappings(),
        options={"showValue": "never", "mergeValues": True},
    )
    b.add(
        "state-timeline",
        "Failed reads (lost or erroring GPUs)",
        24,
        6,
        targets(
            (f'SELECT max("failed") FROM "gpu" {GPU_WHERE} GROUP BY {EVERY}, "host", "gpu"', G)
        ),
        mappings=[
            {
                "type": "value",
                "options": {
                    "0": {"text": "answering", "color": "green", "index": 0},
                    "1": {"text": "failed", "color": "red", "index": 1},
                },
            }
        ],
        options={"showValue": "never", "mergeValues": True},
    )
    return b
