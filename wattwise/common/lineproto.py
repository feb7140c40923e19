"""InfluxDB line protocol: the encoder every sample passes through, and its inverse.

The escaping rules and the limits below were found against a real influxd
(1.6.7) and are pinned by ``tests/agent/test_lineproto.py``:

- measurement: ``,`` and space are escaped; tag keys, tag values and field
  keys: ``,``, ``=`` and space (a ``"`` only opens a string right after the
  ``=`` of a field). A backslash is kept as it is, so one that ends a
  name, or stands before ``,``, ``=``, space or ``"``, cannot be written
  unchanged (InfluxDB reads it as an escape) and is refused.
- a line starting with ``#`` is a comment, and tabs and NUL bytes before the
  measurement and before the first field are skipped: a measurement or field
  key cannot start with them.
- InfluxQL ends a query at NUL and reads a carriage return as a newline, so a
  name holding either could be written but never selected: both are refused
  in names and tag values.
- ``time`` is refused as a tag or field key; empty keys are refused; empty
  tag values are left out (InfluxDB refuses them).
- the series key (measurement and escaped tags) plus 4 bytes plus the field
  key may not exceed 65535 bytes; timestamps lie within ±(2**63 - 2) ns.
- newlines are refused everywhere: batches and the write-ahead log are
  newline-framed, so a line must stay one line.
- string fields are limited to 64 KiB, as InfluxDB documents (1.6 takes
  more, 2.x and 3.x do not); NaN and infinities have no spelling.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.schema import MEASUREMENTS, NODE_LABELS, OPTIMIZER_WRITTEN
from wattwise.errors import EncodeError

MIN_TIME_NS = -(2**63) + 2
MAX_TIME_NS = 2**63 - 2
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
MAX_STRING_FIELD_BYTES = 64 * 1024
MAX_SERIES_KEY_BYTES = 65535
_FIELD_KEY_OVERHEAD_BYTES = 4  # InfluxDB stores "<series key>#!~#<field key>"
RESERVED_KEYS = frozenset({"time"})

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
# A backslash InfluxDB would read as an escape: before one of these, or last.
_AMBIGUOUS_BACKSLASH = re.compile(r'\\(?:[,= "]|$)')
_UNSKIPPABLE_START = ("#", "\t")
_UNNAMEABLE = re.compile("[\n\r\x00]")


def _check_name(what: str, name: str, context: str) -> None:
    if not name:
        raise EncodeError(f"{context}: {what} is empty")
    if _UNNAMEABLE.search(name):
        raise EncodeError(
            f"{context}: {what} {name!r} contains a newline, carriage return or NUL "
            "(a line cannot hold a newline; InfluxQL cannot name any of them)"
        )
    if "\\" in name and _AMBIGUOUS_BACKSLASH.search(name):
        raise EncodeError(
            f"{context}: {what} {name!r} has a backslash at its end or before , = space or "
            '" which InfluxDB would read as an escape'
        )
    try:
        name.encode()
    except UnicodeEncodeError as e:
        raise EncodeError(f"{context}: {what} {name!r} is not valid unicode") from e


@lru_cache(maxsize=4096)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> tuple[str, int]:
    """The escaped ``measurement,tag=value…`` and the bytes left for a field key."""
    context = f"measurement {measurement!r}"
    _check_name("measurement", measurement, context)
    if measurement.startswith(_UNSKIPPABLE_START):
        raise EncodeError(f"{context}: cannot start with '#' or tab (InfluxDB skips them)")
    parts = [measurement.translate(_MEASUREMENT_ESCAPES)]
    for key, value in sorted(tags):
        _check_name("tag key", key, context)
        if key in RESERVED_KEYS:
            raise EncodeError(f"{context}: tag key {key!r} is reserved by InfluxDB")
        if value == "":
            continue  # InfluxDB refuses empty tag values: leave the tag out
        _check_name(f"value of tag {key!r}", value, context)
        parts.append(f"{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}")
    key_text = ",".join(parts)
    budget = MAX_SERIES_KEY_BYTES - _FIELD_KEY_OVERHEAD_BYTES - len(key_text.encode())
    if budget <= 0:
        raise EncodeError(f"{context}: series key exceeds {MAX_SERIES_KEY_BYTES} bytes")
    return key_text, budget


def _field_key(measurement: str, key: str) -> tuple[str, int]:
    """The escaped ``key=`` and its length in bytes."""
    context = f"measurement {measurement!r}"
    _check_name("field key", key, context)
    if key in RESERVED_KEYS:
        raise EncodeError(f"{context}: field key {key!r} is reserved by InfluxDB")
    if key.startswith("\t"):
        raise EncodeError(f"{context}: field key {key!r} starts with a tab (InfluxDB skips it)")
    escaped = key.translate(_KEY_ESCAPES)
    return escaped + "=", len(escaped.encode())


def check_label(key: str, value: str) -> None:
    """Raise :class:`EncodeError` unless ``key=value`` can tag every line a node writes.

    For the node's labels and host name, checked when the configuration is loaded:
    found only when encoding, every line of the node would be refused, every tick.
    Besides the encoder's own rules, a label may not take the name of a field (InfluxQL
    could no longer tell them apart) or of a tag the sources set (theirs would win).
    """
    context = f"label {key!r}"
    _check_name("tag key", key, context)
    if key in RESERVED_KEYS:
        raise EncodeError(f"{context}: {key!r} is reserved by InfluxDB")
    if key in _FIELD_NAMES:
        raise EncodeError(f"{context}: {key!r} is the name of a field")
    if key in _SOURCE_TAGS:
        raise EncodeError(f"{context}: {key!r} is a tag the sources set themselves")
    if value:
        _check_name("value", value, context)


_NODE_WRITTEN = [spec for name, spec in MEASUREMENTS.items() if name not in OPTIMIZER_WRITTEN]
_FIELD_NAMES = frozenset(key for spec in _NODE_WRITTEN for key in spec.fields)
_SOURCE_TAGS = frozenset(
    key for spec in _NODE_WRITTEN for key in spec.tags if key not in (*NODE_LABELS, "host")
)
"""Tags a source sets on its readings (``host`` is the node's own name)."""


def _refuse(measurement: str, key: str, value: object, why: str) -> EncodeError:
    return EncodeError(f"measurement {measurement!r}, field {key!r}, value {value!r}: {why}")


def _format_value(measurement: str, key: str, value: object, want: type | None) -> str:
    """The line-protocol text of one field value, following the schema's kind."""
    kind = type(value)
    if kind is float:
        if want is not None and want is not float:
            raise _refuse(measurement, key, value, f"schema says {want.__name__}, got float")
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _refuse(measurement, key, value, "not finite")
        return repr(value)
    if kind is int:
        if want is float:
            try:
                return repr(float(value))  # type: ignore[arg-type]
            except OverflowError as e:
                raise _refuse(measurement, key, value, "too large for a float") from e
        if want is not None and want is not int:
            raise _refuse(measurement, key, value, f"schema says {want.__name__}, got int")
        if not MIN_INT64 <= value <= MAX_INT64:  # type: ignore[operator]
            raise _refuse(measurement, key, value, "outside int64")
        return f"{value}i"
    if kind is bool:
        if want is not None:
            raise _refuse(measurement, key, value, f"schema says {want.__name__}, got bool")
        return "true" if value else "false"
    if kind is str:
        return _format_string(measurement, key, value, want)  # type: ignore[arg-type]
    return _format_value(measurement, key, _plain(measurement, key, value), want)


def _format_string(measurement: str, key: str, value: str, want: type | None) -> str:
    if want is not None and want is not str:
        raise _refuse(measurement, key, value, f"schema says {want.__name__}, got str")
    if "\n" in value:
        raise _refuse(measurement, key, value, "contains a newline")
    try:
        size = len(value.encode())
    except UnicodeEncodeError as e:
        raise _refuse(measurement, key, value, "not valid unicode") from e
    if size > MAX_STRING_FIELD_BYTES:
        raise _refuse(measurement, key, value[:40], f"string of {size} bytes exceeds 64 KiB")
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _plain(measurement: str, key: str, value: object) -> FieldValue:
    """A builtin value for a subclass or numpy scalar; refuse anything else."""
    if isinstance(value, bool | str):
        return bool(value) if isinstance(value, bool) else str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise _refuse(measurement, key, value, f"unsupported type {type(value).__name__}")


# What the encoder knows about one field key of one series, worked out once:
# (key, escaped "key=", a float goes out as is, an int goes out as is,
#  the schema's kind, why the key cannot be written or None).
_FieldPlan = tuple[str, str, bool, bool, type | None, str | None]


@lru_cache(maxsize=64)
def _field_kinds(measurement: str) -> dict[str, type]:
    spec = MEASUREMENTS.get(measurement)
    return {} if spec is None else {key: f.kind for key, f in spec.fields.items()}


def _plan_field(
    measurement: str, key: str, want: type | None, budget: int, tag_keys: set[str]
) -> _FieldPlan:
    try:
        text, key_bytes = _field_key(measurement, key)
    except EncodeError as e:
        return key, "", False, False, want, str(e)
    problem = None
    if key_bytes > budget:
        problem = f"measurement {measurement!r}: series key with field {key!r} too long"
    elif key in tag_keys:  # InfluxDB takes it, but InfluxQL can no longer tell them apart
        problem = f"measurement {measurement!r}: {key!r} is both a tag and a field"
    ok = problem is None
    return key, text, ok and want in (None, float), ok and want in (None, int), want, problem


@lru_cache(maxsize=4096)
def _line_plan(
    measurement: str, tags: tuple[tuple[str, str], ...], field_keys: tuple[str, ...]
) -> tuple[str, tuple[_FieldPlan, ...]]:
    """The escaped series key and a plan per field key, cached per series and field set."""
    series, budget = _series_key(measurement, tags)
    tag_keys = {key for key, value in tags if value != ""}
    wants = _field_kinds(measurement)
    plans = tuple(
        _plan_field(measurement, key, wants.get(key), budget, tag_keys) for key in field_keys
    )
    return series, plans


def encode(reading: Reading) -> bytes | None:
    """One line of line protocol (no newline), or ``None`` when no field is present."""
    fields = reading.fields
    series, plans = _line_plan(reading.measurement, tuple(reading.tags.items()), tuple(fields))
    parts: list[str] = []
    append = parts.append
    for (key, text, float_as_is, int_as_is, want, problem), value in zip(
        plans, fields.values(), strict=True
    ):
        if value is None:
            continue
        kind = type(value)
        # Fast paths for the common case; value - value is 0.0 only for finite floats.
        if kind is float and float_as_is and value - value == 0.0:  # type: ignore[operator]
            append(text + repr(value))
        elif kind is int and int_as_is and MIN_INT64 <= value <= MAX_INT64:  # type: ignore[operator]
            append(f"{text}{value}i")
        elif problem is not None:
            raise EncodeError(problem)
        else:
            append(text + _format_value(reading.measurement, key, value, want))
    if not parts:
        return None
    time_ns = reading.time_ns
    if type(time_ns) is not int or not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
        raise EncodeError(
            f"measurement {reading.measurement!r}: timestamp {time_ns!r} out of range"
        )
    return f"{series} {','.join(parts)} {time_ns}".encode()


def encode_many(readings: Iterable[Reading]) -> list[bytes]:
    """Every reading with at least one present field, encoded."""
    return [line for line in map(encode, readings) if line is not None]


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One line of line protocol, unescaped."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


_NAME_UNESCAPE = re.compile(r'\\([,= "])')  # measurement and field keys
_TAG_UNESCAPE = re.compile(r"\\([,= ])")  # tag keys and values keep \"
_STRING_UNESCAPE = re.compile(r'\\([\\"])')
_STRING_VALUE = re.compile(r'"(?:\\.|[^\\"])*"', re.DOTALL)
_INT_VALUE = re.compile(r"-?[0-9]+i")
_FLOAT_VALUE = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TIMESTAMP = re.compile(r"-?[0-9]+")
_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True}
_BOOLS |= {"f": False, "F": False, "false": False, "False": False, "FALSE": False}


