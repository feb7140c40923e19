"""deploy/compose.yaml, parsed and checked (no container engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.systemd_tools import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_services_are_influxdb_grafana_and_the_optimizer(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"influxdb", "grafana", "optimizer"}
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:2.7.")


def test_images_are_pinned_to_versions(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert re.search(r":\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned"


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in ("grafana", "optimizer"):
        depends = compose["services"][name]["depends_on"]
        assert depends["influxdb"]["condition"] == "service_healthy"


def test_bind_mounts_exist_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = [m for s in compose["services"].values() for m in bind_mounts(s)]
    assert len(mounts) >= 6
    for source, _ in mounts:
        assert (DEPLOY / source).exists(), source


def test_grafana_loads_the_dashboards_where_the_provider_looks(compose: dict[str, Any]) -> None:
    provider_file = DEPLOY / "grafana" / "provisioning" / "dashboards" / "wattwise.yaml"
    provider_path = yaml.safe_load(provider_file.read_text())["providers"][0]["options"]["path"]
    mounts = dict(bind_mounts(compose["services"]["grafana"]))
    assert mounts["../dashboards"] == provider_path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_grafanas_datasource_finds_every_variable_it_expands(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    datasource = next(
        DEPLOY / source
        for source, target in bind_mounts(grafana)
        if target.startswith("/etc/grafana/provisioning/datasources/")
    )
    wanted = set(VARIABLE.findall(datasource.read_text()))
    assert wanted == {"WATTWISE_INFLUX_URL", "WATTWISE_INFLUX_TOKEN"}
    assert wanted <= set(grafana["environment"])


def test_no_secret_is_written_inline(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) and not key.endswith(("_FILE", "__FILE")):
                assert VARIABLE.fullmatch(str(value)), f"{name}: {key} holds a literal"
            if key.endswith(("_FILE", "__FILE")):
                assert str(value).startswith("/run/secrets/"), f"{name}: {key}"
    for secret in compose["secrets"].values():
        assert set(secret) == {"environment"}


def test_every_variable_is_documented_in_the_env_example(compose: dict[str, Any]) -> None:
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = set(VARIABLE.findall(yaml.safe_dump(compose)))
    used |= {s["environment"] for s in compose["secrets"].values()}
    assert used <= documented, used - documented
    # The example holds no secret values, only the names to fill in.
    for line in ENV_EXAMPLE.read_text().splitlines():
        if SECRET_NAME.search(line.split("=", 1)[0]) and "=" in line and not line.startswith("#"):
            assert line.endswith("="), line


def test_optimizer_reads_its_secrets_from_files(compose: dict[str, Any]) -> None:
    optimizer = compose["services"]["optimizer"]
    secret_files = {f"/run/secrets/{name}" for name in optimizer["secrets"]}
    file_settings = {v for k, v in optimizer["environment"].items() if k.endswith("_FILE")}
    assert file_settings and file_settings <= secret_files
    assert "optimizer serve" in " ".join(optimizer["command"])


def test_influxdb_init_script_maps_the_bucket_for_influxql() -> None:
    script = DEPLOY / "influxdb" / "init" / "10-wattwise-dbrp.sh"
    text = script.read_text()
    assert "influx v1 dbrp create" in text and "--default" in text
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed: apt-get install -y shellcheck"
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
