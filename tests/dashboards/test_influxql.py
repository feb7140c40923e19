from __future__ import annotations

import pytest

from wattwise.collector.schema import MEASUREMENTS
from wattwise.dashboards.influxql import QueryError, Select, check_names, parse, substitute


def test_subquery_columns_are_what_the_outer_query_may_name() -> None:
    inner = 'SELECT mean("power_w") AS "v" FROM "gpu" GROUP BY "host"'
    q = f'SELECT sum("v") FROM ({inner}) GROUP BY "host"'
    assert check_names(parse(q), MEASUREMENTS) == []
    wrong = q.replace('sum("v")', 'sum("power_w")')
    assert check_names(parse(wrong), MEASUREMENTS) == ["unknown field 'power_w' in subquery"]


def test_regex_after_match_operator_and_durations_parse() -> None:
    statement = parse('SELECT max("temp_c") FROM gpu WHERE "host" =~ /^a|b$/ AND time > now() - 5m')
    assert isinstance(statement, Select) and statement.where_refs == {"host", "time"}


@pytest.mark.parametrize(
    "query",
    [
        "SELECT FROM gpu",
        'SELECT mean("x" FROM gpu',
        'SELECT bogus("x") FROM gpu',
        'SELECT "x" FROM gpu GROUP BY',
        'SELECT "x" FROM gpu LIMIT many',
        'SELECT "x" FROM gpu WHERE "h" =~ host',
    ],
)
def test_malformed_queries_are_refused(query: str) -> None:
    with pytest.raises(QueryError):
        parse(query)


def test_substitute_expands_macros_and_variables_and_refuses_unknown_ones() -> None:
    text = substitute(
        'WHERE $timeFilter AND "h" =~ /^${host}$/ GROUP BY time($__interval), [[g]]',
        {"host": "a", "g": "rack"},
        time_filter="time > 0",
        interval="10s",
    )
    assert text == 'WHERE time > 0 AND "h" =~ /^a$/ GROUP BY time(10s), rack'
    with pytest.raises(QueryError, match=r"\$nope"):
        substitute("$nope", {}, time_filter="", interval="")


def test_range_ends_are_epoch_ms_and_an_unknown_range_is_refused() -> None:
    where = 'time >= ${__from}ms - 366d AND time <= ${__to}ms AND "end_ms" >= $__from'
    text = substitute(where, {}, time_filter="", interval="", range_ms=(1000, 2000))
    assert text == 'time >= 1000ms - 366d AND time <= 2000ms AND "end_ms" >= 1000'
    statement = parse(f'SELECT "text" FROM "power_event" WHERE {text}')
    assert isinstance(statement, Select) and statement.where_refs == {"time", "end_ms"}
    with pytest.raises(QueryError, match=r"\$__from"):
        substitute(where, {}, time_filter="", interval="")
