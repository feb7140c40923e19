"""The data model shared by the agent, the optimizer and the dashboards.

Each measurement lists its tags and its fields with the line-protocol type of
each field. InfluxDB fixes a field's type on first write, so every source must
emit a field with the type given here (the encoder coerces ints to floats for
float fields; a float for an int field is a bug). ``docs/schema.md`` documents
the same table for people, and a test keeps the two in step.
"""

from __future__ import annotations

from wattwise.collector.base import FieldSpec, MeasurementSpec

NODE_LABELS = ("cluster", "zone", "rack")
"""Labels an operator gives each node; added as tags to every per-node measurement."""


def _f(unit: str, meaning: str) -> FieldSpec:
    return FieldSpec(float, unit, meaning)


def _i(unit: str, meaning: str) -> FieldSpec:
    return FieldSpec(int, unit, meaning)


def _pct(meaning: str) -> FieldSpec:
    return FieldSpec(float, "%", meaning)


_NODE_TAGS = {
    "host": "node host name",
    "cluster": "cluster label of the node (configured)",
    "zone": "cooling zone of the node (configured)",
    "rack": "rack of the node (configured)",
}

GPU = MeasurementSpec(
    tags={
        **_NODE_TAGS,
        "gpu": "GPU index on the node (0, 1, …)",
        "uuid": "GPU UUID as NVML reports it",
        "model": "GPU product name, e.g. 'NVIDIA H100 80GB HBM3'",
    },
    fields={
        "power_w": _f("W", "board power, NVML's 1 s trailing average on Hopper"),
        "power_instant_w": _f("W", "instantaneous board power (field value POWER_INSTANT)"),
        "energy_j": FieldSpec(
            float,
            "J",
            "energy consumed since the previous energy_j sample of this GPU, from the "
            "energy counter (exact; driver-reload resets handled); present on the ticks "
            "the counter is read",
            counter="energy_joules",
        ),
        "energy_interval_s": _f("s", "length of the interval energy_j covers"),
        "temp_c": _f("°C", "GPU die temperature"),
        "mem_temp_c": _f("°C", "HBM temperature, where the GPU reports it"),
        "slowdown_temp_c": _f("°C", "temperature at which the GPU starts thermal slowdown"),
        "sm_clock_mhz": _f("MHz", "current SM clock"),
        "mem_clock_mhz": _f("MHz", "current memory clock"),
        "util_gpu_pct": _f("%", "share of the last sample period a kernel was running"),
        "util_mem_pct": _f("%", "share of the last sample period memory was read or written"),
        "mem_used_bytes": _i("bytes", "device memory in use"),
        "mem_total_bytes": _i("bytes", "device memory installed"),
        "power_limit_w": _f("W", "configured power limit (what an operator or wattwise set)"),
        "enforced_limit_w": _f("W", "power limit the driver enforces (the lowest of all limits)"),
        "min_limit_w": _f("W", "lowest power limit this GPU accepts"),
        "max_limit_w": _f("W", "highest power limit this GPU accepts"),
        "default_limit_w": _f("W", "power limit at driver load"),
        "clock_event_reasons": _i(
            "bitmask",
            "why clocks are held below maximum: 0x1 idle, 0x4 software power cap, "
            "0x8 hardware slowdown, 0x20 software thermal, 0x40 hardware thermal, "
            "0x80 power brake",
        ),
        "mig_mode": _i("0/1", "1 when MIG is enabled"),
        "ecc_corrected_total": _i("errors", "corrected ECC errors since driver load (volatile)"),
        "ecc_uncorrected_total": _i(
            "errors", "uncorrected ECC errors since driver load (volatile)"
        ),
        "pcie_tx_bytes_per_s": _f("bytes/s", "PCIe transmit throughput"),
        "pcie_rx_bytes_per_s": _f("bytes/s", "PCIe receive throughput"),
        "sm_active_pct": _pct(
            "share of SM cycles with at least one warp resident, over the last tick "
            "(GPM, Hopper and newer; DCGM_FI_PROF_SM_ACTIVE)"
        ),
        "sm_occupancy_pct": _pct(
            "resident warps as a share of the SMs' maximum, over the last tick "
            "(GPM; DCGM_FI_PROF_SM_OCCUPANCY)"
        ),
        "dram_active_pct": _pct(
            "DRAM bandwidth used as a share of the maximum, over the last tick "
            "(GPM; DCGM_FI_PROF_DRAM_ACTIVE)"
        ),
        "tensor_active_pct": _pct(
            "share of cycles any tensor pipe was active, over the last tick "
            "(GPM; DCGM_FI_PROF_PIPE_TENSOR_ACTIVE)"
        ),
        "fp64_active_pct": _pct(
            "share of cycles the FP64 pipes were active (GPM; DCGM_FI_PROF_PIPE_FP64_ACTIVE)"
        ),
        "fp32_active_pct": _pct(
            "share of cycles the FP32 pipes were active (GPM; DCGM_FI_PROF_PIPE_FP32_ACTIVE)"
        ),
        "fp16_active_pct": _pct(
            "share of cycles the FP16 pipes were active (GPM; DCGM_FI_PROF_PIPE_FP16_ACTIVE)"
        ),
        "ecc_corrected_aggregate_total": _i(
            "errors", "corrected ECC errors over the GPU's life (persistent)"
        ),
        "ecc_uncorrected_aggregate_total": _i(
            "errors", "uncorrected ECC errors over the GPU's life (persistent)"
        ),
        "retired_pages_sbe": _i("pages", "pages retired for single-bit errors (before Ampere)"),
        "retired_pages_dbe": _i("pages", "pages retired for double-bit errors (before Ampere)"),
        "retired_pages_pending": _i("0/1", "1 when a page retirement waits for a reset"),
        "remapped_rows_correctable": _i(
            "rows", "memory rows remapped for correctable errors (Ampere and newer)"
        ),
        "remapped_rows_uncorrectable": _i(
            "rows", "memory rows remapped for uncorrectable errors (Ampere and newer)"
        ),
        "remapped_rows_pending": _i(
            "0/1", "1 when a row remapping waits for a GPU reset (after XID 63)"
        ),
        "remapped_rows_failed": _i(
            "0/1", "1 when a row remapping failed (XID 64): the GPU needs replacing"
        ),
        "nvlink_crc_flit_errors_total": _i(
            "errors", "NVLink flow-control CRC errors, all links, since driver load"
        ),
        "nvlink_crc_data_errors_total": _i(
            "errors", "NVLink data CRC errors, all links, since driver load"
        ),
        "nvlink_replay_errors_total": _i("errors", "NVLink replays, all links, since driver load"),
        "nvlink_recovery_errors_total": _i(
            "errors", "NVLink link recoveries, all links, since driver load"
        ),
        "nvlink_links": _i("links", "NVLink links this GPU has"),
        "nvlink_links_up": _i(
            "links", "NVLink links active; read with the energy counter (every energy_every_s)"
        ),
        "pcie_replays_total": _i("replays", "PCIe replays (link-level retries) since driver load"),
        "power_violation_pct": _pct(
            "share of the last interval the clocks were held by the power policy "
            "(NVML violation counter)"
        ),
        "thermal_violation_pct": _pct(
            "share of the last interval the clocks were held by the thermal policy"
        ),
        "board_limit_violation_pct": _pct(
            "share of the last interval the clocks were held by the board limit"
        ),
        "failed": _i("0/1", "1 when this GPU could not be read this tick (lost or erroring)"),
    },
)

