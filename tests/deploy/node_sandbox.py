"""A throw-away GPU node for running deploy/install-agent.sh for real.

The script runs as root in a private mount namespace whose ``/etc``, ``/opt``
and ``/var`` are overlays: it writes where it would on a node (useradd edits
``/etc/passwd``, the venv lands in ``/opt/wattwise``, the unit in
``/etc/systemd/system``) while every change lands in the overlays' upper
directories under a temporary directory, which the tests then inspect. Only
``systemctl`` is replaced, by a stub that records its arguments: no systemd
runs as PID 1 here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.systemd_tools import REPO

INSTALL_SCRIPT = REPO / "deploy" / "install-agent.sh"
OVERLAID = ("etc", "opt", "var")

SYSTEMCTL_STUB = """#!/bin/sh
printf '%s\\n' "$*" >> "$SYSTEMCTL_LOG"
"""


@dataclass(frozen=True)
class NodeSandbox:
    root: Path

    @classmethod
    def create(cls, root: Path) -> NodeSandbox:
        for name in OVERLAID:
            (root / "upper" / name).mkdir(parents=True)
            (root / "work" / name).mkdir(parents=True)
        stub = root / "bin" / "systemctl"
        stub.parent.mkdir()
        stub.write_text(SYSTEMCTL_STUB)
        stub.chmod(0o755)
        return cls(root)

    def changed(self, path: str) -> Path:
        """Where the sandbox keeps ``path`` (absolute, on the node) if the script wrote it."""
        top, _, rest = path.strip("/").partition("/")
        assert top in OVERLAID, path
        return self.root / "upper" / top / rest

    def systemctl_calls(self) -> list[str]:
        log = self.root / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """``bash deploy/install-agent.sh ARGS`` inside the sandbox."""
        mounts = [
            f"mount -t overlay overlay -o lowerdir=/{name},"
            f"upperdir={self.root}/upper/{name},workdir={self.root}/work/{name} /{name}"
            for name in OVERLAID
        ]
        script = " && ".join([*mounts, 'exec bash "$@"'])
        argv = ["unshare", "--mount", "--propagation", "private"]
        argv += ["sh", "-c", script, "sandbox", str(INSTALL_SCRIPT), *args]
        env = {
            **os.environ,
            **(env or {}),
            "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
            "SYSTEMCTL_LOG": str(self.root / "systemctl.log"),
            # The venv is made from a plain interpreter, not from the test's own venv.
            "WATTWISE_PYTHON": os.environ.get("WATTWISE_TEST_BASE_PYTHON", base_python()),
        }
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        print(f"$ install-agent.sh {shlex.join(args)}\n{done.stdout}{done.stderr}")
        return done


def base_python() -> str:
    """The interpreter the running tests' virtualenv was made from, or this one outside one."""
    config = Path(sys.prefix) / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "executable":
                return value.strip()
    return sys.executable
