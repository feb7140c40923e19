"""The ``wattwise agent`` commands, run as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.influxd import InfluxServer
from wattwise.agent import install
from wattwise.agent.cli import _print_probe, _probe_value
from wattwise.agent.sources import ProbeOutcome
from wattwise.cli import main


def wattwise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattwise", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_check_config_accepts_the_shipped_example_once_a_url_is_set(tmp_path: Path) -> None:
    example = (Path(__file__).parents[2] / "deploy" / "agent.toml.example").read_text()
    config = tmp_path / "agent.toml"
    config.write_text(example.replace('url = ""', 'url = "http://influx.example:8086"', 1))
    result = wattwise("agent", "check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "http://influx.example:8086" in result.stdout


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[influx]\nurl = "http://x:8086"\n[agent]\ngpu_interval_s = -1\n', "agent.gpu_interval_s"),
        ('[influx]\nurl = "http://x:8086"\n[wal]\nsink = "always"\n', "wal.sink"),
        ("[agent]\n", "influx.url"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(toml)
    result = wattwise("agent", "check-config", str(config))
    assert result.returncode == 2
    assert key in result.stderr and "is not allowed" in result.stderr


def test_check_config_takes_the_file_as_argument_or_as_config_like_the_other_commands(
    tmp_path: Path,
) -> None:
    # Regression: docs/deploy.md said `check-config --config FILE`, which exited 2.
    config = tmp_path / "agent.toml"
    config.write_text('[influx]\nurl = "http://influx.example:8086"\n')
    for args in ([str(config)], ["--config", str(config)]):
        result = wattwise("agent", "check-config", *args)
        assert result.returncode == 0, result.stderr
        assert f"{config}: OK" in result.stdout
    other = tmp_path / "other.toml"
    both = wattwise("agent", "check-config", str(config), "--config", str(other))
    assert both.returncode == 2 and "--config" in both.stderr


def test_check_config_never_prints_a_secret_given_in_the_file(tmp_path: Path) -> None:
    # Regression: "influx.token: 'secret123' is not allowed" went to the terminal and logs.
    config = tmp_path / "agent.toml"
    config.write_text('[influx]\nurl = "http://x:8086"\ntoken = "secret123"\n')
    result = wattwise("agent", "check-config", str(config))
    assert result.returncode == 2
    assert "influx.token: the value (not shown" in result.stderr
    assert "secret123" not in result.stderr + result.stdout


def test_run_with_a_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    wal = tmp_path / "wal"
    config.write_text(f'[influx]\nurl = "http://x:8086"\n[wal]\ndir = "{wal}"\nsync = "maybe"\n')
    result = wattwise("agent", "run", "--config", str(config))
    assert result.returncode == 2
    assert "wal.sync" in result.stderr
    assert not wal.exists()  # nothing was created, let alone started


def test_run_with_an_explicit_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = wattwise("agent", "run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_sim_with_more_nodes_than_its_racks_hold_exits_2_naming_agent_sim_racks() -> None:
    result = wattwise(
        "agent", "probe", "--source", "sim", "--json", "--config", "/dev/null",
        env={"WATTWISE_AGENT_AGENT__SIM__NODES": "65", "WATTWISE_AGENT_AGENT__SIM__RACKS": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "agent.sim.racks" in result.stderr and "at least 2 for 65 nodes" in result.stderr


def test_probe_sim_json_reports_every_simulated_gpu_and_node() -> None:
    result = wattwise(
        "agent", "probe", "--source", "sim", "--json", "--config", "/dev/null",
        env={
            "WATTWISE_AGENT_AGENT__SIM__NODES": "2",
            "WATTWISE_AGENT_AGENT__SIM__GPUS_PER_NODE": "4",
        },
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcomes = {o["source"]: o for o in json.loads(result.stdout)}
    gpus = [r for r in outcomes["sim-gpu"]["readings"] if r["measurement"] == "gpu"]
    assert len(gpus) == 8
    assert all(r["fields"]["power_w"] > 0 for r in gpus)
    assert all(r["fields"]["energy_j"] > 0 for r in gpus)  # second read: an interval exists
    hosts = [r for r in outcomes["sim-node"]["readings"] if r["measurement"] == "host"]
    assert len(hosts) == 2


def test_probe_table_shows_every_field_name_and_tag_whole() -> None:
    # Regression: four columns at 80 characters cut field names ("ecc_uncorrected_to…")
    # and broke the tags a few characters a line; floats showed 16 digits.
    env = {"WATTWISE_AGENT_AGENT__SIM__NODES": "1", "WATTWISE_AGENT_AGENT__SIM__GPUS_PER_NODE": "1"}
    shown = wattwise("agent", "probe", "--source", "sim", "--config", "/dev/null", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "…" not in shown.stdout
    assert "sim-gpu: 1 reading" in lines
    (gpu,) = [line for line in lines if line.startswith("gpu ")]
    for tag in ("model=NVIDIA H100 80GB HBM3", "uuid=GPU-", "host=sim-r01-n01", "gpu=0"):
        assert tag in gpu
    fields = dict(line.split() for line in lines if line.startswith("  "))
    assert "ecc_uncorrected_aggregate_total" in fields
    assert fields["power_limit_w"] == "700"  # an integral float, without decimals
    assert len(fields["power_w"].partition(".")[2]) <= 3


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "missing"), (700.0, "700"), (604.7712, "604.771"), (12.0001, "12"),
     (0.0123456789, "0.0123457"), (73229559398, "73229559398"), (float("nan"), "nan")],
)  # fmt: skip
def test_probe_values_read_as_an_operator_would_write_them(value: object, shown: str) -> None:
    # 12.0001 read "12." before the trailing point was dropped.
    assert _probe_value(value) == shown


def test_probe_error_is_printed_as_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # The error went through rich markup: "[/redfish/v1]" read as a closing tag raised
    # MarkupError, and "[bmc]" read as a style vanished.
    error = "GET [/redfish/v1/Chassis] answered 404; check [bmc] url"
    _print_probe([ProbeOutcome("bmc", error=error)])
    assert f"bmc: {error}" in " ".join(capsys.readouterr().out.split())


def test_probe_without_nvidia_driver_says_so_and_reports_host_stats() -> None:
    result = wattwise("agent", "probe", "--source", "nvml", "--json", "--config", "/dev/null")
    assert result.returncode == 0
    assert "no GPU readings on this node" in result.stderr
    outcomes = {o["source"]: o for o in json.loads(result.stdout)}
    assert outcomes["nvml"]["error"] and outcomes["nvml"]["readings"] == []
    host = outcomes["host"]["readings"][0]["fields"]
    assert host["mem_total_bytes"] > 0
    assert host["cpu_util_pct"] is not None  # a rate, thanks to the second read


def test_install_dry_run_prints_the_steps_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Where this checkout lives (CI may clone under /tmp, which the unit hides)
    # must not decide the outcome: the program is taken to be installed under /opt.
    monkeypatch.setattr(install, "default_exec_start", lambda: ["/opt/wattwise/bin/wattwise"])
    assert main(["agent", "install", "--dry-run", "--config", "/etc/wattwise-test/agent.toml"]) == 0
    out = capsys.readouterr().out
    assert "1. run `useradd --system" in out
    assert "write /etc/wattwise-test/agent.toml (mode 0640)" in out
    assert "systemctl enable wattwise-agent.service" in out
    assert not Path("/etc/wattwise-test").exists()


def test_install_refuses_a_program_the_unit_would_hide(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(install, "default_exec_start", lambda: ["/home/me/venv/bin/wattwise"])
    assert main(["agent", "install", "--dry-run", "--config", "/etc/wattwise-test/agent.toml"]) == 1
    assert "which the unit hides from the agent" in capsys.readouterr().err


@pytest.mark.influx
def test_run_logs_no_line_per_write_by_default(tmp_path: Path, influxd: InfluxServer) -> None:
    # Regression: httpx logged "HTTP Request: POST …/write" at INFO for every batch the
    # sender delivered, 86,400 lines a day in the journal of every node.
    influxd.create_database("quiet")
    env = {k: v for k, v in os.environ.items() if k != "WATTWISE_LOG_LEVEL"}
    argv = [
        sys.executable, "-m", "wattwise", "agent", "run", "--config", "/dev/null",
        "--source", "sim", "--sim-nodes", "1", "--sim-gpus-per-node", "2",
        "--interval", "0.1", "--influx-url", influxd.url, "--influx-db", "quiet",
        "--wal-dir", str(tmp_path / "wal"),
    ]  # fmt: skip
    agent = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _gpu_points(influxd, "quiet") < 40:
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    assert _gpu_points(influxd, "quiet") >= 40  # many writes were made …
    assert "HTTP Request" not in stderr  # … and none of them was logged
    assert len(stderr.strip().splitlines()) <= 2, stderr


def _gpu_points(influxd: InfluxServer, db: str) -> int:
    rows = influxd.rows('SELECT COUNT("power_w") FROM "gpu"', db)
    return int(str(rows[0]["count"])) if rows else 0


def config_fault(tmp_path: Path, fault: str) -> tuple[Path, dict[str, str], str]:
    """A configuration with ``fault``: its path, extra environment and the key to name."""
    sim = f'[agent]\nsource = "sim"\n[wal]\ndir = "{tmp_path}/wal"\n'
    embedded = f'{sim}[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/e.sqlite"\n'
    path = tmp_path / "agent.toml"
    env: dict[str, str] = {}
    match fault:
        case "not UTF-8":
            path.write_bytes(b'[agent]\nhost = "n\xff1"\n')
            return path, env, "config"
        case "UTF-16":
            path.write_text('[agent]\nsource = "sim"\n', encoding="utf-16")
            return path, env, "config"
        case "a directory":
            path.mkdir()
            return path, env, "config"
        case "log level":
            env["WATTWISE_LOG_LEVEL"] = "junk"
            text = embedded
        case "negative seed":
            text = embedded + "[agent.sim]\nseed = -1\n"
        case "more racks than nodes":
            text = embedded + "[agent.sim]\nnodes = 2\nracks = 5\n"
        case "dead letters in a file":
            (tmp_path / "file").write_text("")
            text = embedded.replace("[store]", f'dead_letter_dir = "{tmp_path}/file"\n[store]')
        case "interval of a nanosecond":
            text = embedded.replace("[wal]", "gpu_interval_s = 1e-9\n[wal]")
        case "label named time":
            text = embedded.replace("[wal]", '[agent.labels]\ntime = "t1"\n[wal]')
        case "label ending in a backslash":
            text = embedded.replace("[wal]", '[agent.labels]\nrack = "r1\\\\"\n[wal]')
        case "host with NUL":
            text = embedded.replace("[wal]", 'host = "n\\u00001"\n[wal]')
        case "stop slower than the unit":
            text = embedded + "[influx]\ntimeout_s = 20\n[sender]\nflush_on_stop_s = 20\n"
        case _:
            raise AssertionError(fault)
    path.write_text(text)
    return path, env, CONFIG_FAULT_KEYS[fault]


CONFIG_FAULT_KEYS = {
    "log level": "WATTWISE_LOG_LEVEL",
    "negative seed": "agent.sim.seed",
    "more racks than nodes": "agent.sim.racks",
    "dead letters in a file": "wal.dead_letter_dir",
    "interval of a nanosecond": "agent.gpu_interval_s",
    "label named time": "agent.labels.time",
    "label ending in a backslash": "agent.labels.rack",
    "host with NUL": "agent.host",
    "stop slower than the unit": "sender.flush_on_stop_s",
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(
    "fault", ["not UTF-8", "UTF-16", "a directory", *CONFIG_FAULT_KEYS], ids=str
)
def test_configuration_fault_exits_2_naming_the_key_not_a_traceback(
    tmp_path: Path, command: str, fault: str
) -> None:
    path, env, key = config_fault(tmp_path, fault)
    args = ["agent", "check-config", str(path)] if command == "check-config" else []
    args = args or ["agent", "run", "--config", str(path)]
    result = wattwise(*args, env=env)
    assert result.returncode == 2, result.stderr
    assert f"configuration error: {key}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_prometheus_port_in_use_exits_2_naming_the_key(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "agent.toml"
        config.write_text(
            f'[agent]\nsource = "sim"\n[wal]\ndir = "{tmp_path}/wal"\n'
            f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/e.sqlite"\n'
            f"[metrics]\nprometheus_port = {port}\n"
        )
        result = wattwise("agent", "run", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "metrics.prometheus_port" in result.stderr and "cannot be listened on" in result.stderr
    assert "Traceback" not in result.stderr


def files_fault(tmp_path: Path, fault: str) -> tuple[str, dict[str, str], str]:
    """Settings ``run`` refuses for a file they name: TOML, environment, key."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-dir").mkdir()
    influx = '[influx]\nurl = "https://influx.example:8086"\n'
    cases: dict[str, tuple[str, dict[str, str], str]] = {
        "missing password file": (
            f'{influx}username = "u"\npassword_file = "{tmp_path}/none"\n',
            {},
            "influx.password_file",
        ),
        "password file everyone reads": (
            f'{influx}username = "u"\npassword_file = "{not_pem}"\n',
            {},
            "influx.password_file",
        ),
        "empty password file": (
            f'{influx}username = "u"\npassword_file = "{tmp_path}/a-file"\n',
            {},
            "influx.password_file",
        ),
        "password file is a directory": (
            f'{influx}username = "u"\npassword_file = "{tmp_path}/a-dir"\n',
            {},
            "influx.password_file",
        ),
        "missing token file": (
            f'{influx}api = "v2"\nbucket = "b"\ntoken_file = "{tmp_path}/none"\n',
            {},
            "influx.token_file",
        ),
        "empty token variable": (
            f'{influx}api = "v2"\nbucket = "b"\n',
            {"WATTWISE_INFLUX_TOKEN": ""},
            "influx.token_file",
        ),
        "password in file and variable": (
            f'{influx}username = "u"\npassword_file = "{secret}"\n',
            {"WATTWISE_INFLUX_PASSWORD": "x"},
            "influx.password_file",
        ),
        "missing CA file": (f'{influx}ca_file = "{tmp_path}/none.pem"\n', {}, "influx.ca_file"),
        "CA file not PEM": (f'{influx}ca_file = "{not_pem}"\n', {}, "influx.ca_file"),
        "client certificate not PEM": (
            f'{influx}client_cert = "{not_pem}"\n',
            {},
            "influx.client_cert",
        ),
        "client key without certificate": (
            f'{influx}client_key = "{secret}"\n',
            {},
            "influx.client_key",
        ),
        "WAL directory is a file": (
            f'{influx}[wal]\ndir = "{tmp_path}/a-file"\n',
            {},
            "wal.dir",
        ),
        "WAL directory under a file": (
            f'{influx}[wal]\ndir = "{tmp_path}/a-file/wal"\n',
            {},
            "wal.dir",
        ),
        "embedded store is a directory": (
            f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/a-dir"\n',
            {},
            "store.embedded_path",
        ),
        "missing BMC password file": (
            f'{influx}[bmc]\nkind = "redfish"\nurl = "https://bmc.example"\n'
            f'username = "root"\npassword_file = "{tmp_path}/none"\n',
            {},
            "bmc.password_file",
        ),
        "BMC CA file not PEM": (
            f'{influx}[bmc]\nkind = "redfish"\nurl = "https://bmc.example"\n'
            f'ca_file = "{not_pem}"\n',
            {},
            "bmc.ca_file",
        ),
    }
    not_pem.chmod(0o644)
    return cases[fault]


