"""Every command in README.md and docs/ that can run here runs here, as written.

Commands are taken from the fenced and indented code blocks and from inline code.
Each one in a block is either run (after the substitutions below: this machine's
paths for a node's, the installed ``wattwise``, a real InfluxDB and a running API)
or listed with the reason it cannot run here and where it is exercised instead, so
a new command in the docs fails this test until it is one or the other. Every
``wattwise …`` command, inline ones included, must also name only sub-commands and
options that exist.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.core import TyperGroup

from tests.influxd import InfluxServer, free_port
from wattwise.cli import build_cli

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

RUN = {
    # README.md
    "wattwise agent check-config /etc/wattwise/agent.toml",
    # docs/deploy.md
    "sudo -u wattwise /opt/wattwise/bin/wattwise agent check-config --config "
    "/etc/wattwise/agent.toml",
    "systemd-analyze security --offline=true deploy/systemd/wattwise-agent.service",
    # docs/operations.md
    "systemd-analyze security --offline=true deploy/systemd/wattwise-optimizer.service",
    # docs/operations.md, the optimizer's configuration as shipped
    "sudo /opt/wattwise/bin/wattwise optimizer check-config /etc/wattwise/optimizer.toml",
    # docs/power-budgets.md
    "systemd-analyze security --offline=true deploy/systemd/wattwise-power-plan.service",
    # docs/api.md
    "token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
    'printf %s "$token" | sha256sum',
    'curl -s -H "Authorization: Bearer $TOKEN" '
    "'http://127.0.0.1:8000/v1/recommendations/power-caps?zone=z1&host=gpu-017'",
    "curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
    '-d \'{"gpus": 4, "zone": "z1"}\' http://127.0.0.1:8000/v1/placement',
    'curl -s -X POST -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:8000/v1/refresh',
    # docs/influxdb.md
    "wattwise optimizer init-db --url http://influx:8086 --database wattwise --username admin "
    "--password-file /etc/wattwise/influx-admin.password --raw-retention 7d "
    "--downsampled-retention 400d",
    # docs/report.md
    "wattwise report --config /etc/wattwise/optimizer.toml --since 24h --out report.html",
    "wattwise report --config demo-data/optimizer.toml --since 30m --out report.html",
    # docs/dashboards.md
    "python -m wattwise.dashboards.build dashboards",
    "wattwise dashboards lint [--dir DIR] [--provisioning DIR]",
    # docs/simulator.md
    ".venv/bin/python -m wattwise.collector.sim.calibrate [DATA_DIR]",
    # docs/grounding.md
    ".venv/bin/python bench/power_spread.py",
    # docs/benchmarks.md, inline
    ".venv/bin/python bench/nvml_tick.py --fake --ticks 600",
    # README.md, inline
    "wattwise recommend caps --config demo-data/optimizer.toml",
}
"""Doc commands run here as written (after the substitutions of :func:`here`)."""

UNINSTALL = (
    "needs a GPU node's root and systemd; tests/agent/test_uninstall.py applies it in a "
    "scratch root after a real install there"
)
NODE = "needs a GPU node's root and systemd (tests/deploy/test_install_script.py installs for real in a sandboxed node; test_systemd_unit.py verifies the unit)"  # noqa: E501
INFLUX2 = "the influx CLI of InfluxDB 2.x, not installed here (Debian ships InfluxDB 1.6)"
BENCH = "a benchmark, run for its figures (docs/benchmarks.md), not by the test suite"
GPU = "needs an NVIDIA GPU and driver (bench/nvml_tick.py --fake runs here)"
PROMETHEUS = (
    "names a site's Prometheus-compatible store; tests/optimizer/service/test_cli.py runs "
    "recommend and models with --store prometheus --url against a real VictoriaMetrics"
)
EVENTS = (
    "changes a running optimizer's events, with its admin token and times near its clock: "
    "tests/optimizer/service/test_events_cli.py adds, lists, shows and cancels through the "
    "command against the API served by uvicorn"
)
ELSEWHERE = {
    # README.md
    "make demo": "installs the demo extra into .venv (a test must not change it) and runs "
    "`wattwise demo`, which tests/test_demo.py runs; tests/test_makefile.py checks the plan",
    "make test": "is this test suite",
    "make wheel": "writes dist/ in the checkout; tests/deploy/conftest.py builds the wheel the "
    "same way and tests/test_makefile.py checks the plan",
    "make clean": "removes .venv, which runs these tests; tests/test_makefile.py checks the plan",
    "wattwise agent probe [--source nvml|sim] [--json]": "synopsis; tests/agent/test_cli.py "
    "runs both sources",
    "wattwise agent run [--config FILE] [--source nvml|sim] [--sim-nodes N] "
    "[--sim-gpus-per-node M] [--sim-seed S] [--interval SECONDS] [--influx-url URL] "
    "[--influx-db NAME] [--wal-dir DIR] [--store influx|embedded]": "synopsis; runs until "
    "stopped: tests/agent/test_no_sample_lost.py runs it against a real influxd",
    "sudo wattwise agent install [--config FILE] [--dry-run] [--power-plan]": NODE,
    "sudo wattwise agent uninstall [--purge [--discard-unsent]] [--dry-run]": UNINSTALL,
    "sudo wattwise agent apply-power-plan --optimizer-url URL --token-file F [--once] "
    "[--dry-run]": "synopsis; changes GPU power limits as root: "
    "tests/agent/test_power_command.py runs it against the fake NVML and a real HTTP server",
    "wattwise optimizer init-db --url URL …": "synopsis; docs/influxdb.md's full form runs here",
    "wattwise optimizer serve [--config FILE] [--host H] [--port P] "
    "[--store influx|embedded|prometheus] [--url URL] [--clusters …] [--zones …]": "synopsis; "
    "serves until stopped, as this test's API does",
    "wattwise recommend caps [--all] [--refit] [--json]": "synopsis; its README example with "
    "--config demo-data/optimizer.toml runs here",
    "wattwise recommend cooling [--refit] [--json]": "synopsis; "
    "tests/optimizer/service/test_cli.py runs it",
    "wattwise recommend place --gpus N [--gpu-model M] [--zone Z] [--rack R] [--exclude-host H] "
    "[--json]": "synopsis; tests/optimizer/service/test_cli.py runs it",
    "wattwise recommend budget [--scope site|zone:Z|rack:R …] [--json]": "synopsis; "
    "tests/optimizer/service/test_cli.py runs it",
    "wattwise models [--json]": "synopsis; tests/optimizer/service/test_cli.py runs it",
    "wattwise optimizer check-config [FILE]": "synopsis; docs/operations.md's form runs here",
    "sudo systemctl restart wattwise-optimizer": "restarts the optimizer's unit on its host; "
    "tests/deploy/test_optimizer_unit.py verifies the unit",
    "wattwise power-events add SCOPE LIMIT (--end WHEN | --for 2h) [--start WHEN] "
    "[--reason TEXT]": EVENTS,
    "wattwise power-events list [--all] | show ID | cancel ID": EVENTS,
    'wattwise power-events add site 480kW --for 2h --reason "grid demand response"': EVENTS,
    "wattwise power-events add rack:r01 30kW --start 2024-05-02T14:00Z "
    "--end 2024-05-02T18:00Z": EVENTS,
    "wattwise power-events list [--all] [--json]": EVENTS,
    "wattwise power-events show 9f0c4e6a [--json]": EVENTS,
    "wattwise power-events cancel 9f0c4e6a": EVENTS,
    "wattwise report [--since 24h] --out report.html": "synopsis; docs/report.md's forms run here",
    "wattwise eval scenarios/NAME.toml [--truth T] [--json] [--check]": "synopsis; "
    "tests/optimizer/evaluation/test_runner.py replays the scenarios",
    ".venv/bin/python -m wattwise.collector.sim.calibrate_sweep [FILE]": "a fit of minutes; "
    "tests/collector/sim/test_calibrate_sweep.py checks the calibration it prints",
    "wattwise dashboards lint": "runs here in its docs/dashboards.md form",
    "wattwise dashboards push --url URL [--token-file F] [--folder NAME] [--overwrite]": "needs "
    "a Grafana (none installable here); tests/dashboards/test_push.py pushes to a Grafana API "
    "peer",
    # docs/benchmarks.md, docs/nvml.md
    "python bench/nvml_tick.py": GPU,
    "python bench/nvml_tick.py --energy-read field": GPU,
    "python bench/nvml_tick.py --mode agree": GPU,
    # docs/deploy.md
    "python3 -m venv /opt/wattwise": NODE,
    "/opt/wattwise/bin/pip install ./dist/wattwise-0.1.0-py3-none-any.whl": NODE,
    "/opt/wattwise/bin/wattwise agent install --dry-run": "reads where this checkout lives "
    "(a clone under /tmp is refused, as the unit hides /tmp); tests/agent/test_cli.py runs it",
    "sudo /opt/wattwise/bin/wattwise agent install": NODE,
    "sudoedit /etc/wattwise/agent.toml": "an editor, interactive",
    "sudo systemctl start wattwise-agent": NODE,
    "journalctl -u wattwise-agent -f": NODE,
    'sudo install -m 0600 /dev/stdin /etc/wattwise/influx-token <<< "$TOKEN"': NODE,
    "sudo /opt/wattwise/bin/pip install --upgrade ./dist/wattwise-0.2.0-py3-none-any.whl": NODE,
    "sudo systemctl restart wattwise-agent": NODE,
    "sudo systemctl disable --now wattwise-agent": NODE,
    "sudo systemctl disable --now wattwise-power-plan": NODE,
    "sudo rm /etc/systemd/system/wattwise-power-plan.service": NODE,
    "sudo rm /etc/systemd/system/wattwise-agent.service": NODE,
    "sudo rm -r /etc/systemd/system/wattwise-agent.service.d": NODE,
    "sudo systemctl daemon-reload": NODE,
    "sudo rm -r /opt/wattwise": NODE,
    "sudo /opt/wattwise/bin/wattwise agent uninstall --dry-run": UNINSTALL,
    "sudo /opt/wattwise/bin/wattwise agent uninstall": UNINSTALL,
    "sudo /opt/wattwise/bin/wattwise agent uninstall --purge": UNINSTALL,
    "sudo rm -r /var/lib/wattwise /etc/wattwise": NODE,
    "sudo userdel wattwise": NODE,
    # docs/influxdb.md, docs/operations.md
    "influx v1 dbrp create --db wattwise --rp raw --bucket-id <raw bucket id> --default": INFLUX2,
    "influx v1 dbrp create --db wattwise --rp rp_1m --bucket-id <1-minute bucket id>": INFLUX2,
    "influx bucket create --name wattwise/raw --retention 7d --org <org>": INFLUX2,
    "influx bucket create --name wattwise/rp_1m --retention 400d --org <org>": INFLUX2,
    "influx v1 dbrp create --bucket-id BUCKET_ID --db wattwise --rp autogen --default": INFLUX2,
    # docs/operations.md
    "sudo deploy/install-agent.sh --dry-run": NODE,
    "sudo deploy/install-agent.sh": NODE,
    "sudo deploy/install-agent.sh --from ./wattwise-0.1.0-py3-none-any.whl --config-file "
    "site-agent.toml": NODE,
    "sudo deploy/install-agent.sh --uninstall": NODE,
    "sudo deploy/install-agent.sh --uninstall --purge": NODE,
    "cd deploy/ansible": "a step of the Ansible walk-through (tests/deploy/test_ansible.py)",
    "cp group_vars/gpu_nodes/vault.yml.example group_vars/gpu_nodes/vault.yml": "a step of "
    "the Ansible walk-through; tests/deploy/test_ansible.py encrypts a real vault",
    "$EDITOR group_vars/gpu_nodes/vault.yml": "an editor, interactive",
    "ansible-vault encrypt group_vars/gpu_nodes/vault.yml": "asks for a password; "
    "tests/deploy/test_ansible.py encrypts a vault with a password file",
    "$EDITOR inventory.yml group_vars/gpu_nodes/vars.yml": "an editor, interactive",
    "ansible-playbook -i inventory.yml playbook.yml --ask-vault-pass --check --diff": "asks "
    "for the vault password; tests/deploy/test_ansible.py runs the check against this machine",
    "ansible-playbook -i inventory.yml playbook.yml --ask-vault-pass": "changes GPU nodes",
    "kubectl create namespace wattwise": "needs a Kubernetes cluster; tests/deploy/test_k8s.py "
    "validates every manifest against the Kubernetes schemas",
    "kubectl -n wattwise create secret generic wattwise-influx "
    "--from-file=influx-token=./influx-token": "needs a Kubernetes cluster",
    "kubectl -n wattwise create secret generic wattwise-optimizer "
    "--from-file=webhook-secret=./webhook-secret": "needs a Kubernetes cluster",
    "docker build -f deploy/Dockerfile --target agent -t REGISTRY/wattwise-agent:0.1.0 .": "no "
    "container engine here; tests/deploy/test_k8s.py checks the agent stage installs no extra",
    "docker build -f deploy/Dockerfile --target optimizer -t "
    "REGISTRY/wattwise-optimizer:0.1.0 .": "no container engine here",
    "kubectl apply -k deploy/k8s": "needs a Kubernetes cluster",
    "cp deploy/.env.example deploy/.env && $EDITOR deploy/.env": "an editor, interactive",
    "docker compose -f deploy/compose.yaml up -d": "no container engine here; "
    "tests/deploy/test_compose.py checks the file",
    "sudo python3 -m venv /opt/wattwise": NODE,
    "sudo /opt/wattwise/bin/pip install './dist/wattwise-0.1.0-py3-none-any.whl[optimizer]'": (
        NODE
    ),
    "sudo install -m 0644 deploy/systemd/wattwise-optimizer.service /etc/systemd/system/": NODE,
    "sudo install -m 0640 deploy/optimizer.toml.example /etc/wattwise/optimizer.toml": NODE,
    'sudo install -m 0600 /dev/stdin /etc/wattwise/optimizer-influx-token <<< "$READ_TOKEN"': (
        NODE
    ),
    "sudo install -m 0600 /dev/stdin /etc/wattwise/optimizer-webhook-secret <<< "
    '"$WEBHOOK_SECRET"': NODE,
    "sudo systemctl daemon-reload && sudo systemctl enable --now wattwise-optimizer": NODE,
    # docs/power-budgets.md
    "wattwise agent apply-power-plan --optimizer-url URL --token-file F [--once] [--dry-run] "
    "[--interval-s 60] [--silent-after-s 600] [--state-file P] [--host NAME] [--timeout-s 10] "
    "[--ca-file PEM | --insecure]": "synopsis; changes GPU power limits as root: "
    "tests/agent/test_power_command.py runs it against the fake NVML and a real HTTP server",
    "/opt/wattwise/bin/wattwise agent install --power-plan --dry-run": "reads where this "
    "checkout lives (a clone under /tmp is refused, as the unit hides /tmp); "
    "tests/agent/test_install_power_plan.py runs it",
    "sudo /opt/wattwise/bin/wattwise agent install --power-plan": NODE,
    "sudo systemctl start wattwise-power-plan": NODE,
    "sudo install -m 0644 deploy/systemd/wattwise-power-plan.service /etc/systemd/system/": NODE,
    'sudo install -m 0600 /dev/stdin /etc/wattwise/power-plan-token <<< "$READ_TOKEN"': NODE,
    "sudoedit /etc/wattwise/power-plan.env": "an editor, interactive",
    "sudo /opt/wattwise/bin/wattwise agent apply-power-plan --optimizer-url "
    "https://optimizer.example:8000 --token-file /etc/wattwise/power-plan-token --once "
    "--dry-run": GPU + "; tests/agent/test_power_command.py runs the dry run on the fake NVML",
    "sudo systemctl daemon-reload && sudo systemctl enable --now wattwise-power-plan": NODE,
    "journalctl -u wattwise-power-plan -f": NODE,
    "sudo install -m 0755 deploy/power-plan/apply-with-nvidia-smi.sh /usr/local/sbin/": NODE,
    "sudo WATTWISE_OPTIMIZER_URL=https://optimizer.example:8000 "
    "WATTWISE_TOKEN_FILE=/etc/wattwise/power-plan-token /usr/local/sbin/apply-with-nvidia-smi.sh "
    "--dry-run": GPU + "; tests/deploy/test_power_plan_script.py runs it on a fake nvidia-smi",
    # docs/scaling.md
    "wattwise optimizer serve --config /etc/wattwise/optimizer.toml --clusters east --port 8000": (
        "serves until stopped; tests/optimizer/service/test_app.py serves shards"
    ),
    "wattwise optimizer serve --config /etc/wattwise/optimizer.toml --clusters west --port 8001": (
        "serves until stopped"
    ),
    "wattwise optimizer serve --config … --zones z1,z2": "serves until stopped",
    "wattwise optimizer serve --config … --zones z3,z4": "serves until stopped",
    # README.md, docs/grounding.md, docs/reliability.md (classified when the branches met)
    "wattwise models backtest [--split TIME | --holdout 20%] [--every S] [--json]": "synopsis; "
    "tests/optimizer/service/test_backtesting.py runs it",
    ".venv/bin/python bench/budget_choices.py scenarios/oversubscribed-racks.toml "
    "--truth costly": BENCH,
    ".venv/bin/python bench/power_model.py": BENCH,
    ".venv/bin/python bench/power_model.py --json": BENCH,
    ".venv/bin/python bench/power_model.py --without matmul:1024:duty=1.00": BENCH,
    ".venv/bin/python bench/cap_sweeps.py "
    "tests/data/public/perseus-sosp24/A100_pcie_zeus_global.csv": BENCH,
    ".venv/bin/python bench/cap_sweeps.py "
    "tests/data/public/zeus-nsdi23/summary_power_v100.csv --json": BENCH,
    ".venv/bin/pytest tests/optimizer/models/test_power.py": "a part of this test suite",
    "WATTWISE_FAULT_REPORT=faults.json .venv/bin/pytest -m faults": "the fault-injection part "
    "of this test suite, which make test runs",
    ".venv/bin/python -m tests.faults.report faults.json": "prints the report of a fault run "
    "(tests/faults/conftest.py writes it)",
    # docs/prometheus.md
    "wattwise optimizer serve --store prometheus --url http://prometheus:9090": "serves a "
    "site's Prometheus until stopped; tests/optimizer/store/test_dcgm.py reads a real one",
    "wattwise recommend caps --store prometheus --url http://victoriametrics:8428": PROMETHEUS,
    "wattwise models --store prometheus --url http://vmselect:8481/select/0/prometheus": (
        PROMETHEUS
    ),
    "wattwise report --since 24h --out report.html --store prometheus --url "
    "http://thanos-query:9090": PROMETHEUS,
    "wattwise demo --prometheus-url http://127.0.0.1:8428": "needs a VictoriaMetrics on port "
    "8428; tests/test_demo.py records into a real one started on a free port",
    # docs/evaluation.md
    "for s in oversubscribed-racks demand-response; do .venv/bin/wattwise eval "
    "scenarios/$s.toml --json; done": "replays the budget scenarios under each truth (minutes); "
    "tests/optimizer/evaluation/test_budget.py replays a small one",
    'for s in scenarios/*.toml; do .venv/bin/wattwise eval "$s" --json; done': "replays every "
    "scenario, minutes each; tests/optimizer/evaluation/test_runner.py runs them smaller",
}
"""Doc commands that cannot run here, each with why and what exercises it instead."""

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`((?:sudo |\.venv/bin/|python |wattwise )[^`\n]+)`")
_PROGRAMS = ("wattwise", ".venv/bin/", "python", "make", "sudo", "for ")


@dataclass(frozen=True)
class DocCommand:
    path: Path
    command: str
    inline: bool


def doc_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in _FENCE.finditer(text):
            if match.group(1) in ("sh", "bash", ""):
                found += _block(path, match.group(2), plain=match.group(1) == "")
        rest = _FENCE.sub("", text)
        indented = "\n".join(m.group(1) for m in re.finditer(r"^    (\S.*)$", rest, re.M))
        found += _block(path, indented, plain=True)
        found += [
            DocCommand(path, " ".join(m.group(1).split()), True) for m in _INLINE.finditer(rest)
        ]
    return found


def _block(path: Path, body: str, *, plain: bool) -> list[DocCommand]:
    commands = []
    for line in re.sub(r"\\\n\s*", " ", body).splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if not line or line.startswith("#"):
            continue
        if plain and not line.startswith(_PROGRAMS):
            continue  # an unlabelled block of output, a unit file or TOML
        commands.append(DocCommand(path, " ".join(line.split()), False))
    return _join_synopsis(commands)


def _join_synopsis(commands: list[DocCommand]) -> list[DocCommand]:
    """A synopsis continued on lines of its own options (README's ``agent run``) is one."""
    joined: list[DocCommand] = []
    for c in commands:
        if joined and c.command.startswith("[") and not joined[-1].inline:
            last = joined.pop()
            c = DocCommand(c.path, f"{last.command} {c.command}", False)
        joined.append(c)
    return joined


BLOCKS = sorted({c.command for c in doc_commands() if not c.inline})


def test_every_command_in_a_code_block_runs_here_or_says_why_not() -> None:
    unknown = [c for c in BLOCKS if c not in RUN and c not in ELSEWHERE]
    assert unknown == [], "classify each new doc command in RUN or ELSEWHERE"
    stale = sorted((RUN | set(ELSEWHERE)) - {c.command for c in doc_commands()})
    assert stale == [], "these are no longer in the docs"


_SUDO = re.compile(r"^sudo (-u \S+ )?")
CLI_COMMANDS = sorted(
    {c.command for c in doc_commands() if re.match(r"\S*wattwise ", _SUDO.sub("", c.command))}
)


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_every_wattwise_command_in_the_docs_names_real_commands_and_options(
    command: str,
) -> None:
    words = _SUDO.sub("", command).split()[1:]
    group = build_cli()
    ctx = group.make_context("wattwise", ["agent"], resilient_parsing=True)
    target = group
    for word in words:
        if not isinstance(target, TyperGroup) or word.startswith(("-", "[", "…")):
            break
        found = target.get_command(ctx, word)
        assert found is not None, f"no command {word!r} in: {command}"
        target = found
    options = {name for param in target.params for name in (*param.opts, *param.secondary_opts)}
    options.add("--help")
    named = set(re.findall(r"(--[a-z][a-z0-9-]*)", command))
    assert named <= options, f"{sorted(named - options)} are not options of: {command}"


@pytest.mark.parametrize(
    "command", sorted({c.command for c in doc_commands() if "bench/" in c.command})
)
def test_every_benchmark_in_the_docs_exists_with_the_options_it_is_given(command: str) -> None:
    script = re.search(r"bench/\w+\.py", command)
    assert script is not None
    shown = subprocess.run(
        [sys.executable, str(REPO / script.group(0)), "--help"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    named = set(re.findall(r"(--[a-z][a-z0-9-]*)", command))
    assert {o for o in named if o not in shown.stdout} == set(), command


@dataclass(frozen=True)
class Here:
    """Where the doc commands run: a directory standing for a node and the optimizer."""

    work: Path
    etc: Path
    env: dict[str, str]
    influxd: InfluxServer
    api: str


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Here]:
    root = tmp_path_factory.mktemp("docs")
    work, etc = root / "work", root / "etc" / "wattwise"
    work.mkdir()
    etc.mkdir(parents=True)
    (root / "influxd").mkdir()
    influxd = InfluxServer(root / "influxd", auth=True)
    influxd.start()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "100"}
    demo = [
        "wattwise", "demo", "--racks", "2", "--nodes-per-rack", "2", "--gpus-per-node", "4",
        "--history", "12", "--duration", "0.1", "--port", str(free_port()),
    ]  # fmt: skip
    subprocess.run(demo, cwd=work, env=env, check=True, capture_output=True, timeout=300)
    skeleton = (REPO / "deploy" / "agent.toml.example").read_text()
    (etc / "agent.toml").write_text(skeleton.replace('url = ""', 'url = "http://influx:8086"', 1))
    (etc / "influx-admin.password").write_text(influxd.admin[1])
    (etc / "influx-admin.password").chmod(0o600)
    token, admin_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    (etc / "optimizer.toml").write_text(
        (work / "demo-data" / "optimizer.toml").read_text()
        + "\n[api]\ntokens = ["
        + f'{{ name = "ops", sha256 = "{_sha(token)}", scopes = ["read"] }}, '
        + f'{{ name = "admin", sha256 = "{_sha(admin_token)}", scopes = ["admin"] }}]\n'
        + "[recommend]\nrecent_s = 1e9\n"
    )
    api = f"http://127.0.0.1:{free_port()}"
    serve = ["wattwise", "optimizer", "serve", "--config", str(etc / "optimizer.toml")]
    server = subprocess.Popen(
        [*serve, "--port", api.rsplit(":", 1)[1]], cwd=work, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_ready(api, server)
        yield Here(work, etc, {**env, "TOKEN": token, "ADMIN_TOKEN": admin_token}, influxd, api)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        influxd.stop()


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _wait_ready(api: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{api}/healthz", timeout=2).json().get("ready"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the optimizer did not become ready (exit {server.poll()})")


def here_form(command: str, here: Here) -> str:
    """The doc command with this machine's paths, programs and peers."""
    out = _SUDO.sub("", command)
    for doc, local in (
        ("/opt/wattwise/bin/", ""),
        (".venv/bin/python", sys.executable),
        ("/etc/wattwise/", f"{here.etc}/"),
        ("http://127.0.0.1:8000", here.api),
        ("http://influx:8086", here.influxd.url),
        (" [DATA_DIR]", ""),
        (" [--dir DIR] [--provisioning DIR]", ""),
    ):
        out = out.replace(doc, local)
    return re.sub(r"^python3? ", f"{sys.executable} ", out)


IN_CHECKOUT = ("systemd-analyze", "bench/", "wattwise.collector.sim.calibrate", "dashboards lint")
"""Commands the docs run from the repository's root."""


@pytest.mark.influx
@pytest.mark.parametrize("command", sorted(RUN), ids=lambda c: c[:70])
def test_the_command_runs_here_as_documented(command: str, here: Here, tmp_path: Path) -> None:
    cwd = REPO if any(part in command for part in IN_CHECKOUT) else tmp_path
    if cwd == tmp_path:
        shutil.copytree(here.work / "demo-data", tmp_path / "demo-data")
        (tmp_path / "dashboards").mkdir()  # as in the checkout, where the docs run it
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", here_form(command, here)],
        cwd=cwd, env=here.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"{here_form(command, here)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    if "curl" in command:
        assert done.stdout.startswith("{") and '"detail"' not in done.stdout, done.stdout
    if "--out report.html" in command:
        assert "<svg" in (tmp_path / "report.html").read_text()
    if "dashboards.build dashboards" in command:
        built = {p.name: p.read_text() for p in (tmp_path / "dashboards").glob("*.json")}
        assert built == {p.name: p.read_text() for p in (REPO / "dashboards").glob("*.json")}
