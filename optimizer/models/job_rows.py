"""Which job holds each GPU row: ``job_series`` joined to ``gpu_series`` on host, GPU and
time bucket, and the held rows grouped by job.

A refit joins a day of 1-minute buckets: at 10,000 GPUs every row-sized integer array is
110 MiB, and how many of them live at once sets the refit's peak memory. So the join
codes tags once per run of equal values, builds its keys in place a slice at a time,
keeps job rows as 32-bit numbers where they fit, and groups the held rows by sorting one
combined key in place instead of an argsort and two gathers.
"""

from __future__ import annotations

import numpy as np

from wattwise.optimizer.models.common import SLICE_ROWS, codes_in, distinct_tag, offsets_gcd, tag
from wattwise.optimizer.telemetry import Series


def job_row_of_gpu_rows(jobs: Series, gpus: Series) -> np.ndarray:
    """For each ``gpu_series`` row, the ``job_series`` row of the same host, GPU and bucket
    (−1 where none), joined on integer codes: no concatenated copy of either frame's tags."""
    if len(jobs) == 0 or len(gpus) == 0:
        return np.full(len(gpus), -1, dtype=np.int64)
    hosts, indices = distinct_tag(gpus, "host"), distinct_tag(gpus, "gpu")
    first = min(int(gpus.time_ns.min()), int(jobs.time_ns.min()))
    step = max(int(np.gcd(offsets_gcd(gpus.time_ns, first), offsets_gcd(jobs.time_ns, first))), 1)
    buckets = int(max(gpus.time_ns.max(), jobs.time_ns.max()) - first) // step + 1
    size = len(hosts) * len(indices) * buckets
    key_j = _bucket_keys(jobs, hosts, indices, buckets, first, step)
    if size > 4 * (len(gpus) + len(jobs)) + 1_000_000:  # too sparse for a table
        key_g = _bucket_keys(gpus, hosts, indices, buckets, first, step)
        order = np.argsort(key_j, kind="stable")
        sorted_keys = key_j[order]
        pos = np.clip(np.searchsorted(sorted_keys, key_g), 0, len(jobs) - 1)
        return np.where(sorted_keys[pos] == key_g, order[pos], -1)
    table = np.full(size, -1, dtype=np.int32 if len(jobs) < 2**31 else np.int64)
    known = key_j >= 0
    if known.all():  # every job row on a GPU of the GPU series: no index of them
        table[key_j] = np.arange(len(jobs), dtype=table.dtype)
    else:
        ok = np.flatnonzero(known)
        table[key_j[ok]] = ok
        del ok
    del known, key_j
    key_g = _bucket_keys(gpus, hosts, indices, buckets, first, step)
    for begin in range(0, len(key_g), SLICE_ROWS):  # key_g[:] = table[key_g], a slice at a time
        part = key_g[begin : begin + SLICE_ROWS]
        part[:] = table[part]
    return key_g


def held_rows_by_label(
    job_row: np.ndarray, label_of_job: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The GPU rows a job holds (``job_row`` ≥ 0, as :func:`job_row_of_gpu_rows` gives) in
    the order of their job's label (``label_of_job``, per job row), then of the row; and
    their labels. Built in ``job_row``'s own memory, which the caller gives up."""
    held = np.flatnonzero(job_row >= 0)
    for begin in range(0, held.size, SLICE_ROWS):
        # job_row[:n] = job_row[held]: held[k] >= k, so no slice reads what one wrote
        part = held[begin : begin + SLICE_ROWS]
        job_row[begin : begin + part.size] = job_row[part]
    label = job_row[: held.size]
    for begin in range(0, held.size, SLICE_ROWS):  # each held row's job row -> its label
        part = label[begin : begin + SLICE_ROWS]
        part[:] = label_of_job[part]
    rows = max(len(job_row), 1)  # labels × rows fits in 64 bits up to ~3·10⁹ of each
    label *= rows
    label += held
    del held
    label.sort()  # in place, by label and then row
    return _split(label, rows)


def _split(keys: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``keys % rows`` and ``keys // rows`` as 32-bit arrays where they fit, a slice at a
    time: they are kept while every job is profiled, and ``keys`` is a view of the join's
    110 MiB, which this lets go."""
    small = rows < 2**31 and (keys.size == 0 or int(keys[-1]) // rows < 2**31)
    dtype = np.int32 if small else np.int64
    held, label = np.empty(keys.size, dtype=dtype), np.empty(keys.size, dtype=dtype)
    for begin in range(0, keys.size, SLICE_ROWS):
        part = keys[begin : begin + SLICE_ROWS]
        end = begin + part.size
        label[begin:end], held[begin:end] = np.divmod(part, rows)
    return held, label


def _bucket_keys(
    series: Series, hosts: np.ndarray, indices: np.ndarray, buckets: int, first: int, step: int
) -> np.ndarray:
    """(host, GPU, time bucket) of each row as one integer, hosts and GPUs coded into the
    sorted ``hosts`` and ``indices`` (−1 where either is not there). Tags are coded once per
    run of equal values, and the key is built in place: one row-sized array."""
    host, gpu = tag(series, "host"), tag(series, "gpu")
    starts = np.zeros(len(series), dtype=np.bool_)
    starts[0] = True
    starts[1:] = host[1:] != host[:-1]
    starts[1:] |= gpu[1:] != gpu[:-1]
    heads = np.flatnonzero(starts)
    del starts
    host_h, gpu_h = codes_in(host[heads], hosts), codes_in(gpu[heads], indices)
    known = (host_h >= 0) & (gpu_h >= 0)
    run_key = np.where(known, host_h * len(indices) + gpu_h, -1)
    keys = np.repeat(run_key, np.diff(heads, append=len(series)))
    for begin in range(0, len(keys), SLICE_ROWS):
        part = keys[begin : begin + SLICE_ROWS]
        missing = part < 0
        part *= buckets
        part += (series.time_ns[begin : begin + SLICE_ROWS] - first) // step
        part[missing] = -1
    return keys
