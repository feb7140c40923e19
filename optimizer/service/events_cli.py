"""``wattwise power-events``: list, show, add and cancel a running optimizer's power events.

A client of ``/v1/power-events`` (docs/api.md), so that scheduling a demand-response
window needs neither JSON nor curl. Listing needs a token with the read scope; ``add``
and ``cancel`` the admin scope. The token is read from ``--token-file`` (or the file
``$WATTWISE_TOKEN_FILE`` names), never from the command line, where ``ps`` shows it.

What the command can check itself (a limit, a time, a length, a short id that fits
several events) exits 2 before anything is sent; what the optimizer refuses or cannot
answer exits 1 with its words. An id may be shortened to any prefix that names one
event, as the tables print them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from wattwise.common.api_client import ApiClient
from wattwise.common.command_group import command_group
from wattwise.common.http import tls_verify
from wattwise.common.secrets import read_secret
from wattwise.errors import MISSING, ApiRefused, ApiUnavailable, ConfigError
from wattwise.optimizer.service import printing
from wattwise.optimizer.service.event_args import iso_z, length_s, limit_w, moment
from wattwise.settings import check_http_url

HELP = "A running optimizer's timed power events: list, add, cancel."
EVENTS_PATH = "/v1/power-events"
URL_ENV = "WATTWISE_OPTIMIZER_URL"
TOKEN_FILE_ENV = "WATTWISE_TOKEN_FILE"
DEFAULT_URL = "http://127.0.0.1:8000"
"""The optimizer's own default (``api.host``, ``api.port``)."""
SHORT_ID = 8
COLUMNS = ("id", "scope", "limit kW", "window (UTC)", "state")

UrlOpt = Annotated[str, typer.Option("--optimizer-url", envvar=URL_ENV, help="the optimizer's API")]
TokenOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar=TOKEN_FILE_ENV,
        help="a file holding an API token: read scope to list, admin to add or cancel",
    ),
]
CaOpt = Annotated[Path | None, typer.Option("--ca-file", help="PEM to verify the API with")]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="do not verify the API's certificate")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout-s", min=0.1, help="per request")]
JsonOpt = Annotated[bool, typer.Option("--json", help="the API's JSON instead of text")]
IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="an event's id, or the first characters of it")
]


