"""`wattwise agent install --power-plan`, applied into a scratch root.

As in test_install.py, files are really written under ``tmp_path`` and the system
commands go to :class:`FakeSystem`. The power-plan applier changes GPU power limits
as root, so the point here is as much what is *not* planned without the flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import wattwise.agent.install
from tests.agent.test_install import CONFIG, PROGRAM, FakeSystem, install, mode
from tests.deploy.systemd_tools import REPO, prepare_root, provide_program, verify
from wattwise.agent.install import plan_install
from wattwise.agent.install_power_plan import (
    ENVIRONMENT_SKELETON,
    PowerPlanUnit,
    render_power_plan_unit,
)
from wattwise.cli import main
from wattwise.errors import InstallError

SHIPPED = REPO / "deploy" / "systemd" / "wattwise-power-plan.service"
AGENT_UNIT = REPO / "deploy" / "systemd" / "wattwise-agent.service"
NAME = "wattwise-power-plan.service"
UNIT = Path("etc/systemd/system") / NAME
ENV = Path("etc/wattwise/power-plan.env")
TOKEN = Path("etc/wattwise/power-plan-token")
SHIPPED_ARGUMENTS = (
    "agent apply-power-plan --optimizer-url ${WATTWISE_OPTIMIZER_URL} "
    "--token-file %d/optimizer-token --state-file /var/lib/wattwise-power-plan/state.json "
    "$WATTWISE_POWER_PLAN_ARGS"
)


def install_with_power_plan(
    root: Path, system: FakeSystem, program: str = PROGRAM, *, power_plan: bool = True
) -> list[str]:
    return install(root, system, program, power_plan=PowerPlanUnit(SHIPPED) if power_plan else None)


def plan(root: Path, *, power_plan: bool, system: FakeSystem | None = None) -> list[str]:
    steps = plan_install(
        CONFIG,
        unit_source=AGENT_UNIT,
        root=root,
        exec_start=[PROGRAM],
        accounts=system or FakeSystem(),
        power_plan=PowerPlanUnit(SHIPPED) if power_plan else None,
    )
    return [step.describe() for step in steps]


def power_plan_commands(system: FakeSystem) -> list[tuple[str, ...]]:
    return [argv for argv in system.commands if argv[-1] == NAME]


def fill_in(root: Path, url: str = "https://optimizer.example:8000", token: str = "t0k3n") -> None:
    env = root / ENV
    env.write_text(
        env.read_text().replace("WATTWISE_OPTIMIZER_URL=", f"WATTWISE_OPTIMIZER_URL={url}")
    )
    (root / TOKEN).write_text(token + "\n")


def test_the_plan_with_power_plan_writes_the_unit_with_the_installed_program(
    tmp_path: Path,
) -> None:
    steps = plan(tmp_path, power_plan=True)
    why = "the systemd unit (site changes go in drop-ins: systemctl edit wattwise-power-plan)"
    assert f"write {tmp_path / UNIT} (mode 0644): {why}" in steps
    assert f"run `systemctl enable {NAME}`: start the power-plan applier at every boot" in steps
    # After the agent's own steps: the agent's plan is unchanged by the flag.
    assert steps[: len(plan(tmp_path, power_plan=False))] == plan(tmp_path, power_plan=False)

    # The wattwise the installer runs from, wherever it is: only the program changes.
    install_with_power_plan(tmp_path, FakeSystem(), program="/srv/ww/bin/wattwise")
    shipped_lines = SHIPPED.read_text().splitlines()
    installed_lines = (tmp_path / UNIT).read_text().splitlines()
    assert [(a, b) for a, b in zip(shipped_lines, installed_lines, strict=True) if a != b] == [
        (
            f"ExecStart=/opt/wattwise/bin/wattwise {SHIPPED_ARGUMENTS}",
            f"ExecStart=/srv/ww/bin/wattwise {SHIPPED_ARGUMENTS}",
        )
    ]


def test_directories_shared_with_the_agent_are_created_once(tmp_path: Path) -> None:
    steps = plan(tmp_path, power_plan=True)
    for shared in ("etc/wattwise", "etc/systemd/system"):
        made = [s for s in steps if s.startswith(f"create directory {tmp_path / shared} ")]
        assert len(made) == 1, shared


def test_without_power_plan_nothing_of_it_is_planned_or_written(tmp_path: Path) -> None:
    assert [step for step in plan(tmp_path, power_plan=False) if "power-plan" in step] == []
    system = FakeSystem()
    install_with_power_plan(tmp_path, system, power_plan=False)
    assert power_plan_commands(system) == []
    assert not (tmp_path / UNIT).exists()
    assert not (tmp_path / ENV).exists() and not (tmp_path / TOKEN).exists()


def test_an_installed_power_plan_unit_is_left_alone_without_the_flag(tmp_path: Path) -> None:
    # An upgrade run without --power-plan neither refreshes nor disables it.
    install_with_power_plan(tmp_path, FakeSystem())
    (tmp_path / UNIT).write_text("# the site's own\n")
    system = FakeSystem(users={"wattwise"})
    install_with_power_plan(tmp_path, system, power_plan=False)
    assert (tmp_path / UNIT).read_text() == "# the site's own\n"
    assert power_plan_commands(system) == []


def test_fresh_install_writes_the_settings_and_token_and_enables_without_starting(
    tmp_path: Path,
) -> None:
    system = FakeSystem()
    printed = install_with_power_plan(tmp_path, system)

    assert (tmp_path / ENV).read_text() == ENVIRONMENT_SKELETON
    assert mode(tmp_path / ENV) == 0o600
    assert (tmp_path / TOKEN).read_text() == ""
    assert mode(tmp_path / TOKEN) == 0o600
    assert mode(tmp_path / UNIT) == 0o644
    # No optimizer URL, no token: enabled for boot, not started into exit status 2.
    assert power_plan_commands(system) == [("systemctl", "enable", NAME)]
    assert system.commands[-2:] == [("systemctl", "daemon-reload"), ("systemctl", "enable", NAME)]
    assert printed[-1].startswith("The power-plan applier is enabled, not started.")
    assert "Set WATTWISE_OPTIMIZER_URL in /etc/wattwise/power-plan.env" in printed[-1]
    assert "--token-file /etc/wattwise/power-plan-token --once --dry-run" in printed[-1]
    assert printed[-1].endswith(f"then: systemctl start {NAME}")


def test_second_plan_after_apply_plans_nothing_for_the_power_plan_but_enable(
    tmp_path: Path,
) -> None:
    system = FakeSystem()
    install_with_power_plan(tmp_path, system)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    steps = plan(tmp_path, power_plan=True, system=system)

    assert steps == [
        "run `systemctl enable wattwise-agent.service`: start the agent at every boot",
        f"run `systemctl enable {NAME}`: start the power-plan applier at every boot",
    ]
    system.commands.clear()
    install_with_power_plan(tmp_path, system)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert power_plan_commands(system) == [("systemctl", "enable", NAME)]


def test_once_url_and_token_are_filled_in_it_is_started(tmp_path: Path) -> None:
    install_with_power_plan(tmp_path, FakeSystem())
    fill_in(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    system = FakeSystem(users={"wattwise"})

    printed = install_with_power_plan(tmp_path, system)

    # The operator's settings and token are never overwritten.
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert power_plan_commands(system) == [("systemctl", "enable", "--now", NAME)]
    assert printed[-1] == f"The power-plan applier is running: systemctl status {NAME}"


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("", "t0k3n"),  # the skeleton's empty URL
        ("optimizer.example:8000", "t0k3n"),  # no scheme: the applier exits 2
        ("https://ops:pw@optimizer.example", "t0k3n"),  # credentials in the URL
        ("https://optimizer.example:8000", ""),  # the installer's empty token file
    ],
)
def test_it_is_not_started_while_the_applier_would_refuse_to_run(
    tmp_path: Path, url: str, token: str
) -> None:
    install_with_power_plan(tmp_path, FakeSystem())
    fill_in(tmp_path, url, token)
    system = FakeSystem(users={"wattwise"})
    install_with_power_plan(tmp_path, system)
    assert power_plan_commands(system) == [("systemctl", "enable", NAME)]


def test_quoted_url_in_the_environment_file_counts_as_set(tmp_path: Path) -> None:
    install_with_power_plan(tmp_path, FakeSystem())
    (tmp_path / ENV).write_text('# site\nWATTWISE_OPTIMIZER_URL="https://optimizer.example"\n')
    (tmp_path / TOKEN).write_text("t0k3n")
    system = FakeSystem(users={"wattwise"})
    install_with_power_plan(tmp_path, system)
    assert power_plan_commands(system) == [("systemctl", "enable", "--now", NAME)]


def test_installed_power_plan_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # A path with a space and a percent sign: the program is quoted, while the
    # arguments keep systemd's %d and ${…} working.
    program = "/opt/watt wise/100%/bin/wattwise"
    install_with_power_plan(prepare_root(tmp_path), FakeSystem(), program=program)
    provide_program(tmp_path, Path(program))
    done = verify(tmp_path, NAME)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (
        f'\nExecStart="/opt/watt wise/100%%/bin/wattwise" {SHIPPED_ARGUMENTS}\n'
        in (tmp_path / UNIT).read_text()
    )


def test_a_unit_whose_exec_start_runs_something_else_is_refused() -> None:
    text = SHIPPED.read_text().replace("agent apply-power-plan", "agent run")
    with pytest.raises(InstallError, match="apply-power-plan"):
        render_power_plan_unit(text, [PROGRAM])


def test_shipped_power_plan_unit_is_the_deploy_one_in_the_package() -> None:
    # agent/wattwise-power-plan.service links to deploy/systemd/; the wheel build copies
    # the file, as it does the agent's (package data "*.service").
    found = PowerPlanUnit.shipped().source
    assert found.parent == Path(wattwise.agent.install.__file__).parent
    assert found.read_text() == SHIPPED.read_text()


def test_cli_dry_run_with_power_plan_lists_its_unit_and_touches_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in test_cli.py: the program is taken to be installed under /opt.
    monkeypatch.setattr(wattwise.agent.install, "default_exec_start", lambda: [PROGRAM])
    argv = [
        "agent",
        "install",
        "--dry-run",
        "--power-plan",
        "--config",
        "/etc/wattwise-test/a.toml",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "write /etc/systemd/system/wattwise-power-plan.service (mode 0644)" in out
    assert f"systemctl enable {NAME}`" in out
    assert not Path("/etc/wattwise-test").exists()

    assert main(["agent", "install", "--dry-run", "--config", "/etc/wattwise-test/a.toml"]) == 0
    assert "power-plan" not in capsys.readouterr().out