FILE_FAULTS = [
    "missing password file",
    "password file everyone reads",
    "empty password file",
    "password file is a directory",
    "missing token file",
    "empty token variable",
    "password in file and variable",
    "missing CA file",
    "CA file not PEM",
    "client certificate not PEM",
    "client key without certificate",
    "WAL directory is a file",
    "WAL directory under a file",
    "embedded store is a directory",
    "missing BMC password file",
    "BMC CA file not PEM",
]


@pytest.mark.parametrize("fault", FILE_FAULTS, ids=str)
def test_check_config_refuses_what_run_refuses_files_included(tmp_path: Path, fault: str) -> None:
    text, env, key = files_fault(tmp_path, fault)
    text += '[agent]\nsource = "sim"\n'
    if "[wal]" not in text:
        text += f'[wal]\ndir = "{tmp_path}/wal"\n'
    config = tmp_path / "agent.toml"
    config.write_text(text)
    checked = wattwise("agent", "check-config", str(config), env=env)
    ran = wattwise("agent", "run", "--config", str(config), env=env)
    for result in (checked, ran):
        assert result.returncode == 2, result.stderr
        assert f"configuration error: {key}:" in result.stderr
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("influx", "http://admin:PW-s3cret@influx.example:8086"),
        ("bmc", "https://root:PW-s3cret@bmc"),
    ],
)
def test_credentials_in_a_url_are_refused_and_never_echoed(
    tmp_path: Path, setting: str, url: str
) -> None:
    config = tmp_path / "agent.toml"
    extra = '\nkind = "redfish"' if setting == "bmc" else ""
    config.write_text(
        f'[{setting}]\nurl = "{url}"{extra}\n'
        + ('[influx]\nurl = "http://influx.example:8086"\n' if setting == "bmc" else "")
    )
    result = wattwise("agent", "check-config", str(config))
    assert result.returncode == 2
    assert f"{setting}.url" in result.stderr and "password_file" in result.stderr
    assert "PW-s3cret" not in result.stderr + result.stdout
