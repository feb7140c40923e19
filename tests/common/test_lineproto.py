"""The line-protocol encoder and parser, checked against a real influxd."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.influxd import InfluxServer
from wattwise.collector.base import FieldValue, Reading
from wattwise.common.lineproto import (
    MAX_STRING_FIELD_BYTES,
    MAX_TIME_NS,
    MIN_TIME_NS,
    ParsedLine,
    encode,
    encode_many,
    parse_line,
)
from wattwise.errors import EncodeError

Fields = dict[str, FieldValue | None]


def reading(
    measurement: str = "m",
    tags: dict[str, str] | None = None,
    fields: Fields | None = None,
    time_ns: int = 1_700_000_000_000_000_000,
) -> Reading:
    return Reading(measurement, tags or {}, {"v": 1.5} if fields is None else fields, time_ns)


# --- golden escaping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_reading", "line"),
    [
        (reading(), b"m v=1.5 1700000000000000000"),
        (reading("a b,c=d"), b"a\\ b\\,c=d v=1.5 1700000000000000000"),
        (reading(tags={"k ,=": "v ,="}), b"m,k\\ \\,\\==v\\ \\,\\= v=1.5 1700000000000000000"),
        (reading(fields={"f ,=": 1.0}), b"m f\\ \\,\\==1.0 1700000000000000000"),
        (
            reading(fields={"s": 'say "hi" \\ ok'}),
            b'm s="say \\"hi\\" \\\\ ok" 1700000000000000000',
        ),
        (reading(fields={"s": ""}), b'm s="" 1700000000000000000'),
        (reading(tags={"k": "a\\b"}), b"m,k=a\\b v=1.5 1700000000000000000"),
        (reading(tags={"b": "2", "a": "1", "c": ""}), b"m,a=1,b=2 v=1.5 1700000000000000000"),
        (
            reading(fields={"i": 3, "t": True, "f": False}),
            b"m i=3i,t=true,f=false 1700000000000000000",
        ),
        (
            reading(fields={"x": 1e16, "y": 1.5e-07, "z": -0.0}),
            b"m x=1e+16,y=1.5e-07,z=-0.0 1700000000000000000",
        ),
        (reading(fields={"x": 0.1 + 0.2}), b"m x=0.30000000000000004 1700000000000000000"),
        (reading(fields={"v": 1.0, "gone": None}, time_ns=-5), b"m v=1.0 -5"),
        (
            reading("ünï", {"ключ": "值"}, {"σ": "✓"}),
            'ünï,ключ=值 σ="✓" 1700000000000000000'.encode(),
        ),
    ],
)
def test_golden_escaping(given_reading: Reading, line: bytes) -> None:
    assert encode(given_reading) == line


def test_schema_float_field_given_an_int_is_sent_as_float() -> None:
    line = encode(reading("gpu", {"host": "n1"}, {"power_w": 300, "mem_used_bytes": 7}))
    assert line == b"gpu,host=n1 power_w=300.0,mem_used_bytes=7i 1700000000000000000"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mem_used_bytes", 7.0),
        ("power_w", True),
        ("power_w", "300"),
        ("clock_event_reasons", False),
    ],
)
def test_schema_kind_mismatch_names_measurement_field_and_value(field: str, value: object) -> None:
    with pytest.raises(EncodeError) as caught:
        encode(reading("gpu", {"host": "n1"}, {field: value}))  # type: ignore[dict-item]
    assert "'gpu'" in str(caught.value)
    assert repr(field) in str(caught.value)
    assert repr(value) in str(caught.value)


def test_measurement_outside_schema_encodes_by_python_type() -> None:
    assert (
        encode(reading("custom", fields={"power_w": 300}))
        == b"custom power_w=300i 1700000000000000000"
    )


def test_numpy_scalars_are_encoded_as_their_builtin_kind() -> None:
    import numpy as np

    fields: dict[str, Any] = {"power_w": np.float32(1.5), "mem_used_bytes": np.int64(9)}
    line = encode(reading("gpu", fields=fields))
    assert line == b"gpu power_w=1.5,mem_used_bytes=9i 1700000000000000000"


def test_reading_without_present_fields_encodes_to_none() -> None:
    assert encode(reading(fields={"a": None})) is None
    assert encode_many([reading(fields={"a": None}), reading()]) == [encode(reading())]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (reading(""), "empty"),
        (reading("#m"), "start"),
        (reading("\tm"), "start"),
        (reading("\x00m"), "NUL"),
        (reading("a\rb"), "carriage return"),
        (reading(tags={"k": "a\x00"}), "NUL"),
        (reading(tags={"k": "a\r"}), "carriage return"),
        (reading(fields={"a\x00": 1.0}), "NUL"),
        (reading("a\nb"), "newline"),
        (reading("m\\"), "backslash"),
        (reading("m\\=x"), "backslash"),
        (reading(tags={"": "v"}), "empty"),
        (reading(tags={"time": "v"}), "reserved"),
        (reading(tags={"k": "v\\"}), "backslash"),
        (reading(tags={"k": "v\\ x"}), "backslash"),
        (reading(tags={"k\\": "v"}), "backslash"),
        (reading(tags={"k": "a\nb"}), "newline"),
        (reading(tags={"k": "\ud800"}), "unicode"),
        (reading(fields={"": 1.0}), "empty"),
        (reading(fields={"\tf": 1.0}), "tab"),
        (reading(fields={"time": 1.0}), "reserved"),
        (reading(fields={"f\\": 1.0}), "backslash"),
        (reading(fields={'f\\"': 1.0}), "backslash"),
        (reading(fields={"v": float("nan")}), "finite"),
        (reading(fields={"v": float("inf")}), "finite"),
        (reading(fields={"v": -float("inf")}), "finite"),
        (reading(fields={"v": 2**63}), "int64"),
        (reading(fields={"v": -(2**63) - 1}), "int64"),
        (reading(fields={"v": "a\nb"}), "newline"),
        (reading(fields={"v": "x" * (MAX_STRING_FIELD_BYTES + 1)}), "64 KiB"),
        (reading(fields={"v": "\udfff"}), "unicode"),
        (reading(fields={"v": b"bytes"}), "unsupported"),  # type: ignore[dict-item]
        (reading(tags={"v": "x"}, fields={"v": 1.0}), "both a tag and a field"),
        (reading(tags={"k": "v" * 65530}), "series key"),
        (reading(time_ns=MAX_TIME_NS + 1), "timestamp"),
        (reading(time_ns=MIN_TIME_NS - 1), "timestamp"),
        (reading("gpu", fields={"power_w": 2**1024}), "too large"),
    ],
)
def test_refuses_locally_what_influxd_would_reject_or_mangle(bad: Reading, why: str) -> None:
    with pytest.raises(EncodeError, match=why):
        encode(bad)


def test_limits_themselves_are_accepted() -> None:
    edge = reading(
        fields={"s": "x" * MAX_STRING_FIELD_BYTES, "hi": 2**63 - 1, "lo": -(2**63)},
        time_ns=MIN_TIME_NS,
    )
    assert parse_line(encode(edge) or b"").fields["hi"] == 2**63 - 1
    assert encode(reading(time_ns=MAX_TIME_NS)) is not None


# --- the parser -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b"", "measurement"),
        (b"m", "fields"),
        (b"m v=1", "timestamp"),
        (b"m v=1 x", "timestamp"),
        (b"m,k v=1 1", "tag"),
        (b"m,k= v=1 1", "tag"),
        (b"m,k=1,k=2 v=1 1", "duplicate"),
        (b"m v 1", "field"),
        (b'm v="abc 1', "quotes"),
        (b"m v=1e400 1", "value"),
        (b"m v=nan 1", "value"),
        (b"m v=+1 1", "value"),
        (b"m v=99999999999999999999i 1", "int64"),
        (b"m v=1 9223372036854775807", "range"),
        (b"m v=1\n 1", "newline"),
        (b"m\xff v=1 1", "UTF-8"),
    ],
)
def test_parse_line_says_where_a_line_is_malformed(line: bytes, where: str) -> None:
    with pytest.raises(EncodeError, match=where):
        parse_line(line)


def test_parse_line_reads_influxdb_spellings() -> None:
    parsed = parse_line(b'm\\ x,t=a\\,b f=.5,g=1.,h=1E3,i=-2i,b1=T,b2=FALSE,s="q\\"\\\\" 9')
    assert parsed == ParsedLine(
        "m x",
        {"t": "a,b"},
        {"f": 0.5, "g": 1.0, "h": 1000.0, "i": -2, "b1": True, "b2": False, "s": 'q"\\'},
        9,
    )


# --- property tests -------------------------------------------------------------------

_SPECIAL = st.sampled_from([*',= "\\\t\x00\n#\r', "é", "😀", "\u2028"])
names = st.text(alphabet=st.one_of(_SPECIAL, st.characters()), min_size=1, max_size=10)
tag_values = st.one_of(st.just(""), names)
field_values = st.one_of(
    st.none(),
    st.floats(),
    st.integers(min_value=-(2**63) - 1, max_value=2**63),
    st.booleans(),
    st.text(alphabet=st.one_of(_SPECIAL, st.characters()), max_size=20),
)
readings = st.builds(
    Reading,
    measurement=names,
    tags=st.dictionaries(names, tag_values, max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    time_ns=st.one_of(
        st.integers(min_value=MIN_TIME_NS - 1, max_value=MAX_TIME_NS + 1),
        st.integers(min_value=1_600_000_000 * 10**9, max_value=1_800_000_000 * 10**9),
    ),
)


def float_bits(value: float) -> bytes:
    return struct.pack("<d", value)


def expected_after_round_trip(sample: Reading) -> tuple[dict[str, str], dict[str, FieldValue]]:
    return {k: v for k, v in sample.tags.items() if v != ""}, sample.present_fields()


@settings(max_examples=1500, deadline=None)
@given(readings)
def test_encode_then_parse_line_round_trips_or_refuses(sample: Reading) -> None:
    try:
        line = encode(sample)
    except EncodeError:
        return
    if line is None:
        assert not sample.present_fields()
        return
    parsed = parse_line(line)
    tags, fields = expected_after_round_trip(sample)
    assert (parsed.measurement, parsed.tags, parsed.time_ns) == (
        sample.measurement,
        tags,
        sample.time_ns,
    )
    assert parsed.fields.keys() == fields.keys()
    for key, value in fields.items():
        got = parsed.fields[key]
        assert type(got) is type(value)
        assert float_bits(got) == float_bits(value) if isinstance(value, float) else got == value  # type: ignore[arg-type]


plain_names = st.text(
    alphabet=st.characters(exclude_characters="\\\n\r\x00", codec="utf-8"),
    min_size=1,
    max_size=10,
).filter(lambda s: s != "time" and not s.startswith(("#", "\t")))


@settings(max_examples=300, deadline=None)
@given(
    measurement=plain_names,
    tags=st.dictionaries(plain_names, plain_names, max_size=3),
    field=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20).filter(lambda s: "\n" not in s),
    ),
)
def test_plain_names_are_never_refused(
    measurement: str, tags: dict[str, str], field: FieldValue
) -> None:
    """Refusals stay narrow: only names with \\, \\n, \\r, NUL or a bad start are refused."""
    # A backslash before an ordinary character is fine, and keeps field keys apart from tags.
    fields = {f"{key}\\f": field for key in tags} or {"f": field}
    assert encode(Reading(measurement, tags, fields, 0)) is not None


# --- against the real influxd ---------------------------------------------------------


def influxql_identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxRoundTrip:
    """Writes one line per measurement; starts a new database when a name repeats."""

    def __init__(self, server: InfluxServer, prefix: str) -> None:
        self.server = server
        self.prefix = prefix
        self.databases = 0
        self.seen: set[str] = set()
        self._new_database()

    def _new_database(self) -> None:
        self.databases += 1
        self.db = f"{self.prefix}{self.databases}"
        self.server.create_database(self.db)
        self.seen.clear()

    def write(self, line: bytes, measurement: str) -> httpx.Response:
        if measurement in self.seen:
            self._new_database()
        self.seen.add(measurement)
        params = {"db": self.db, "precision": "ns"}
        return httpx.post(f"{self.server.url}/write", params=params, content=line, timeout=30)

    def read(self, measurement: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The only series of ``measurement`` (numbers as text) and its field types."""
        ident = influxql_identifier(measurement)
        q = f"SELECT * FROM {ident} GROUP BY *; SHOW FIELD KEYS FROM {ident}"
        params = {"q": q, "db": self.db, "epoch": "ns"}
        response = httpx.post(f"{self.server.url}/query", params=params, timeout=30)
        response.raise_for_status()
        body = json.loads(response.text, parse_float=str, parse_int=str)
        select, field_keys = body["results"]
        assert "error" not in select, select
        (series,) = select["series"]
        types = {key: kind for key, kind in field_keys["series"][0]["values"]}
        return series, types


