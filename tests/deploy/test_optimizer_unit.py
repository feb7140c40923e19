"""deploy/systemd/wattwise-optimizer.service and deploy/optimizer.toml.example."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.systemd_tools import REPO, directives, exposure, install_unit, verify
from wattwise.errors import ConfigError
from wattwise.optimizer.service.settings import OptimizerConfig, load_optimizer_config

UNIT_NAME = "wattwise-optimizer.service"
UNIT = REPO / "deploy" / "systemd" / UNIT_NAME
CONFIG_EXAMPLE = REPO / "deploy" / "optimizer.toml.example"
OPERATIONS_DOC = REPO / "docs" / "operations.md"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    done = verify(install_unit(tmp_path, UNIT.read_text(), UNIT_NAME), UNIT_NAME)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_verify_catches_a_misspelled_directive_in_this_unit(tmp_path: Path) -> None:
    typo = UNIT.read_text().replace("PrivateDevices=", "PrivateDevice=")
    done = verify(install_unit(tmp_path, typo, UNIT_NAME), UNIT_NAME)
    assert "Unknown key 'PrivateDevice'" in done.stderr


def test_exposure_stays_at_or_below_the_documented_score(tmp_path: Path) -> None:
    documented = re.search(
        rf"Overall exposure level for {re.escape(UNIT_NAME)}: ([0-9.]+)",
        OPERATIONS_DOC.read_text(),
    )
    assert documented, "docs/operations.md must record the exposure score"
    measured = exposure(install_unit(tmp_path, UNIT.read_text(), UNIT_NAME), UNIT_NAME)
    assert measured <= float(documented.group(1))


def test_every_directive_has_a_comment_saying_why() -> None:
    lines = UNIT.read_text().splitlines()
    uncommented = [
        line
        for previous, line in itertools.pairwise(lines)
        if line and not line.startswith(("#", "[")) and not previous.startswith("#")
    ]
    assert uncommented == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (
            "ExecStart",
            "/opt/wattwise/bin/wattwise optimizer serve --config /etc/wattwise/optimizer.toml",
        ),
        ("PrivateDevices", "yes"),
        ("StateDirectory", "wattwise-optimizer"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("DynamicUser", "yes"),
    ],
)
def test_unit_sets(key: str, value: str) -> None:
    assert directives(UNIT.read_text()).get(key) == [value]


def test_no_device_is_allowed() -> None:
    assert "DeviceAllow" not in directives(UNIT.read_text())


def test_config_example_parses_and_names_the_units_credentials() -> None:
    config = tomllib.loads(CONFIG_EXAMPLE.read_text())
    assert {"api", "store", "models", "recommend", "placement", "cooling", "webhooks"} <= set(
        config
    )
    credentials = {
        f"/run/credentials/{UNIT_NAME}/{value.split(':')[0]}"
        for value in directives(UNIT.read_text())["LoadCredential"]
    }
    assert config["store"]["token_file"] in credentials
    assert config["webhooks"]["secret_file"] in credentials
    # The registry must be writable under ProtectSystem=strict: inside the StateDirectory=.
    assert config["models"]["registry_dir"].startswith("/var/lib/wattwise-optimizer/")


def test_config_example_holds_no_secret_values() -> None:
    config = tomllib.loads(CONFIG_EXAMPLE.read_text())
    assert config["api"]["tokens"] == []
    secret_keys = [
        f"{section}.{key}"
        for section, values in config.items()
        for key in values
        if re.search(r"token|password|secret", key) and not key.endswith("_file")
    ]
    assert secret_keys == ["api.tokens"]


def test_config_example_is_accepted_by_the_optimizer() -> None:
    config = load_optimizer_config(CONFIG_EXAMPLE, None, {}, require_file=True)
    assert config.models.registry_dir == Path("/var/lib/wattwise-optimizer/models")
    assert config.store.token_file == Path(
        "/run/credentials/wattwise-optimizer.service/influx-token"
    )


def _example_keys() -> dict[str, list[str]]:
    """Section → key lines (set or commented out) of the example, in order."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in CONFIG_EXAMPLE.read_text().splitlines():
        header = re.match(r"^\[([a-z_]+)\]$", line)
        if header:
            current = header.group(1)
        elif re.match(r"^#? ?[a-z_0-9]+ = ", line) and current:
            sections.setdefault(current, []).append(line)
    return sections


def test_config_example_shows_every_setting_with_a_comment() -> None:
    found = _example_keys()
    lines = CONFIG_EXAMPLE.read_text().splitlines()
    for section, field in OptimizerConfig.model_fields.items():
        assert field.annotation is not None
        names = set(field.annotation.model_fields)
        shown = {re.sub(r"^# ?", "", line).split(" =")[0] for line in found.get(section, [])}
        assert names - {"targets"} <= shown, f"[{section}] lacks {sorted(names - shown)}"
    for line in (x for keys in found.values() for x in keys):
        index = lines.index(line)
        assert "#" in line or lines[index - 1].startswith("#"), f"no comment: {line}"


@pytest.mark.parametrize(
    ("right", "misspelled"),
    [("keep_versions =", "keep_version ="), ("gpu_temp_margin_c =", "gpu_margin_c =")],
)
def test_config_example_with_a_misspelled_key_is_refused_naming_it(
    tmp_path: Path, right: str, misspelled: str
) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text(CONFIG_EXAMPLE.read_text().replace(right, misspelled, 1))
    with pytest.raises(ConfigError) as refused:
        load_optimizer_config(path, None, {}, require_file=True)
    assert refused.value.key.endswith(misspelled.removesuffix(" ="))
