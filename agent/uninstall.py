"""``wattwise agent uninstall``: stop and remove what ``wattwise agent install`` put in place.

The power-plan applier's unit goes first, while the program it runs is still
installed: as it stops, it puts the GPUs' default power limits back. Then the
agent's unit, and ``systemctl daemon-reload``.

What holds data stays unless ``purge``: the write-ahead log and the dead-letter file
(``/var/lib/wattwise``), the applier's state, the configuration and secrets
(``/etc/wattwise``), the units' drop-ins and the system user. A purge refuses to
delete a log that still holds lines the store never acknowledged unless
``discard_unsent``: with the agent gone, nothing would ever send them. A log kept
outside ``/var/lib/wattwise`` (``wal.dir``) is purged only when it holds nothing
but the log's own files, so a mistyped directory is never deleted whole.

The wattwise package itself stays: pip installed it and pip removes it.

Like the installer, :func:`plan_uninstall` only looks and :func:`~.install.apply`
acts, through the same injectable command runner; paths are joined under ``root``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.agent.config import DEFAULT_CONFIG_PATH, WalSettings, load_config
from wattwise.agent.install import (
    SERVICE_USER,
    STATE_DIR,
    SYSTEMD_DIR,
    UNIT_NAME,
    Accounts,
    CommandRunner,
    RunCommand,
    Step,
    SystemAccounts,
    _under,
    apply,
    format_plan,
    run_command,
)
from wattwise.agent.install_power_plan import UNIT_NAME as POWER_PLAN_UNIT
from wattwise.agent.power_state import DEFAULT_STATE_FILE
from wattwise.agent.wal_files import segment_seq
from wattwise.agent.wal_scan import undelivered_lines
from wattwise.errors import ConfigError, InstallError

CONFIG_DIR = DEFAULT_CONFIG_PATH.parent
POWER_PLAN_STATE_DIR = DEFAULT_STATE_FILE.parent
_WAL_OWN_FILES = frozenset({"cursor", "cursor.tmp", "lock"})


@dataclass(frozen=True)
class RemovePath:
    path: Path
    why: str

    def describe(self) -> str:
        return f"remove {self.path}: {self.why}"

    def apply(self, runner: CommandRunner) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        else:
            self.path.unlink(missing_ok=True)


UninstallStep = RunCommand | RemovePath


def plan_uninstall(
    *,
    purge: bool,
    discard_unsent: bool = False,
    config_path: Path = DEFAULT_CONFIG_PATH,
    root: Path = Path("/"),
    systemd_dir: Path = SYSTEMD_DIR,
    accounts: Accounts | None = None,
) -> list[UninstallStep]:
    """The steps that would remove the agent (and with ``purge`` its data); changes nothing.

    Raises :class:`InstallError` when a purge would delete lines never delivered and
    ``discard_unsent`` is not given.
    """
    steps = _unit_steps(root, systemd_dir)
    if purge:
        steps += _purge_steps(
            root, systemd_dir, _wal_dir(root, config_path), discard_unsent=discard_unsent
        )
        if (accounts or SystemAccounts()).user_exists(SERVICE_USER):
            steps.append(RunCommand(("userdel", SERVICE_USER), "the agent's system user"))
    return steps


def _unit_steps(root: Path, systemd_dir: Path) -> list[UninstallStep]:
    steps: list[UninstallStep] = []
    # The applier first: stopping it restores the default limits with its program still here.
    for unit, what in ((POWER_PLAN_UNIT, "the power-plan applier"), (UNIT_NAME, "the agent")):
        unit_file = _under(root, systemd_dir / unit)
        if not unit_file.exists():
            continue
        why = f"stop {what} and keep it from starting at boot"
        if unit == POWER_PLAN_UNIT:
            why += " (as it stops it puts the GPUs' default power limits back)"
        steps.append(RunCommand(("systemctl", "disable", "--now", unit), why))
        steps.append(RemovePath(unit_file, f"{what}'s systemd unit"))
    if steps:
        steps.append(RunCommand(("systemctl", "daemon-reload"), "make systemd forget the units"))
    return steps


def _purge_steps(
    root: Path, systemd_dir: Path, wal_dir: Path, *, discard_unsent: bool
) -> list[UninstallStep]:
    unsent = undelivered_lines(wal_dir)
    if unsent and not discard_unsent:
        raise InstallError(
            f"the write-ahead log in {wal_dir} holds {_lines(unsent)} the store never "
            "acknowledged, and a purge would delete them: let the agent deliver them first "
            "(its queue_lines falls to 0), or add --discard-unsent to delete them anyway"
        )
    state_dir = _under(root, STATE_DIR)
    log_note = f", with {_lines(unsent)} never delivered" if unsent else ""
    candidates = [
        (state_dir, f"the agent's state: write-ahead log and dead-letter file{log_note}"),
        (_under(root, POWER_PLAN_STATE_DIR), "the power-plan applier's state"),
        (_under(root, CONFIG_DIR), "configuration and secrets"),
        (_under(root, systemd_dir / f"{UNIT_NAME}.d"), "the agent unit's drop-ins"),
        (_under(root, systemd_dir / f"{POWER_PLAN_UNIT}.d"), "the applier unit's drop-ins"),
    ]
    if not wal_dir.is_relative_to(state_dir) and _holds_only_a_log(wal_dir):
        candidates.append((wal_dir, f"the write-ahead log (wal.dir){log_note}"))
    return [RemovePath(path, why) for path, why in candidates if path.exists()]


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _wal_dir(root: Path, config_path: Path) -> Path:
    """The log directory the agent's configuration names, else the default one."""
    config_file = _under(root, Path(os.path.abspath(config_path)))
    wal_dir = WalSettings().dir
    # A configuration the agent could not run with still leaves the default log.
    with contextlib.suppress(ConfigError):
        if config_file.is_file():
            wal_dir = load_config(config_file, None, {}, require_file=True).wal.dir
    return _under(root, Path(os.path.abspath(wal_dir)))


