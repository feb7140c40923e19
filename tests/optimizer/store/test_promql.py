"""PromQL text: matchers that select exactly the values asked for, on a real VictoriaMetrics."""

from __future__ import annotations

from pathlib import Path

from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.collector.base import Reading
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.store.promql import equal_to_one_of, selector, string

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
