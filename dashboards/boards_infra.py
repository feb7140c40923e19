"""The fleet overview, node, jobs and cooling-zone dashboards."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from wattwise.dashboards.build import (
    GPU_FILTER,
    GPU_WHERE,
    HOST_FILTER,
    HOST_WHERE,
    ZONE_FILTER,
    ZONE_WHERE,
    Board,
    Json,
    custom_variable,
    field_override,
    power_event_annotation,
    targets,
    unit_property,
)

T = "$timeFilter"
EVERY = "time($__interval)"
TS = "timeseries"
REASON_WORDS = {
    0x1: "idle",
    0x4: "power cap",
    0x8: "hardware slowdown",
    0x20: "thermal (software)",
    0x40: "thermal (hardware)",
    0x80: "power brake",
}
THROTTLE_BITS = 0x8 | 0x20 | 0x40 | 0x80


def fleet_sum(measurement: str, field: str, filt: str, per: str, by: str = "") -> str:
    """Sum over series of each series' mean per interval (a plain sum would add samples)."""
    group = f'{EVERY}, "{by}"' if by else EVERY
    return (
        f'SELECT sum("v") FROM (SELECT mean("{field}") AS "v" FROM "{measurement}" '
        f"WHERE {T} AND {filt} GROUP BY {EVERY}, {per}) GROUP BY {group}"
    )


def gpu_count(condition: str, field: str = "util_gpu_pct", agg: str = "mean") -> str:
    """GPUs whose per-interval ``agg`` of ``field`` (as "v") meets ``condition``."""
    return (
        f'SELECT count("v") FROM (SELECT {agg}("{field}") AS "v" FROM "gpu" '
        f'{GPU_WHERE} GROUP BY {EVERY}, "host", "gpu") '
        f"WHERE {condition} GROUP BY {EVERY}"
    )


def failed_count() -> str:
    """GPUs that failed a read in the interval (0, not "No data", when none did)."""
    return (
        f'SELECT sum("v") FROM (SELECT max("failed") AS "v" FROM "gpu" {GPU_WHERE} '
        f'GROUP BY {EVERY}, "host", "gpu") GROUP BY {EVERY}'
    )


def reason_mappings() -> list[Json]:
    """Every combination of the clock-event bits, in words (Grafana maps exact values)."""
    bits = sorted(REASON_WORDS)
    options: dict[str, Json] = {"0": {"text": "full clock", "color": "green", "index": 0}}
    for n in range(1, len(bits) + 1):
        for combo in combinations(bits, n):
            text = " + ".join(REASON_WORDS[b] for b in combo)
            color = "red" if any(b & THROTTLE_BITS for b in combo) else "yellow"
            color = "blue" if combo == (0x1,) else color
            options[str(sum(combo))] = {"text": text, "color": color, "index": len(options)}
    return [{"type": "value", "options": options}]