_INFLUX_TYPES: dict[type, tuple[str, Callable[[Any], Any]]] = {
    float: ("float", lambda text: float_bits(float(text))),
    int: ("integer", int),
    bool: ("boolean", bool),
    str: ("string", str),
}


def assert_stored_exactly(sample: Reading, series: dict[str, Any], types: dict[str, str]) -> None:
    tags, fields = expected_after_round_trip(sample)
    assert series["name"] == sample.measurement
    assert series.get("tags", {}) == tags
    (row,) = series["values"]
    stored = {c: v for c, v in zip(series["columns"], row, strict=True) if v is not None}
    assert int(stored.pop("time")) == sample.time_ns
    assert stored.keys() == fields.keys()
    for key, value in fields.items():
        kind, normalise = _INFLUX_TYPES[type(value)]
        assert types[key] == kind, key
        expected = float_bits(value) if isinstance(value, float) else value
        assert normalise(stored[key]) == expected, key


@pytest.fixture(scope="module")
def influx_round_trip(influxd: InfluxServer) -> InfluxRoundTrip:
    return InfluxRoundTrip(influxd, "lineproto_prop")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sample=readings)
def test_influxd_stores_every_encoded_line_unchanged(
    influx_round_trip: InfluxRoundTrip, sample: Reading
) -> None:
    try:
        line = encode(sample)
    except EncodeError:
        event("refused locally")
        return
    if line is None:
        return
    event("stored")
    response = influx_round_trip.write(line, sample.measurement)
    assert response.status_code == 204, (line, response.text)
    series, types = influx_round_trip.read(sample.measurement)
    assert_stored_exactly(sample, series, types)


