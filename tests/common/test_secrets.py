from __future__ import annotations

import logging
from pathlib import Path

import pytest

from wattwise.common.secrets import Secret, read_secret
from wattwise.errors import ConfigError

VALUE = "s3cr3t-token-value"


def test_secret_is_masked_in_repr_str_format_and_logs_but_revealed_on_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret(VALUE)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("token %s, %r, in %s", secret, secret, [secret])
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", caplog.text]
    assert all(VALUE not in text for text in shown)
    assert "********" in caplog.text
    assert secret.reveal() == VALUE


def test_secret_cannot_be_pickled_into_a_file() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret(VALUE))


def test_reads_from_the_named_environment_variable() -> None:
    secret = read_secret("WW_TOKEN", None, environ={"WW_TOKEN": f"  {VALUE}\n"})
    assert secret is not None and secret.reveal() == VALUE


def test_nothing_configured_is_none() -> None:
    assert read_secret(None, None, environ={}) is None


def test_unset_variable_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="WW_TOKEN"):
        read_secret("WW_TOKEN", None, environ={})


def test_reads_from_a_private_file_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE + "\n")
    path.chmod(0o600)
    secret = read_secret(None, path)
    assert secret is not None and secret.reveal() == VALUE


def test_world_readable_file_is_refused_without_showing_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        read_secret(None, path)
    assert VALUE not in str(caught.value)


def test_group_readable_file_is_read_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(VALUE)
    path.chmod(0o640)
    with caplog.at_level(logging.WARNING):
        secret = read_secret(None, path)
    assert secret is not None and secret.reveal() == VALUE
    assert "readable by its group" in caplog.text and VALUE not in caplog.text


def test_missing_or_empty_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="readable file"):
        read_secret(None, tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="not an empty one"):
        read_secret(None, empty)


def test_both_sources_configured_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only one"):
        read_secret("WW_TOKEN", tmp_path / "token", environ={"WW_TOKEN": VALUE})
