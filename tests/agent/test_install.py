"""`wattwise agent install`, applied into a scratch root.

Files are really written under ``tmp_path``; only the system commands (useradd,
chown, systemctl) go to a recording runner, since a test cannot create users or
enable units on this machine. The recorder plays the user database's part, so
a second run sees what the first one created.
"""

from __future__ import annotations

import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import wattwise.agent.install
from tests.deploy.systemd_tools import SHIPPED_UNIT, prepare_root, provide_program, verify
from wattwise.agent.config import AgentConfig, load_config
from wattwise.agent.install import (
    MakeDirectory,
    RunCommand,
    SystemAccounts,
    WriteFile,
    default_exec_start,
    install_agent,
    plan_install,
    run_command,
    shipped_unit_path,
)
from wattwise.agent.install_power_plan import PowerPlanUnit
from wattwise.agent.install_skeleton import CONFIG_SKELETON
from wattwise.errors import InstallError

REPO = Path(__file__).resolve().parents[2]
CONFIG = Path("/etc/wattwise/agent.toml")
PROGRAM = "/opt/wattwise/bin/wattwise"
UNIT = Path("etc/systemd/system/wattwise-agent.service")


class FakeSystem:
    """User database plus command recorder: useradd and usermod change the database."""

    def __init__(self, users: set[str] | None = None, groups: set[str] | None = None) -> None:
        self.users = set(users or ())
        self.groups = {name: set[str]() for name in (groups if groups is not None else {"video"})}
        self.commands: list[tuple[str, ...]] = []

    def user_exists(self, user: str) -> bool:
        return user in self.users

    def group_exists(self, group: str) -> bool:
        return group in self.groups

    def user_in_group(self, user: str, group: str) -> bool:
        return user in self.groups.get(group, set())

    def __call__(self, argv: Sequence[str]) -> None:
        self.commands.append(tuple(argv))
        if argv[0] == "useradd":
            self.users.add(argv[-1])
            self.groups.setdefault(argv[-1], set()).add(argv[-1])
        elif argv[0] == "usermod":
            self.groups[argv[-2]].add(argv[-1])


def install(
    root: Path,
    system: FakeSystem,
    program: str = PROGRAM,
    *,
    power_plan: PowerPlanUnit | None = None,
) -> list[str]:
    printed: list[str] = []
    install_agent(
        CONFIG,
        dry_run=False,
        echo=printed.append,
        unit_source=SHIPPED_UNIT,
        root=root,
        exec_start=[program],
        accounts=system,
        runner=system,
        euid=0,
        power_plan=power_plan,
    )
    return printed


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_install_creates_user_config_secrets_and_unit(tmp_path: Path) -> None:
    system = FakeSystem()
    install(tmp_path, system)

    config = tmp_path / "etc/wattwise/agent.toml"
    assert config.read_text() == CONFIG_SKELETON
    assert mode(config) == 0o640
    for secret in ("influx-token", "influx-password", "bmc-password"):
        assert (tmp_path / "etc/wattwise" / secret).read_text() == ""
        assert mode(tmp_path / "etc/wattwise" / secret) == 0o600
    unit = (tmp_path / UNIT).read_text()
    assert f"\nExecStart={PROGRAM} agent run --config /etc/wattwise/agent.toml\n" in unit
    assert mode(tmp_path / UNIT) == 0o644

    programs = [argv[0] for argv in system.commands]
    assert programs == ["useradd", "usermod", "chown", "systemctl", "systemctl"]
    assert system.commands[0][-1] == "wattwise" and "--user-group" in system.commands[0]
    assert system.commands[1] == ("usermod", "--append", "--groups", "video", "wattwise")
    assert system.commands[2] == ("chown", "root:wattwise", str(config))
    assert system.commands[3] == ("systemctl", "daemon-reload")
    # The skeleton has no InfluxDB URL yet: enabled for boot, not started to fail now.
    assert system.commands[4] == ("systemctl", "enable", "wattwise-agent.service")


