"""``wattwise dashboards push``: publish the dashboards through Grafana's HTTP API.

The datasource is mapped by name: the dashboards' ``datasource`` variable is
pointed at the named InfluxDB datasource the site already has, so no
``__inputs`` section is needed. The token comes from a file or the environment,
never from the command line (where ``ps`` would show it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException, GrafanaUnauthorizedError

from wattwise.dashboards.check import DEFAULT_DATASOURCE
from wattwise.errors import MISSING, AuthError, ConfigError, DeliveryError

TOKEN_ENV = "WATTWISE_GRAFANA_TOKEN"


@dataclass(frozen=True)
class PushSettings:
    url: str
    token: str
    folder: str = "wattwise"
    datasource: str = DEFAULT_DATASOURCE
    overwrite: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Pushed:
    title: str
    uid: str
    url: str


def read_token(token_file: Path | None, environ: Mapping[str, str]) -> str:
    """The API token from ``token_file``, else from ``WATTWISE_GRAFANA_TOKEN``."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            raise ConfigError("token-file", str(token_file), f"a readable file ({e})") from e
    else:
        token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            "token",
            MISSING,
            f"a Grafana API token in --token-file or ${TOKEN_ENV}",
            describes_source=True,  # nothing was given: there is no secret to hide
        )
    return token


def push_dashboards(files: Sequence[Path], settings: PushSettings) -> list[Pushed]:
    """Publish every dashboard file into ``settings.folder``, created if missing."""
    api: Any = GrafanaApi.from_url(
        settings.url, credential=settings.token, timeout=settings.timeout_s
    )
    try:
        datasource = api.datasource.get_datasource_by_name(settings.datasource)
        folder_uid = _folder_uid(api, settings.folder)
        return [_push_one(api, path, datasource, folder_uid, settings.overwrite) for path in files]
    except GrafanaUnauthorizedError as e:
        raise AuthError(f"Grafana at {settings.url} refused the token: {e}") from e
    except GrafanaException as e:
        raise DeliveryError(f"Grafana at {settings.url}: {e}") from e


def _folder_uid(api: Any, title: str) -> str:
    for folder in api.folder.get_all_folders():
        if folder.get("title") == title:
            return str(folder["uid"])
    return str(api.folder.create_folder(title)["uid"])


def _push_one(
    api: Any, path: Path, datasource: dict[str, Any], folder_uid: str, overwrite: bool
) -> Pushed:
    board = with_datasource(json.loads(path.read_text()), datasource)
    board.pop("id", None)  # Grafana matches on uid; an id from elsewhere would clash
    payload = {
        "dashboard": board,
        "folderUid": folder_uid,
        "overwrite": overwrite,
        "message": "published by wattwise dashboards push",
    }
    answer = api.dashboard.update_dashboard(payload)
    return Pushed(board["title"], str(answer.get("uid", board["uid"])), str(answer.get("url", "")))


def with_datasource(board: dict[str, Any], datasource: Mapping[str, Any]) -> dict[str, Any]:
    """``board`` with its datasource variable defaulting to ``datasource`` (by name and uid)."""
    for variable in board["templating"]["list"]:
        if variable.get("type") == "datasource":
            variable["current"] = {
                "selected": True,
                "text": datasource["name"],
                "value": datasource["uid"],
            }
    return board
