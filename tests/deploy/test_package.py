"""The package: a plain install is the node agent, and the agent imports nothing more.

The fresh-virtualenv install of the wheel itself is exercised by
``test_install_script.py``, which also checks what lands in site-packages.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from tests.deploy.conftest import BuiltWheel

HEAVY = {"numpy", "scipy", "scikit-learn", "matplotlib", "fastapi", "uvicorn", "apscheduler"}
"""What the optimizer, the report and the demo need and a GPU node must not carry."""

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(dist: str, *, extras: bool = False) -> set[str]:
    """Names ``dist`` requires; requirements of its extras only with ``extras``."""
    names = set()
    for requirement in metadata.requires(dist) or []:
        if "extra ==" in requirement and not extras:
            continue
        match = _NAME.match(requirement)
        assert match, requirement
        names.add(_canonical(match.group(1)))
    return names


def _closure(dist: str) -> set[str]:
    """``dist`` and everything a plain install of it pulls in (markers taken as true)."""
    seen: set[str] = set()
    todo = [_canonical(dist)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        # A marker-only requirement (another platform or Python) may not be installed here.
        with contextlib.suppress(metadata.PackageNotFoundError):
            todo.extend(_requirements(name))
    return seen


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


def test_the_wheel_builds_without_setuptools_warnings(built_wheel: BuiltWheel) -> None:
    # Regression: the licence table printed setuptools' deprecation warning three times.
    assert "SetuptoolsDeprecationWarning" not in built_wheel.build_log
    assert "License-Expression: Apache-2.0" in _metadata(built_wheel.path)


def test_a_plain_install_requires_only_the_agents_dependencies(built_wheel: BuiltWheel) -> None:
    plain = {
        _canonical(_NAME.match(line.removeprefix("Requires-Dist:")).group(1))  # type: ignore[union-attr]
        for line in _metadata(built_wheel.path).splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert plain == {
        "nvidia-ml-py", "psutil", "httpx", "pydantic", "typer", "rich", "prometheus-client"
    }  # fmt: skip
    assert not HEAVY & _closure("wattwise"), "a plain install pulls in the optimizer's stack"


def test_the_optimizer_report_and_demo_extras_bring_what_they_use() -> None:
    extras = _requirements("wattwise", extras=True)
    assert {"numpy", "scikit-learn", "fastapi", "uvicorn", "matplotlib"} <= extras


AGENT_RUN = """
import atexit, json, sys
from wattwise.cli import main
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules))))
sys.exit(main(sys.argv[1:]))
"""
HEAVY_MODULES = {"numpy", "scipy", "sklearn", "matplotlib", "fastapi", "uvicorn", "apscheduler"}


def test_a_running_agent_imports_none_of_the_optimizers_stack(tmp_path: Path) -> None:
    # The agent as a node runs it: NVML (absent here), host stats, a Redfish BMC, the
    # WAL and the embedded store, until SIGTERM; here every extra is installed, and
    # still none is imported. (test_install_script.py runs it where none is installed.)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nsource = "nvml"\n'
        f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path / "store.sqlite"}"\n'
        f'[wal]\ndir = "{tmp_path / "wal"}"\n'
        '[bmc]\nkind = "redfish"\nurl = "http://127.0.0.1:9"\n'
    )
    argv = [sys.executable, "-c", AGENT_RUN, "agent", "run", "--config", str(config)]
    agent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert agent.stderr is not None
    for line in agent.stderr:
        if "agent started" in line:
            break
    agent.send_signal(signal.SIGTERM)
    stdout, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0, stderr
    modules = {m.split(".")[0] for m in json.loads(stdout.split("MODULES ", 1)[1])}
    assert {"psutil", "httpx", "pydantic", "sqlite3"} <= modules  # it saw the real run
    assert not HEAVY_MODULES & modules
