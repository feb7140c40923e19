"""deploy/ansible: syntax, a check-mode run against this machine, and the rendered config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.systemd_tools import REPO
from wattwise.agent.config import load_config

ANSIBLE_DIR = REPO / "deploy" / "ansible"
PLAYBOOK = ANSIBLE_DIR / "playbook.yml"
ROLE = ANSIBLE_DIR / "roles" / "wattwise_agent"
BIN = Path(sys.executable).parent
VAULT_TOKEN = "vault-token-8d0f"  # a test value, checked never to be printed


def localhost_inventory(path: Path, **host_vars: object) -> Path:
    host: dict[str, object] = {
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "wattwise_cluster": "c1",
        "wattwise_zone": "z1",
        "wattwise_rack": "r07",
        **host_vars,
    }
    inventory = {"all": {"children": {"gpu_nodes": {"hosts": {"localhost": host}}}}}
    path.write_text(yaml.safe_dump(inventory))
    return path


def encrypted_vault(tmp_path: Path) -> tuple[Path, Path]:
    """A real ansible-vault file holding the InfluxDB token, and its password file."""
    password = tmp_path / "vault-password"
    password.write_text("correct horse battery staple\n")
    vault = tmp_path / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_wattwise_influx_token": VAULT_TOKEN}))
    encrypt = [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password)]
    subprocess.run([*encrypt, str(vault)], check=True, capture_output=True, timeout=60)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    return vault, password


def ansible(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(cwd / "ansible-tmp")}
    return subprocess.run(
        [str(BIN / tool), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=cwd,
        env=env,
    )


def check_run(
    tmp_path: Path, inventory: Path, wheel: Path | None
) -> subprocess.CompletedProcess[str]:
    vault, password = encrypted_vault(tmp_path)
    args = ["-i", str(inventory), str(PLAYBOOK), "--check", "--diff"]
    args += ["-e", f"@{vault}", "--vault-password-file", str(password)]
    args += ["-e", f"wattwise_wheel={wheel or ''}"]
    return ansible("ansible-playbook", *args, cwd=tmp_path)


def test_playbook_passes_syntax_check(tmp_path: Path) -> None:
    args = ["-i", str(ANSIBLE_DIR / "inventory.yml"), str(PLAYBOOK), "--syntax-check"]
    done = ansible("ansible-playbook", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_mode_on_this_machine_succeeds_and_changes_nothing(
    tmp_path: Path, wheel: Path
) -> None:
    done = check_run(tmp_path, localhost_inventory(tmp_path / "inventory.yml"), wheel)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "failed=0" in done.stdout
    # What a real run would change on a fresh node: the agent's wheel, copied and installed…
    assert "changed: [localhost]" in done.stdout.split("Copy the agent's wheel")[1]
    assert "changed: [localhost]" in done.stdout.split("Install wattwise into")[1]
    assert 'labels = { cluster = "c1", zone = "z1", rack = "r07" }' in done.stdout
    assert 'token_file = "/run/credentials/wattwise-agent.service/influx-token"' in done.stdout
    # …without the vault's secret in the output, and without touching the machine.
    assert VAULT_TOKEN not in done.stdout + done.stderr
    assert not Path("/etc/wattwise").exists()
    assert not Path("/opt/wattwise").exists()


def test_check_mode_refuses_a_host_without_its_rack_label(tmp_path: Path) -> None:
    inventory = localhost_inventory(tmp_path / "inventory.yml", wattwise_rack="")
    done = check_run(tmp_path, inventory, None)
    assert done.returncode != 0
    assert "the labels wattwise_cluster/zone/rack per host" in done.stdout


def test_check_mode_without_a_wheel_says_to_build_one(tmp_path: Path) -> None:
    done = check_run(tmp_path, localhost_inventory(tmp_path / "inventory.yml"), None)
    assert done.returncode != 0
    assert "no wattwise wheel: run `make wheel` in the repository" in done.stdout


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_rendered_config_is_accepted_by_the_agent(tmp_path: Path, api: str) -> None:
    rendered = tmp_path / "agent.toml"
    variables = {
        "wattwise_influx_url": "https://influxdb.example:8086",
        "wattwise_influx_api": api,
        "wattwise_influx_org": "dc",
        "wattwise_influx_bucket": "wattwise",
        "wattwise_influx_username": "agent",
        "wattwise_influx_password": "from-the-vault",
    }
    # The role's defaults, then what the inventory sets, as in a play.
    labels = ("wattwise_cluster", "wattwise_zone", "wattwise_rack")
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    defaults = {k: v for k, v in defaults.items() if k not in labels}
    inventory = localhost_inventory(tmp_path / "inventory.yml", **{**defaults, **variables})
    module_args = f"src={ROLE / 'templates' / 'agent.toml.j2'} dest={rendered}"
    args = ["-i", str(inventory), "localhost", "-m", "ansible.builtin.template", "-a", module_args]
    done = ansible("ansible", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    config = load_config(rendered, None, {}, require_file=True)
    assert config.agent.labels == {"cluster": "c1", "zone": "z1", "rack": "r07"}
    assert config.influx.url == "https://influxdb.example:8086"
    assert config.influx.api == api
    credentials = Path("/run/credentials/wattwise-agent.service")
    if api == "v2":
        assert (config.influx.org, config.influx.bucket) == ("dc", "wattwise")
        assert config.influx.token_file == credentials / "influx-token"
    else:
        assert config.influx.password_file == credentials / "influx-password"
    assert "from-the-vault" not in rendered.read_text()


def test_role_uses_only_builtin_modules() -> None:
    keywords = {"name", "when", "register", "notify", "loop", "loop_control", "no_log"}
    keywords |= {"changed_when", "check_mode", "become", "tags"}
    modules = set()
    for tasks_file in [ROLE / "tasks" / "main.yml", ROLE / "handlers" / "main.yml"]:
        for task in yaml.safe_load(tasks_file.read_text()):
            modules |= set(task) - keywords
    assert modules, "no modules found"
    assert all(m.startswith("ansible.builtin.") for m in modules), modules


def test_group_vars_take_the_token_from_the_vault_only() -> None:
    group_vars = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "gpu_nodes" / "vars.yml").read_text())
    assert group_vars["wattwise_influx_token"] == "{{ vault_wattwise_influx_token }}"
    assert not (ANSIBLE_DIR / "group_vars" / "gpu_nodes" / "vault.yml").exists()
