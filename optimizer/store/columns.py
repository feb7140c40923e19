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
        if len(time_ns):
            self._parts.setdefault(key, []).append((column, time_ns, values))

    def series(self) -> Series:
        width = len(self.spec.columns)
        keys = sorted(self._parts)
        times: list[Ints] = []
        blocks: list[Floats] = []
        counts: list[int] = []
        for key in keys:
            parts = self._parts[key]
            union = np.unique(np.concatenate([t for _, t, _ in parts]))
            block = np.full((len(union), width), np.nan)
            for column, time_ns, values in parts:
                block[np.searchsorted(union, time_ns), column] = values
            times.append(union)
            blocks.append(block)
            counts.append(len(union))
        table = np.concatenate(blocks) if blocks else np.empty((0, width))
        per_row = np.repeat(np.arange(len(keys)), counts)
        return Series(
            time_ns=np.concatenate(times) if times else np.empty(0, dtype=np.int64),
            tags={
                tag: _objects([key[i] for key in keys])[per_row]
                for i, tag in enumerate(self.spec.tags)
            },
            values={c.name: table[:, i].copy() for i, c in enumerate(self.spec.columns)},
        )


def _objects(values: list[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
