"""``wattwise agent apply-power-plan``: root only, options checked, one pass or a loop."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.http_peer import Answer, HttpPeer, http_peer
from tests.agent.plans import HOST, budget, cap, plan_answer
from wattwise.agent import power_command
from wattwise.agent.power_command import ApplierOptions, apply_power_plan
from wattwise.agent.power_limits import open_nvml_limits
from wattwise.cli import main
from wattwise.clock import ManualClock
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def optimizer() -> Iterator[HttpPeer]:
    with http_peer([plan_answer(budget("rack:r01", cap(0, 480.0), cap(3, 500.0)))]) as peer:
        yield peer


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("t0ken\n")
    path.chmod(0o600)
    return path


def options(url: str, token_file: Path, **changes: Any) -> ApplierOptions:
    return dataclasses.replace(
        ApplierOptions(
            optimizer_url=url,
            token_file=token_file,
            once=True,
            state_file=token_file.parent / "state" / "power-plan.json",
            host=HOST,
        ),
        **changes,
    )


def run(opts: ApplierOptions, nvml: FakeNvml, euid: int, echoed: list[str]) -> int:
    return apply_power_plan(
        opts,
        stop=threading.Event(),
        echo=echoed.append,
        limits=open_nvml_limits(nvml),
        clock=ManualClock(),
        euid=euid,
        boot_id=lambda: "boot-1",
    )


def wattwise_as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    prefix = NOBODY if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "wattwise", "agent", "apply-power-plan", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


def test_without_root_it_refuses_to_start_with_exit_2(token_file: Path) -> None:
    done = wattwise_as_nobody("--optimizer-url", "http://127.0.0.1:9", "--token-file", "/x")
    assert done.returncode == 2
    assert "needs root" in done.stderr and "--dry-run" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_root_nothing_is_fetched_or_set(
    optimizer: HttpPeer, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nvml = FakeNvml.h100s(4)
    assert run(options(optimizer.url, token_file), nvml, 1000, []) == 2
    assert optimizer.requests == [] and nvml.count("nvmlDeviceSetPowerManagementLimit") == 0
    assert "needs root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--interval-s", "often"], "--interval-s"),
        (["--interval-s", "60", "--silent-after-s", "30"], "--silent-after-s"),
        (["--timeout-s", "0"], "--timeout-s"),
        (["--optimizer-url", "optimizer:8000"], "--optimizer-url"),
        (["--insecure", "--ca-file", "/etc/ssl/ca.pem"], "--insecure"),
    ],
)
def test_a_bad_option_exits_2_naming_it(token_file: Path, args: list[str], named: str) -> None:
    # As root (or with --dry-run, which needs no root), so the options are what is refused.
    base = ["--optimizer-url", "http://127.0.0.1:9", "--token-file", str(token_file)]
    done = subprocess.run(
        [sys.executable, "-m", "wattwise", "agent", "apply-power-plan", "--dry-run", *base, *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_a_token_file_every_user_can_read_is_refused(optimizer: HttpPeer, token_file: Path) -> None:
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="--token-file"):
        run(options(optimizer.url, token_file), FakeNvml.h100s(4), 0, [])


def test_a_dry_run_needs_no_root_prints_and_changes_nothing(
    optimizer: HttpPeer, token_file: Path
) -> None:
    nvml, echoed = FakeNvml.h100s(4), list[str]()
    assert run(options(optimizer.url, token_file, dry_run=True), nvml, 1000, echoed) == 0
    assert [line.split(":")[0] for line in echoed] == ["gpu0", "gpu1", "gpu2", "gpu3"]
    assert "would set 480 W" in echoed[0] and "would set 500 W" in echoed[3]
    assert nvml.count("nvmlDeviceSetPowerManagementLimit") == 0
    assert not (token_file.parent / "state").exists()


def test_once_applies_one_pass_and_leaves_the_limits_for_the_next(
    optimizer: HttpPeer, token_file: Path
) -> None:
    nvml = FakeNvml.h100s(4)
    assert run(options(optimizer.url, token_file), nvml, 0, []) == 0
    assert [g.enforced_limit_mw for g in nvml.gpus] == [480_000, 700_000, 700_000, 500_000]
    assert (token_file.parent / "state" / "power-plan.json").is_file()
    assert len(optimizer.requests) == 1


def test_once_exits_1_when_there_is_no_plan(optimizer: HttpPeer, token_file: Path) -> None:
    optimizer.answers[0] = Answer(500, body=b"internal error")
    assert run(options(optimizer.url, token_file), FakeNvml.h100s(4), 0, []) == 1


def test_an_unwritable_state_file_stops_the_start_naming_it(
    optimizer: HttpPeer, token_file: Path
) -> None:
    opts = options(optimizer.url, token_file, state_file=token_file / "state.json")
    with pytest.raises(ConfigError, match="--state-file"):
        run(opts, FakeNvml.h100s(4), 0, [])


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """The command installs SIGTERM/SIGINT handlers; the test process gets its own back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_the_cli_passes_every_option_through(
    optimizer: HttpPeer,
    token_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signal_handlers: None,
) -> None:
    nvml = FakeNvml.h100s(4)
    monkeypatch.setattr(power_command, "open_nvml_limits", lambda: open_nvml_limits(nvml))
    status = main(
        [
            "agent", "apply-power-plan", "--optimizer-url", optimizer.url,
            "--token-file", str(token_file), "--once", "--dry-run", "--host", "r09-n07",
            "--interval-s", "30", "--silent-after-s", "90", "--timeout-s", "5",
            "--state-file", str(tmp_path / "state.json"),
        ]
    )  # fmt: skip
    assert status == 0
    assert optimizer.requests[0].path.endswith("?host=r09-n07")
    out = capsys.readouterr().out
    assert out.count("no plan caps it") == 4  # the caps are r01-n01's, not r09-n07's
    assert not (tmp_path / "state.json").exists()
    assert nvml.initialised is False  # NVML is shut down at the end
