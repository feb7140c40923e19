"""What ``agent run`` needs beyond valid settings, checked before anything starts.

Settings can be well-formed and still unusable: a WAL directory that is a file,
a secret or CA file that is missing or not PEM, a BMC password readable by
everyone. ``run`` and ``check-config`` both call :func:`check_runtime`, so
``check-config`` says OK only to what ``run`` accepts, and both exit 2 naming
the key. Nothing is created or started here: directories are checked for being
directories (or creatable) and writable, files are read, TLS contexts built and
dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from wattwise.agent.config import AgentConfig, BmcSettings, require_store_target
from wattwise.clock import SystemClock
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError


def check_runtime(config: AgentConfig, environ: Mapping[str, str]) -> None:
    """Raise ConfigError for the first setting ``run`` would fail on."""
    from wattwise.agent.runtime import build_transport

    require_store_target(config)
    writable_directory("wal.dir", config.wal.dir)
    writable_directory("wal.dead_letter_dir", config.wal.dead_letters())
    if config.store.kind == "embedded":
        writable_file("store.embedded_path", config.store.embedded_path)
    else:
        # Reads the password or token and loads the TLS files, as run does.
        build_transport(config, SystemClock(), dict(environ)).close()
    if config.bmc.kind:
        check_bmc(config.bmc, environ)


def check_bmc(settings: BmcSettings, environ: Mapping[str, str]) -> None:
    """The BMC's password file (or variable) and CA file, read as a BMC source reads them."""
    env_var = "WATTWISE_BMC_PASSWORD" if "WATTWISE_BMC_PASSWORD" in environ else None
    if settings.kind == "ipmi":
        env_var = None  # ipmitool reads the file itself
    read_secret(env_var, settings.password_file, environ=environ, setting="bmc.password_file")
    if settings.kind == "redfish" and settings.ca_file is not None:
        from wattwise.collector.redfish import RedfishBackend

        RedfishBackend(base_url=settings.url, verify=settings.ca_file).close()


def writable_directory(key: str, path: Path) -> None:
    """``path`` is a directory this user can write, or one it can create."""
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        where = "it is" if existing == path else f"{existing} is"
        raise ConfigError(key, str(path), f"a directory ({where} a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is not writable)"
        raise ConfigError(key, str(path), f"a directory this user can write{where}")


def writable_file(key: str, path: Path) -> None:
    """``path`` is a file this user can write, or one it can create."""
    if path.is_dir():
        raise ConfigError(key, str(path), "a file (it is a directory)")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(key, str(path), "a file this user can write")
    writable_directory(key, path.parent)