GPU_XID = MeasurementSpec(
    tags={
        **_NODE_TAGS,
        "gpu": "GPU index on the node",
        "uuid": "GPU UUID",
        "model": "GPU product name",
        "xid": "XID code, e.g. 79 (see docs/schema.md#xid-codes for meanings)",
    },
    fields={
        "count": FieldSpec(
            int,
            "events",
            "XID events of this code on this GPU since the previous tick (NVML events)",
            counter="errors",
        ),
    },
)

GPU_MIG = MeasurementSpec(
    tags={
        **_NODE_TAGS,
        "gpu": "parent GPU index",
        "uuid": "parent GPU UUID",
        "gi": "GPU instance id",
        "mig_uuid": "MIG device UUID",
    },
    fields={
        "mem_used_bytes": _i("bytes", "memory in use on this MIG instance"),
        "mem_total_bytes": _i("bytes", "memory of this MIG instance"),
    },
)

HOST = MeasurementSpec(
    tags=_NODE_TAGS,
    fields={
        "cpu_util_pct": _f("%", "CPU utilization over the last interval, all cores"),
        "load1": _f("tasks", "1-minute load average"),
        "load5": _f("tasks", "5-minute load average"),
        "load15": _f("tasks", "15-minute load average"),
        "mem_used_bytes": _i("bytes", "memory in use (total minus available)"),
        "mem_total_bytes": _i("bytes", "memory installed"),
        "disk_read_bytes_per_s": _f("bytes/s", "read throughput of all disks"),
        "disk_write_bytes_per_s": _f("bytes/s", "write throughput of all disks"),
        "net_rx_bytes_per_s": _f("bytes/s", "received on all interfaces but loopback"),
        "net_tx_bytes_per_s": _f("bytes/s", "sent on all interfaces but loopback"),
        "cpu_energy_j": FieldSpec(
            float,
            "J",
            "CPU package energy since the previous sample, from RAPL (where readable)",
            counter="cpu_energy_joules",
        ),
        "cpu_power_w": _f("W", "cpu_energy_j divided by its interval"),
        "cpu_temp_c": _f("°C", "hottest CPU package temperature from hwmon"),
        "inlet_temp_c": _f("°C", "air inlet temperature from the BMC"),
        "node_power_w": _f("W", "node input power from the BMC"),
    },
)

