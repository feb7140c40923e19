"""wrk, a C load generator, driven from Python: a Lua script per set of requests, and the
latency percentiles and request rate parsed from its ``--latency`` report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

Case = tuple[str, str, bytes]
"""Method, path and body (empty for a GET) of one request."""


def wrk_script(cases: list[Case], think_ms: int = 0) -> str:
    """Lua for wrk: each request one of ``cases`` at random, formatted once per thread.

    ``think_ms`` > 0 makes each client wait that long after an answer before its next
    request, as a scheduler or dashboard polling the API does; 0 sends back to back.
    """
    # wrk.format uses the headers it is given instead of wrk.headers (which hold -H's
    # Authorization), so a request with a body gets a copy of them plus its Content-Type.
    lines = ["local formatted = {}", "init = function(args)", "  local json = {}"]
    lines += ["  for name, value in pairs(wrk.headers) do json[name] = value end"]
    lines += ['  json["Content-Type"] = "application/json"']
    for method, path, body in cases:
        arguments = f"{json.dumps(method)}, {json.dumps(path)}"
        if body:
            arguments += f", json, {json.dumps(body.decode())}"
        lines += [f"  formatted[#formatted + 1] = wrk.format({arguments})"]
    lines += ["end", "request = function() return formatted[math.random(#formatted)] end"]
    if think_ms > 0:
        lines += [f"delay = function() return {think_ms} end"]
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str, cases: list[Case], clients: int, duration_s: int, think_ms: int, authorization: str
) -> dict[str, float]:
    """wrk's latency percentiles (ms) and request rate for ``cases``; raises on any non-2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(cases, think_ms))
    argv = ["wrk", "-t", "2", "-c", str(clients), "-d", f"{duration_s}s", "--latency"]
    argv += ["-H", f"Authorization: {authorization}", "-s", script.name, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    os.unlink(script.name)
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk saw failures:\n{done.stdout}")
    found = {p: _wrk_ms(done.stdout, p) for p in WRK_PERCENTILES}
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    return {**found, "rps": float(rate.group(1)) if rate else float("nan")}


WRK_PERCENTILES = ("50", "90", "99")


def _wrk_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$", output, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile}% line in wrk's output:\n{output}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    return float(match.group(1)) * scale
