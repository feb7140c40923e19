"""deploy/install-agent.sh, run for real as root in a sandboxed node (see node_sandbox.py).

The lifecycle test builds a real virtual environment with wattwise and its
dependencies (from the local package index), which takes most of this file's
time; everything else is fast.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.node_sandbox import INSTALL_SCRIPT, NodeSandbox
from tests.deploy.systemd_tools import REPO
from wattwise.agent.wal import Wal
from wattwise.agent.wal_scan import undelivered_lines
from wattwise.clock import ManualClock

UNINSTALL_SCRIPT = REPO / "deploy" / "uninstall-agent.sh"
UNIT = "/etc/systemd/system/wattwise-agent.service"
CONFIG = "/etc/wattwise/agent.toml"
WAL_DIR = "/var/lib/wattwise/wal"

CONFIG_WITH_STORE = """\
[agent]
labels = { cluster = "c1", zone = "z1", rack = "r01" }

[influx]
url = "http://influxdb.example:8086"
database = "wattwise"
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def passwd_has_user(node: NodeSandbox) -> bool:
    passwd = node.changed("/etc/passwd")
    return passwd.exists() and any(
        line.startswith("wattwise:") for line in passwd.read_text().splitlines()
    )


def test_install_twice_then_uninstall_keeps_the_wal_until_purge(
    tmp_path: Path, wheel: Path
) -> None:
    node = NodeSandbox.create(tmp_path)

    first = node.run("--from", str(wheel))
    assert first.returncode == 0, first.stderr
    assert node.changed("/opt/wattwise/bin/wattwise").is_file()
    unit_text = node.changed(UNIT).read_text()
    assert (
        "ExecStart=/opt/wattwise/bin/wattwise agent run --config /etc/wattwise/agent.toml"
        in unit_text
    )
    assert passwd_has_user(node)
    assert mode(node.changed(CONFIG)) == 0o640
    assert mode(node.changed("/etc/wattwise/influx-token")) == 0o600
    # The skeleton names no store: enabled for boot, not started into a config error.
    assert node.systemctl_calls() == ["daemon-reload", "enable wattwise-agent.service"]
    assert "edit /etc/wattwise/agent.toml" in first.stdout
    assert_the_agent_alone_was_installed(node)

    unit_mtime = node.changed(UNIT).stat().st_mtime_ns
    record = next(node.changed("/opt/wattwise/lib").glob("python3*/site-packages/wattwise-*"))
    record_mtime = record.stat().st_mtime_ns
    second = node.run("--from", str(wheel))
    assert second.returncode == 0, second.stderr
    assert "keep: virtual environment /opt/wattwise" in second.stdout
    assert node.changed(UNIT).stat().st_mtime_ns == unit_mtime
    assert record.stat().st_mtime_ns == record_mtime
    # The second `agent install` has nothing left to do but the harmless enable,
    # and with still no store configured it starts nothing.
    assert "Installing:\n1. run `systemctl enable wattwise-agent.service`" in second.stdout
    assert node.systemctl_calls() == ["daemon-reload", *["enable wattwise-agent.service"] * 2]

    site_config = tmp_path / "agent.toml"
    site_config.write_text(CONFIG_WITH_STORE)
    configured = node.run("--from", str(wheel), "--config-file", str(site_config))
    assert configured.returncode == 0, configured.stderr
    assert node.changed(CONFIG).read_text() == CONFIG_WITH_STORE
    assert mode(node.changed(CONFIG)) == 0o640
    # `agent install` runs before the site config is copied in, so it only
    # enables; the script starts the agent once check-config passes.
    assert node.systemctl_calls()[3:] == [
        "enable wattwise-agent.service",
        "enable --now wattwise-agent.service",
    ]

    # Lines the agent logged but never delivered.
    wal = Wal(node.changed(WAL_DIR), max_bytes=1 << 20, sync="none", clock=ManualClock())
    wal.append([b"gpu,host=n1 power_w=312.5 1700000000000000000"])
    wal.close()

    removed = node.run("--uninstall")
    assert removed.returncode == 0, removed.stderr
    # The installed wattwise removes its own units; the script removes the venv.
    assert "/opt/wattwise/bin/wattwise agent uninstall --config /etc/wattwise/agent.toml" in (
        removed.stdout
    )
    assert "disable --now wattwise-agent.service" in node.systemctl_calls()
    assert not node.changed("/opt/wattwise").exists()
    assert not node.changed(UNIT).exists()
    assert undelivered_lines(node.changed(WAL_DIR)) == 1
    assert node.changed(CONFIG).read_text() == CONFIG_WITH_STORE
    assert passwd_has_user(node)

    # Without the venv the script removes what is left itself, and its purge does not
    # count lines: install again so the agent's own command guards the log.
    again = node.run("--from", str(wheel))
    assert again.returncode == 0, again.stderr
    refused = node.run("--uninstall", "--purge")
    assert refused.returncode != 0
    assert "holds 1 line the store never acknowledged" in refused.stderr
    assert node.changed("/opt/wattwise/bin/wattwise").is_file()  # kept, to try again
    assert undelivered_lines(node.changed(WAL_DIR)) == 1

    purged = node.run("--uninstall", "--purge", "--discard-unsent")
    assert purged.returncode == 0, purged.stderr
    assert not node.changed(WAL_DIR).exists()
    assert not node.changed("/etc/wattwise").exists()
    assert not node.changed("/opt/wattwise").exists()
    assert not passwd_has_user(node)


