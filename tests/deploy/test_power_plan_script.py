"""deploy/power-plan/apply-with-nvidia-smi.sh against a fake nvidia-smi and a real HTTP server.

The fake ``nvidia-smi`` on PATH keeps four H100s' limits in a JSON file, answers the
``--query-gpu`` the script asks, enforces ``-pl`` within each GPU's range as root only,
and records every call's arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, HttpPeer, http_peer
from tests.agent.plans import HOST, NO_PLAN, budget, cap, plan_answer
from tests.deploy.systemd_tools import REPO

SCRIPT = REPO / "deploy" / "power-plan" / "apply-with-nvidia-smi.sh"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

FAKE_NVIDIA_SMI = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NVIDIA_SMI_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
with open(os.environ["FAKE_NVIDIA_SMI_STATE"]) as f:
    gpus = json.load(f)
index = int(args[args.index("-i") + 1]) if "-i" in args else None
if "-pl" in args:
    watts, gpu = float(args[args.index("-pl") + 1]), gpus[index]
    if os.geteuid() != 0:
        sys.exit("Changing power management limit is not permitted: Insufficient Permissions")
    if not gpu["min"] <= watts <= gpu["max"]:
        sys.exit(f"Provided power limit {{watts:.2f}} W is not a valid power limit")
    print(f"Power limit for GPU {{index}} was set to {{watts:.2f}} W.")
    gpu["enforced"] = watts
    with open(os.environ["FAKE_NVIDIA_SMI_STATE"], "w") as f:
        json.dump(gpus, f)
    sys.exit(0)
[fields] = [a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")]
assert "--format=csv,noheader,nounits" in args, args
names = {{"enforced.power.limit": "enforced", "power.default_limit": "default",
         "power.min_limit": "min", "power.max_limit": "max"}}
for i, gpu in enumerate(gpus):
    if index in (None, i):
        print(", ".join(str(i) if f == "index" else f"{{gpu[names[f]]:.2f}}"
                        for f in fields.split(",")))
"""


@dataclass
class Node:
    root: Path
    optimizer: HttpPeer

    @property
    def gpus_file(self) -> Path:
        return self.root / "gpus.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state" / "nvidia-smi.state"

    def run(self, *args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{self.root / 'bin'}:{os.environ['PATH']}",
            "FAKE_NVIDIA_SMI_LOG": str(self.root / "calls.log"),
            "FAKE_NVIDIA_SMI_STATE": str(self.gpus_file),
            "WATTWISE_OPTIMIZER_URL": self.optimizer.url,
            "WATTWISE_TOKEN_FILE": str(self.root / "token"),
            "WATTWISE_HOST": HOST,
            "WATTWISE_STATE_FILE": str(self.state_file),
        }
        prefix = NOBODY if as_nobody and os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, "bash", str(SCRIPT), *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        print(done.stdout, done.stderr)
        return done

    def answer(self, answer: Answer) -> None:
        self.optimizer.answers[0] = answer

    def set_calls(self) -> list[list[str]]:
        """The ``-i N -pl W`` calls, oldest first; the log is emptied."""
        log = self.root / "calls.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return [c for c in calls if "-pl" in c]

    def limits_w(self) -> list[float]:
        return [gpu["enforced"] for gpu in json.loads(self.gpus_file.read_text())]

    def operator_sets(self, gpu: int, watts: float) -> None:
        gpus = json.loads(self.gpus_file.read_text())
        gpus[gpu]["enforced"] = watts
        self.gpus_file.write_text(json.dumps(gpus))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(FAKE_NVIDIA_SMI.format(python=sys.executable))
    fake.chmod(0o755)
    h100 = {"enforced": 700.0, "default": 700.0, "min": 200.0, "max": 700.0}
    (tmp_path / "gpus.json").write_text(json.dumps([h100] * 4))
    (tmp_path / "token").write_text("t0ken\n")
    (tmp_path / "token").chmod(0o600)
    with http_peer([NO_PLAN]) as optimizer:
        yield Node(tmp_path, optimizer)


RACK_AND_SITE = plan_answer(
    budget("rack:r01", cap(0, 480.0), cap(1, 600.0), cap(2, 300.0, host="r01-n02")),
    budget("site", cap(0, 450.7), cap(1, 650.0)),
)