def test_second_run_with_the_untouched_skeleton_changes_nothing_and_does_not_start(
    tmp_path: Path,
) -> None:
    # Regression: a second run used to `enable --now` an agent whose config
    # still had no InfluxDB URL, leaving a unit that failed at once.
    system = FakeSystem()
    install(tmp_path, system)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    system.commands.clear()

    install(tmp_path, system)

    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert system.commands == [("systemctl", "enable", "wattwise-agent.service")]


def test_run_after_the_config_is_completed_starts_the_agent(tmp_path: Path) -> None:
    system = FakeSystem()
    install(tmp_path, system)
    config = tmp_path / "etc/wattwise/agent.toml"
    config.write_text(config.read_text().replace('url = ""', 'url = "http://influx:8086"', 1))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    system.commands.clear()

    install(tmp_path, system)

    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert system.commands == [("systemctl", "enable", "--now", "wattwise-agent.service")]


def test_operators_config_is_never_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "etc/wattwise/agent.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[influx]\nurl = "http://influx.site:8086"\n')
    system = FakeSystem(users={"wattwise"})

    install(tmp_path, system)

    assert config.read_text() == '[influx]\nurl = "http://influx.site:8086"\n'
    assert not any(argv[0] == "chown" for argv in system.commands)
    assert system.commands[-1] == ("systemctl", "enable", "--now", "wattwise-agent.service")


def test_changed_unit_is_replaced_and_reloaded(tmp_path: Path) -> None:
    system = FakeSystem()
    install(tmp_path, system)
    (tmp_path / UNIT).write_text((tmp_path / UNIT).read_text().replace("RestartSec=5s", "#"))
    system.commands.clear()

    install(tmp_path, system)

    assert "\nRestartSec=5s\n" in (tmp_path / UNIT).read_text()
    assert ("systemctl", "daemon-reload") in system.commands


def test_leftover_wattwise_group_is_reused_not_recreated(tmp_path: Path) -> None:
    # useradd --user-group fails when the group already exists (an earlier uninstall).
    system = FakeSystem(groups={"video", "wattwise"})
    install(tmp_path, system)
    useradd = system.commands[0]
    assert "--user-group" not in useradd
    assert useradd[useradd.index("--gid") + 1] == "wattwise"


def test_shared_etc_directory_is_created_once(tmp_path: Path) -> None:
    # The configuration and the secrets both live in /etc/wattwise.
    steps = plan_install(
        CONFIG, unit_source=SHIPPED_UNIT, root=tmp_path, exec_start=[PROGRAM], accounts=FakeSystem()
    )
    made = [step.path for step in steps if isinstance(step, MakeDirectory)]
    assert made.count(tmp_path / "etc/wattwise") == 1


def test_no_usermod_without_a_video_group(tmp_path: Path) -> None:
    system = FakeSystem(groups=set())
    install(tmp_path, system)
    assert not any(argv[0] == "usermod" for argv in system.commands)


def test_dry_run_prints_numbered_steps_and_touches_nothing(tmp_path: Path) -> None:
    system = FakeSystem()
    printed: list[str] = []
    steps = install_agent(
        CONFIG,
        dry_run=True,
        echo=printed.append,
        unit_source=SHIPPED_UNIT,
        root=tmp_path,
        exec_start=[PROGRAM],
        accounts=system,
        runner=system,
        euid=1000,  # a dry run needs no root
    )
    lines = printed[0].splitlines()
    assert lines[0] == "Would do:"
    assert [line.split(".")[0] for line in lines[1:]] == [str(n) for n in range(1, len(steps) + 1)]
    assert lines[1].startswith("1. run `useradd --system")
    assert any("agent.toml (mode 0640)" in line for line in lines)
    assert system.commands == []
    assert list(tmp_path.iterdir()) == []


def test_install_without_root_is_refused_before_any_change(tmp_path: Path) -> None:
    system = FakeSystem()
    with pytest.raises(InstallError, match="needs root"):
        install_agent(
            CONFIG,
            dry_run=False,
            unit_source=SHIPPED_UNIT,
            root=tmp_path,
            exec_start=[PROGRAM],
            accounts=system,
            runner=system,
            euid=1000,
        )
    assert system.commands == []
    assert list(tmp_path.iterdir()) == []