def assert_the_agent_alone_was_installed(node: NodeSandbox) -> None:
    """A fresh virtualenv with the wheel and no extra: the agent runs, nothing else is there."""
    (site,) = node.changed("/opt/wattwise/lib").glob("python3*/site-packages")
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"wattwise", "psutil", "httpx", "pydantic", "nvidia_ml_py"} <= installed
    assert not {"numpy", "scipy", "scikit_learn", "matplotlib", "fastapi", "uvicorn"} & installed
    python = str(node.changed("/opt/wattwise/bin/python"))
    probe = [python, "-m", "wattwise", "agent", "probe", "--source", "nvml", "--json"]
    probed = subprocess.run(
        [*probe, "--config", "/dev/null"], capture_output=True, text=True, timeout=60
    )
    assert probed.returncode == 0, probed.stderr
    assert '"source": "host"' in probed.stdout
    recommend = subprocess.run(
        [python, "-m", "wattwise", "recommend", "caps"], capture_output=True, text=True, timeout=60
    )
    assert recommend.returncode == 1
    assert "needs wattwise's 'optimizer' extra" in recommend.stderr


def test_without_from_it_installs_the_wheel_make_wheel_built(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "deploy").mkdir(parents=True)
    script = checkout / "deploy" / "install-agent.sh"
    shutil.copy(INSTALL_SCRIPT, script)
    argv = ["bash", str(script), "--dry-run"]
    env = {**os.environ, "WATTWISE_PREFIX": str(tmp_path / "prefix")}
    none = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert none.returncode != 0
    assert "no wheel to install: run 'make wheel'" in none.stderr
    (checkout / "dist").mkdir()
    for version in ("0.1.0", "0.10.0", "0.9.1"):
        (checkout / "dist" / f"wattwise-{version}-py3-none-any.whl").touch()
    found = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert found.returncode == 0, found.stderr
    assert f"pip install --quiet {checkout}/dist/wattwise-0.10.0-py3-none-any.whl" in found.stdout


