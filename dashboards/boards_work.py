"""The jobs and cooling-zone dashboards."""

from __future__ import annotations

from wattwise.dashboards.boards_infra import EVERY, TS, T, fleet_sum, stat
from wattwise.dashboards.build import (
    GPU_FILTER,
    GPU_WHERE,
    HOST_WHERE,
    ZONE_FILTER,
    ZONE_WHERE,
    Board,
    targets,
)


def jobs() -> Board:
    b = Board(
        "wattwise-jobs", "Jobs", "Energy attributed to Slurm jobs and Kubernetes pods.", ["jobs"]
    )
    energy = (
        f'SELECT integral("power_w") / 3600000 AS "energy_kwh" FROM "gpu_job" {GPU_WHERE} '
        'GROUP BY "job", "scheduler"'
    )
    sort = {"sortBy": [{"displayName": "energy_kwh", "desc": True}], "showHeader": True}
    b.add(
        "table",
        "Energy per job",
        12,
        10,
        targets((energy, ""), table=True),
        unit="kwatth",
        options=sort,
    )
    b.add(
        "bargauge",
        "Top jobs by energy",
        12,
        10,
        targets((energy, ""), table=True),
        unit="kwatth",
        options={
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True, "limit": 10},
        },
        transformations=[
            {"id": "sortBy", "options": {"sort": [{"field": "energy_kwh", "desc": True}]}}
        ],
    )
    per_job = fleet_sum("gpu_job", "power_w", GPU_FILTER, '"job", "host", "gpu"', "job")
    b.add(TS, "Power by job", 16, 8, targets((per_job, "$tag_job")), unit="watt")
    per_gpu_hour = f'SELECT mean("power_w") / 1000 FROM "gpu_job" {GPU_WHERE} GROUP BY {EVERY}'
    b.add(
        "stat",
        "Energy per GPU-hour",
        8,
        8,
        targets((per_gpu_hour, "")),
        unit="kwatth",
        **stat(calc="mean"),
        description="Mean attributed power per GPU running a job: kWh per GPU-hour.",
    )
    return b


def cooling() -> Board:
    b = Board(
        "wattwise-cooling",
        "Cooling zones",
        "Supply, return, inlet and cooling power per zone.",
        ["cooling"],
    )
    z = f'{ZONE_WHERE} GROUP BY {EVERY}, "zone"'
    recommended = (
        f'SELECT last("recommended_setpoint_c") FROM "recommendation" WHERE {T} '
        f'AND "kind" = \'cooling\' AND {ZONE_FILTER} GROUP BY {EVERY}, "zone" fill(previous)'
    )
    b.add(
        TS,
        "Supply, setpoint and return",
        12,
        9,
        targets(
            (f'SELECT mean("supply_temp_c") FROM "cooling" {z}', "$tag_zone supply"),
            (f'SELECT last("setpoint_c") FROM "cooling" {z}', "$tag_zone setpoint"),
            (f'SELECT mean("return_temp_c") FROM "cooling" {z}', "$tag_zone return"),
            (recommended, "$tag_zone recommended setpoint"),
        ),
        unit="celsius",
    )
    band = {
        "mode": "absolute",
        "steps": [
            {"color": "blue", "value": None},
            {"color": "green", "value": 18},
            {"color": "red", "value": 27},
        ],
    }
    inlet = f'FROM "host" {HOST_WHERE} GROUP BY {EVERY}, "zone"'
    b.add(
        TS,
        "Inlet temperature against the 18–27 °C band",
        12,
        9,
        targets(
            (f'SELECT min("inlet_temp_c") {inlet}', "$tag_zone coolest"),
            (f'SELECT mean("inlet_temp_c") {inlet}', "$tag_zone mean"),
            (f'SELECT max("inlet_temp_c") {inlet}', "$tag_zone hottest"),
        ),
        unit="celsius",
        thresholds=band,
        custom={"thresholdsStyle": {"mode": "line+area"}},
        description="ASHRAE's recommended inlet range is 18–27 °C.",
    )
    b.add(
        TS,
        "Cooling power",
        12,
        8,
        targets((f'SELECT mean("cooling_power_w") FROM "cooling" {z}', "$tag_zone")),
        unit="watt",
    )
    it = 'mean("it_power_w")'
    ratio = f'SELECT (mean("cooling_power_w") + {it}) / {it} FROM "cooling" {z}'
    b.add(TS, "Facility / IT power ratio", 12, 8, targets((ratio, "$tag_zone")), unit="none")
    return b
