"""What a GPU node gets from ``pip install wattwise``: size and import list of the agent alone.

Run as ``python bench/agent_install.py``. Builds the wheel from this checkout, then in
fresh virtual environments (made from the interpreter this one was made from):

1. installs the wheel without extras, as install-agent.sh, Ansible and the DaemonSet
   do, and measures what the install added to site-packages (per distribution, from
   each one's RECORD) beyond the empty environment's pip and setuptools;
2. runs ``wattwise agent run`` there (NVML, absent here; host; a Redfish BMC that
   refuses connections; WAL; the embedded store) until SIGTERM and lists the
   distributions whose modules it imported;
3. for comparison, installs the same wheel with every extra but ``dev`` (what one
   distribution used to put on every node) and measures it the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_BUT_DEV = "sim,optimizer,report,dashboards,demo"

AGENT_RUN = """
import sys
at_start = set(sys.modules)  # what the interpreter loaded before wattwise (site, .pth hooks)
import atexit, json
from importlib import metadata
from wattwise.cli import main
def report():
    providers = metadata.packages_distributions()
    loaded = {m.split(".")[0] for m in set(sys.modules) - at_start}
    found = {d for m in loaded for d in providers.get(m, [])}
    print("DISTRIBUTIONS " + json.dumps(sorted(found)))
atexit.register(report)
sys.exit(main(sys.argv[1:]))
"""


def base_python() -> str:
    config = Path(sys.prefix) / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "executable":
                return value.strip()
    return sys.executable


def build_wheel(out: Path) -> Path:
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out)]
    subprocess.run([*pip, str(ROOT)], check=True)
    (wheel,) = out.glob("wattwise-*.whl")
    return wheel


def make_venv(path: Path) -> Path:
    subprocess.run([base_python(), "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def installed(python: Path) -> dict[str, int]:
    """Bytes per installed distribution, from the files its RECORD lists."""
    script = (
        "import json\n"
        "from importlib import metadata\n"
        "sizes = {}\n"
        "for d in metadata.distributions():\n"
        "    total = 0\n"
        "    for f in d.files or []:\n"
        "        p = f.locate()\n"
        "        total += p.stat().st_size if p.is_file() else 0\n"
        "    sizes[d.metadata['Name']] = total\n"
        "print(json.dumps(sizes))\n"
    )
    done = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True)
    sizes: dict[str, int] = json.loads(done.stdout)
    return sizes


def install(python: Path, requirement: str) -> dict[str, int]:
    """Install ``requirement``; the distributions it added and their bytes."""
    before = installed(python)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, requirement], check=True)
    return {name: size for name, size in installed(python).items() if name not in before}


def agent_imports(python: Path, work: Path) -> list[str]:
    config = work / "agent.toml"
    config.write_text(
        f'[agent]\nsource = "nvml"\n'
        f'[store]\nkind = "embedded"\nembedded_path = "{work / "store.sqlite"}"\n'
        f'[wal]\ndir = "{work / "wal"}"\n'
        '[bmc]\nkind = "redfish"\nurl = "http://127.0.0.1:9"\n'
    )
    argv = [str(python), "-c", AGENT_RUN, "agent", "run", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    agent = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert agent.stderr is not None
    for line in agent.stderr:
        if "agent started" in line:
            break
    agent.send_signal(signal.SIGTERM)
    stdout, _ = agent.communicate(timeout=60)
    found: list[str] = json.loads(stdout.split("DISTRIBUTIONS ", 1)[1])
    return [d for d in found if d != "wattwise"]


def mib(size: int) -> str:
    return f"{size / 2**20:.1f}"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wattwise-install-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        wheel_kib = wheel.stat().st_size / 1024
        agent_python = make_venv(work / "agent")
        agent = install(agent_python, str(wheel))
        imported = agent_imports(agent_python, work)
        full = install(make_venv(work / "full"), f"{wheel}[{ALL_BUT_DEV}]")
    print(f"wheel: {wheel.name}, {wheel_kib:.0f} KiB")
    print("\n| distribution | MiB | imported by `wattwise agent run` |\n| --- | --- | --- |")
    for name, size in sorted(agent.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {mib(size)} | {'yes' if name in imported else 'no'} |")
    total, full_total = sum(agent.values()), sum(full.values())
    print(f"| **total, {len(agent)} distributions** | **{mib(total)}** | |")
    print(f"\nimported by the running agent: {', '.join(sorted(imported))}")
    print(f"with every extra but dev: {len(full)} distributions, {mib(full_total)} MiB")
    print(f"agent alone / every extra: {total / full_total:.1%} ({full_total / total:.0f}× less)")
    heavy = {"numpy", "scipy", "scikit-learn", "matplotlib", "fastapi", "uvicorn"}
    print(f"heavy distributions in the agent install: {sorted(heavy & set(agent)) or 'none'}")


if __name__ == "__main__":
    main()
