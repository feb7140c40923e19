"""Line-protocol encoding speed: wattwise's encoder against influxdb-client's ``Point``.

Run as ``.venv/bin/python bench/encoder.py``. Both encoders get the same
realistic points (one ``gpu`` point per GPU of an 8-GPU node with every tag and
23 fields, plus the node's ``host`` point); both outputs are parsed back and
must carry the same data before any timing counts.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.schema import GPU, HOST
from wattwise.common.lineproto import encode, parse_line

BASE_TIME_NS = 1_700_000_000_000_000_000
TICK_NS = 1_000_000_000


def gpu_fields(rng: random.Random) -> dict[str, FieldValue | None]:
    """Values as the NVML source makes them: NVML's integer mW, °C, MHz and % converted."""
    fields: dict[str, FieldValue | None] = {}
    for key, spec in GPU.fields.items():
        if spec.kind is int:
            fields[key] = rng.randrange(0, 80 * 2**30)
        elif key.endswith(("_w", "_j")):
            fields[key] = rng.randrange(60_000, 700_000) / 1000  # from mW / mJ
        elif key.endswith("_bytes_per_s"):
            fields[key] = float(rng.randrange(0, 64 * 2**30))
        else:
            fields[key] = float(rng.randrange(0, 2000))  # °C, MHz, %, s
    fields["energy_interval_s"] = rng.uniform(0.9, 1.1)  # a monotonic-clock difference
    fields["failed"] = None  # read fine: missing, as a source leaves it
    fields["mig_mode"] = None
    return fields


def host_fields(rng: random.Random) -> dict[str, FieldValue | None]:
    """psutil's values: percentages with one decimal, load averages, byte counters."""
    return {
        key: rng.randrange(0, 2**40) if spec.kind is int else round(rng.uniform(0.0, 100.0), 2)
        for key, spec in HOST.fields.items()
    }


def realistic_readings(ticks: int, seed: int = 7) -> list[Reading]:
    rng = random.Random(seed)
    labels = {"cluster": "eu-west", "zone": "hall-2", "rack": "r17"}
    readings = []
    for tick in range(ticks):
        time_ns = BASE_TIME_NS + tick * TICK_NS
        for gpu in range(8):
            tags = {
                "host": "gpu-node-0042",
                "gpu": str(gpu),
                "uuid": f"GPU-6c1b9d3e-0a4f-4b4e-9c1e-5d2f7e8a{gpu:04d}",
                "model": "NVIDIA H100 80GB HBM3",
                **labels,
            }
            readings.append(Reading("gpu", tags, gpu_fields(rng), time_ns))
        readings.append(
            Reading("host", {"host": "gpu-node-0042", **labels}, host_fields(rng), time_ns)
        )
    return readings


def as_point(reading: Reading) -> Any:  # influxdb-client's Point is untyped
    point: Any = Point(reading.measurement)  # type: ignore[no-untyped-call]
    point.time(reading.time_ns, WritePrecision.NS)
    for key, value in reading.tags.items():
        point.tag(key, value)
    for key, field_value in reading.present_fields().items():
        point.field(key, field_value)
    return point


def encode_with_wattwise(readings: Sequence[Reading]) -> list[bytes]:
    return [line for line in map(encode, readings) if line is not None]


def encode_with_point(readings: Sequence[Reading]) -> list[bytes]:
    return [as_point(reading).to_line_protocol().encode() for reading in readings]


def assert_same_data(ours: list[bytes], theirs: list[bytes]) -> None:
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for mine, other in zip(ours, theirs, strict=True):
        assert parse_line(mine) == parse_line(other), (mine, other)


def points_per_s(
    encoder: Callable[[Sequence[Reading]], list[bytes]], readings: list[Reading]
) -> float:
    start = time.perf_counter()
    encoder(readings)
    return len(readings) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000, help="ticks of an 8-GPU node")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    readings = realistic_readings(args.ticks)
    assert_same_data(encode_with_wattwise(readings), encode_with_point(readings))
    ours, theirs = [], []
    for _ in range(args.repetitions):  # interleaved, so drift hits both alike
        ours.append(points_per_s(encode_with_wattwise, readings))
        theirs.append(points_per_s(encode_with_point, readings))
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    gpu, host = readings[0], readings[8]
    print(
        f"points: {len(readings)} (gpu: {len(gpu.tags)} tags, {len(gpu.present_fields())} fields;"
        f" host: {len(host.tags)} tags, {len(host.present_fields())} fields)"
    )
    print(
        f"wattwise encode:           {ours_median:12,.0f} points/s (median of {args.repetitions})"
    )
    print(
        f"influxdb_client Point:     {theirs_median:12,.0f} points/s (median of {args.repetitions})"
    )
    print(f"ratio:                     {ours_median / theirs_median:12.1f} x")


if __name__ == "__main__":
    main()