def stat(**extra: Any) -> dict[str, Any]:
    calc = extra.pop("calc", "lastNotNull")
    return {
        "options": {
            "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
        **extra,
    }


def fleet_overview() -> Board:
    b = Board(
        "wattwise-fleet",
        "Fleet overview",
        "IT power, energy and GPU states of the fleet.",
        ["fleet"],
    )
    b.annotations.append(power_event_annotation())
    b.variables.append(custom_variable("group_by", "Group power by", ["rack", "zone", "cluster"]))
    node_power = fleet_sum("host", "node_power_w", HOST_FILTER, '"host"')
    gpu_power = fleet_sum("gpu", "power_w", GPU_FILTER, '"host", "gpu"')
    b.add(
        "stat",
        "IT power now",
        4,
        5,
        targets((node_power, "nodes (BMC)"), (gpu_power, "GPUs")),
        unit="watt",
        **stat(),
    )
    energy = f'SELECT sum("energy_j") / 3600000 FROM "gpu" {GPU_WHERE} GROUP BY {EVERY}'
    b.add(
        "stat",
        "GPU energy today",
        4,
        5,
        targets((energy, "")),
        unit="kwatth",
        timeFrom="now/d",
        **stat(calc="sum"),
    )
    b.add(
        "stat",
        "GPU energy this month",
        4,
        5,
        targets((energy, "")),
        unit="kwatth",
        timeFrom="now/M",
        **stat(calc="sum"),
    )
    states = targets(
        (gpu_count('"v" > 5'), "busy"),
        (gpu_count('"v" <= 5'), "idle"),
        (failed_count(), "failed"),
    )
    b.add("stat", "GPUs busy / idle / failed", 6, 5, states, noValue="0", **stat())
    capped = gpu_count('"v" & 4 = 4', field="clock_event_reasons", agg="last")
    throttled = gpu_count(f'"v" & {THROTTLE_BITS} > 0', field="clock_event_reasons", agg="last")
    b.add(
        "stat",
        "Power-capped / thermally throttled GPUs",
        6,
        5,
        targets((capped, "power-capped"), (throttled, "throttled")),
        noValue="0",
        **stat(),
        description="GPUs whose clocks are held by the power cap (0x4), or by heat or slowdown.",
    )
    by = "$group_by"
    b.add(
        TS,
        "IT power over time by $group_by",
        12,
        8,
        targets(
            (
                fleet_sum("gpu", "power_w", GPU_FILTER, f'"host", "gpu", "{by}"', by),
                f"GPUs $tag_{by}",
            ),
            (
                fleet_sum("host", "node_power_w", HOST_FILTER, f'"host", "{by}"', by),
                f"nodes $tag_{by}",
            ),
        ),
        unit="watt",
    )
    b.add(
        TS,
        "Temperature by rack",
        12,
        8,
        targets(
            (
                f'SELECT max("temp_c") FROM "gpu" {GPU_WHERE} GROUP BY {EVERY}, "rack"',
                "hottest GPU $tag_rack",
            ),
            (
                f'SELECT mean("inlet_temp_c") FROM "host" {HOST_WHERE} GROUP BY {EVERY}, "rack"',
                "inlet $tag_rack",
            ),
        ),
        unit="celsius",
    )
    sort = {"sortBy": [{"displayName": "power_w", "desc": True}], "showHeader": True}
    limit = [{"id": "limit", "options": {"limitField": 10}}]
    top_gpus = f'SELECT mean("power_w") AS "power_w" FROM "gpu" {GPU_WHERE} GROUP BY "host", "gpu"'
    top_hosts = f'SELECT mean("node_power_w") AS "power_w" FROM "host" {HOST_WHERE} GROUP BY "host"'
    b.add(
        "table",
        "Top GPUs by power",
        8,
        8,
        targets((top_gpus, ""), table=True),
        unit="watt",
        options=sort,
        transformations=limit,
    )
    b.add(
        "table",
        "Top hosts by power",
        8,
        8,
        targets((top_hosts, ""), table=True),
        unit="watt",
        options=sort,
        transformations=limit,
    )
    ratio = (
        'SELECT (sum("c") + sum("it")) / sum("it") FROM (SELECT mean("cooling_power_w") AS "c", '
        f'mean("it_power_w") AS "it" FROM "cooling" {ZONE_WHERE} GROUP BY {EVERY}, "zone") '
        f"GROUP BY {EVERY}"
    )
    cooling = fleet_sum("cooling", "cooling_power_w", ZONE_FILTER, '"zone"')
    b.add(
        TS,
        "Cooling power and facility / IT ratio",
        8,
        8,
        targets((cooling, "cooling power"), (ratio, "facility / IT")),
        unit="watt",
        overrides=[
            field_override(
                "facility / IT",
                unit_property("none"),
                {"id": "custom.axisPlacement", "value": "right"},
            )
        ],
        description="Facility / IT = (IT + cooling) / IT, where a zone reports cooling data.",
    )
    return b


def _per_gpu(field: str, agg: str = "mean") -> str:
    return f'SELECT {agg}("{field}") FROM "gpu" {GPU_WHERE} GROUP BY {EVERY}, "host", "gpu"'


def _per_host(field: str, agg: str = "mean") -> str:
    return f'SELECT {agg}("{field}") FROM "host" {HOST_WHERE} GROUP BY {EVERY}, "host"'


def node() -> Board:
    b = Board(
        "wattwise-node", "Node", "Per-GPU and per-host detail of the selected nodes.", ["node"]
    )
    g = "$tag_host/$tag_gpu"
    b.row("GPUs")
    b.add(
        TS,
        "GPU power against its limits",
        12,
        8,
        targets(
            (_per_gpu("power_w"), f"{g} power (1 s avg)"),
            (_per_gpu("power_instant_w", "max"), f"{g} instant"),
            (_per_gpu("power_limit_w", "last"), f"{g} configured limit"),
            (_per_gpu("enforced_limit_w", "last"), f"{g} enforced limit"),
        ),
        unit="watt",
    )
    b.add(
        TS,
        "GPU and HBM temperature against slowdown",
        12,
        8,
        targets(
            (_per_gpu("temp_c", "max"), f"{g} GPU"),
            (_per_gpu("mem_temp_c", "max"), f"{g} HBM"),
            (_per_gpu("slowdown_temp_c", "last"), f"{g} slowdown"),
        ),
        unit="celsius",
    )
    b.add(
        TS,
        "Clocks",
        8,
        8,
        targets((_per_gpu("sm_clock_mhz"), f"{g} SM"), (_per_gpu("mem_clock_mhz"), f"{g} memory")),
        unit="rotmhz",
    )
    b.add(
        TS,
        "Utilization",
        8,
        8,
        targets((_per_gpu("util_gpu_pct"), f"{g} GPU"), (_per_gpu("util_mem_pct"), f"{g} memory")),
        unit="percent",
        min=0,
        max=100,
    )
    b.add(
        TS,
        "Energy per interval",
        8,
        8,
        targets((_per_gpu("energy_j", "sum"), g)),
        unit="joule",
        custom={"drawStyle": "bars", "fillOpacity": 60},
    )
    b.add(
        TS,
        "GPU memory used",
        12,
        8,
        targets(
            (_per_gpu("mem_used_bytes", "max"), f"{g} used"),
            (_per_gpu("mem_total_bytes", "last"), f"{g} installed"),
        ),
        unit="bytes",
        min=0,
    )
    b.add(
        TS,
        "PCIe throughput",
        12,
        8,
        targets(
            (_per_gpu("pcie_rx_bytes_per_s"), f"{g} received"),
            (_per_gpu("pcie_tx_bytes_per_s"), f"{g} sent"),
        ),
        unit="Bps",
        min=0,
        description="Host-device traffic from NVML's PCIe byte counters, averaged per interval.",
    )
    b.add(
        "state-timeline",
        "Clock-event reasons",
        24,
        8,
        targets((_per_gpu("clock_event_reasons", "last"), g)),
        mappings=reason_mappings(),
        options={"showValue": "never", "mergeValues": True},
        description="Why each GPU's clocks are below maximum, decoded from the NVML bitmask.",
    )
    b.row("Host")
    b.add(
        TS,
        "Inlet temperature",
        8,
        8,
        targets((_per_host("inlet_temp_c"), "$tag_host")),
        unit="celsius",
    )
    b.add(
        TS,
        "CPU",
        8,
        8,
        targets(
            (_per_host("cpu_util_pct"), "$tag_host util"), (_per_host("load1"), "$tag_host load1")
        ),
        unit="percent",
    )
    b.add(
        TS,
        "Memory",
        8,
        8,
        targets(
            (_per_host("mem_used_bytes"), "$tag_host used"),
            (_per_host("mem_total_bytes", "last"), "$tag_host total"),
        ),
        unit="bytes",
    )
    b.add(
        TS,
        "CPU (RAPL) energy and power",
        12,
        8,
        targets(
            (_per_host("cpu_energy_j", "sum"), "$tag_host energy"),
            (_per_host("cpu_power_w"), "$tag_host power"),
        ),
        unit="joule",
    )
    b.add(
        TS,
        "Node power (BMC)",
        12,
        8,
        targets((_per_host("node_power_w"), "$tag_host")),
        unit="watt",
    )
    return b
