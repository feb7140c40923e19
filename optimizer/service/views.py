"""Recommendations as JSON, encoded once per refresh and indexed by cluster, zone and host
(power budgets by scope and host).

Reading recommendations is the API's hot path (schedulers and node scripts
poll it). Each item is serialized when a snapshot arrives; a request then
picks the items of its filter from an index and joins their bytes, so its
cost is the size of its answer, not the size of the fleet.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wattwise.common.strict_json import clean
from wattwise.optimizer.recommend.budget_types import BudgetPlan, PowerEvent
from wattwise.optimizer.service.engine import Snapshot
from wattwise.optimizer.service.power_events import event_state

FILTER_TAGS = ("cluster", "zone", "host")


def iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def event_dict(event: PowerEvent, now_ns: int) -> dict[str, object]:
    """A power event as the API shows it: times in ISO 8601, and its state at ``now_ns``."""
    return {
        "id": event.id,
        "scope": event.scope,
        "limit_w": event.limit_w,
        "start": iso(event.start_ns),
        "end": iso(event.end_ns),
        "reason": event.reason,
        "state": event_state(event, now_ns),
        "created_at": iso(event.created_ns),
        "cancelled_at": None if event.cancelled_ns is None else iso(event.cancelled_ns),
    }


@dataclass(frozen=True)
class IndexedItems:
    """Encoded items with, per filter tag, which items carry each value."""

    items: tuple[bytes, ...]
    index: Mapping[str, Mapping[str, frozenset[int]]]

    @classmethod
    def build(cls, rows: Sequence[dict[str, object]]) -> IndexedItems:
        encoded = tuple(json.dumps(clean(r), allow_nan=False).encode() for r in rows)
        index: dict[str, dict[str, list[int]]] = {t: defaultdict(list) for t in FILTER_TAGS}
        for i, row in enumerate(rows):
            for tag in FILTER_TAGS:
                if tag in row:
                    index[tag][str(row[tag])].append(i)
        frozen = {t: {v: frozenset(ids) for v, ids in by.items()} for t, by in index.items()}
        return cls(encoded, frozen)

    def select(self, filters: Mapping[str, Sequence[str]]) -> list[bytes]:
        """Items matching every given filter (values of one filter are alternatives), in
        their original order; the narrowest filter is taken first, so ``?zone=&host=``
        costs what the host's few items cost, not what the zone's thousands would."""
        matches = [self._matching(tag, values) for tag, values in filters.items() if values]
        if not matches:
            return list(self.items)
        matches.sort(key=len)
        chosen = [i for i in matches[0] if all(i in m for m in matches[1:])]
        return [self.items[i] for i in sorted(chosen)]

    def _matching(self, tag: str, values: Sequence[str]) -> frozenset[int]:
        by_value = self.index.get(tag, {})
        if len(values) == 1:
            return by_value.get(values[0], frozenset())
        return frozenset().union(*(by_value.get(v, frozenset()) for v in values))


@dataclass(frozen=True)
class EncodedPlan:
    """One budget plan as JSON in three parts: everything but its caps (``head``), each
    cap, and the end, so a read for one host joins that host's caps between them."""

    head: bytes
    caps: tuple[bytes, ...]
    caps_of_host: Mapping[str, tuple[int, ...]]

    @classmethod
    def build(cls, plan: BudgetPlan) -> EncodedPlan:
        row = plan.as_dict()
        caps = row.pop("caps")
        assert isinstance(caps, list)
        head = json.dumps(clean(row), allow_nan=False)[:-1] + ', "caps": ['
        encoded = tuple(json.dumps(clean(c), allow_nan=False).encode() for c in caps)
        by_host: dict[str, list[int]] = defaultdict(list)
        for i, cap in enumerate(plan.caps):
            by_host[cap.host].append(i)
        return cls(head.encode(), encoded, {h: tuple(ids) for h, ids in by_host.items()})

    def body(self, hosts: Sequence[str] | None = None) -> bytes:
        """The plan, with only the caps of ``hosts`` (in the plan's order) when given."""
        if hosts is None:
            caps: Sequence[bytes] = self.caps
        else:
            ids = sorted(i for h in hosts for i in self.caps_of_host.get(h, ()))
            caps = [self.caps[i] for i in ids]
        return b"".join((self.head, b",".join(caps), b"]}"))


@dataclass(frozen=True)
class BudgetItems:
    """The snapshot's budget plans, indexed by scope and by the hosts their caps touch."""

    plans: tuple[EncodedPlan, ...]
    scopes: tuple[str, ...]
    whole: tuple[bytes, ...]
    """Each plan with all its caps, encoded once."""

    @classmethod
    def build(cls, plans: Sequence[BudgetPlan]) -> BudgetItems:
        encoded = tuple(EncodedPlan.build(p) for p in plans)
        return cls(encoded, tuple(p.scope for p in plans), tuple(e.body() for e in encoded))

    def select(self, filters: Mapping[str, Sequence[str]]) -> list[bytes]:
        """Plans of any of the ``scope`` values (all without), in order; with ``host``
        values, only the plans that cap one of those hosts, each with those hosts' caps."""
        scopes = set(filters.get("scope", ()))
        hosts = list(dict.fromkeys(filters.get("host", ())))
        chosen = [i for i, s in enumerate(self.scopes) if not scopes or s in scopes]
        if not hosts:
            return [self.whole[i] for i in chosen]
        out = []
        for i in chosen:
            present = [h for h in hosts if h in self.plans[i].caps_of_host]
            if present:
                out.append(self.plans[i].body(present))
        return out


@dataclass(frozen=True)
class SnapshotView:
    """One snapshot's recommendations, ready to serve."""

    computed_at_ns: int
    caps: IndexedItems
    cooling: IndexedItems
    budget: BudgetItems
    head: bytes
    """The answer's start up to its count, the same for every read of this snapshot."""

    @classmethod
    def build(cls, snapshot: Snapshot) -> SnapshotView:
        caps = []
        for rec in snapshot.caps:
            cluster, zone, rack = snapshot.where.get(rec.host, ("", "", ""))
            caps.append({"cluster": cluster, "zone": zone, "rack": rack, **rec.as_dict()})
        cooling = [rec.as_dict() for rec in snapshot.cooling]
        head = json.dumps({"computed_at": iso(snapshot.computed_at_ns)})[:-1] + ', "count": '
        return cls(
            snapshot.computed_at_ns,
            IndexedItems.build(caps),
            IndexedItems.build(cooling),
            BudgetItems.build(snapshot.budget),
            head.encode(),
        )

    def body(self, items: Sequence[bytes]) -> bytes:
        """``{"computed_at": …, "count": n, "items": [...]}`` around already encoded items."""
        count = str(len(items)).encode()
        return b"".join((self.head, count, b', "items": [', b",".join(items), b"]}"))
