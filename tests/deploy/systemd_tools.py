"""Run systemd's own checks on a unit file inside a scratch root.

``systemd-analyze verify`` checks that ExecStart= names an executable file and
that the default dependencies exist. Instead of editing the unit to pass, the
unit is verified unchanged inside ``--root``: the root gets the system's unit
directory and a stub at the exact ExecStart= path.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIPPED_UNIT = REPO / "deploy" / "systemd" / "wattwise-agent.service"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
UNIT_NAME = "wattwise-agent.service"


def exec_start_program(unit_text: str) -> Path:
    """The program the unit's ExecStart= line runs."""
    match = re.search(r"^ExecStart=(.+)$", unit_text, re.MULTILINE)
    assert match, "the unit has no ExecStart= line"
    return Path(shlex.split(match.group(1))[0])


def prepare_root(root: Path) -> Path:
    """Give ``root`` the system's units (sysinit.target, …) that verify resolves."""
    target = root / SYSTEM_UNITS.relative_to("/")
    if not target.exists():
        shutil.copytree(SYSTEM_UNITS, target, symlinks=True)
    return root


def directives(unit_text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` line of the unit, values in order of appearance."""
    found: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def install_unit(root: Path, unit_text: str, unit_name: str = UNIT_NAME) -> Path:
    """Place ``unit_text`` in ``root``'s /etc/systemd/system with a stub for its program."""
    prepare_root(root)
    unit_dir = root / "etc" / "systemd" / "system"
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / unit_name).write_text(unit_text)
    provide_program(root, exec_start_program(unit_text))
    return root


def provide_program(root: Path, program: Path) -> None:
    stub = root / program.relative_to("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)


def verify(root: Path, unit_name: str = UNIT_NAME) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of the unit in ``root``; warnings arrive on stderr."""
    argv = ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit_name]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def exposure(root: Path, unit_name: str = UNIT_NAME) -> float:
    """The "Overall exposure level" of ``systemd-analyze security --offline=true``."""
    argv = ["systemd-analyze", "security", "--offline=true", f"--root={root}", unit_name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match, f"no exposure level in: {done.stdout[-500:]} {done.stderr}"
    return float(match.group(1))