def test_influxd_stores_schema_measurements_with_schema_types(influxd: InfluxServer) -> None:
    samples = [
        reading(
            "gpu",
            {"host": "n1", "gpu": "0", "zone": ""},
            {"power_w": 300, "mem_used_bytes": 5, "temp_c": 51.25},
        ),
        reading("host", {"host": "n1"}, {"load1": 2, "mem_total_bytes": 2**40}),
    ]
    trip = InfluxRoundTrip(influxd, "lineproto_schema")
    for sample in samples:
        assert trip.write(encode(sample) or b"", sample.measurement).status_code == 204
    gpu, gpu_types = trip.read("gpu")
    _, host_types = trip.read("host")
    assert gpu_types == {"power_w": "float", "mem_used_bytes": "integer", "temp_c": "float"}
    assert host_types == {"load1": "float", "mem_total_bytes": "integer"}
    assert gpu["values"][0][gpu["columns"].index("power_w")] == "300"
    assert gpu["tags"] == {"host": "n1", "gpu": "0"}


@pytest.mark.parametrize(
    ("naive_line", "stored_measurement"),
    [
        (b"#m v=1 1", None),  # a comment: nothing stored
        (b"\tm v=1 1", "m"),  # leading tab skipped
        (b"m\\=x v=1 1", "m=x"),  # backslash read as an escape
        (b"m\\ v=1 1", None),  # trailing backslash escapes the space: refused
        (b"m,time=x v=1 1", None),
        (b"m time=1 1", None),
        (b"m v=NaN 1", None),
        (b"m v=9223372036854775808i 1", None),
        (b"m v=1 9223372036854775807", None),
        (b"m,k= v=1 1", None),
    ],
)
def test_influxd_rejects_or_mangles_what_encode_refuses(
    influxd: InfluxServer, naive_line: bytes, stored_measurement: str | None
) -> None:
    """Pins the server behaviour the encoder's refusals are based on."""
    db = "lineproto_naive"
    influxd.create_database(db)
    influxd.query("DROP SERIES FROM /.*/", db)
    response = httpx.post(f"{influxd.url}/write", params={"db": db}, content=naive_line)
    measurements = influxd.rows("SHOW MEASUREMENTS", db)
    if stored_measurement is None:
        assert response.status_code == 400 or measurements == []
    else:
        assert response.status_code == 204
        assert measurements == [{"name": stored_measurement}]


