"""`wattwise agent uninstall`, applied into a scratch root after a real install there.

As in test_install.py, files are really written and removed under ``tmp_path`` and
the system commands (systemctl, userdel) go to :class:`FakeSystem`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.test_install import FakeSystem
from tests.agent.test_install_power_plan import install_with_power_plan
from tests.agent.test_wal import lines, open_wal
from wattwise.agent.install_skeleton import CONFIG_SKELETON
from wattwise.agent.uninstall import uninstall_agent
from wattwise.cli import main
from wattwise.errors import InstallError

AGENT_UNIT = "etc/systemd/system/wattwise-agent.service"
PLAN_UNIT = "etc/systemd/system/wattwise-power-plan.service"
WAL_DIR = "var/lib/wattwise/wal"


def uninstall(
    root: Path,
    system: FakeSystem,
    *,
    purge: bool = False,
    discard_unsent: bool = False,
    dry_run: bool = False,
    euid: int = 0,
) -> list[str]:
    printed: list[str] = []
    uninstall_agent(
        purge=purge,
        discard_unsent=discard_unsent,
        dry_run=dry_run,
        echo=printed.append,
        root=root,
        accounts=system,
        runner=system,
        euid=euid,
    )
    return printed


def installed_node(root: Path) -> FakeSystem:
    """The agent and the power-plan applier installed, with state and a drop-in."""
    system = FakeSystem()
    install_with_power_plan(root, system)
    (root / "var/lib/wattwise-power-plan").mkdir(parents=True)
    (root / "var/lib/wattwise-power-plan/state.json").write_text("{}")
    (root / f"{AGENT_UNIT}.d").mkdir()
    (root / f"{AGENT_UNIT}.d/site.conf").write_text("[Service]\nNice=5\n")
    system.commands.clear()
    return system


def log_with_unsent_lines(directory: Path, unsent: int) -> None:
    wal = open_wal(directory)
    wal.append(lines(0, unsent + 2))
    batch = wal.read_batch(2)
    assert batch is not None
    wal.ack(batch)
    wal.close()


def test_the_applier_is_stopped_before_the_agent_and_the_data_is_kept(tmp_path: Path) -> None:
    system = installed_node(tmp_path)
    log_with_unsent_lines(tmp_path / WAL_DIR, 5)

    printed = uninstall(tmp_path, system)

    assert system.commands == [
        ("systemctl", "disable", "--now", "wattwise-power-plan.service"),
        ("systemctl", "disable", "--now", "wattwise-agent.service"),
        ("systemctl", "daemon-reload"),
    ]
    assert not (tmp_path / AGENT_UNIT).exists() and not (tmp_path / PLAN_UNIT).exists()
    assert (tmp_path / "etc/wattwise/agent.toml").read_text() == CONFIG_SKELETON
    assert (tmp_path / "var/lib/wattwise-power-plan/state.json").exists()
    assert (tmp_path / f"{AGENT_UNIT}.d/site.conf").exists()
    assert open_wal(tmp_path / WAL_DIR).stats().queue_lines == 5
    assert "Kept: /var/lib/wattwise (write-ahead log)" in printed[-1]
    assert "pip uninstall wattwise" in printed[-1]


def test_purge_removes_state_configuration_drop_ins_and_the_user(tmp_path: Path) -> None:
    system = installed_node(tmp_path)
    log_with_unsent_lines(tmp_path / WAL_DIR, 0)

    uninstall(tmp_path, system, purge=True)

    assert system.commands[-1] == ("userdel", "wattwise")
    for gone in ("var/lib/wattwise", "var/lib/wattwise-power-plan", "etc/wattwise"):
        assert not (tmp_path / gone).exists(), gone
    assert not (tmp_path / f"{AGENT_UNIT}.d").exists()
    assert (tmp_path / "etc/systemd/system").is_dir()


def test_purge_refuses_to_delete_lines_never_delivered(tmp_path: Path) -> None:
    system = installed_node(tmp_path)
    log_with_unsent_lines(tmp_path / WAL_DIR, 7)

    with pytest.raises(InstallError, match="holds 7 lines the store never acknowledged"):
        uninstall(tmp_path, system, purge=True)
    # Refused before any step: the agent still runs and can deliver them.
    assert system.commands == []
    assert (tmp_path / AGENT_UNIT).exists()

    printed = uninstall(tmp_path, system, purge=True, discard_unsent=True)
    assert "with 7 lines never delivered" in printed[0]
    assert not (tmp_path / "var/lib/wattwise").exists()


def test_a_log_outside_the_state_directory_is_purged_only_when_it_is_only_a_log(
    tmp_path: Path,
) -> None:
    system = installed_node(tmp_path)
    config = tmp_path / "etc/wattwise/agent.toml"
    config.write_text(CONFIG_SKELETON.replace('"/var/lib/wattwise/wal"', '"/srv/wal"'))
    log_with_unsent_lines(tmp_path / "srv/wal", 3)
    with pytest.raises(InstallError, match="/srv/wal holds 3 lines"):
        uninstall(tmp_path, system, purge=True)

    (tmp_path / "srv/wal/notes.txt").write_text("not the log's")
    uninstall(tmp_path, system, purge=True, discard_unsent=True)
    assert (tmp_path / "srv/wal/notes.txt").exists()

    system = installed_node(tmp_path / "other")
    config = tmp_path / "other/etc/wattwise/agent.toml"
    config.write_text(CONFIG_SKELETON.replace('"/var/lib/wattwise/wal"', '"/srv/wal"'))
    log_with_unsent_lines(tmp_path / "other/srv/wal", 0)
    uninstall(tmp_path / "other", system, purge=True)
    assert not (tmp_path / "other/srv/wal").exists()


def test_dry_run_changes_nothing_and_says_what_it_would_keep(tmp_path: Path) -> None:
    system = installed_node(tmp_path)
    printed = uninstall(tmp_path, system, dry_run=True, euid=1000)
    assert printed[0].startswith("Would do:\n1. run `systemctl disable --now wattwise-power-plan")
    assert "Would keep: /var/lib/wattwise" in printed[-1]
    assert system.commands == []
    assert (tmp_path / AGENT_UNIT).exists() and (tmp_path / PLAN_UNIT).exists()


def test_without_root_it_is_refused_before_any_change(tmp_path: Path) -> None:
    system = installed_node(tmp_path)
    with pytest.raises(InstallError, match="needs root"):
        uninstall(tmp_path, system, euid=1000)
    assert system.commands == [] and (tmp_path / AGENT_UNIT).exists()


def test_nothing_installed_is_nothing_to_remove(tmp_path: Path) -> None:
    system = FakeSystem()
    printed = uninstall(tmp_path, system, purge=True)
    assert printed[0].startswith("Nothing to remove")
    assert system.commands == []


def test_discard_unsent_without_purge_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "uninstall", "--discard-unsent", "--dry-run"]) == 2
    assert "--discard-unsent" in capsys.readouterr().err
