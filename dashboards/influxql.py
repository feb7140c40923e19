"""A small InfluxQL parser: enough to prove a dashboard's queries well-formed and named right.

It covers what dashboards and alert rules use: ``SELECT … FROM (measurement |
subquery) [WHERE …] [GROUP BY time(…), tags] [fill(…)] [ORDER BY time …]
[LIMIT n] [SLIMIT n]`` and ``SHOW TAG VALUES FROM m WITH KEY = k [WHERE …]``.
It records which identifiers each clause names, so :func:`check_names` can hold
them against ``collector/schema.py``. Grafana's macros and variables are
substituted first by :func:`substitute`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from wattwise.collector.base import MeasurementSpec


class QueryError(ValueError):
    """The query is not InfluxQL this parser accepts; the message says where."""


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<qident>"(?:[^"\\]|\\.)*")
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<duration>\d+(?:ns|ms|u|µ|s|m|h|d|w)(?![A-Za-z0-9_]))
    |(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>=~|!~|!=|<>|<=|>=|::|[-+*/%&|^=<>(),.;])""",
    re.VERBOSE,
)
_REGEX = re.compile(r"/(?:[^/\\]|\\.)*/")

FUNCTIONS = frozenset(
    [
        "count",
        "distinct",
        "integral",
        "mean",
        "median",
        "mode",
        "spread",
        "stddev",
        "sum",
        "bottom",
        "first",
        "last",
        "max",
        "min",
        "percentile",
        "sample",
        "top",
        "abs",
        "acos",
        "asin",
        "atan",
        "atan2",
        "ceil",
        "cos",
        "cumulative_sum",
        "derivative",
        "difference",
        "elapsed",
        "exp",
        "floor",
        "ln",
        "log",
        "log2",
        "log10",
        "moving_average",
        "non_negative_derivative",
        "non_negative_difference",
        "pow",
        "round",
        "sin",
        "sqrt",
        "tan",
        "now",
    ]
)
_BINARY_PRECEDENCE = {
    "or": 1,
    "and": 2,
    **dict.fromkeys(("=", "!=", "<>", "<", "<=", ">", ">=", "=~", "!~"), 3),
    **dict.fromkeys(("|", "^"), 4),
    "&": 5,
    **dict.fromkeys(("+", "-"), 6),
    **dict.fromkeys(("*", "/", "%"), 7),
}
_CLAUSE_END = frozenset(("from", "where", "group", "fill", "order", "limit", "slimit", "offset"))


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "ident" else self.text


@dataclass
class Select:
    """One SELECT: its source and the names each clause refers to."""

    source: str | Select
    field_refs: set[str] = field(default_factory=set)
    where_refs: set[str] = field(default_factory=set)
    group_tags: list[str] = field(default_factory=list)
    group_time: str | None = None
    columns: set[str] = field(default_factory=set)

    @property
    def measurement(self) -> str:
        return self.source if isinstance(self.source, str) else self.source.measurement


@dataclass
class ShowTagValues:
    measurement: str
    keys: list[str]
    where_refs: set[str] = field(default_factory=set)


