"""Every module has one name: absolute imports, a package per folder, no link resolving."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import wattwise

PACKAGE = Path(wattwise.__file__).parent
"""wattwise/ as Python sees it: agent/, collector/, optimizer/, dashboards/ through links."""
TESTS = Path(__file__).parent


def _modules(root: Path) -> Iterator[Path]:
    """Every module under ``root``, through the links (test data excepted)."""
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in ("data", "__pycache__"))
        yield from (Path(folder) / f for f in sorted(files) if f.endswith(".py"))


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def test_every_folder_of_modules_is_a_package() -> None:
    modules = list(_modules(PACKAGE))
    assert {"agent", "collector", "optimizer", "dashboards"} <= {p.parts[-2] for p in modules}
    folders = {p.parent for p in [*modules, *_modules(TESTS)]}
    assert [f for f in sorted(folders) if not (f / "__init__.py").is_file()] == []


def test_every_import_is_absolute() -> None:
    relative = [
        f"{path}:{node.lineno}"
        for path in [*_modules(PACKAGE), *_modules(TESTS)]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []


def test_no_module_finds_files_by_resolving_the_package_links() -> None:
    # agent/, collector/, optimizer/ and dashboards/ are links inside wattwise/: a path
    # computed from the resolved __file__ works in a checkout and nowhere else.
    resolving = [
        _name(path)
        for path in _modules(PACKAGE)
        if "__file__).resolve()" in path.read_text() or "__file__).absolute()" in path.read_text()
    ]
    assert resolving == []


def test_the_optimizer_and_collector_never_import_agent_internals() -> None:
    offenders = []
    for part in ("optimizer", "collector", "common"):
        for path in _modules(PACKAGE / part):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                offenders += [
                    f"{_name(path)} → {n}" for n in names if n.startswith("wattwise.agent")
                ]
    assert offenders == []
