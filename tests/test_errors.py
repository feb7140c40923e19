"""The error hierarchy's messages."""

from __future__ import annotations

import pytest

from wattwise.errors import MISSING, ConfigError, looks_secret


@pytest.mark.parametrize(
    "key",
    ["influx.token", "influx.password", "bmc.password", "webhooks.secret", "api.tokens.0",
     "grafana.api_key", "x.credentials"],
)  # fmt: skip
def test_config_error_never_repeats_the_value_of_a_secret_looking_key(key: str) -> None:
    # Regression: check-config printed "influx.token: 'secret123' is not allowed".
    message = str(ConfigError(key, "secret123", "a known key"))
    assert "secret123" not in message
    assert message.startswith(f"{key}: the value (not shown") and "a known key" in message


@pytest.mark.parametrize(
    "key", ["influx.token_file", "webhooks.secret_file", "influx.url", "agent.sim.seed"]
)
def test_config_error_shows_the_value_of_other_keys(key: str) -> None:
    assert not looks_secret(key)
    assert "'/etc/x'" in str(ConfigError(key, "/etc/x", "something else"))


def test_a_value_that_says_where_a_secret_is_may_be_shown() -> None:
    message = str(ConfigError("secret", "env WW_TOKEN", "set", describes_source=True))
    assert "'env WW_TOKEN'" in message


def test_a_missing_file_is_said_to_not_exist_rather_than_to_be_not_allowed() -> None:
    # Regression: "--config: '/etc/wattwise/optimizer.toml' is not allowed" for a file that
    # was simply not there, which read as if that path were forbidden.
    message = str(ConfigError("config", "/etc/x.toml", "a TOML file", problem="does not exist"))
    assert message == "config: '/etc/x.toml' does not exist; it must be a TOML file"


def test_a_value_never_given_is_said_to_be_missing() -> None:
    # Regression: "token: nothing is not allowed" for a token no one had given.
    message = str(ConfigError("token", MISSING, "a token in --token-file"))
    assert message == "token: nothing was given; it must be a token in --token-file"