def test_a_dry_run_purge_says_what_it_would_do_not_that_it_did(tmp_path: Path) -> None:
    # Regression: the dry run ended with "done: purged the write-ahead log, …".
    node = NodeSandbox.create(tmp_path)
    done = node.run("--uninstall", "--purge", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "done:" not in done.stdout
    assert "would purge the write-ahead log" in done.stdout
    assert not any((tmp_path / "upper").rglob("*/*"))


def test_dry_run_prints_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    node = NodeSandbox.create(tmp_path)
    done = node.run("--dry-run", "--from", "/srv/wattwise-0.1.0-py3-none-any.whl")
    assert done.returncode == 0, done.stderr
    assert "-m venv /opt/wattwise" in done.stdout
    assert "pip install --quiet /srv/wattwise-0.1.0-py3-none-any.whl" in done.stdout
    assert "wattwise agent install --config /etc/wattwise/agent.toml" in done.stdout
    assert not any((tmp_path / "upper").rglob("*/*"))
    assert node.systemctl_calls() == []


def test_uninstall_stops_the_power_plan_applier_before_removing_its_program(
    tmp_path: Path,
) -> None:
    """Regression: uninstalling left `wattwise agent install --power-plan`'s unit running a
    program that was gone, and the GPUs' limits where the plan had set them."""
    node = NodeSandbox.create(tmp_path)
    unit = node.changed("/etc/systemd/system/wattwise-power-plan.service")
    unit.parent.mkdir(parents=True)
    unit.write_text((REPO / "deploy/systemd/wattwise-power-plan.service").read_text())
    state = node.changed("/var/lib/wattwise-power-plan/state.json")
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    venv = node.changed("/opt/wattwise/pyvenv.cfg")
    venv.parent.mkdir(parents=True)
    venv.write_text("home = /usr/bin\n")

    removed = node.run("--uninstall")
    assert removed.returncode == 0, removed.stderr
    # Stopped (it restores the default limits as it stops) while its program is there;
    # this node has no agent unit left to stop.
    assert node.systemctl_calls() == ["disable --now wattwise-power-plan.service", "daemon-reload"]
    assert removed.stdout.index("wattwise-power-plan.service") < removed.stdout.index(
        "rm -rf -- /opt/wattwise"
    )
    assert not unit.exists() and not node.changed("/opt/wattwise").exists()
    assert state.exists()  # kept without --purge
    purged = node.run("--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not state.parent.exists()


def test_purge_without_the_agents_command_keeps_a_wal_segment_unless_discarded(
    tmp_path: Path,
) -> None:
    """Regression: where the installed wattwise had no `wattwise agent uninstall`, the
    script's purge deleted the write-ahead log with lines it never delivered."""
    node = NodeSandbox.create(tmp_path)
    wal = Wal(node.changed(WAL_DIR), max_bytes=1 << 20, sync="none", clock=ManualClock())
    wal.append([b"gpu,host=n1 power_w=312.5 1700000000000000000"])
    wal.close()
    config = node.changed(CONFIG)
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG_WITH_STORE)

    refused = node.run("--uninstall", "--purge")
    assert refused.returncode != 0
    assert "holds 1 write-ahead log segment(s) that may hold lines never delivered" in (
        refused.stderr
    )
    assert "nothing was removed" in refused.stderr
    assert undelivered_lines(node.changed(WAL_DIR)) == 1
    assert config.read_text() == CONFIG_WITH_STORE

    purged = node.run("--uninstall", "--purge", "--discard-unsent")
    assert purged.returncode == 0, purged.stderr
    assert not node.changed(WAL_DIR).exists()
    assert not config.exists()


def test_uninstall_refuses_a_prefix_that_is_not_a_virtualenv(tmp_path: Path) -> None:
    node = NodeSandbox.create(tmp_path)
    precious = tmp_path / "precious"
    (precious / "bin").mkdir(parents=True)
    done = node.run("--uninstall", env={"WATTWISE_PREFIX": str(precious)})
    assert done.returncode != 0
    assert "no pyvenv.cfg" in done.stderr
    assert (precious / "bin").is_dir()
    assert node.systemctl_calls() == []


def test_discard_unsent_without_purge_is_refused(tmp_path: Path) -> None:
    done = NodeSandbox.create(tmp_path).run("--uninstall", "--discard-unsent")
    assert done.returncode != 0
    assert "--discard-unsent only goes with --uninstall --purge" in done.stderr


def test_purge_without_uninstall_is_refused() -> None:
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), "--purge", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "--purge only goes with --uninstall" in done.stderr


@pytest.mark.parametrize("script", [INSTALL_SCRIPT, UNINSTALL_SCRIPT], ids=lambda p: p.name)
def test_script_passes_bash_n_and_shellcheck(script: Path) -> None:
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert parsed.returncode == 0, parsed.stderr
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed: apt-get install -y shellcheck"
    linted = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout
