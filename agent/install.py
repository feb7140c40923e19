"""``wattwise agent install``: system user, config skeleton, systemd unit, enable.

:func:`plan_install` only looks: it returns the steps that would bring this
machine to an installed agent, and nothing for what is already in place, so a
second run plans only the (harmless) ``systemctl enable``. :func:`apply` carries
the steps out; every system command goes through one injectable runner, the
boundary tests replace. All file paths are joined under ``root``, so the same
plan can be applied into a scratch directory.

The power-plan applier's unit, which changes GPU power limits as root, is planned
only when a :class:`~wattwise.agent.install_power_plan.PowerPlanUnit` is passed in
(``--power-plan``); its steps live in :mod:`wattwise.agent.install_power_plan`.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wattwise.agent.config import DEFAULT_CONFIG_PATH, load_config, require_store_target
from wattwise.agent.install_skeleton import CONFIG_SKELETON
from wattwise.errors import ConfigError, InstallError

if TYPE_CHECKING:
    # Only for annotations: install_power_plan builds on this module's steps.
    from wattwise.agent.install_power_plan import PowerPlanUnit

UNIT_NAME = "wattwise-agent.service"
SERVICE_USER = "wattwise"
DEVICE_GROUP = "video"
"""Group some sites restrict /dev/nvidia* to (0660 root:video)."""
SYSTEMD_DIR = Path("/etc/systemd/system")
STATE_DIR = Path("/var/lib/wattwise")

# Paths the unit hides from the agent (ProtectHome=yes, PrivateTmp=yes): a
# program or config there would not be found once the service runs.
_HIDDEN_FROM_SERVICE = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")


class CommandRunner(Protocol):
    """Runs one system command; raises :class:`InstallError` if it fails."""

    def __call__(self, argv: Sequence[str]) -> None: ...


class Step(Protocol):
    """One change to the machine: said before it is made, then made."""

    def describe(self) -> str: ...

    def apply(self, runner: CommandRunner) -> None: ...


class Accounts(Protocol):
    """What the plan needs to know about users and groups."""

    def user_exists(self, user: str) -> bool: ...

    def group_exists(self, group: str) -> bool: ...

    def user_in_group(self, user: str, group: str) -> bool: ...


class SystemAccounts:
    """The machine's user database (``/etc/passwd``, ``/etc/group``, NSS)."""

    def user_exists(self, user: str) -> bool:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return False
        return True

    def group_exists(self, group: str) -> bool:
        try:
            grp.getgrnam(group)
        except KeyError:
            return False
        return True

    def user_in_group(self, user: str, group: str) -> bool:
        try:
            entry = grp.getgrnam(group)
            primary_gid = pwd.getpwnam(user).pw_gid
        except KeyError:
            return False
        return user in entry.gr_mem or entry.gr_gid == primary_gid


def run_command(argv: Sequence[str]) -> None:
    """Run ``argv``; a missing program or a non-zero exit becomes :class:`InstallError`."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as e:
        raise InstallError(f"cannot run {shlex.join(argv)}: {e}") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise InstallError(f"{shlex.join(argv)} exited with {done.returncode}: {detail}")


@dataclass(frozen=True)
class RunCommand:
    argv: tuple[str, ...]
    why: str

    def describe(self) -> str:
        return f"run `{shlex.join(self.argv)}`: {self.why}"

    def apply(self, runner: CommandRunner) -> None:
        runner(self.argv)


@dataclass(frozen=True)
class MakeDirectory:
    path: Path
    mode: int
    why: str

    def describe(self) -> str:
        return f"create directory {self.path} (mode {self.mode:04o}): {self.why}"

    def apply(self, runner: CommandRunner) -> None:
        self.path.mkdir(mode=self.mode, parents=True, exist_ok=True)
        self.path.chmod(self.mode)  # mkdir's mode is reduced by the umask


@dataclass(frozen=True)
class WriteFile:
    path: Path
    content: str
    mode: int
    why: str

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:04o}): {self.why}"

    def apply(self, runner: CommandRunner) -> None:
        # Written beside the target and renamed, so a crash never leaves half a file;
        # created with the final mode so a secret is never readable for a moment.
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        with os.fdopen(fd, "w") as out:
            out.write(self.content)
        partial.chmod(self.mode)
        partial.replace(self.path)


InstallStep = RunCommand | MakeDirectory | WriteFile


def shipped_unit_path(name: str = UNIT_NAME) -> Path:
    """A unit file that ships with wattwise, package data beside this module (in a source
    checkout, a link to ``deploy/systemd/``)."""
    unit = Path(__file__).parent / name
    if not unit.is_file():
        raise InstallError(f"cannot find {name}; looked in {unit}")
    return unit


def default_exec_start() -> list[str]:
    """How the unit starts the wattwise this Python runs: its ``wattwise`` script, else ``-m``.

    ``sys.executable`` is used as given, not resolved: in a virtual environment it is
    a link to the system Python, and only the unresolved path finds the environment.
    """
    script = Path(sys.executable).parent / "wattwise"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "wattwise"]


def render_unit(unit_text: str, exec_start: Sequence[str], arguments: str = "") -> str:
    """The unit with its ExecStart= line replaced by ``exec_start``, then ``arguments``.

    The words of ``exec_start`` are quoted, so systemd reads them literally; ``arguments``
    are written as they are, for a unit whose arguments use systemd's ``%d`` or
    ``${VARIABLE}`` on purpose.
    """
    lines = unit_text.splitlines(keepends=True)
    exec_lines = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    if len(exec_lines) != 1:
        raise InstallError(f"the unit must have one ExecStart= line, found {len(exec_lines)}")
    words = [*map(_systemd_quote, exec_start), *([arguments] if arguments else [])]
    lines[exec_lines[0]] = "ExecStart=" + " ".join(words) + "\n"
    return "".join(lines)


def credential_paths(unit_text: str) -> list[Path]:
    """The files the unit's ``LoadCredential=id:path`` lines load."""
    pattern = re.compile(r"^LoadCredential=[^:\s]+:(\S+)\s*$", re.MULTILINE)
    return [Path(path) for path in pattern.findall(unit_text)]


