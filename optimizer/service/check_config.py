"""``wattwise optimizer check-config``: what ``serve`` would refuse, found before a restart.

``serve`` refuses a bad key, an unreadable secret, a missing events directory or a
damaged events file by exiting 2 (its unit does not restart it). Run before a
restart, this check finds the same problems while the running optimizer still serves,
the way ``nginx -t`` or ``promtool check config`` do. It reads files only: it binds no
port, opens no store and sends nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from wattwise.clock import SystemClock
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError
from wattwise.optimizer.service.power_events import open_event_book
from wattwise.optimizer.service.server import webhook_secret
from wattwise.optimizer.service.settings import OptimizerConfig

CREDENTIALS = "/run/credentials/"
UNIT_STATE = Path("/var/lib/wattwise-optimizer")
"""The unit's ``StateDirectory=`` (deploy/systemd/wattwise-optimizer.service)."""
IN_UNIT = "CREDENTIALS_DIRECTORY"
"""Set by systemd for a unit that loads credentials: there they can be read."""


def check_optimizer_config(config: OptimizerConfig) -> tuple[str, list[str]]:
    """A summary of what ``config`` serves, and warnings; ConfigError for what ``serve``
    would refuse."""
    warnings: list[str] = []
    store = config.store
    if store.kind != "embedded":  # serve creates an embedded store, and its directory
        for key, path in (
            ("store.password_file", store.password_file),
            ("store.token_file", store.token_file),
        ):
            if _checkable(key, path, warnings):
                read_secret(None, path, setting=key)
        _readable("store.ca_file", store.ca_file)
    _readable("api.ssl_certfile", config.api.ssl_certfile)
    _readable("api.ssl_keyfile", config.api.ssl_keyfile)
    events = _events(config.budgets.events_file, warnings)
    hooks = config.webhooks
    if hooks.targets and _checkable("webhooks.secret_file", hooks.secret_file, warnings):
        webhook_secret(hooks)
    if not config.api.tokens:
        warnings.append("no API tokens: every endpoint but /healthz will answer 401")
    return _summary(config, events), warnings


def _events(path: Path | None, warnings: list[str]) -> str:
    """Where power events are kept, having read the file as serve does (a damaged one is
    refused)."""
    if path is None:
        warnings.append("budgets.events_file is not set: power events are lost at a restart")
        return "power events in memory only"
    if path.parent == UNIT_STATE and not UNIT_STATE.is_dir():
        warnings.append(f"{UNIT_STATE} is made by systemd when the unit first starts")
        return f"events in {path}"
    book = open_event_book(path, SystemClock())
    return f"{len(book.list(include_ended=True))} events in {path}"


def _summary(config: OptimizerConfig, events: str) -> str:
    store, api = config.store, config.api
    target = str(store.embedded_path) if store.kind == "embedded" else store.url
    scheme = "https" if api.ssl_certfile else "http"
    parts = [
        f"store {store.kind} {target}",
        f"API {scheme}://{api.host}:{api.port} with {len(api.tokens)} tokens",
        events,
    ]
    if config.webhooks.targets:
        parts.append(f"{len(config.webhooks.targets)} webhooks")
    return ", ".join(parts)


def _readable(key: str, path: Path | None) -> None:
    if path is None:
        return
    try:
        path.read_bytes()
    except OSError as e:
        raise ConfigError(
            key, str(path), "a file this user can read", problem=f"cannot be read ({e.strerror})"
        ) from e


def _checkable(key: str, path: Path | None, warnings: list[str]) -> bool:
    """False, with a warning, for a systemd credential seen from outside its unit: the
    unit's own copy (``/run/credentials/<unit>/``) exists only for the running unit."""
    if path is None or not str(path).startswith(CREDENTIALS) or os.environ.get(IN_UNIT):
        return True
    warnings.append(f"{key} {path} is a credential the unit loads: serve reads it, not this")
    return False
