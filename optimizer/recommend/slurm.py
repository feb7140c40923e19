"""Slurm host lists: ``nodelist(["node01", "node02", "node03", "gpu7"])`` → ``node[01-03],gpu7``,
the compressed form ``sbatch --nodelist`` and ``scontrol show hostnames`` understand."""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def nodelist(hosts: Iterable[str]) -> str:
    """Compress host names sharing a prefix and a digit width into bracketed ranges.

    Zero padding is part of a name (``n01`` ≠ ``n1``), so numbers are only merged when
    their width matches; order of first appearance of each prefix is kept.
    """
    groups: dict[tuple[str, int], list[int]] = {}
    plain: list[str] = []
    order: list[tuple[str, int] | str] = []
    for host in dict.fromkeys(hosts):
        match = _NUMBERED.match(host)
        if match is None:
            plain.append(host)
            order.append(host)
            continue
        key = (match.group(1), len(match.group(2)))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(match.group(2)))
    return ",".join(_render(item, groups) for item in order)


def _render(item: tuple[str, int] | str, groups: dict[tuple[str, int], list[int]]) -> str:
    if isinstance(item, str):
        return item
    prefix, width = item
    numbers = sorted(set(groups[item]))
    if len(numbers) == 1:
        return f"{prefix}{numbers[0]:0{width}d}"
    return f"{prefix}[{','.join(_ranges(numbers, width))}]"


def _ranges(numbers: list[int], width: int) -> list[str]:
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        text = f"{start:0{width}d}"
        out.append(text if start == prev else f"{text}-{prev:0{width}d}")
        if n is not None:
            start = prev = n
    return out
