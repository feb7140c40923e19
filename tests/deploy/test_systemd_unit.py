"""deploy/systemd/wattwise-agent.service, checked by systemd's own tools."""

from __future__ import annotations

import fnmatch
import itertools
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.deploy.systemd_tools import (
    REPO,
    SHIPPED_UNIT,
    UNIT_NAME,
    directives,
    exposure,
    install_unit,
    verify,
)

DEPLOY_DOC = REPO / "docs" / "deploy.md"


def test_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root = install_unit(tmp_path, SHIPPED_UNIT.read_text())
    done = verify(root)
    assert done.returncode == 0, done.stderr
    # verify exits 0 for unknown or misspelled keys and only warns: any output is a finding.
    assert done.stderr == ""


def test_verify_reports_a_misspelled_directive(tmp_path: Path) -> None:
    typo = SHIPPED_UNIT.read_text().replace("NoNewPrivileges=", "NoNewPrivilege=")
    done = verify(install_unit(tmp_path, typo))
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


def test_verify_reports_a_program_that_is_not_there(tmp_path: Path) -> None:
    root = install_unit(tmp_path, SHIPPED_UNIT.read_text())
    (root / "opt" / "wattwise" / "bin" / "wattwise").unlink()
    done = verify(root)
    assert done.returncode != 0
    assert "/opt/wattwise/bin/wattwise" in done.stderr


def test_every_directive_has_a_comment_saying_why() -> None:
    lines = SHIPPED_UNIT.read_text().splitlines()
    uncommented = [
        line
        for previous, line in itertools.pairwise(lines)
        if line and not line.startswith(("#", "[")) and not previous.startswith("#")
    ]
    assert uncommented == []


def test_exposure_stays_at_or_below_the_documented_score(tmp_path: Path) -> None:
    documented = re.search(
        rf"Overall exposure level for {re.escape(UNIT_NAME)}: ([0-9.]+)", DEPLOY_DOC.read_text()
    )
    assert documented, "docs/deploy.md must record the exposure score"
    measured = exposure(install_unit(tmp_path, SHIPPED_UNIT.read_text()))
    assert measured <= float(documented.group(1))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ExecStart", "/opt/wattwise/bin/wattwise agent run --config /etc/wattwise/agent.toml"),
        ("User", "wattwise"),
        ("Restart", "on-failure"),
        ("StateDirectory", "wattwise"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LoadCredential", "influx-token:/etc/wattwise/influx-token"),
    ],
)
def test_unit_sets(key: str, value: str) -> None:
    assert value in directives(SHIPPED_UNIT.read_text()).get(key, [])


def test_unit_has_no_watchdog_the_agent_cannot_feed() -> None:
    # The agent does not call sd_notify(WATCHDOG=1): a WatchdogSec= would kill it every period.
    assert "WatchdogSec" not in directives(SHIPPED_UNIT.read_text())


def test_nvidia_devices_stay_reachable() -> None:
    found = directives(SHIPPED_UNIT.read_text())
    # PrivateDevices=yes mounts a /dev without /dev/nvidia*: NVML would see no GPU.
    assert found.get("PrivateDevices", ["no"]) == ["no"]
    assert found["DevicePolicy"] == ["closed"]
    patterns = [v.split()[0].removeprefix("char-") for v in found["DeviceAllow"] if "rw" in v]
    # Device group names from /proc/devices on NVIDIA hosts, old and new drivers.
    nvidia_groups = ["nvidia-frontend", "nvidia", "nvidia-uvm", "nvidia-caps", "nvidia-nvswitch"]
    for group in nvidia_groups:
        assert any(fnmatch.fnmatch(group, p) for p in patterns), group
    # …and nothing else this machine has (memory, disks, terminals).
    other_groups = [
        line.split()[1]
        for line in Path("/proc/devices").read_text().splitlines()
        if line[:1].isspace() or line[:1].isdigit()
    ]
    assert other_groups, "no device groups read from /proc/devices"
    granted = [g for g in other_groups if any(fnmatch.fnmatch(g, p) for p in patterns)]
    assert all(g.startswith("nvidia") for g in granted), granted


# Applies what MemoryDenyWriteExecute= and RestrictAddressFamilies= (without
# AF_NETLINK) impose, then does what the agent's libraries do. PR_SET_MDWE is
# the kernel's own form of MemoryDenyWriteExecute= (Linux 6.3+); a seccomp filter
# refuses AF_NETLINK sockets with EAFNOSUPPORT, as systemd's does.
SANDBOX_PROBE = textwrap.dedent(
    """
    import ctypes, errno, mmap, socket, struct, threading, http.server
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0                      # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(65, 1, 0, 0, 0) == 0, ctypes.get_errno()  # PR_SET_MDWE
    def bpf(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)
    prog = b"".join([
        bpf(0x20, 0, 0, 0), bpf(0x15, 0, 3, 41),                 # nr == socket?
        bpf(0x20, 0, 0, 16), bpf(0x15, 0, 1, 16),                # family == AF_NETLINK?
        bpf(0x06, 0, 0, 0x00050000 | errno.EAFNOSUPPORT), bpf(0x06, 0, 0, 0x7FFF0000),
    ])
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
    assert libc.prctl(22, 2, ctypes.byref(Fprog(len(prog) // 8, prog)), 0, 0) == 0
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        raise SystemExit("write+execute memory was not refused")
    except PermissionError:
        pass
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        raise SystemExit("netlink was not refused")
    except OSError as e:
        assert e.errno == errno.EAFNOSUPPORT
    import numpy, psutil, httpx, pydantic
    from wattwise.agent.config import AgentConfig
    AgentConfig()
    m = numpy.random.default_rng(0).normal(size=(64, 64))
    assert numpy.linalg.eigvalsh(m @ m.T)[-1] > 0
    assert psutil.cpu_percent(interval=0.05) >= 0 and psutil.getloadavg()[0] >= 0
    assert psutil.virtual_memory().total > 0 and psutil.disk_io_counters() is not None
    assert "lo" in psutil.net_io_counters(pernic=True)
    assert socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(41) == 42
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(204); self.end_headers()
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.handle_request, daemon=True).start()
    assert httpx.get(f"http://localhost:{server.server_port}/", timeout=5).status_code == 204
    print("agent libraries ok")
    """
)