def write_raw(server: InfluxServer, db: str, line: bytes) -> int:
    server.create_database(db)
    return httpx.post(f"{server.url}/write", params={"db": db}, content=line).status_code


def test_regression_parse_line_took_a_quote_in_a_field_key_for_a_string(
    influxd: InfluxServer,
) -> None:
    line = encode(reading(fields={'a"b': 1.0, "c": 'x"y'}))
    assert line == b'm a"b=1.0,c="x\\"y" 1700000000000000000'
    assert parse_line(line).fields == {'a"b': 1.0, "c": 'x"y'}
    assert write_raw(influxd, "lineproto_quote", line) == 204
    assert influxd.rows("SHOW FIELD KEYS", "lineproto_quote") == [
        {"fieldKey": 'a"b', "fieldType": "float"},
        {"fieldKey": "c", "fieldType": "string"},
    ]


def test_regression_influxd_drops_a_tab_leading_the_first_field_key(influxd: InfluxServer) -> None:
    assert write_raw(influxd, "lineproto_tab", b"m \tf=1.0 1") == 204
    assert influxd.rows("SHOW FIELD KEYS", "lineproto_tab") == [
        {"fieldKey": "f", "fieldType": "float"}
    ]
    with pytest.raises(EncodeError, match="tab"):
        encode(reading(fields={"\tf": 1.0}))


@pytest.mark.parametrize("char", ["\r", "\x00"])
def test_regression_influxql_cannot_select_a_name_holding_cr_or_nul(
    influxd: InfluxServer, char: str
) -> None:
    name = f"a{char}b"
    assert write_raw(influxd, "lineproto_unnameable", f"{name} v=1.0 1".encode()) == 204
    params = {"q": f"SELECT * FROM {influxql_identifier(name)}", "db": "lineproto_unnameable"}
    assert httpx.post(f"{influxd.url}/query", params=params).status_code == 400
    with pytest.raises(EncodeError, match="InfluxQL cannot name"):
        encode(reading(name))
