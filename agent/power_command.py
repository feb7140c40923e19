"""``wattwise agent apply-power-plan``: checks, wiring, then one pass or a loop.

Opt-in and root only: nothing starts it unless the operator runs it or enables its
unit (deploy/systemd/wattwise-power-plan.service), and without root it refuses to
start (exit 2) unless ``--dry-run``, which reads the limits and prints what it would
set. The checks run before anything is opened, so a bad option changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wattwise.agent.power_applier import PowerPlanApplier
from wattwise.agent.power_limits import PowerLimits, open_nvml_limits
from wattwise.agent.power_plan import PlanClient
from wattwise.agent.power_state import (
    DEFAULT_STATE_FILE,
    StateFile,
    read_boot_id,
)
from wattwise.clock import Clock, SystemClock
from wattwise.common.http import tls_verify
from wattwise.common.plan_contract import APPLIER_INTERVAL_S
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError, PowerPlanError
from wattwise.settings import check_http_url

log = logging.getLogger(__name__)

EXIT_NOT_ROOT = 2
NOT_ROOT = (
    "apply-power-plan changes GPU power limits, which needs root: run it as root (its "
    "systemd unit does), or add --dry-run to see what it would set"
)


@dataclass(frozen=True)
class ApplierOptions:
    """The command's options, as given."""

    optimizer_url: str
    token_file: Path
    once: bool = False
    dry_run: bool = False
    interval_s: float = APPLIER_INTERVAL_S
    silent_after_s: float = 600.0
    state_file: Path = DEFAULT_STATE_FILE
    host: str = ""
    timeout_s: float = 10.0
    ca_file: Path | None = None
    insecure: bool = False


def check_options(options: ApplierOptions) -> None:
    """ConfigError (exit 2) naming the option that is not allowed."""
    check_http_url("--optimizer-url", options.optimizer_url, password_key="--token-file")
    if not options.interval_s > 0:
        raise ConfigError("--interval-s", options.interval_s, "more than 0")
    if not options.silent_after_s >= options.interval_s:
        raise ConfigError(
            "--silent-after-s",
            options.silent_after_s,
            f"at least --interval-s ({options.interval_s:g}): one missed answer is no silence",
        )
    if not 0 < options.timeout_s <= options.interval_s:
        raise ConfigError(
            "--timeout-s", options.timeout_s, f"more than 0, at most --interval-s"
            f" ({options.interval_s:g})"
        )  # fmt: skip


def apply_power_plan(
    options: ApplierOptions,
    *,
    stop: threading.Event,
    echo: Callable[[str], None] = print,
    limits: PowerLimits | None = None,
    clock: Clock | None = None,
    euid: int | None = None,
    boot_id: Callable[[], str] = read_boot_id,
) -> int:
    """Run the command; the exit status. ``limits`` defaults to NVML (tests pass the fake)."""
    if not options.dry_run and (os.geteuid() if euid is None else euid) != 0:
        print(f"wattwise: {NOT_ROOT}", file=sys.stderr)
        return EXIT_NOT_ROOT
    check_options(options)
    token = read_secret(None, options.token_file, setting="--token-file")
    assert token is not None
    host = options.host or socket.gethostname()
    source = PlanClient(
        options.optimizer_url,
        token,
        host,
        timeout_s=options.timeout_s,
        verify=tls_verify(options.ca_file, options.insecure),
    )
    opened = None
    try:
        if limits is None:
            limits = opened = open_nvml_limits()
        applier = PowerPlanApplier(
            source,
            limits,
            StateFile(options.state_file, boot_id=boot_id),
            clock=clock or SystemClock(),
            interval_s=options.interval_s,
            silent_after_s=options.silent_after_s,
            dry_run=options.dry_run,
            echo=echo,
        )
        if not options.dry_run:
            _check_writable(applier)
        log.info(
            "applying %s's power plans from %s every %g s%s; defaults back after %g s of "
            "silence; state in %s",
            host,
            options.optimizer_url,
            options.interval_s,
            " (dry run: nothing is changed)" if options.dry_run else "",
            options.silent_after_s,
            options.state_file,
        )
        if options.once:
            return 0 if applier.cycle() else 1
        applier.run(stop)
        return 0
    finally:
        source.close()
        if opened is not None:
            opened.close()


def _check_writable(applier: PowerPlanApplier) -> None:
    try:
        applier.state_file.save(applier.state)
    except PowerPlanError as e:
        raise ConfigError(
            "--state-file", str(applier.state_file.path), f"a file root can write ({e})"
        ) from e
