"""Model registry: every fitted model saved as JSON (identity card and parameters) plus an
``.npz`` of numeric arrays, one version per refit, never pickled.

Layout: ``<directory>/<kind>/<scope, URL-quoted>/v<version>.json`` and ``.npz``.
Loading checks the JSON against a strict schema and opens the arrays with
``allow_pickle=False``, accepting only numeric and boolean arrays of the names
the kind needs; anything else raises :class:`~wattwise.errors.ModelFileError`.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from wattwise.errors import ModelFileError
from wattwise.optimizer.models.codecs import KINDS, Model, from_state, to_state, with_info
from wattwise.optimizer.models.common import ModelInfo

FORMAT = 1
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")
_Scalar = StrictStr | float | StrictInt | bool | None


class _Stored(BaseModel):
    """The JSON file, exactly: unknown keys or wrong types are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: StrictInt
    kind: StrictStr
    scope: StrictStr
    version: StrictInt
    window_start_ns: StrictInt
    window_end_ns: StrictInt
    samples: StrictInt
    errors: dict[StrictStr, float]
    notes: StrictStr
    params: dict[StrictStr, _Scalar | list[_Scalar] | dict[StrictStr, float]]


class ModelRegistry:
    """Saves and loads models under ``directory``; safe against tampered files."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def save(self, model: Model) -> ModelInfo:
        """Store ``model`` as the next version of its kind and scope; its info, as stored."""
        info = model.info
        if info.kind not in KINDS:
            raise ModelFileError(f"cannot store a model of kind {info.kind!r}")
        folder = self._folder(info.kind, info.scope)
        folder.mkdir(parents=True, exist_ok=True)
        version = max(self._versions(folder), default=0) + 1
        stored = replace(info, version=version)
        params, arrays = to_state(with_info(model, stored))
        document = {"format": FORMAT, **_info_fields(stored), "params": _plain(params)}
        _write_atomic(
            folder / f"v{version}.npz", lambda f: np.savez(f, **cast(dict[str, Any], arrays))
        )
        _write_atomic(folder / f"v{version}.json", lambda f: f.write(json.dumps(document).encode()))
        return stored

    def load(self, kind: str, scope: str, version: int | None = None) -> Model:
        """One stored model (the newest version when ``version`` is None)."""
        folder = self._folder(kind, scope)
        if version is None:
            version = max(self._versions(folder), default=0)
        path = folder / f"v{version}.json"
        if not path.is_file():
            raise ModelFileError(f"no stored {kind} model for {scope!r} (version {version})")
        stored = _read_json(path)
        if (stored.kind, stored.scope, stored.version) != (kind, scope, version):
            raise ModelFileError(f"{path}: names {stored.kind}/{stored.scope}/v{stored.version}")
        arrays = _read_arrays(path.with_suffix(".npz"))
        info = ModelInfo(
            kind, scope, version, stored.window_start_ns, stored.window_end_ns, stored.samples,
            dict(stored.errors), stored.notes,
        )  # fmt: skip
        try:
            return from_state(kind, dict(stored.params), arrays, info)
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from e

    def latest(self, kind: str, scope: str) -> Model:
        return self.load(kind, scope)

    def list(self) -> list[ModelInfo]:
        """The identity card of every stored version, by kind, scope and version."""
        out = []
        for path in sorted(self.directory.glob("*/*/v*.json")):
            stored = _read_json(path)
            out.append(
                ModelInfo(stored.kind, stored.scope, stored.version, stored.window_start_ns,
                          stored.window_end_ns, stored.samples, dict(stored.errors), stored.notes)
            )  # fmt: skip
        return sorted(out, key=lambda i: (i.kind, i.scope, i.version))

    def _folder(self, kind: str, scope: str) -> Path:
        if kind not in KINDS:
            raise ModelFileError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
        return self.directory / kind / quote(scope, safe="")

    @staticmethod
    def _versions(folder: Path) -> builtins.list[int]:
        if not folder.is_dir():
            return []
        found = (_VERSION_FILE.match(p.name) for p in folder.iterdir())
        return [int(m.group(1)) for m in found if m]


def _info_fields(info: ModelInfo) -> dict[str, Any]:
    return {
        "kind": info.kind,
        "scope": info.scope,
        "version": info.version,
        "window_start_ns": info.window_start_ns,
        "window_end_ns": info.window_end_ns,
        "samples": info.samples,
        "errors": {k: float(v) for k, v in info.errors.items()},
        "notes": info.notes,
    }


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so the JSON holds only plain numbers and strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_json(path: Path) -> _Stored:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stored = _Stored.model_validate(document)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as e:
        raise ModelFileError(f"{path}: not a model file wattwise wrote: {e}") from e
    if stored.format != FORMAT:
        raise ModelFileError(f"{path}: format {stored.format}, this wattwise reads {FORMAT}")
    if not all(math.isfinite(v) or math.isnan(v) for v in stored.errors.values()):
        raise ModelFileError(f"{path}: infinite error values")
    return stored


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ModelFileError(f"{path}: arrays refused ({e})") from e
    for name, values in arrays.items():
        # A member without the .npy header comes back as raw bytes: refuse it too.
        if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiub":
            kind = getattr(values, "dtype", type(values).__name__)
            raise ModelFileError(f"{path}: array {name!r} is {kind}, not numeric")
    return arrays


def _write_atomic(path: Path, write: Any) -> None:
    """Write beside, flush to disk, then rename: a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)
