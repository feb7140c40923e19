"""The optional parts of wattwise, and what to say when a command needs one not installed.

``pip install wattwise`` installs the node agent alone; the optimizer, the report,
the dashboards' tools and the simulated fleet come with extras (``pyproject.toml``).
A command that reaches for a library of a missing extra gets one line naming the
extra to install instead of a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

_OPTIMIZER = frozenset(
    {"numpy", "sklearn", "scipy", "fastapi", "starlette", "uvicorn", "apscheduler", "yaml"}
)

EXTRA_MODULES: dict[str, frozenset[str]] = {
    "sim": frozenset({"numpy"}),
    "optimizer": _OPTIMIZER,
    "report": _OPTIMIZER | {"matplotlib"},
    "dashboards": frozenset({"grafana_client", "yaml"}),
    "demo": _OPTIMIZER | {"matplotlib"},
}
"""Import names each extra brings; the first extra listed that brings a module is the
smallest one that does."""


def extra_for(module: str, wanted: str | None = None) -> str | None:
    """The extra that installs ``module`` (a dotted import name): ``wanted`` if it does,
    else the smallest that does; None when no extra brings it (a real bug, not a gap)."""
    top = module.split(".")[0]
    if wanted is not None and top in EXTRA_MODULES.get(wanted, frozenset()):
        return wanted
    return next((extra for extra, names in EXTRA_MODULES.items() if top in names), None)


def install_hint(extra: str, module: str, version: str) -> str:
    """One line: which extra is missing, and how to install it from an index or a wheel."""
    top = module.split(".")[0]
    return (
        f"this needs wattwise's '{extra}' extra ({top} is not installed): "
        f"pip install 'wattwise[{extra}]', or from a wheel built from the repository "
        f"pip install './dist/wattwise-{version}-py3-none-any.whl[{extra}]'"
    )