def _split(text: str, sep: str, *, quotes: bool, maxsplit: int = -1) -> list[str]:
    """``text`` cut at each ``sep`` that is not escaped (nor quoted, with ``quotes``)."""
    if "\\" not in text and not (quotes and '"' in text):
        return text.split(sep, maxsplit)
    pieces: list[str] = []
    begin = i = 0
    quoted = after_equals = False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            after_equals = False
            continue
        if quotes and char == '"' and (quoted or after_equals):  # as InfluxDB: only values
            quoted = not quoted
        elif char == sep and not quoted and maxsplit != len(pieces):
            pieces.append(text[begin:i])
            begin = i + 1
        after_equals = char == "=" and not quoted
        i += 1
    if quoted:
        raise ValueError("unbalanced quotes")
    pieces.append(text[begin:])
    return pieces


def _parse_value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        if not _STRING_VALUE.fullmatch(raw):
            raise ValueError(f"bad string {raw!r}")
        return _STRING_UNESCAPE.sub(r"\1", raw[1:-1])
    if raw in _BOOLS:
        return _BOOLS[raw]
    if _INT_VALUE.fullmatch(raw):
        value = int(raw[:-1])
        if not MIN_INT64 <= value <= MAX_INT64:
            raise ValueError(f"integer {raw!r} outside int64")
        return value
    if _FLOAT_VALUE.fullmatch(raw):
        number = float(raw)
        if math.isfinite(number):
            return number
    raise ValueError(f"bad value {raw!r}")


