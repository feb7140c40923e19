"""Secrets (InfluxDB password or token) from an environment variable or a file.

Never from a command-line argument: those are visible to every user in
``ps``. A :class:`Secret` masks itself in ``repr``, ``str`` and f-strings, so
it cannot end up in a log line or an exception message by accident.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from wattwise.errors import ConfigError

log = logging.getLogger(__name__)

MASK = "********"


class Secret:
    """A string that only :meth:`reveal` shows."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it to the one place that needs it, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        # Pickling would write the value to wherever the pickle goes.
        raise TypeError("a Secret cannot be pickled")


def read_secret(
    env_var: str | None,
    file: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    setting: str = "secret",
) -> Secret | None:
    """Read a secret from ``file`` or the environment variable ``env_var``.

    Returns None when neither is configured. Raises :class:`ConfigError` when
    both are configured (which one wins would be a guess), when the named
    variable is unset or empty, or when the file is missing, empty, or
    readable by every user. ``setting`` names the setting in those errors;
    the error never contains the secret itself.
    """
    if env_var and file:
        raise ConfigError(
            setting, f"env {env_var} and file {file}", "only one of the two", describes_source=True
        )
    if file is not None:
        return Secret(_read_secret_file(file, setting))
    if env_var:
        value = (os.environ if environ is None else environ).get(env_var, "").strip()
        if not value:
            raise ConfigError(
                setting,
                f"env {env_var}",
                "a variable that is set and not empty",
                describes_source=True,
            )
        return Secret(value)
    return None


def _read_secret_file(file: Path, setting: str) -> str:
    try:
        mode = file.stat().st_mode
        if mode & stat.S_IROTH:
            raise ConfigError(
                setting,
                str(file),
                f"a file not readable by every user (chmod 600 {file})",
                describes_source=True,
            )
        if mode & stat.S_IRGRP:
            log.warning("secret file %s is readable by its group; chmod 600 is safer", file)
        value = file.read_text().strip()
    except OSError as e:
        raise ConfigError(
            setting, str(file), f"a readable file ({e.strerror})", describes_source=True
        ) from e
    if not value:
        raise ConfigError(
            setting, str(file), "a file holding the secret, not an empty one", describes_source=True
        )
    return value
