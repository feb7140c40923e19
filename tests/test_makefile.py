"""The Makefile's entry points install what each needs, and `make clean` leaves no data."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _planned(target: str, venv: Path) -> list[str]:
    """The commands ``make TARGET`` would run for a fresh virtualenv (``make -n``)."""
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_make_demo_installs_the_demo_extra_not_the_development_tools(tmp_path: Path) -> None:
    installs = [line for line in _planned("demo", tmp_path / "venv") if "pip install" in line]
    assert any("-e '.[demo]'" in line for line in installs), installs
    assert not any("[dev]" in line for line in installs)


def test_make_test_installs_the_development_extra(tmp_path: Path) -> None:
    installs = [line for line in _planned("test", tmp_path / "venv") if "pip install" in line]
    assert any("-e '.[dev]'" in line for line in installs), installs


def test_make_clean_removes_the_demos_data_and_built_wheels(tmp_path: Path) -> None:
    (removal,) = [line for line in _planned("clean", tmp_path / "venv") if "rm -rf" in line]
    assert {"demo-data", "dist", str(tmp_path / "venv")} <= set(removal.split())


def test_make_wheel_builds_without_dependencies_into_dist(tmp_path: Path) -> None:
    (build,) = [line for line in _planned("wheel", tmp_path / "venv") if " wheel " in line]
    assert "--no-deps" in build and "--wheel-dir dist" in build