def _holds_only_a_log(directory: Path) -> bool:
    if not directory.is_dir():
        return False
    return all(
        segment_seq(path) is not None or path.name in _WAL_OWN_FILES for path in directory.iterdir()
    )


def uninstall_agent(
    *,
    purge: bool,
    discard_unsent: bool,
    dry_run: bool,
    config_path: Path = DEFAULT_CONFIG_PATH,
    echo: Callable[[str], None] = print,
    root: Path = Path("/"),
    systemd_dir: Path = SYSTEMD_DIR,
    accounts: Accounts | None = None,
    runner: CommandRunner = run_command,
    euid: int | None = None,
) -> list[UninstallStep]:
    """``wattwise agent uninstall``: print the plan, and unless ``dry_run`` carry it out as root."""
    if discard_unsent and not purge:
        raise ConfigError("--discard-unsent", "given", "only together with --purge")
    if not dry_run and (os.geteuid() if euid is None else euid) != 0:
        raise InstallError(
            "uninstalling the agent stops and removes systemd units and needs root; "
            "run it with sudo, or add --dry-run to see the steps"
        )
    steps = plan_uninstall(
        purge=purge,
        discard_unsent=discard_unsent,
        config_path=config_path,
        root=root,
        systemd_dir=systemd_dir,
        accounts=accounts,
    )
    if not steps:
        data = ", and no data of the agent's" if purge else ""
        echo(f"Nothing to remove: no wattwise unit in {systemd_dir}{data}.")
    else:
        echo(("Would do:\n" if dry_run else "Uninstalling:\n") + format_plan(steps))
    if not dry_run:
        apply(steps, runner)
    echo(_afterwards(steps, purge=purge, dry_run=dry_run))
    return steps


def _afterwards(steps: Sequence[Step], *, purge: bool, dry_run: bool) -> str:
    lines = ["Done."] if steps and not dry_run else []
    if not purge:
        kept = f"{STATE_DIR} (write-ahead log), {CONFIG_DIR}, user {SERVICE_USER}"
        lines.append(f"{'Would keep' if dry_run else 'Kept'}: {kept}; --purge removes them.")
    lines.append("The wattwise package stays installed: `pip uninstall wattwise` removes it.")
    return "\n".join(lines)
