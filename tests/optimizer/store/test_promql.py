"""PromQL text: matchers that select exactly the values asked for, and the standard
deviation that the other stores give, on a real VictoriaMetrics."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.collector.base import Reading
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.store.frames import Column
from wattwise.optimizer.store.promql import (
    column_expression,
    equal_to_one_of,
    selector,
    selectors_in_query,
    string,
)
from wattwise.optimizer.store.vocabulary import Source

HOSTS = ("node 1", "node.2", "node-3(a)", "n|4", 'q"5', "back\\slash", "node12")
T_NS = 1_700_000_000 * 1_000_000_000


def test_matchers_select_awkward_values_literally(tmp_path: Path) -> None:
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        readings = [Reading("gpu", {"host": h, "gpu": "0"}, {"power_w": 1.0}, T_NS) for h in HOSTS]
        server.write(encode_many(readings))

        def hosts(matcher: str) -> set[str]:
            found = server.query(selector("gpu_power_w", [matcher]), T_NS / 1e9)
            return {r["metric"]["host"] for r in found}

        assert hosts(equal_to_one_of("host", ["node.2", "node 1", "n|4"])) == {
            "node.2",
            "node 1",
            "n|4",
        }  # "node.2" is not a pattern that also takes "node12"
        assert hosts(equal_to_one_of("host", ['q"5'])) == {'q"5'}
        assert hosts(equal_to_one_of("host", ["back\\slash", "node-3(a)"])) == {
            "back\\slash",
            "node-3(a)",
        }
    finally:
        server.stop()


def test_strings_escape_quotes_and_backslashes() -> None:
    assert string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_the_power_spread_is_the_sample_standard_deviation_of_each_window() -> None:
    column = Column("power_sd_w", "power_w", "stddev")
    expression = column_expression(
        column,
        (Source("gpu_power_w"),),
        group_by=("host", "gpu"),
        matchers=('host="n1"',),
        range_ms=60_000,
        offset_ms=1,
        resolution_ms=1_000,
    )
    window = 'gpu_power_w{host="n1"}[60000ms] offset 1ms'
    assert expression == (
        f"avg by (host, gpu) (stddev_over_time({window})"
        f" * sqrt(1 + 1 / (count_over_time({window}) - 1 > 0)))"
    )
    assert selectors_in_query(column, (Source("gpu_power_w"),)) == 2
    energy = Column("energy_j", "energy_j", "sum")
    gauge_or_counter = (Source("gpu_energy_j"), Source("gpu_energy_joules_total", "counter"))
    assert selectors_in_query(energy, gauge_or_counter) == 2
    assert selectors_in_query(Column("power_w", "power_w", "mean"), (Source("x"),)) == 1
    # no stddev of a counter: the column is missing, not a query error
    assert (
        column_expression(
            column,
            (Source("power_total", "counter"),),
            group_by=("host",),
            matchers=(),
            range_ms=60_000,
            offset_ms=0,
            resolution_ms=1_000,
        )
        is None
    )


def test_stddev_over_time_needs_the_sample_correction_on_a_real_victoriametrics(
    tmp_path: Path,
) -> None:
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        powers = (300.0, 310.0, 290.0, 320.0)
        readings = [
            Reading("gpu", {"host": "n1", "gpu": "0"}, {"power_w": p}, T_NS + i * 10**9)
            for i, p in enumerate(powers)
        ]
        server.write(encode_many(readings))
        server.flush()
        at = T_NS / 1e9 + 10
        series = selector("gpu_power_w", ['host="n1"'])
        (population,) = server.query(f"stddev_over_time({series}[20s])", at)
        (sample,) = server.query(
            column_expression(
                Column("power_sd_w", "power_w", "stddev"),
                (Source("gpu_power_w"),),
                group_by=("host", "gpu"),
                matchers=['host="n1"'],
                range_ms=20_000,
                offset_ms=0,
                resolution_ms=1_000,
            )
            or "",
            at,
        )
        one = column_expression(
            Column("power_sd_w", "power_w", "stddev"),
            (Source("gpu_power_w"),),
            group_by=("host", "gpu"),
            matchers=['host="n1"'],
            range_ms=1_500,  # the last sample alone
            offset_ms=0,
            resolution_ms=1_000,
        )
        alone = server.query(one or "", T_NS / 1e9 + 3.5)
    finally:
        server.stop()
    assert float(population["value"][1]) == pytest.approx(statistics.pstdev(powers), rel=1e-12)
    assert float(sample["value"][1]) == pytest.approx(statistics.stdev(powers), rel=1e-12)
    assert alone == []  # one sample: no spread, as InfluxDB answers null
