"""The InfluxDB telemetry store: InfluxQL over ``/query`` (1.x, 2.7+ and 3.x).

Reads are GET ``/query?db=…&epoch=ns&q=…`` with the aggregation in the query
(:mod:`.influxql`); writes reuse the agent's
:class:`~wattwise.common.influx.InfluxTransport`. Credentials: a 1.x user and
password (HTTP basic auth), or a 2.x/3.x token (``Authorization: Token …``);
for 2.x the database is the bucket's (virtual) DBRP mapping.

When ``init-db`` gave the database a finite default retention policy and a
1-minute downsampled one (``rp_1m``), windows that start before the raw
data's retention are read from the downsampled policy.

Every query ends within ``deadline_s`` however slowly the store answers (a
refit must not hold its lock forever on a server dripping bytes).
Reads stream the answer a chunk at a time (:meth:`InfluxStore._read`) so that no
single parse holds the GIL for long. httpx errors and HTTP statuses become
:class:`~wattwise.errors.StoreError` subclasses in
:meth:`InfluxStore._failing_as_store_errors` and :mod:`.answers`.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from wattwise.clock import Clock, SystemClock
from wattwise.common.http import deadline_client
from wattwise.common.influx import InfluxTransport
from wattwise.common.secrets import Secret
from wattwise.errors import (
    ConfigError,
    StoreQueryError,
    StoreUnavailable,
)
from wattwise.optimizer.store import influxql
from wattwise.optimizer.store.answers import (
    MalformedAnswer,
    checked,
    json_document,
    malformed_answers,
    raise_for_status,
    refuse_cut_short,
    series_of,
)
from wattwise.optimizer.store.base import AggregatingStore, writing
from wattwise.optimizer.store.frames import (
    CHUNK_ROWS,
    Latest,
    Row,
    SeriesBuilder,
    SeriesSpec,
    scope_filters,
    sort_latest,
)
from wattwise.optimizer.telemetry import Scope, Series

DOWNSAMPLED_RP = "rp_1m"
_DURATION_PART = re.compile(r"(\d+)(h|m|s)")
_NS_PER_UNIT = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000}


class InfluxStore(AggregatingStore):
    """A :class:`~wattwise.optimizer.telemetry.TelemetryStore` on InfluxDB."""

    def __init__(
        self,
        url: str,
        *,
        database: str,
        retention_policy: str | None = None,
        username: str | None = None,
        password: Secret | None = None,
        token: Secret | None = None,
        org: str | None = None,
        timeout_s: float = 10.0,
        deadline_s: float = 120.0,
        ca_file: Path | None = None,
        verify: bool = True,
        clock: Clock | None = None,
        downsampled_retention_policy: str = DOWNSAMPLED_RP,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        if not database:
            raise ConfigError("store.database", database, "a database (or DBRP) name")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy or None
        self._downsampled_rp = downsampled_retention_policy
        self.chunk_rows = chunk_rows
        self._clock = clock or SystemClock()
        self._raw_retention_ns: int | None = None
        self._retention_known = False
        headers = {"Accept": "application/json"}
        auth: httpx.BasicAuth | None = None
        if token is not None:
            headers["Authorization"] = f"Token {token.reveal()}"
        elif username:
            auth = httpx.BasicAuth(username, password.reveal() if password else "")
        self.deadline_s = deadline_s
        self._client = deadline_client(
            self.url,
            headers=headers,
            auth=auth,
            timeout_s=timeout_s,
            total_s=deadline_s,
            verify=tls(verify, ca_file),
        )
        self._transport = InfluxTransport(
            self.url,
            api="v2" if token is not None else "v1",
            database=database,
            retention_policy=self.retention_policy,
            username=username,
            password=password,
            org=org,
            bucket=_bucket(database, self.retention_policy),
            token=token,
            timeout_s=timeout_s,
            verify=verify,
            ca_file=ca_file,
            clock=self._clock,
            name="influxdb store",
        )

    # -- reads -----------------------------------------------------------------

    def _series(
        self, spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
    ) -> Series:
        downsampled = self.reads_downsampled(start_ns)
        q = influxql.series_query(
            spec,
            database=self.database,
            retention_policy=self._downsampled_rp if downsampled else self.retention_policy,
            start_ns=start_ns,
            end_ns=end_ns,
            every_s=every_s,
            filters=scope_filters(scope, spec.tags),
            downsampled=downsampled,
        )
        builder = SeriesBuilder(spec)
        rows: list[Row] = []
        with malformed_answers(self.url):
            for results in self._read(q):
                for series in series_of(results):
                    tags = series.get("tags") or {}
                    key = tuple(str(tags.get(tag, "")) for tag in spec.tags)
                    rows.extend(_rows(key, series["values"], len(spec.columns)))
                if len(rows) >= self.chunk_rows:
                    builder.add(rows)
                    rows = []
            builder.add(rows)
        return builder.series()

    def _latest(self, spec: SeriesSpec, scope: Scope) -> list[Latest]:
        q = influxql.latest_query(
            spec.measurement,
            spec.tags,
            database=self.database,
            retention_policy=self.retention_policy,
            filters=scope_filters(scope, spec.tags),
        )
        latest: list[Latest] = []
        with malformed_answers(self.url):
            for series in self._read_series(q):
                tags = {tag: str(value) for tag, value in (series.get("tags") or {}).items()}
                for row in series.get("values") or []:
                    fields = dict(zip(series["columns"], row, strict=True))
                    latest.append((tags, int(fields.pop("time")), fields))
        return sort_latest(latest)

    def reads_downsampled(self, start_ns: int) -> bool:
        """True when ``start_ns`` is older than the raw data's retention and ``rp_1m`` exists."""
        if not self._retention_known:
            self._raw_retention_ns = self._find_raw_retention_ns()
            self._retention_known = True
        if self._raw_retention_ns is None:
            return False
        return start_ns < self._clock.time_ns() - self._raw_retention_ns

    def _find_raw_retention_ns(self) -> int | None:
        """The raw policy's duration if a downsampled policy exists beside it, else None."""
        q = f"SHOW RETENTION POLICIES ON {influxql.ident(self.database)}"
        try:
            found = list(self._read_series(q))
        except MalformedAnswer:
            raise
        except StoreQueryError:
            return None  # servers without SHOW RETENTION POLICIES keep one policy
        policies: dict[str, dict[str, Any]] = {}
        with malformed_answers(self.url):
            for series in found:
                for row in series.get("values") or []:
                    policy = dict(zip(series["columns"], row, strict=True))
                    policies[str(policy["name"])] = policy
            if self.retention_policy is not None:
                raw = policies.get(self.retention_policy)
            else:
                raw = next((p for p in policies.values() if p.get("default")), None)
            if raw is None or self._downsampled_rp not in policies:
                return None
            return parse_duration_ns(str(raw["duration"])) or None

    def execute(self, statement: str) -> list[dict[str, Any]]:
        """POST a statement that changes the server (CREATE, ALTER, DROP, SELECT … INTO)."""
        # 1.x refuses changes over GET; the form body keeps long text out of the URL
        with self._failing_as_store_errors():
            response = self._client.post("/query", data=self._params(statement))
        raise_for_status(response, self.url)
        results = checked(json_document(response.text, self.url), self.url)
        refuse_cut_short(results, self.url)
        return results

    def _read(self, q: str) -> Iterator[list[dict[str, Any]]]:
        """Run the read ``q``; yield the results of each chunk as the server streams them.

        A whole answer parsed at once holds the GIL for as long as ``json.loads``
        takes on it (hundreds of ms for a refit's window at 1,000 nodes), so reads
        ask for ``chunked=true``: 1.x and 3.x answer with one JSON document per line,
        per series or per ``chunk_size`` rows. A server that ignores the parameter
        answers one document, read the same way. Every chunk but the last says
        ``partial`` (more follows); the last one saying it means the answer was cut short.
        """
        params = self._params(q) | {"chunked": "true", "chunk_size": str(self.chunk_rows)}
        results: list[dict[str, Any]] = []
        with (
            self._failing_as_store_errors(),
            self._client.stream("GET", "/query", params=params) as response,
        ):
            if response.status_code != 200:
                response.read()
                raise_for_status(response, self.url)
            for line in response.iter_lines():
                if line.strip():
                    results = checked(json_document(line, self.url), self.url)
                    yield results
        refuse_cut_short(results, self.url)

    def _read_series(self, q: str) -> Iterator[dict[str, Any]]:
        """Every series of every chunk of the answer to ``q``."""
        for results in self._read(q):
            yield from series_of(results)

    def _params(self, q: str) -> dict[str, str]:
        params = {"db": self.database, "epoch": "ns", "q": q}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return params

    @contextmanager
    def _failing_as_store_errors(self) -> Iterator[None]:
        """httpx's errors as StoreErrors: every failure of a query leaves as one."""
        try:
            yield
        except httpx.TimeoutException as e:
            raise StoreUnavailable(
                f"{self.url}: no whole answer within the query deadline of {self.deadline_s:g} s "
                f"or a read timeout ({type(e).__name__})"
            ) from e
        except httpx.HTTPError as e:
            raise StoreUnavailable(f"{self.url}: {type(e).__name__}: {e}") from e

    # -- writes ----------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> None:
        with writing():
            self._transport.write(lines)

    def close(self) -> None:
        self._client.close()
        self._transport.close()

    def __repr__(self) -> str:
        return f"InfluxStore({self.url!r}, database={self.database!r})"


def _rows(key: tuple[str, ...], values: list[Any], width: int) -> list[Row]:
    """One series' rows; each must be a time and ``width`` values."""
    rows: list[Row] = []
    for time_ns, *row in values:
        if len(row) != width:
            raise ValueError(f"a row of {len(row)} values where {width} were asked for")
        rows.append((key, int(time_ns), row))
    return rows


def parse_duration_ns(text: str) -> int:
    """InfluxDB's ``168h0m0s`` as nanoseconds (``0s`` = infinite = 0)."""
    return sum(int(n) * _NS_PER_UNIT[unit] for n, unit in _DURATION_PART.findall(text))


def _bucket(database: str, retention_policy: str | None) -> str:
    # 2.x names a virtual DBRP's bucket "db/rp"; 3.x's database is the bucket
    return f"{database}/{retention_policy}" if retention_policy else database


def tls(verify: bool, ca_file: Path | None) -> ssl.SSLContext | bool:
    if not verify:
        return False
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("store.ca_file", str(ca_file), f"a readable PEM file ({e})") from e