def plan_install(
    config_path: Path,
    *,
    unit_source: Path,
    root: Path = Path("/"),
    systemd_dir: Path = SYSTEMD_DIR,
    exec_start: Sequence[str] | None = None,
    accounts: Accounts | None = None,
    power_plan: PowerPlanUnit | None = None,
) -> list[InstallStep]:
    """The steps that would install the agent, and the power-plan applier if ``power_plan``
    is given; only reads the machine, changes nothing."""
    accounts = accounts or SystemAccounts()
    exec_start = list(exec_start or default_exec_start())
    config_path = Path(os.path.abspath(config_path))
    _refuse_hidden(Path(exec_start[0]), "the wattwise program", "a virtualenv in /opt/wattwise")
    _refuse_hidden(config_path, "the configuration", f"the default, {DEFAULT_CONFIG_PATH}")
    unit_text = render_unit(
        unit_source.read_text(), [*exec_start, "agent", "run", "--config", str(config_path)]
    )
    config_file = _under(root, config_path)
    made: set[Path] = set()
    steps = [
        *_account_steps(accounts),
        *_config_steps(root, config_path, made),
        *_credential_steps(root, credential_paths(unit_text), made),
        *_unit_steps(_under(root, systemd_dir / UNIT_NAME), unit_text, UNIT_NAME, made),
        _enable_step(start=_runnable(config_file)),
    ]
    if power_plan is not None:
        steps += power_plan.plan(exec_start, root=root, systemd_dir=systemd_dir, made=made)
    return steps


def _runnable(config_file: Path) -> bool:
    """Whether the agent would start with this config (a fresh skeleton has no InfluxDB URL)."""
    if not config_file.exists():
        return False
    try:
        require_store_target(load_config(config_file, None, os.environ, require_file=True))
    except ConfigError:
        return False
    return True


def apply(steps: Sequence[Step], runner: CommandRunner = run_command) -> None:
    """Carry out ``steps`` in order; stops at the first that fails."""
    for step in steps:
        step.apply(runner)


def format_plan(steps: Sequence[Step]) -> str:
    """A numbered, human-readable list of the steps."""
    return "\n".join(f"{n}. {step.describe()}" for n, step in enumerate(steps, start=1))


def install_agent(
    config_path: Path,
    *,
    dry_run: bool,
    echo: Callable[[str], None] = print,
    unit_source: Path | None = None,
    root: Path = Path("/"),
    systemd_dir: Path = SYSTEMD_DIR,
    exec_start: Sequence[str] | None = None,
    accounts: Accounts | None = None,
    runner: CommandRunner = run_command,
    euid: int | None = None,
    power_plan: PowerPlanUnit | None = None,
) -> list[InstallStep]:
    """``wattwise agent install``: print the plan, and unless ``dry_run`` carry it out as root.

    ``power_plan`` (``--power-plan``) adds the opt-in power-plan applier's unit.
    """
    if not dry_run and (os.geteuid() if euid is None else euid) != 0:
        raise InstallError(
            "installing the agent creates a system user and a systemd unit and needs root; "
            "run it with sudo, or add --dry-run to see the steps"
        )
    steps = plan_install(
        config_path,
        unit_source=unit_source or shipped_unit_path(),
        root=root,
        systemd_dir=systemd_dir,
        exec_start=exec_start,
        accounts=accounts,
        power_plan=power_plan,
    )
    echo(("Would do:\n" if dry_run else "Installing:\n") + format_plan(steps))
    if not dry_run:
        apply(steps, runner)
        echo(_next_steps(steps, config_path))
        if power_plan is not None:
            echo(power_plan.next_steps(started=started(steps, power_plan.name)))
    return steps


