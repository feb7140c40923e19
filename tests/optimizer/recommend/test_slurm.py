"""Slurm host-list compression."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from wattwise.optimizer.recommend.slurm import nodelist


def test_consecutive_padded_hosts_become_one_range_and_singles_stay() -> None:
    assert nodelist(["node01", "node02", "node03", "gpu7"]) == "node[01-03],gpu7"


def test_gaps_split_ranges_and_duplicates_collapse() -> None:
    hosts = ["n1", "n2", "n4", "n2", "n5", "n6", "n9"]
    assert nodelist(hosts) == "n[1-2,4-6,9]"


def test_different_padding_is_not_merged() -> None:
    assert nodelist(["n01", "n1", "n02"]) == "n[01-02],n1"


def test_names_without_numbers_and_sim_hosts() -> None:
    assert nodelist(["login", "sim-r01-n03", "sim-r01-n04"]) == "login,sim-r01-n[03-04]"


def _expand(text: str) -> list[str]:
    """Inverse of nodelist for checking: expand ``pre[01-03,7]`` groups."""
    out = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", text):
        match = re.match(r"^(.*)\[(.*)\]$", part)
        if match is None:
            out.append(part)
            continue
        prefix, body = match.groups()
        for piece in body.split(","):
            lo, _, hi = piece.partition("-")
            for n in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{n:0{len(lo)}d}")
    return out


@settings(max_examples=60)
@given(
    st.lists(st.tuples(st.sampled_from(["node", "gpu", "a-b"]), st.integers(0, 40)), max_size=30)
)
def test_expanding_the_list_gives_back_every_host(pairs: list[tuple[str, int]]) -> None:
    hosts = [f"{p}{n:02d}" for p, n in pairs]
    assert sorted(_expand(nodelist(hosts))) == sorted(set(hosts))