Statement = Select | ShowTagValues


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if tokens and tokens[-1].text in ("=~", "!~"):
            pos += len(text[pos:]) - len(text[pos:].lstrip())
            regex = _REGEX.match(text, pos)
            if regex is None:
                raise QueryError(f"expected /regex/ at {pos}: {text[pos : pos + 20]!r}")
            tokens.append(Token("regex", regex.group()))
            pos = regex.end()
            continue
        match = _TOKEN.match(text, pos)
        if match is None:
            raise QueryError(f"unexpected character at {pos}: {text[pos : pos + 20]!r}")
        kind, value = match.lastgroup or "", match.group()
        if kind == "qident":
            value = value[1:-1].replace('\\"', '"')
        if kind != "ws":
            tokens.append(Token(kind, value))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token | None:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError("query ends too early")
        self.pos += 1
        return token

    def accept(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind in ("ident", "op") and token.word == word:
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            found = self.peek()
            raise QueryError(f"expected {word.upper()}, found {found.text if found else 'end'}")

    def name(self) -> str:
        token = self.next()
        if token.kind not in ("ident", "qident"):
            raise QueryError(f"expected a name, found {token.text!r}")
        return token.text

    def statement(self) -> Statement:
        if self.accept("show"):
            result: Statement = self.show_tag_values()
        else:
            result = self.select()
        self.accept(";")
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.next().text!r} after the statement")
        return result

    def show_tag_values(self) -> ShowTagValues:
        self.expect("tag")
        self.expect("values")
        self.expect("from")
        show = ShowTagValues(self.measurement_name(), [])
        self.expect("with")
        self.expect("key")
        if self.accept("in"):
            self.expect("(")
            show.keys.append(self.name())
            while self.accept(","):
                show.keys.append(self.name())
            self.expect(")")
        else:
            self.expect("=")
            show.keys.append(self.name())
        if self.accept("where"):
            self.expression(show.where_refs)
        return show

    def select(self) -> Select:
        self.expect("select")
        refs: set[str] = set()
        columns = {self.select_field(refs)}
        while self.accept(","):
            columns.add(self.select_field(refs))
        self.expect("from")
        if self.accept("("):
            source: str | Select = self.select()
            self.expect(")")
        else:
            source = self.measurement_name()
        stmt = Select(source, field_refs=refs, columns={c for c in columns if c})
        if self.accept("where"):
            self.expression(stmt.where_refs)
        if self.accept("group"):
            self.expect("by")
            self.dimensions(stmt)
        self.trailing_clauses()
        return stmt

    def select_field(self, refs: set[str]) -> str:
        column = self.expression(refs)
        if self.accept("as"):
            column = self.name()
        return column

    def measurement_name(self) -> str:
        parts = [self.name()]
        while self.accept("."):
            parts.append(self.name())
        return parts[-1]

    def dimensions(self, stmt: Select) -> None:
        while True:
            token = self.peek()
            if token is not None and token.word == "time" and (self.peek(1) or token).text == "(":
                self.pos += 2
                stmt.group_time = self.next().text
                if self.accept(","):
                    self.next()
                self.expect(")")
            else:
                stmt.group_tags.append(self.name())
            if not self.accept(","):
                return

    def trailing_clauses(self) -> None:
        if self.accept("fill"):
            self.expect("(")
            self.next()
            self.expect(")")
        if self.accept("order"):
            self.expect("by")
            self.expect("time")
            self.accept("asc") or self.accept("desc")
        for word in ("limit", "offset", "slimit", "soffset"):
            if self.accept(word) and self.next().kind != "number":
                raise QueryError(f"{word.upper()} needs a number")
        if self.accept("tz"):
            self.expect("(")
            self.next()
            self.expect(")")

    def expression(self, refs: set[str], min_precedence: int = 1) -> str:
        column = self.operand(refs)
        while True:
            token = self.peek()
            if token is None or token.kind not in ("op", "ident"):
                return column
            precedence = _BINARY_PRECEDENCE.get(token.word)
            if precedence is None or precedence < min_precedence:
                return column
            self.pos += 1
            self.expression(refs, precedence + 1)
            column = ""

    def operand(self, refs: set[str]) -> str:
        token = self.next()
        if token.text == "-" and token.kind == "op":
            self.operand(refs)
            return ""
        if token.text == "(":
            self.expression(refs)
            self.expect(")")
            return ""
        if token.kind in ("number", "duration", "string", "regex") or token.text == "*":
            return ""
        if token.kind == "ident" and (self.peek() or token).text == "(":
            return self.call(token, refs)
        if token.kind in ("ident", "qident"):
            if token.kind == "ident" and token.word in _CLAUSE_END | {"as"}:
                raise QueryError(f"expected a value, found {token.text.upper()}")
            if self.accept("::"):
                self.name()
            refs.add(token.text)
            return token.text
        raise QueryError(f"unexpected {token.text!r}")

    def call(self, function: Token, refs: set[str]) -> str:
        if function.word not in FUNCTIONS:
            raise QueryError(f"unknown function {function.text}()")
        self.expect("(")
        if not self.accept(")"):
            self.expression(refs)
            while self.accept(","):
                self.expression(refs)
            self.expect(")")
        return function.word


def parse(query: str) -> Statement:
    """Parse one InfluxQL statement (macros already substituted)."""
    return _Parser(tokenize(query)).statement()


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(
    query: str,
    variables: Mapping[str, str],
    *,
    time_filter: str,
    interval: str,
    range_ms: tuple[int, int] | None = None,
) -> str:
    """Expand Grafana's macros and template variables; an unknown variable raises.

    ``range_ms`` is the dashboard's range, (from, to) in epoch milliseconds: what Grafana's
    global ``${__from}`` and ``${__to}`` stand for. Without it they are unknown variables."""
    macros = {"timeFilter": time_filter, "__interval": interval, "interval": interval}
    if range_ms is not None:
        from_ms, to_ms = range_ms
        macros.update(__from=str(from_ms), __to=str(to_ms))

    def one(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in macros:
            return macros[name]
        if name in variables:
            return variables[name]
        raise QueryError(f"unknown variable ${name}")

    return _VARIABLE.sub(one, query)


def check_names(statement: Statement, schema: Mapping[str, MeasurementSpec]) -> list[str]:
    """Names the statement uses that the schema (or its subquery) does not have."""
    if isinstance(statement, ShowTagValues):
        spec = schema.get(statement.measurement)
        if spec is None:
            return [f"unknown measurement {statement.measurement!r}"]
        names = set(spec.tags) | set(spec.fields)
        bad = [f"unknown tag {k!r} in {statement.measurement}" for k in statement.keys]
        return [p for k, p in zip(statement.keys, bad, strict=True) if k not in spec.tags] + [
            f"unknown name {n!r} in {statement.measurement}"
            for n in sorted(statement.where_refs - names)
        ]
    return _check_select(statement, schema)


def _check_select(stmt: Select, schema: Mapping[str, MeasurementSpec]) -> list[str]:
    if isinstance(stmt.source, Select):
        problems = _check_select(stmt.source, schema)
        tags, values, where = set(stmt.source.group_tags), stmt.source.columns, "subquery"
    else:
        spec = schema.get(stmt.source)
        if spec is None:
            return [f"unknown measurement {stmt.source!r}"]
        problems, tags, values, where = [], set(spec.tags), set(spec.fields), stmt.source
    problems += [f"unknown field {n!r} in {where}" for n in sorted(stmt.field_refs - values - tags)]
    problems += [
        f"unknown name {n!r} in WHERE of {where}"
        for n in sorted(stmt.where_refs - values - tags - {"time"})
    ]
    problems += [
        f"unknown tag {n!r} in GROUP BY of {where}" for n in stmt.group_tags if n not in tags
    ]
    return problems
