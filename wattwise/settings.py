"""Settings files: one loader for every wattwise component.

A component's settings are a frozen pydantic model. :func:`load_settings` builds
one from, lowest precedence first, the model's defaults, a TOML file,
environment variables and command-line flags, and turns any validation failure
into a :class:`~wattwise.errors.ConfigError` that names the key, the value and
what is allowed (the CLI exits 2).

Each component reads only its own environment namespace, the TOML key spelled
in capitals after its prefix: ``WATTWISE_AGENT_INFLUX__URL`` is the agent's
``influx.url``, ``WATTWISE_OPTIMIZER_STORE__URL`` the optimizer's ``store.url``.
So a shell or unit that sets one component's settings never changes, or fails,
the other's.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from wattwise.errors import MISSING, ConfigError

AGENT_ENV_PREFIX = "WATTWISE_AGENT_"
OPTIMIZER_ENV_PREFIX = "WATTWISE_OPTIMIZER_"
_COMPONENT_SETTING = re.compile(r"^WATTWISE_(AGENT|OPTIMIZER)_[A-Z]")
_SETTING = re.compile(r"^WATTWISE_[A-Z0-9_]*__")

log = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)


def load_settings(
    model: type[Model],
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    env_prefix: str,
    require_file: bool = False,
    example: str,
) -> Model:
    """Build ``model`` from defaults, a TOML file, the environment and flags.

    ``overrides`` maps dotted keys (``"influx.url"``) to flag values; ``None``
    values are ignored. ``env_prefix`` is the component's namespace
    (:data:`AGENT_ENV_PREFIX`, :data:`OPTIMIZER_ENV_PREFIX`). ``example`` names
    the documented example file, for the message about an unknown key.
    """
    merged: dict[str, Any] = {}
    if path is not None:
        _deep_merge(merged, _read_toml(path, require_file))
    _deep_merge(merged, _env_overrides(env or {}, env_prefix))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _deep_merge(merged, _nest(dotted.split("."), value))
    try:
        return model.model_validate(merged)
    except ValidationError as e:
        raise _config_error(e, example) from e


def _read_toml(path: Path, require_file: bool) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        if require_file:
            raise ConfigError(
                "config", str(path), "an existing TOML file", problem="does not exist"
            ) from e
        return {}
    except IsADirectoryError as e:
        raise ConfigError("config", str(path), "a TOML file", problem="is a directory") from e
    except PermissionError as e:
        raise ConfigError(
            "config", str(path), "a file readable by this user", problem="cannot be read"
        ) from e
    except OSError as e:
        raise ConfigError("config", str(path), f"a readable TOML file ({e.strerror})") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        hint = "; it looks like UTF-16, save it as UTF-8" if utf16 else ""
        raise ConfigError(
            "config", str(path), f"a UTF-8 TOML file (byte {e.start} is not UTF-8{hint})"
        ) from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config", str(path), f"valid TOML ({e})") from e


def _env_overrides(env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """``WATTWISE_AGENT_INFLUX__URL=…`` → ``{"influx": {"url": …}}`` for the agent's prefix."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        own = name.startswith(prefix) and _COMPONENT_SETTING.match(name)
        if _SETTING.match(name) and not _COMPONENT_SETTING.match(name):
            # The names before components had their own namespaces: say so, never guess.
            log.warning(
                "%s is ignored: settings come from %s<SECTION>__<KEY> (agent) or "
                "%s<SECTION>__<KEY> (optimizer)",
                name,
                AGENT_ENV_PREFIX,
                OPTIMIZER_ENV_PREFIX,
            )
        if not own or "__" not in name:
            continue
        keys = [k.lower() for k in name[len(prefix) :].split("__")]
        _deep_merge(out, _nest(keys, value))
    return out


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for key in reversed(keys):
        nested = {key: nested}
    result: dict[str, Any] = nested
    return result


def _deep_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _config_error(error: ValidationError, example: str) -> ConfigError:
    # An unknown key first: a misspelt key is what leaves a required one missing.
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    key = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return ConfigError(key, first.get("input"), f"a known key (see {example})")
    if first["type"] == "missing":
        return ConfigError(key, MISSING, f"set: the key is required (see {example})")
    # pydantic says "Input should be greater than 0": keep only what is allowed.
    allowed = first["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
    return ConfigError(key, first.get("input"), allowed)


def check_http_url(key: str, url: str, *, password_key: str) -> None:
    """Refuse ``url`` unless it is http(s) without credentials in it.

    ``http://admin:PW@host`` would be printed by httpx on every request and by
    ``check-config``: the credentials belong in ``password_key``'s file. The error
    shows the URL with its credentials masked.
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigError(key, redact_url(url), "a URL starting with http:// or https://")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ConfigError(key, redact_url(url), f"a valid URL ({e})") from e
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key,
            redact_url(url),
            f"a URL without user:password@ (put the user in its own setting and the "
            f"password in {password_key})",
        )


def redact_url(url: str) -> str:
    """``url`` with anything between ``://`` and the last ``@`` of its authority masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"
