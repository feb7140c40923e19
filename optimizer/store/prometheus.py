"""The Prometheus-compatible telemetry store: the HTTP query API that Prometheus,
VictoriaMetrics (single node, and vmselect's ``/select/<tenant>/prometheus``),
Thanos and Mimir serve.

Series reads go to ``/api/v1/query_range`` with the aggregation in the query
(:mod:`.promql`) and ``step`` = the bucket, never raw samples: one query per
column, per group of hosts (at most ``max_series_per_query`` series, packed from
``/api/v1/label/<host>/values`` and a ``count by`` host) and per span of time (at
most ``max_points_per_query`` points),
so a 10,000-GPU fleet never asks for one giant answer. Buckets cut short by the
window's start or end are asked for on their own, so every bucket covers exactly
``[start, start + every)`` within the window, as in the other stores. Answers are
read by :mod:`.prom_answers` and joined into one :class:`Series` per read.

Latest states are instant queries of each state field and its ``timestamp()``; a
series' newest sample is the fields stamped with its newest time, as in the
other stores, within the server's lookback (5 minutes by default).

Writes (the optimizer's ``recommendation`` and ``model`` lines) need a store that
takes line protocol: VictoriaMetrics does, on ``/write``. With ``write_url`` unset
they are not stored (said once in the log); the API and ``/metrics`` still serve
them.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from wattwise.clock import Clock, SystemClock
from wattwise.common.http import deadline_client
from wattwise.common.influx import InfluxTransport
from wattwise.common.secrets import Secret
from wattwise.errors import ConfigError, StoreUnavailable
from wattwise.optimizer.store import promql
from wattwise.optimizer.store.base import AggregatingStore, writing
from wattwise.optimizer.store.columns import ColumnAssembler
from wattwise.optimizer.store.frames import (
    STATE_FIELDS,
    Latest,
    SeriesSpec,
    scope_filters,
    sort_latest,
)
from wattwise.optimizer.store.influx import tls
from wattwise.optimizer.store.prom_answers import (
    Answer,
    json_data,
    malformed_answers,
    raise_for_status,
    series_of,
)
from wattwise.optimizer.store.vocabulary import (
    Measurement,
    Source,
    Vocabulary,
    dcgm_vocabulary,
    wattwise_vocabulary,
)
from wattwise.optimizer.telemetry import Scope, Series

log = logging.getLogger(__name__)

MS = 1_000_000
PLACES = ("cluster", "zone", "rack")
MAX_STEPS = 10_000
"""Prometheus refuses more than 11,000 points per series in one query_range."""
MAX_HOST_CHARS = 8_000
"""Host names in one group's matchers, all told: VictoriaMetrics refuses queries over 16 KB."""


@dataclass(frozen=True)
class Place:
    """Where a host stands, for vocabularies whose series do not say (dcgm-exporter's)."""

    cluster: str = ""
    zone: str = ""
    rack: str = ""


@dataclass(frozen=True)
class _Window:
    """Buckets evaluated by one query: at ``first_s`` … ``last_s`` every ``step_s``."""

    first_s: float
    last_s: float
    step_s: int
    range_ms: int
    offset_ms: int