def test_the_script_passes_bash_n_and_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is needed: apt-get install -y shellcheck"
    linted = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert linted.returncode == 0, linted.stdout


def test_each_gpu_gets_the_lowest_planned_limit_in_whole_watts(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    done = node.run()
    assert done.returncode == 0, done.stderr
    assert node.set_calls() == [["-i", "0", "-pl", "450"], ["-i", "1", "-pl", "600"]]
    assert node.limits_w() == [450.0, 600.0, 700.0, 700.0]
    [request] = node.optimizer.requests
    assert request.path == f"/v1/recommendations/power-budget?host={HOST}"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert node.run().returncode == 0  # the same plan again: nothing to do
    assert node.set_calls() == []


def test_limits_are_clamped_and_unknown_gpus_refused(node: Node) -> None:
    node.answer(plan_answer(budget("site", cap(0, 150.0), cap(9, 400.0))))
    done = node.run()
    assert node.set_calls() == [["-i", "0", "-pl", "200"]]
    assert "caps gpu9, which this node does not have" in done.stderr


def test_defaults_come_back_when_the_plan_disappears(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    node.run()
    node.set_calls()
    node.answer(plan_answer(budget("site", cap(1, 650.0))))
    assert node.run().returncode == 0
    assert node.set_calls() == [["-i", "0", "-pl", "700"], ["-i", "1", "-pl", "650"]]
    node.answer(NO_PLAN)
    assert node.run().returncode == 0
    assert node.set_calls() == [["-i", "1", "-pl", "700"]]
    assert node.limits_w() == [700.0] * 4
    assert "gpu " not in node.state_file.read_text()


def test_defaults_come_back_after_the_optimizer_is_silent_for_silent_after_s(
    node: Node,
) -> None:
    node.answer(RACK_AND_SITE)
    node.run()
    node.set_calls()
    node.answer(Answer(503, body=b"refit"))
    done = node.run()
    assert done.returncode == 1 and "HTTP 503" in done.stderr
    assert node.set_calls() == []  # silent, not yet for 600 s
    state = node.state_file.read_text().splitlines()
    long_ago = int(time.time()) - 601  # as if the last plan came 601 s ago
    node.state_file.write_text(
        "".join(f"last_ok {long_ago}\n" if s.startswith("last_ok") else f"{s}\n" for s in state)
    )
    assert node.run().returncode == 1
    assert node.set_calls() == [["-i", "0", "-pl", "700"], ["-i", "1", "-pl", "700"]]


def test_a_refused_token_is_said_and_changes_nothing(node: Node) -> None:
    node.answer(Answer(401, body=b'{"detail": "invalid token"}'))
    done = node.run()
    assert done.returncode == 1
    assert "refused the token" in done.stderr and "t0ken" not in done.stderr
    assert node.set_calls() == []


def test_a_limit_someone_else_changed_is_left_alone(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    node.run()
    node.set_calls()
    node.operator_sets(0, 550.0)
    done = node.run()
    assert "gpu0: enforces 550.00 W" in done.stderr and "leaving it alone" in done.stderr
    node.answer(NO_PLAN)
    node.run()
    assert node.set_calls() == [["-i", "1", "-pl", "700"]]
    assert node.limits_w()[:2] == [550.0, 700.0]


def test_a_dry_run_prints_the_commands_and_changes_nothing(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    done = node.run("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "gpu0: would run: nvidia-smi -i 0 -pl 450 (now 700.00 W)" in done.stdout
    assert "gpu1: would run: nvidia-smi -i 1 -pl 600" in done.stdout
    assert node.set_calls() == []
    assert not node.state_file.exists()


def test_without_root_it_refuses_to_run(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    done = node.run(as_nobody=True)
    assert done.returncode == 2
    assert "needs root" in done.stderr and "--dry-run" in done.stderr
    assert node.optimizer.requests == []


def test_restore_puts_back_what_it_set_without_asking_the_optimizer(node: Node) -> None:
    node.answer(RACK_AND_SITE)
    node.run()
    node.set_calls()
    node.operator_sets(1, 550.0)  # not the script's any more
    done = node.run("--restore")
    assert done.returncode == 0, done.stderr
    assert node.set_calls() == [["-i", "0", "-pl", "700"]]
    assert node.limits_w()[:2] == [700.0, 550.0]
    assert len(node.optimizer.requests) == 1