COOLING = MeasurementSpec(
    tags={"cluster": "cluster", "zone": "cooling zone"},
    fields={
        "supply_temp_c": _f("°C", "supply air (or water) temperature"),
        "setpoint_c": _f("°C", "supply temperature setpoint"),
        "return_temp_c": _f("°C", "return temperature"),
        "cooling_power_w": _f("W", "electrical power of the zone's cooling"),
        "it_power_w": _f("W", "IT heat load the zone removes (simulated fleet)"),
    },
)

GPU_JOB = MeasurementSpec(
    tags={
        **_NODE_TAGS,
        "gpu": "GPU index",
        "job": "Slurm job id, or namespace/pod for Kubernetes",
        "scheduler": "slurm or kubernetes",
    },
    fields={
        "processes": _i("count", "processes of the job on this GPU"),
        "used_mem_bytes": _i("bytes", "GPU memory the job's processes use"),
        "power_w": _f("W", "GPU power attributed to the job (the GPU's power split by job)"),
    },
)

AGENT = MeasurementSpec(
    tags={**_NODE_TAGS},
    fields={
        "queue_lines": _i("lines", "lines in the write-ahead log not yet delivered"),
        "queue_bytes": _i("bytes", "bytes in the write-ahead log not yet delivered"),
        "sent_lines_total": _i("lines", "lines delivered since the agent started"),
        "retried_batches_total": _i("batches", "delivery attempts that were retried"),
        "dropped_lines_total": _i(
            "lines", "lines dropped: the log or the disk was full, or records were damaged"
        ),
        "dead_lettered_lines_total": _i("lines", "lines the store rejected as malformed"),
        "tick_duration_s": _f("s", "time the last tick took to read all sources"),
        "tick_overruns_total": _i("ticks", "ticks that took longer than the interval"),
        "source_errors_total": _i("errors", "failed device or source reads"),
        "encode_errors_total": _i("readings", "readings that could not be encoded"),
        "wal_skipped_bytes_total": _i("bytes", "damaged write-ahead log bytes stepped over"),
        "sender_errors_total": _i("errors", "unexpected errors the sender outlived"),
        "sender_up": _i("0/1", "1 while the sender thread runs"),
        "store_rejecting_all": _i("0/1", "1 while the store refuses every line (data held)"),
    },
)

