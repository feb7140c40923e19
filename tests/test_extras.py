"""A command whose extra is not installed says which extra, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wattwise.extras import extra_for

WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
from wattwise.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", WITHOUT, modules, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("missing", "args", "extra"),
    [
        ("numpy", ("recommend", "caps"), "optimizer"),
        ("fastapi", ("optimizer", "serve"), "optimizer"),
        ("numpy", ("demo", "--duration", "0"), "demo"),
        ("grafana_client,yaml", ("dashboards", "lint"), "dashboards"),
        ("numpy", ("agent", "probe", "--source", "sim", "--config", "/dev/null"), "sim"),
    ],
)
def test_a_command_without_its_extra_names_the_extra_instead_of_a_traceback(
    missing: str, args: tuple[str, ...], extra: str
) -> None:
    result = _run_without(missing, *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"needs wattwise's '{extra}' extra" in line
    assert f"pip install 'wattwise[{extra}]'" in line


def test_the_agent_runs_without_any_extra() -> None:
    result = _run_without(
        "numpy,sklearn,scipy,matplotlib,fastapi,uvicorn,apscheduler,yaml,grafana_client",
        "agent", "probe", "--source", "nvml", "--json", "--config", "/dev/null",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"source": "host"' in result.stdout


def test_extra_for_prefers_the_commands_own_extra() -> None:
    assert extra_for("numpy.linalg", "report") == "report"
    assert extra_for("numpy") == "sim"
    assert extra_for("matplotlib.pyplot") == "report"
    assert extra_for("no_such_library", "optimizer") is None