def test_configuration_the_unit_would_hide_is_refused_pointing_at_the_default(
    tmp_path: Path,
) -> None:
    # Regression: the refusal suggested /opt/wattwise, the program's place, for a config.
    with pytest.raises(InstallError) as refused:
        plan_install(
            Path("/home/ops/agent.toml"),
            unit_source=SHIPPED_UNIT,
            root=tmp_path,
            exec_start=[PROGRAM],
            accounts=FakeSystem(),
        )
    assert "the configuration is at /home/ops/agent.toml, which the unit hides" in str(
        refused.value
    )
    assert str(refused.value).endswith("e.g. the default, /etc/wattwise/agent.toml")


@pytest.mark.parametrize("program", ["/home/ops/venv/bin/wattwise", "/tmp/venv/bin/wattwise"])
def test_program_in_a_place_the_unit_hides_is_refused(tmp_path: Path, program: str) -> None:
    with pytest.raises(InstallError, match="hides from the agent"):
        plan_install(
            CONFIG,
            unit_source=SHIPPED_UNIT,
            root=tmp_path,
            exec_start=[program],
            accounts=FakeSystem(),
        )


def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # A path with a space and a percent sign: both need quoting for systemd.
    program = "/opt/watt wise/100%/bin/wattwise"
    install(prepare_root(tmp_path), FakeSystem(), program=program)
    provide_program(tmp_path, Path(program))
    done = verify(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (
        '\nExecStart="/opt/watt wise/100%%/bin/wattwise" agent run' in (tmp_path / UNIT).read_text()
    )


def test_shipped_unit_is_found_in_the_package_where_a_wheel_has_it() -> None:
    # agent/wattwise-agent.service links to deploy/systemd/; the wheel build copies the file.
    found = shipped_unit_path()
    assert found.parent == Path(wattwise.agent.install.__file__).parent
    assert found.read_text() == SHIPPED_UNIT.read_text()


def test_default_program_is_the_running_pythons_wattwise() -> None:
    argv = default_exec_start()
    # Unresolved: a virtual environment's python links to the system's.
    assert Path(argv[0]).parent == Path(sys.executable).parent
    assert argv[1:] in ([], ["-m", "wattwise"])


def test_skeleton_is_the_shipped_example_and_loads() -> None:
    assert (REPO / "deploy" / "agent.toml.example").read_text() == CONFIG_SKELETON
    config = load_config(REPO / "deploy" / "agent.toml.example", require_file=True)
    assert config.wal.dir == Path("/var/lib/wattwise/wal")  # inside StateDirectory=


def test_skeleton_documents_every_setting() -> None:
    keys = set(re.findall(r"^#? ?(\w+) = ", CONFIG_SKELETON, re.MULTILINE))
    sections = {
        name: field.annotation
        for name, field in AgentConfig.model_fields.items()
        if field.annotation is not None
    }
    missing = [
        f"{section}.{key}"
        for section, model in sections.items()
        for key in model.model_fields
        if key != "sim" and key not in keys
    ]
    assert missing == []


def test_failing_command_raises_install_error_with_its_status() -> None:
    with pytest.raises(InstallError, match="exited with 1"):
        run_command(["false"])
    with pytest.raises(InstallError, match="cannot run"):
        run_command(["/nonexistent/useradd"])


def test_system_accounts_read_the_user_database() -> None:
    accounts = SystemAccounts()
    assert accounts.user_exists("root") and accounts.group_exists("root")
    assert accounts.user_in_group("root", "root")
    assert not accounts.user_exists("wattwise-no-such-user")


def test_plan_steps_are_described_in_words() -> None:
    write = WriteFile(Path("/etc/x"), "", 0o600, "a secret")
    assert write.describe() == "write /etc/x (mode 0600): a secret"
    run = RunCommand(("systemctl", "daemon-reload"), "reload")
    assert run.describe() == "run `systemctl daemon-reload`: reload"
