"""What every site shares: the `Site` description, its per-episode SQLite database, HTML helpers, and the
Starlette app with the token-guarded control routes the host uses (reset, state).

Every reset names a new episode, and the browser sends its id with each request of that episode's context
(`EPISODE_HEADER`, which a page's scripts cannot read). A request of an ended episode (a timer or a late
POST of a tab still closing) is refused with 410 before its handler runs, and a write it started before
the reset is refused too (`StaleEpisode`): nothing an episode's pages do reaches the next episode's state.

Each site's live database is in memory; the snapshot of a seed is built once (schema plus the seeded rows)
and copied into the live database with SQLite's online backup on every reset, which takes well under a
millisecond for these sizes (docs/web-sites.md gives the measured numbers).
"""

from __future__ import annotations

import hmac
import html
import sqlite3
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Rows = dict[str, list[dict[str, Any]]]
CONTROL_HEADER = "x-orchard-control"
EPISODE_HEADER = "x-orchard-episode"
# The episode of the request being handled (None outside a page's request: the control routes, tests).
_request_episode: ContextVar[str | None] = ContextVar("orchard_request_episode", default=None)


class StaleEpisode(Exception):
    """A write asked for by a request of an episode that has ended since."""


@dataclass(frozen=True)
class Site:
    """A site: its SQL schema, the rows a seed fills it with, its routes, and the tables grading reads."""

    name: str
    title: str
    schema: str
    rows: Callable[[int], Rows]
    routes: Callable[[SiteDB], list[Route]]
    state_tables: tuple[str, ...]


class SiteDB:
    """The live in-memory database of one site, plus one snapshot per seed seen so far."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.live = _connect()
        self.snapshots: dict[int, sqlite3.Connection] = {}
        self.seed = -1
        self.episode = ""  # the id the current episode's requests carry ("" before the host names one)

    def reset(self, seed: int, episode: str = "") -> None:
        """Replace the live database with the seed's snapshot (built on first use), for a new episode."""
        if seed not in self.snapshots:
            self.snapshots[seed] = build_snapshot(self.site, seed)
        self.snapshots[seed].backup(self.live)
        self.seed, self.episode = seed, episode

    def all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a query as dicts."""
        return [dict(row) for row in self.live.execute(sql, tuple(args)).fetchall()]

    def one(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        row = self.live.execute(sql, tuple(args)).fetchone()
        return dict(row) if row is not None else None

    def run(self, sql: str, args: Iterable[Any] = ()) -> int:
        """Execute a write and commit; returns the last row id. StaleEpisode for a request of an episode
        that ended while it was handled (it passed the door check before the reset)."""
        asked = _request_episode.get()
        if asked is not None and asked != self.episode:
            raise StaleEpisode(asked)
        cursor = self.live.execute(sql, tuple(args))
        self.live.commit()
        return int(cursor.lastrowid or 0)

    def state(self) -> dict[str, list[dict[str, Any]]]:
        """The tables grading reads, every row, in id order."""
        return {table: self.all(f"SELECT * FROM {table} ORDER BY rowid") for table in self.site.state_tables}


def _connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def build_snapshot(site: Site, seed: int) -> sqlite3.Connection:
    """A fresh in-memory database: the schema and the seed's rows."""
    conn = _connect()
    conn.executescript(site.schema)
    for table, rows in site.rows(seed).items():
        if rows:
            columns = list(rows[0])
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(row[c] for c in columns) for row in rows],
            )
    conn.commit()
    return conn


# ---------------------------------------------------------------- HTML

STYLE = """
body{font-family:sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#24425e;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none;margin-right:14px}header .brand{font-weight:bold;font-size:18px}
main{padding:12px 16px;max-width:980px}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px;margin:8px 0}
.error{color:#b00020;font-weight:bold}.ok{color:#176b2c;font-weight:bold}
label{display:inline-block;margin:4px 8px 4px 0}input,select,textarea{margin:2px 8px 2px 0}
table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:3px 8px;text-align:left}
dialog{border:2px solid #24425e;border-radius:8px}
.grid{display:flex;gap:16px}.grid aside{min-width:220px}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(value), quote=True)


def page(site: Site, title: str, body: str, nav: list[tuple[str, str]] = ()) -> HTMLResponse:
    """A whole HTML page: header with the site's name and nav links, then `body`."""
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in nav)
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} - '
        f"{esc(site.title)}</title><style>{STYLE}</style></head><body>"
        f'<header><a class="brand" href="/">{esc(site.title)}</a><nav aria-label="Main">{links}</nav>'
        f"</header><main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def field_html(label: str, name: str, value: Any = "", kind: str = "text", **attrs: Any) -> str:
    """A labelled <input> (the label names it in the accessibility tree)."""
    extra = "".join(f' {key.replace("_", "-")}="{esc(val)}"' for key, val in attrs.items())
    ident = f"f-{name}"
    return (
        f'<label for="{ident}">{esc(label)}</label><input id="{ident}" name="{esc(name)}" '
        f'type="{kind}" value="{esc(value)}"{extra}>'
    )