class PrometheusStore(AggregatingStore):
    """A :class:`~wattwise.optimizer.telemetry.TelemetryStore` on a Prometheus query API."""

    def __init__(
        self,
        url: str,
        *,
        vocabulary: str = "wattwise",
        clock: Clock | None = None,
        timeout_s: float = 30.0,
        deadline_s: float = 120.0,
        username: str | None = None,
        password: Secret | None = None,
        token: Secret | None = None,
        tenant: str | None = None,
        ca_file: Path | None = None,
        verify: bool = True,
        write_url: str | None = None,
        write_database: str = "wattwise",
        hosts: Mapping[str, Place] | None = None,
        sample_interval_s: float = 1.0,
        max_series_per_query: int = 2_000,
        max_points_per_query: int = 500_000,
        parallel_queries: int = 4,
    ) -> None:
        if vocabulary not in ("wattwise", "dcgm"):
            raise ConfigError("store.vocabulary", vocabulary, "wattwise or dcgm")
        self.url = url.rstrip("/")
        self._vocabulary_name = vocabulary
        self._vocabulary: Vocabulary | None = (
            wattwise_vocabulary() if vocabulary == "wattwise" else None
        )
        self._clock = clock or SystemClock()
        self._hosts = dict(hosts or {})
        self._resolution_ms = max(1, round(sample_interval_s * 1000))
        self._max_series = max_series_per_query
        self._max_points = max_points_per_query
        headers = {"Accept": "application/json"}
        auth: httpx.BasicAuth | None = None
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        elif username:
            auth = httpx.BasicAuth(username, password.reveal() if password else "")
        if tenant:
            headers["X-Scope-OrgID"] = tenant  # Mimir, Cortex, Thanos receive
        # every query ends by its deadline, however slowly the store answers
        self._client = deadline_client(
            self.url,
            headers=headers,
            auth=auth,
            timeout_s=timeout_s,
            total_s=deadline_s,
            verify=tls(verify, ca_file),
        )
        self._parallel = max(1, parallel_queries)
        self._pool = ThreadPoolExecutor(self._parallel, "wattwise-promql")
        self._writer = (
            InfluxTransport(
                write_url.rstrip("/"),
                api="v1",
                database=write_database,
                timeout_s=timeout_s,
                verify=verify,
                ca_file=ca_file,
                clock=self._clock,
                name="prometheus store writes",
            )
            if write_url
            else None
        )
        self._said_no_writes = False

    # -- reads ---------------------------------------------------------------------

    @property
    def vocabulary(self) -> Vocabulary:
        """dcgm-exporter's host label is ``Hostname`` before 2026 and ``hostname`` since:
        ``/api/v1/labels`` says which this store holds."""
        if self._vocabulary is None:
            labels = set(json_data(self._get("/api/v1/labels", []).text, self.url) or [])
            host = "hostname" if "hostname" in labels and "Hostname" not in labels else "Hostname"
            self._vocabulary = dcgm_vocabulary(host)
        return self._vocabulary

    def _series(
        self, spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
    ) -> Series:
        with malformed_answers(self.url):
            return self._read_series(spec, start_ns, end_ns, every_s, scope)

    def _read_series(
        self, spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
    ) -> Series:
        vocabulary = self.vocabulary
        measurement = vocabulary.measurement(spec.measurement, spec.tags)
        assembler = ColumnAssembler(spec)
        filters = self._filters(spec, scope)
        columns = [(c, vocabulary.sources(spec.measurement, c.field)) for c in spec.columns]
        readable = [(i, c, s) for i, (c, s) in enumerate(columns) if s]
        if filters is None or not readable or end_ns <= start_ns:
            return assembler.series()
        base = [*measurement.matchers, *promql.scope_matchers(filters)]
        start_s, end_s = start_ns / 1e9, end_ns / 1e9
        repeats = [promql.selectors_in_query(column, sources) for _, column, sources in readable]
        groups = self._host_groups(spec, readable[0][2][0], base, start_s, end_s, set(repeats))
        tasks = []
        for times, grouped in sorted(groups.items()):
            alike = [c for c, r in zip(readable, repeats, strict=True) if r == times]
            for matchers, series_count in grouped:
                for window in _windows(start_ns, end_ns, every_s, self._steps(series_count)):
                    for index, column, sources in alike:
                        expression = promql.column_expression(
                            column,
                            sources,
                            group_by=measurement.group_by,
                            matchers=matchers,
                            range_ms=window.range_ms,
                            offset_ms=window.offset_ms,
                            resolution_ms=self._resolution_ms,
                        )
                        if expression is not None:
                            tasks.append((index, expression, window))
        every_ns = every_s * 1_000_000_000
        # The pool only fetches; answers are read here, on one thread: arrays made on
        # worker threads would spread over their malloc arenas and raise the peak, and
        # reading one holds the GIL either way.
        texts = self._fetched([(expression, window) for _, expression, window in tasks])
        for (index, _, _), text in zip(tasks, texts, strict=True):
            for answer in series_of(text, self.url):
                tags = self._tags(measurement, answer.labels, spec.tags)
                if tags is None or not _in_scope(tags, scope, spec.tags):
                    continue
                bucket_ns = np.round(answer.time_s * 1000).astype(np.int64) * MS - every_ns
                assembler.add(index, tuple(tags[t] for t in spec.tags), bucket_ns, answer.values)
        return assembler.series()

    def _latest(self, spec: SeriesSpec, scope: Scope) -> list[Latest]:
        with malformed_answers(self.url):
            return self._read_latest(spec, scope)

    def _read_latest(self, spec: SeriesSpec, scope: Scope) -> list[Latest]:
        vocabulary = self.vocabulary
        measurement = vocabulary.measurement(spec.measurement, spec.tags)
        filters = self._filters(spec, scope)
        if filters is None:
            return []
        base = [*measurement.matchers, *promql.scope_matchers(filters)]
        now_s = self._clock.time_ns() / 1e9
        newest: dict[tuple[str, ...], dict[str, tuple[float, float]]] = {}
        places: dict[tuple[str, ...], dict[str, str]] = {}
        for name in STATE_FIELDS[spec.measurement]:
            for source in vocabulary.sources(spec.measurement, name):
                self._latest_of(source, name, base, now_s, measurement, spec, scope, newest, places)
        latest: list[Latest] = []
        for key, fields in newest.items():
            time_s = max(t for t, _ in fields.values())
            # the fields of the newest sample only, as the other stores give them
            values = {n: v for n, (t, v) in fields.items() if abs(t - time_s) < 5e-4}
            latest.append((places[key], round(time_s * 1000) * MS, values))
        return sort_latest(latest)

    def _latest_of(
        self,
        source: Source,
        name: str,
        base: list[str],
        now_s: float,
        measurement: Measurement,
        spec: SeriesSpec,
        scope: Scope,
        newest: dict[tuple[str, ...], dict[str, tuple[float, float]]],
        places: dict[tuple[str, ...], dict[str, str]],
    ) -> None:
        value_q, time_q = promql.latest_expressions(source, base)
        stamps = {_key(a.labels): float(a.values[0]) for a in self._instant(time_q, now_s)}
        for answer in self._instant(value_q, now_s):
            stamp = stamps.get(_key({k: v for k, v in answer.labels.items() if k != "__name__"}))
            tags = self._tags(measurement, answer.labels, spec.tags)
            if stamp is None or tags is None or not _in_scope(tags, scope, spec.tags):
                continue
            key = tuple(tags[t] for t in spec.tags)
            fields = newest.setdefault(key, {})
            known = fields.get(name)
            if known is None or stamp > known[0]:
                fields[name] = (stamp, float(answer.values[0]) * source.scale)
                places[key] = {t: v for t, v in tags.items() if v}

    # -- queries -------------------------------------------------------------------

    def _fetched(self, queries: list[tuple[str, _Window]]) -> Iterator[str]:
        """The answers' texts in order, at most two per worker fetched ahead: the reader is
        slower than the fetches, and answers piling up would hold gigabytes at 10,000 GPUs."""
        ahead: deque[Future[str]] = deque()
        pending = iter(queries)
        for query in itertools.islice(pending, 2 * self._parallel):
            ahead.append(self._pool.submit(self._range, *query))
        while ahead:
            text = ahead.popleft().result()
            for query in itertools.islice(pending, 1):
                ahead.append(self._pool.submit(self._range, *query))
            yield text

    def _range(self, expression: str, window: _Window) -> str:
        """The text of one query_range answer (read by :func:`.prom_answers.series_of`)."""
        form = {
            "query": expression,
            "start": _seconds(window.first_s),
            "end": _seconds(window.last_s),
            "step": f"{window.step_s}s",
        }
        return self._post("/api/v1/query_range", form).text

    def _instant(self, expression: str, at_s: float) -> list[Answer]:
        form = {"query": expression, "time": _seconds(at_s)}
        return series_of(self._post("/api/v1/query", form).text, self.url)

    def _host_groups(
        self,
        spec: SeriesSpec,
        primary: Source,
        base: list[str],
        start_s: float,
        end_s: float,
        repeats: Collection[int],
    ) -> dict[int, list[tuple[list[str], int]]]:
        """Matchers per group of hosts, with the series each group holds at a time, for
        queries that have one, two… series selectors (each of ``repeats``).

        Hosts come from ``/api/v1/label/<host>/values`` of the GPUs' power series and of
        the measurement's own first column, and each host's series alive at once from a
        ``count by`` host at the window's end; for a measurement with one series per job,
        both come from the GPUs instead (a host runs at most a job per GPU at once), since
        VictoriaMetrics indexes series per day and a fleet's day of jobs is more than it
        lets one query touch. Hosts are packed into groups
        of at most ``max_series_per_query`` series and :data:`MAX_HOST_CHARS` of names in all
        (a query with two selectors, each with the group's matcher, gets half as many names).
        """
        vocabulary = self.vocabulary
        label = vocabulary.label_of(spec.measurement, "host")
        if "host" not in spec.tags:
            return {times: [(base, self._max_series)] for times in repeats}
        own = promql.selector(primary.metric, [*base, *primary.matchers])
        power = vocabulary.sources("gpu", "power_w")[0]
        gpus = promql.selector(power.metric, base)
        per_job = "job" in spec.tags  # a day of these is too many series to ask about at once
        listed = [gpus] if per_job else [gpus, own]
        params = [
            *(("match[]", selector) for selector in listed),
            ("start", _seconds(start_s)),
            ("end", _seconds(end_s)),
        ]
        found = json_data(self._get(f"/api/v1/label/{label}/values", params).text, self.url)
        per_host = dict.fromkeys((str(h) for h in found or []), 1)
        # a host's jobs at once are at most its GPUs
        for answer in self._instant(f"count by ({label}) ({gpus if per_job else own})", end_s):
            host = answer.labels.get(label, "")
            per_host[host] = max(per_host.get(host, 1), int(answer.values[0]))
        if sum(per_host.values()) <= self._max_series:
            return {times: [(base, max(sum(per_host.values()), 1))] for times in repeats}
        return {
            times: _packed(per_host, base, label, self._max_series, MAX_HOST_CHARS // times)
            for times in repeats
        }

    def _steps(self, series_count: int) -> int:
        return max(1, min(MAX_STEPS, self._max_points // max(1, series_count)))

    def _get(self, path: str, params: Sequence[tuple[str, str]]) -> httpx.Response:
        with self._failing_as_store_errors():
            response = self._client.get(path, params=list(params))
        raise_for_status(response, self.url)
        return response

    def _post(self, path: str, form: Mapping[str, str]) -> httpx.Response:
        # a form body: a group's host alternation would not fit in a URL
        with self._failing_as_store_errors():
            response = self._client.post(path, data=dict(form))
        raise_for_status(response, self.url)
        return response

    @contextmanager
    def _failing_as_store_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as e:
            raise StoreUnavailable(f"{self.url}: query timed out") from e
        except httpx.TransportError as e:
            raise StoreUnavailable(f"{self.url}: {type(e).__name__}: {e}") from e

    # -- tags and scope ----------------------------------------------------------------

    def _filters(self, spec: SeriesSpec, scope: Scope) -> dict[str, tuple[str, ...]] | None:
        """Store label → allowed values; None when the scope leaves no host of the map."""
        wanted = scope_filters(scope, spec.tags)
        vocabulary = self.vocabulary
        by_map = self._hosts and any(t in wanted for t in PLACES) and "host" in spec.tags
        out = {
            vocabulary.label_of(spec.measurement, tag): values
            for tag, values in wanted.items()
            if not (by_map and tag in PLACES)
        }
        if by_map:
            hosts = [
                h
                for h, place in sorted(self._hosts.items())
                if all(getattr(place, t) in wanted[t] for t in PLACES if t in wanted)
                and h in wanted.get("host", (h,))
            ]
            if not hosts:
                return None
            out[vocabulary.label_of(spec.measurement, "host")] = tuple(hosts)
        return out

    def _tags(
        self, measurement: Measurement, labels: Mapping[str, str], tags: tuple[str, ...]
    ) -> dict[str, str] | None:
        found = measurement.tags(labels)
        place = self._hosts.get(found.get("host", ""))
        if place is not None:
            for tag in PLACES:
                found[tag] = found.get(tag) or getattr(place, tag)
        return {t: found.get(t, "") for t in tags}

    # -- writes ----------------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> None:
        if self._writer is None:
            if not self._said_no_writes:
                log.warning(
                    "%s takes no line protocol: the optimizer's recommendation and model lines "
                    "are not stored (set store.write_url to a VictoriaMetrics /write to keep "
                    "them); the API and /metrics serve them",
                    self.url,
                )
                self._said_no_writes = True
            return
        with writing():
            self._writer.write(lines)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
        if self._writer is not None:
            self._writer.close()

    def __repr__(self) -> str:
        return f"PrometheusStore({self.url!r}, vocabulary={self._vocabulary_name!r})"


def _packed(
    per_host: Mapping[str, int], base: list[str], label: str, max_series: int, max_chars: int
) -> list[tuple[list[str], int]]:
    """Hosts in groups of at most ``max_series`` series and ``max_chars`` of names."""
    groups: list[tuple[list[str], int]] = []
    packed: list[str] = []
    count = chars = 0
    for host, n in sorted(per_host.items()):
        full = count + n > max_series or chars + len(host) > max_chars
        if packed and full:
            groups.append(([*base, promql.equal_to_one_of(label, packed)], count))
            packed, count, chars = [], 0, 0
        packed.append(host)
        count += n
        chars += len(host) + 1
    if packed:
        groups.append(([*base, promql.equal_to_one_of(label, packed)], count))
    return groups


def _windows(start_ns: int, end_ns: int, every_s: int, steps: int) -> list[_Window]:
    """Query windows covering every bucket of ``[start, end)``: runs of whole buckets of at
    most ``steps`` each, and the buckets the window's edges cut short on their own."""
    every_ms = every_s * 1000
    lo_ms, hi_ms = _ceil_ms(start_ns), _ceil_ms(end_ns)
    first_b = lo_ms // every_ms * every_ms
    windows: list[_Window] = []
    whole: list[int] = []
    b = first_b
    while b < hi_ms:
        bucket_lo, bucket_hi = max(b, lo_ms), min(b + every_ms, hi_ms)
        if (bucket_lo, bucket_hi) == (b, b + every_ms):
            whole.append(b)
        else:
            end = b + every_ms
            windows.append(
                _Window(end / 1000, end / 1000, every_s, bucket_hi - bucket_lo, end - bucket_hi + 1)
            )
        b += every_ms
    for first in range(0, len(whole), steps):
        run = whole[first : first + steps]
        windows.append(
            _Window((run[0] + every_ms) / 1000, (run[-1] + every_ms) / 1000, every_s, every_ms, 1)
        )
    return windows


def _ceil_ms(ns: int) -> int:
    return -(-ns // MS)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _in_scope(tags: Mapping[str, str], scope: Scope, spec_tags: tuple[str, ...]) -> bool:
    return all(
        tags.get(tag, "") in values for tag, values in scope_filters(scope, spec_tags).items()
    )