def test_agent_libraries_work_without_write_execute_memory_or_netlink() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SANDBOX_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agent libraries ok"


# deploy/systemd/wattwise-power-plan.service: the opt-in power-plan applier, as root.
POWER_PLAN_UNIT_NAME = "wattwise-power-plan.service"
POWER_PLAN_UNIT = REPO / "deploy" / "systemd" / POWER_PLAN_UNIT_NAME
POWER_BUDGETS_DOC = REPO / "docs" / "power-budgets.md"


def test_power_plan_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root = install_unit(tmp_path, POWER_PLAN_UNIT.read_text(), POWER_PLAN_UNIT_NAME)
    done = verify(root, POWER_PLAN_UNIT_NAME)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    typo = POWER_PLAN_UNIT.read_text().replace("CapabilityBoundingSet=", "CapabilitySet=")
    done = verify(install_unit(tmp_path, typo, POWER_PLAN_UNIT_NAME), POWER_PLAN_UNIT_NAME)
    assert "Unknown key 'CapabilitySet'" in done.stderr


def test_power_plan_unit_says_why_for_every_directive() -> None:
    lines = POWER_PLAN_UNIT.read_text().splitlines()
    uncommented = [
        line
        for previous, line in itertools.pairwise(lines)
        if line and not line.startswith(("#", "[")) and not previous.startswith("#")
    ]
    assert uncommented == []


def test_power_plan_unit_exposure_stays_at_or_below_the_documented_score(tmp_path: Path) -> None:
    documented = re.search(
        rf"Overall exposure level for {re.escape(POWER_PLAN_UNIT_NAME)}: ([0-9.]+)",
        POWER_BUDGETS_DOC.read_text(),
    )
    assert documented, "docs/power-budgets.md must record the exposure score"
    root = install_unit(tmp_path, POWER_PLAN_UNIT.read_text(), POWER_PLAN_UNIT_NAME)
    assert exposure(root, POWER_PLAN_UNIT_NAME) <= float(documented.group(1))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EnvironmentFile", "/etc/wattwise/power-plan.env"),
        ("StateDirectory", "wattwise-power-plan"),
        ("LoadCredential", "optimizer-token:/etc/wattwise/power-plan-token"),
        ("CapabilityBoundingSet", "CAP_SYS_ADMIN"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "char-nvidia* rw"),
        ("RestartPreventExitStatus", "2"),
    ],
)
def test_power_plan_unit_sets(key: str, value: str) -> None:
    assert directives(POWER_PLAN_UNIT.read_text()).get(key) == [value]


def test_power_plan_unit_runs_as_root_apart_from_the_agents_state() -> None:
    found = directives(POWER_PLAN_UNIT.read_text())
    # NVML changes a limit only for CAP_SYS_ADMIN; a shared StateDirectory=wattwise would
    # be handed to root by systemd and lock the agent's user out of its WAL.
    assert "User" not in found and "DynamicUser" not in found
    assert found["StateDirectory"] != directives(SHIPPED_UNIT.read_text())["StateDirectory"]


def test_power_plan_unit_runs_the_command_with_options_that_exist() -> None:
    from wattwise.cli import build_cli

    (exec_start,) = directives(POWER_PLAN_UNIT.read_text())["ExecStart"]
    words = exec_start.split()
    assert words[:3] == ["/opt/wattwise/bin/wattwise", "agent", "apply-power-plan"]
    group = build_cli()
    ctx = group.make_context("wattwise", ["agent"], resilient_parsing=True)
    agent = group.get_command(ctx, "agent")
    command = agent.get_command(ctx, "apply-power-plan")
    options = {name for param in command.params for name in param.opts}
    assert {w for w in words if w.startswith("--")} <= options
    assert "--state-file" in words and "/var/lib/wattwise-power-plan/state.json" in words


def test_power_plan_unit_is_opt_in_no_scripted_installer_sets_it_up() -> None:
    # `wattwise agent install` sets it up only with --power-plan: tests/agent/
    # test_install_power_plan.py checks that nothing of it is planned without the flag.
    fleet = [
        *(REPO / "deploy" / "ansible").rglob("*.y*ml"),
        *(REPO / "deploy" / "k8s").rglob("*.y*ml"),
    ]
    assert [p for p in fleet if "power-plan" in p.read_text()] == []
    # install-agent.sh names the unit only to stop and remove it at --uninstall.
    script = (REPO / "deploy" / "install-agent.sh").read_text()
    code = [line.split("#", 1)[0] for line in script.splitlines()]
    naming = [line for line in code if "power-plan" in line or "POWER_PLAN" in line]
    assert naming and not [line for line in naming if "enable" in line or "install" in line]
    assert not [line for line in code if "--power-plan" in line]
