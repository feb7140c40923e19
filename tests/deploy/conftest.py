from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.systemd_tools import REPO


@dataclass(frozen=True)
class BuiltWheel:
    path: Path
    build_log: str
    """What pip and the build backend printed (``pip wheel -v``)."""


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """The wheel built from this checkout, as ``make wheel`` builds it for operators."""
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(REPO)]
    done = subprocess.run(pip, check=True, capture_output=True, text=True, timeout=300)
    (path,) = out.glob("wattwise-*.whl")
    return BuiltWheel(path, done.stdout + done.stderr)


@pytest.fixture(scope="session")
def wheel(built_wheel: BuiltWheel) -> Path:
    return built_wheel.path