def _parse_pairs(pieces: list[str], what: str, unescape: re.Pattern[str]) -> list[tuple[str, str]]:
    pairs = []
    for piece in pieces:
        key_value = _split(piece, "=", quotes=False, maxsplit=1)
        if len(key_value) != 2 or not key_value[0] or not key_value[1]:
            raise ValueError(f"{what} {piece!r} is not key=value")
        pairs.append((unescape.sub(r"\1", key_value[0]), key_value[1]))
    return pairs


def parse_line(line: bytes) -> ParsedLine:
    """The measurement, tags, fields and timestamp of one line; EncodeError says what is wrong."""
    try:
        text = line.decode()
    except UnicodeDecodeError as e:
        raise EncodeError(f"line {line[:80]!r}: not UTF-8 at byte {e.start}") from e
    try:
        return _parse_text(text)
    except ValueError as e:
        raise EncodeError(f"line {text[:80]!r}: {e}") from e


def _cut_at_space(text: str, *, quotes: bool) -> tuple[str, str]:
    pieces = _split(text, " ", quotes=quotes, maxsplit=1)
    return pieces[0], pieces[1] if len(pieces) == 2 else ""


def _parse_text(text: str) -> ParsedLine:
    if "\n" in text:
        raise ValueError("contains a newline")
    key_section, rest = _cut_at_space(text, quotes=False)
    series = _split(key_section, ",", quotes=False)
    if not series[0]:
        raise ValueError("missing measurement")
    tags = {
        key: _TAG_UNESCAPE.sub(r"\1", value)
        for key, value in _parse_pairs(series[1:], "tag", _TAG_UNESCAPE)
    }
    if len(tags) != len(series) - 1:
        raise ValueError("duplicate tag keys")
    field_section, time_text = _cut_at_space(rest, quotes=True)
    if not field_section:
        raise ValueError("missing fields")
    fields = {
        key: _parse_value(raw)
        for key, raw in _parse_pairs(
            _split(field_section, ",", quotes=True), "field", _NAME_UNESCAPE
        )
    }
    if not _TIMESTAMP.fullmatch(time_text):
        raise ValueError(f"missing or bad timestamp {time_text!r}")
    time_ns = int(time_text)
    if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
        raise ValueError(f"timestamp {time_ns} out of range")
    return ParsedLine(_NAME_UNESCAPE.sub(r"\1", series[0]), tags, fields, time_ns)