RECOMMENDATION = MeasurementSpec(
    tags={
        "kind": "power_cap, cooling, placement or power_budget",
        "cluster": "cluster",
        "zone": "cooling zone",
        "rack": "rack (power caps, placement)",
        "host": "host (power caps, placement)",
        "gpu": "GPU index (power caps)",
        "job": "job the recommendation is for, where attributed or given",
        "objective": "slowdown_bound or cost (power caps)",
        "scope": "site, zone:<name> or rack:<name> (power budgets)",
    },
    fields={
        "current_limit_w": _f("W", "power limit now (power caps)"),
        "recommended_limit_w": _f("W", "recommended power limit (power caps)"),
        "current_setpoint_c": _f("°C", "supply setpoint now (cooling)"),
        "recommended_setpoint_c": _f("°C", "recommended supply setpoint (cooling)"),
        "predicted_max_inlet_c": _f("°C", "hottest inlet predicted at the recommendation"),
        "predicted_max_gpu_temp_c": _f("°C", "hottest GPU predicted at the recommendation"),
        "saving_w": _f("W", "predicted power saved (IT power for caps, cooling power for cooling)"),
        "saving_pct": _f("%", "saving_w as a share of the power it is taken from"),
        "slowdown_pct": _f("%", "predicted slowdown of the work (power caps)"),
        "confidence": _f("0..1", "how sure the optimizer is"),
        "samples": _i("count", "samples the recommendation rests on"),
        "marginal_it_power_w": _f("W", "IT power the placed job adds (placement)"),
        "marginal_cooling_power_w": _f("W", "cooling power the placed job adds (placement)"),
        "gpus": _i("count", "GPUs placed (placement); GPUs in the scope (power budgets)"),
        "rank": _i("rank", "1 for the best candidate (placement)"),
        "limit_w": _f("W", "the scope's power limit in force (power budgets)"),
        "predicted_peak_before_w": _f(
            "W", "the next interval's predicted peak at the limits in force now (power budgets)"
        ),
        "predicted_peak_after_w": _f("W", "the same under the planned caps (power budgets)"),
        "guaranteed_max_w": _f(
            "W",
            "most the scope can draw under the planned caps, whatever work starts (power budgets)",
        ),
        "work_lost_pct": _f(
            "%", "predicted share of the scope's work the caps cost (power budgets)"
        ),
        "capped_gpus": _i("count", "GPUs the plan caps under their default limit (power budgets)"),
        "applied_share": _f(
            "0..1", "share of the capped GPUs enforcing their planned limit now (power budgets)"
        ),
        "planned": _i("0/1", "1 when the scope needs caps to stay under its limit (power budgets)"),
        "feasible": _i(
            "0/1", "0 when even every GPU at its minimum limit cannot hold it (power budgets)"
        ),
    },
)

MODEL = MeasurementSpec(
    tags={
        "name": "model name, e.g. power or cap_response",
        "gpu_model": "GPU product the model is for (empty when it spans models)",
        "cluster": "cluster (per-zone models)",
        "zone": "cooling zone (per-zone models)",
    },
    fields={
        "version": _i("count", "model version, increasing with each refit"),
        "error_pct": _f("%", "cross-validated mean absolute percentage error"),
        "mae": _f("unit of target", "cross-validated mean absolute error"),
        "samples": _i("count", "training samples"),
        "train_start_ns": _i("ns", "start of the training window"),
        "train_end_ns": _i("ns", "end of the training window"),
    },
)

POWER_EVENT = MeasurementSpec(
    tags={
        "scope": "site, zone:<name> or rack:<name>",
        "event": "the event's id (as the API names it)",
    },
    fields={
        "limit_w": _f("W", "the scope's power limit while the event lasts"),
        "start_ns": _i("ns", "when the event starts (also the point's time)"),
        "end_ns": _i("ns", "when it ends, or was cancelled if that came first"),
        "end_ms": _i("ms", "end_ns in epoch milliseconds, the end of Grafana's region"),
        "reason": FieldSpec(str, "text", "why, as the operator gave it"),
        "text": FieldSpec(str, "text", "one line for Grafana's annotation"),
        "cancelled": _i("0/1", "1 once the event was cancelled"),
    },
)

OPTIMIZER_WRITTEN = ("recommendation", "model", "power_event")
"""Measurements the optimizer writes; every other one comes from the nodes."""

MEASUREMENTS: dict[str, MeasurementSpec] = {
    "gpu": GPU,
    "gpu_mig": GPU_MIG,
    "gpu_xid": GPU_XID,
    "host": HOST,
    "cooling": COOLING,
    "gpu_job": GPU_JOB,
    "agent": AGENT,
    "recommendation": RECOMMENDATION,
    "model": MODEL,
    "power_event": POWER_EVENT,
}