def list_events(
    show_all: Annotated[
        bool, typer.Option("--all", help="the ended and cancelled events too")
    ] = False,
    url: UrlOpt = DEFAULT_URL,
    token_file: TokenOpt = None,
    ca_file: CaOpt = None,
    insecure: InsecureOpt = False,
    timeout_s: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """The scheduled and active power events, by start (--all: every one kept)."""
    with _client(url, token_file, ca_file, insecure, timeout_s) as client:
        body = client.call("GET", EVENTS_PATH, params={"all": "true"} if show_all else None)
    if as_json:
        typer.echo(_json(body))
        return
    events = _items(client.url, body)
    if not events:
        more = "" if show_all else " (--all adds the ended and cancelled)"
        typer.echo(f"No {'' if show_all else 'scheduled or active '}power events{more}")
        return
    console = Console()
    console.print(printing.table([_row(e) for e in events], COLUMNS, title="Power events"))
    for event in events:
        if event.get("reason"):
            console.print(Text(f"{str(event['id'])[:SHORT_ID]}: {event['reason']}"))


def show_event(
    event_id: IdArg,
    url: UrlOpt = DEFAULT_URL,
    token_file: TokenOpt = None,
    ca_file: CaOpt = None,
    insecure: InsecureOpt = False,
    timeout_s: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """One power event."""
    with _client(url, token_file, ca_file, insecure, timeout_s) as client:
        event = client.call("GET", f"{EVENTS_PATH}/{_full_id(client, event_id)}")
    typer.echo(_json(event) if as_json else _sentence(event))


def add_event(
    scope: Annotated[str, typer.Argument(metavar="SCOPE", help="site, zone:NAME or rack:NAME")],
    limit: Annotated[str, typer.Argument(metavar="LIMIT", help="480kW, 1.2MW or watts")],
    end: Annotated[
        str | None, typer.Option("--end", help="now, +2h or 2026-12-04T16:00Z (local if bare)")
    ] = None,
    length: Annotated[str | None, typer.Option("--for", help="how long: 2h, 90m, 1h30m")] = None,
    start: Annotated[str, typer.Option("--start", help="as --end; default now")] = "now",
    reason: Annotated[str, typer.Option("--reason", help="one line, shown in Grafana")] = "",
    url: UrlOpt = DEFAULT_URL,
    token_file: TokenOpt = None,
    ca_file: CaOpt = None,
    insecure: InsecureOpt = False,
    timeout_s: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Limit a scope's power for a window: --end or --for says until when (admin token)."""
    body = _new_event(scope, limit, start, end, length, reason, now=datetime.now(UTC))
    with _client(url, token_file, ca_file, insecure, timeout_s) as client:
        event = client.call("POST", EVENTS_PATH, body=body)
    typer.echo(_json(event) if as_json else f"Added {_sentence(event)}")


def cancel_event(
    event_id: IdArg,
    url: UrlOpt = DEFAULT_URL,
    token_file: TokenOpt = None,
    ca_file: CaOpt = None,
    insecure: InsecureOpt = False,
    timeout_s: TimeoutOpt = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """End a power event now: the plans drop its limit at once (admin token)."""
    with _client(url, token_file, ca_file, insecure, timeout_s) as client:
        event = client.call("DELETE", f"{EVENTS_PATH}/{_full_id(client, event_id)}")
    typer.echo(_json(event) if as_json else f"Cancelled {_sentence(event)}")


def build_power_events_app() -> typer.Typer:
    """``wattwise power-events``: ``list``, ``show``, ``add`` and ``cancel``."""
    app = command_group(
        no_args_is_help=True, help="A running optimizer's timed power events: list, add, cancel."
    )
    app.command("list")(list_events)
    app.command("show")(show_event)
    app.command("add")(add_event)
    app.command("cancel")(cancel_event)
    return app


def _new_event(
    scope: str,
    limit: str,
    start: str,
    end: str | None,
    length: str | None,
    reason: str,
    *,
    now: datetime,
) -> dict[str, Any]:
    """The body of ``POST /v1/power-events`` from the command's arguments."""
    if end is None and length is None:
        raise ConfigError("--end", MISSING, "the time the event ends, or --for its length")
    if end is not None and length is not None:
        raise ConfigError("--for", length, "left out", problem="is given with --end")
    begins = moment("--start", start, now)
    if end is not None:
        ends = moment("--end", end, now)
    else:
        ends = begins + timedelta(seconds=length_s("--for", str(length)))
    return {
        "scope": scope,
        "limit_w": limit_w("LIMIT", limit),
        "start": iso_z(begins),
        "end": iso_z(ends),
        "reason": reason,
    }


def _client(
    url: str, token_file: Path | None, ca_file: Path | None, insecure: bool, timeout_s: float
) -> ApiClient:
    check_http_url("--optimizer-url", url, password_key="--token-file")
    token = read_secret(None, token_file, setting="--token-file") if token_file else None
    if token is None:
        raise ConfigError(
            "--token-file",
            MISSING,
            f"a file holding an API token, given as --token-file or ${TOKEN_FILE_ENV}",
        )
    return ApiClient(url, token, timeout_s=timeout_s, verify=tls_verify(ca_file, insecure))


def _full_id(client: ApiClient, given: str) -> str:
    """The id of the one event kept whose id starts with ``given``."""
    body = client.call("GET", EVENTS_PATH, params={"all": "true"})
    ids = [str(e.get("id")) for e in _items(client.url, body)]
    matches = [i for i in ids if i.startswith(given.strip().lower())] if given.strip() else []
    if len(matches) > 1:
        shown = ", ".join(m[:SHORT_ID] for m in matches[:3])
        raise ConfigError("ID", given, f"the start of one event's id; it starts {shown}")
    if not matches:
        raise ApiRefused(404, f"no power event kept has an id starting with {given!r}")
    return matches[0]


def _items(url: str, body: object) -> list[dict[str, Any]]:
    """The events of a list answer; ApiUnavailable if it is not one (a proxy's page)."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
        raise ApiUnavailable(f"the optimizer at {url} answered {EVENTS_PATH} with no list")
    return items


def _row(event: dict[str, Any]) -> dict[str, object]:
    return {
        "id": str(event.get("id", ""))[:SHORT_ID],
        "scope": event.get("scope"),
        "limit kW": f"{float(event.get('limit_w', 0)) / 1e3:,.1f}",
        "window (UTC)": _window(str(event.get("start")), str(event.get("end"))),
        "state": event.get("state"),
    }


def _sentence(event: dict[str, Any]) -> str:
    """One line: ``9f0c4e6a (scheduled): rack:r01 at most 30.0 kW, 2026-… UTC: reason``."""
    line = (
        f"{str(event.get('id', ''))[:SHORT_ID]} ({event.get('state')}): {event.get('scope')} "
        f"at most {float(event.get('limit_w', 0)) / 1e3:,.1f} kW, "
        f"{_window(str(event.get('start')), str(event.get('end')))} UTC"
    )
    cancelled = event.get("cancelled_at")
    if isinstance(cancelled, str):
        line += f", cancelled {_minute(cancelled)}"
    return f"{line}: {event['reason']}" if event.get("reason") else line


def _window(start: str, end: str) -> str:
    """``2026-12-04 14:00–18:00``, or with the end's date when it is another day."""
    try:
        begins, ends = datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return f"{start}–{end}"
    until = f"{ends:%H:%M}" if begins.date() == ends.date() else f"{ends:%m-%d %H:%M}"
    return f"{begins:%Y-%m-%d %H:%M}–{until}"


def _minute(text: str) -> str:
    """An API time (UTC) to the minute, as the windows are printed."""
    try:
        return f"{datetime.fromisoformat(text):%Y-%m-%d %H:%M}"
    except ValueError:
        return text


def _json(value: object) -> str:
    return json.dumps(value, indent=2)
