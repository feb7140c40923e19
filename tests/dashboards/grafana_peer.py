"""A small real Grafana API on localhost: the endpoints ``dashboards push`` uses.

It keeps folders and dashboards in memory, answers like Grafana (412 when a
dashboard uid exists and overwrite is false, 401 for a wrong token) and records
every request, so tests assert what was sent over a real socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class GrafanaState:
    token: str
    datasources: dict[str, dict[str, Any]]
    folders: list[dict[str, Any]] = field(default_factory=list)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)


def _handler(state: GrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet."""

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            state.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._answer(401, {"message": "invalid API key"})
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorized():
                return
            path = self.path.split("?")[0]
            if path == "/api/folders":
                self._answer(200, state.folders)
            elif path.startswith("/api/datasources/name/"):
                name = unquote(path.removeprefix("/api/datasources/name/"))
                found = state.datasources.get(name)
                self._answer(200, found) if found else self._answer(404, {"message": "not found"})
            else:
                self._answer(404, {"message": "not found"})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/folders":
                folder = {"id": len(state.folders) + 1, "uid": f"f{len(state.folders) + 1}"}
                state.folders.append({**folder, "title": body["title"]})
                self._answer(200, state.folders[-1])
            elif self.path == "/api/dashboards/db":
                uid = body["dashboard"]["uid"]
                if uid in state.dashboards and not body.get("overwrite"):
                    self._answer(
                        412,
                        {
                            "message": "A dashboard with the same uid already exists",
                            "status": "name-exists",
                        },
                    )
                    return
                state.dashboards[uid] = body
                self._answer(
                    200, {"uid": uid, "status": "success", "url": f"/d/{uid}/x", "version": 1}
                )
            else:
                self._answer(404, {"message": "not found"})

    return Handler


@contextmanager
def grafana_peer(state: GrafanaState) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