def select_html(label: str, name: str, options: list[tuple[str, str]], chosen: str = "") -> str:
    """A labelled <select> of (value, text) options, `chosen` selected."""
    ident = f"f-{name}"
    items = "".join(
        f'<option value="{esc(v)}"{" selected" if v == chosen else ""}>{esc(t)}</option>' for v, t in options
    )
    return (
        f'<label for="{ident}">{esc(label)}</label><select id="{ident}" name="{esc(name)}">{items}</select>'
    )


def errors_html(errors: list[str]) -> str:
    """Validation errors as an alert list (empty string when there are none)."""
    if not errors:
        return ""
    items = "".join(f"<li>{esc(e)}</li>" for e in errors)
    return f'<div class="error" role="alert"><ul>{items}</ul></div>'


def redirect(path: str) -> RedirectResponse:
    """A 303 redirect after a POST (the browser then GETs `path`)."""
    return RedirectResponse(path, status_code=303)


async def form_of(request: Request) -> dict[str, str]:
    """A POSTed urlencoded form as a dict of stripped strings (the last value of a repeated key). Parsed
    here rather than by Starlette, which would need python-multipart for it."""
    body = (await request.body()).decode("utf-8", "replace")
    return {key: value.strip() for key, value in parse_qsl(body, keep_blank_values=True)}


def as_int(value: Any, default: int | None = None) -> int | None:
    """`value` as an int, or `default` when it is not one."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def as_float(value: Any, default: float | None = None) -> float | None:
    """`value` as a float, or `default` when it is not one."""
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------- the app


def create_site_app(site: Site, token: str, group: list[SiteDB] | None = None) -> tuple[Starlette, SiteDB]:
    """The site's Starlette app and its database. `/_control/*` answers only requests carrying the
    host's token in the `X-Orchard-Control` header (a page in the browser cannot know it): others get 404.
    The database joins `group`, the sites of one process: a reset asked of any one resets them all (one
    round trip per episode instead of four)."""
    db = SiteDB(site)
    db.reset(0)
    group = [db] if group is None else group
    if db not in group:
        group.append(db)

    def guarded(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get(CONTROL_HEADER, ""), token)

    async def reset(request: Request) -> Response:
        if not guarded(request):
            return Response("Not Found", status_code=404)
        body = await request.json()
        seed, episode = int(body["seed"]), str(body.get("episode", ""))
        for member in group:
            member.reset(seed, episode)
        return JSONResponse({"ok": True, "sites": [member.site.name for member in group]})

    async def state(request: Request) -> Response:
        if not guarded(request):
            return Response("Not Found", status_code=404)
        return JSONResponse({"seed": db.seed, "tables": db.state()})

    async def stale(request: Request, exc: Exception) -> Response:
        return HTMLResponse(ENDED_PAGE, status_code=410)

    routes = [
        Route("/_control/reset", reset, methods=["POST"]),
        Route("/_control/state", state, methods=["GET"]),
        *site.routes(db),
    ]
    app = Starlette(routes=routes, exception_handlers={StaleEpisode: stale})
    return _fenced(app, db), db


ENDED_PAGE = "<!doctype html><title>Episode over</title><p>This page belongs to an episode that has ended."


def _fenced(app: Any, db: SiteDB) -> Any:
    """The app behind the episode check: a page request must carry the current episode's id, and the
    handler runs with it set, so that `SiteDB.run` can refuse a write once the episode has ended."""

    async def fenced(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_control/"):
            await app(scope, receive, send)
            return
        wanted = EPISODE_HEADER.encode()
        asked = next((v.decode("latin-1") for k, v in scope["headers"] if k == wanted), "")
        if not hmac.compare_digest(asked.encode(), db.episode.encode()):
            await HTMLResponse(ENDED_PAGE, status_code=410)(scope, receive, send)
            return
        token = _request_episode.set(asked)
        try:
            await app(scope, receive, send)
        finally:
            _request_episode.reset(token)

    return fenced
