"""A :class:`Series` from answers that come a column at a time (the Prometheus store's).

Each query answers one column for some series and buckets; :class:`ColumnAssembler`
gathers them per series and, at the end, gives the rows the other stores give: one
per series and bucket in which any column has a value, ordered by tags then time,
NaN where a column has none. The work is NumPy per series (about 10,000 at fleet
scale), never Python per value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wattwise.optimizer.store.frames import SeriesSpec
from wattwise.optimizer.telemetry import Floats, Ints, Series

Key = tuple[str, ...]


class ColumnAssembler:
    """Answers added as (column, series key, bucket times, values) in any order."""

    def __init__(self, spec: SeriesSpec) -> None:
        self.spec = spec
        self._parts: dict[Key, list[tuple[int, Ints, Floats]]] = {}

    def add(self, column: int, key: Key, time_ns: Ints, values: Floats) -> None:
        if not len(time_ns):
            return
        parts = self._parts.setdefault(key, [])
        for _, known, _ in parts:  # every column of a span has the same buckets: keep one
            if known is not time_ns and np.array_equal(known, time_ns):
                time_ns = known
                break
        parts.append((column, time_ns, values))

    def series(self) -> Series:
        """The rows, each column filled into one array allocated once (parts are freed as
        they go in). Columns no answer had share one read-only array of NaN: a fleet
        without GPM (before Hopper) would otherwise hold seven columns of nothing."""
        keys = sorted(self._parts)
        unions = [_union([t for _, t, _ in self._parts[key]]) for key in keys]
        counts = np.array([len(u) for u in unions], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(keys) else counts
        rows = int(counts.sum())
        filled = {column for parts in self._parts.values() for column, _, _ in parts}
        table = {column: np.full(rows, np.nan) for column in sorted(filled)}
        for key, union, start in zip(keys, unions, starts.tolist(), strict=True):
            for column, time_ns, values in self._parts.pop(key):
                at = np.searchsorted(union, time_ns) if time_ns is not union else slice(None)
                table[column][start : start + len(union)][at] = values
        nothing = np.full(rows, np.nan)
        nothing.flags.writeable = False
        per_row = np.repeat(np.arange(len(keys)), counts)
        return Series(
            time_ns=np.concatenate(unions) if unions else np.empty(0, dtype=np.int64),
            tags={
                tag: _objects([key[i] for key in keys])[per_row]
                for i, tag in enumerate(self.spec.tags)
            },
            values={c.name: table.get(i, nothing) for i, c in enumerate(self.spec.columns)},
        )


def _union(times: list[Ints]) -> Ints:
    distinct = list({id(t): t for t in times}.values())
    return distinct[0] if len(distinct) == 1 else np.unique(np.concatenate(distinct))


def _objects(values: list[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
