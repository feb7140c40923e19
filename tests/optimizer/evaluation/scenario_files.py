"""Scenarios written from TOML text, as an operator's file would be, for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

from wattwise.optimizer.evaluation.scenario import Scenario, load_scenario


def scenario_from_toml(directory: Path, name: str, text: str) -> Scenario:
    """Write ``text`` to ``directory/name.toml`` and load it through the real loader."""
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)
