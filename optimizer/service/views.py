"""Recommendations as JSON, encoded once per refresh and indexed by cluster, zone and host.

Reading recommendations is the API's hot path (schedulers and node scripts
poll it). Each item is serialized when a snapshot arrives; a request then
picks the items of its filter from an index and joins their bytes, so its
cost is the size of its answer, not the size of the fleet.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .engine import Snapshot

FILTER_TAGS = ("cluster", "zone", "host")


def clean(value: object) -> object:
    """JSON has no NaN or infinity: such a value is unknown, written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class IndexedItems:
    """Encoded items with, per filter tag, which items carry each value."""

    items: tuple[bytes, ...]
    index: Mapping[str, Mapping[str, tuple[int, ...]]]

    @classmethod
    def build(cls, rows: Sequence[dict[str, object]]) -> IndexedItems:
        encoded = tuple(json.dumps(clean(r), allow_nan=False).encode() for r in rows)
        index: dict[str, dict[str, list[int]]] = {t: defaultdict(list) for t in FILTER_TAGS}
        for i, row in enumerate(rows):
            for tag in FILTER_TAGS:
                if tag in row:
                    index[tag][str(row[tag])].append(i)
        frozen = {t: {v: tuple(ids) for v, ids in by.items()} for t, by in index.items()}
        return cls(encoded, frozen)

    def select(self, filters: Mapping[str, Sequence[str]]) -> list[bytes]:
        """Items matching every given filter (values of one filter are alternatives)."""
        chosen: set[int] | None = None
        for tag, values in filters.items():
            if not values:
                continue
            by_value = self.index.get(tag, {})
            ids = {i for v in values for i in by_value.get(v, ())}
            chosen = ids if chosen is None else chosen & ids
        if chosen is None:
            return list(self.items)
        return [self.items[i] for i in sorted(chosen)]


@dataclass(frozen=True)
class SnapshotView:
    """One snapshot's recommendations, ready to serve."""

    computed_at_ns: int
    caps: IndexedItems
    cooling: IndexedItems

    @classmethod
    def build(cls, snapshot: Snapshot) -> SnapshotView:
        caps = []
        for rec in snapshot.caps:
            cluster, zone, rack = snapshot.where.get(rec.host, ("", "", ""))
            caps.append({"cluster": cluster, "zone": zone, "rack": rack, **rec.as_dict()})
        cooling = [rec.as_dict() for rec in snapshot.cooling]
        return cls(snapshot.computed_at_ns, IndexedItems.build(caps), IndexedItems.build(cooling))

    def body(self, items: Iterable[bytes]) -> bytes:
        chosen = list(items)
        head = json.dumps({"computed_at": iso(self.computed_at_ns), "count": len(chosen)}).encode()
        return head[:-1] + b', "items": [' + b",".join(chosen) + b"]}"