def _account_steps(accounts: Accounts) -> list[InstallStep]:
    steps: list[InstallStep] = []
    if not accounts.user_exists(SERVICE_USER):
        # A group left behind by an earlier uninstall is reused, not re-created.
        reuse_group = accounts.group_exists(SERVICE_USER)
        group = ("--gid", SERVICE_USER) if reuse_group else ("--user-group",)
        argv = ("useradd", "--system", *group, "--no-create-home", "--home-dir", str(STATE_DIR))
        argv += ("--shell", "/usr/sbin/nologin", "--comment", "wattwise agent", SERVICE_USER)
        steps.append(RunCommand(argv, "the unprivileged user the agent runs as"))
    if accounts.group_exists(DEVICE_GROUP) and not accounts.user_in_group(
        SERVICE_USER, DEVICE_GROUP
    ):
        argv = ("usermod", "--append", "--groups", DEVICE_GROUP, SERVICE_USER)
        steps.append(RunCommand(argv, "sites may restrict /dev/nvidia* to this group"))
    return steps


def _config_steps(root: Path, config_path: Path, made: set[Path]) -> list[InstallStep]:
    target = _under(root, config_path)
    if target.exists():
        return []  # never overwrite an operator's configuration
    steps = _directory_step(target.parent, made, "holds the agent's configuration")
    why = "configuration skeleton; set influx.url, then start the agent"
    steps.append(WriteFile(target, CONFIG_SKELETON, 0o640, why))
    argv = ("chown", f"root:{SERVICE_USER}", str(target))
    steps.append(RunCommand(argv, "the agent may read its configuration, not change it"))
    return steps


def _credential_steps(
    root: Path,
    paths: Sequence[Path],
    made: set[Path],
    why: str = "empty secret for LoadCredential= (a missing file stops the unit); fill in if used",
) -> list[InstallStep]:
    steps: list[InstallStep] = []
    for path in paths:
        target = _under(root, path)
        if target.exists():
            continue  # never overwrite a secret the operator filled in
        steps += _directory_step(target.parent, made, "holds the agent's secrets")
        steps.append(WriteFile(target, "", 0o600, why))
    return steps


def _directory_step(directory: Path, made: set[Path], why: str) -> list[InstallStep]:
    """A step creating ``directory`` unless it exists or an earlier step creates it."""
    if directory.is_dir() or directory in made:
        return []
    made.add(directory)
    return [MakeDirectory(directory, 0o755, why)]


def _unit_steps(unit_path: Path, unit_text: str, name: str, made: set[Path]) -> list[InstallStep]:
    if unit_path.is_file() and unit_path.read_text() == unit_text:
        return []
    steps = _directory_step(unit_path.parent, made, "systemd's unit directory")
    edit = name.removesuffix(".service")
    why = f"the systemd unit (site changes go in drop-ins: systemctl edit {edit})"
    steps.append(WriteFile(unit_path, unit_text, 0o644, why))
    steps.append(RunCommand(("systemctl", "daemon-reload"), "make systemd read the new unit"))
    return steps


def _enable_step(*, start: bool, unit: str = UNIT_NAME, what: str = "the agent") -> RunCommand:
    if start:
        argv = ("systemctl", "enable", "--now", unit)
        return RunCommand(argv, f"start {what} now and at every boot")
    # An incomplete config (a fresh skeleton has no URL to send to): starting would only fail.
    return RunCommand(("systemctl", "enable", unit), f"start {what} at every boot")


def started(steps: Sequence[Step], unit: str) -> bool:
    """Whether ``steps`` start ``unit`` now (``systemctl enable --now``), not only at boot."""
    return ("systemctl", "enable", "--now", unit) in [
        step.argv for step in steps if isinstance(step, RunCommand)
    ]


def _next_steps(steps: Sequence[InstallStep], config_path: Path) -> str:
    if started(steps, UNIT_NAME):
        return f"Done. The agent is running: systemctl status {UNIT_NAME}"
    return (
        f"Done. Edit {config_path} (at least influx.url), put secrets in /etc/wattwise/, "
        f"then: systemctl start {UNIT_NAME}"
    )


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to(path.anchor)


def _refuse_hidden(path: Path, what: str, instead: str) -> None:
    for hidden in _HIDDEN_FROM_SERVICE:
        if path == Path(hidden) or path.is_relative_to(hidden):
            raise InstallError(
                f"{what} is at {path}, which the unit hides from the agent "
                f"(ProtectHome=, PrivateTmp=); put it elsewhere, e.g. {instead}"
            )


def _systemd_quote(word: str) -> str:
    # systemd expands %specifiers and $VARIABLES in ExecStart=: double them to keep them literal.
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not re.search(r"[\s\"'\\]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
