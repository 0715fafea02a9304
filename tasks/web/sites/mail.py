"""The webmail: folders whose message lists load by fetch() from a JSON endpoint, message pages with reply,
forward, move and delete, a compose form with validation, and the contacts book."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchard_envs.tasks.web.sites import mail_data
from orchard_envs.tasks.web.sites.common import (
    Site,
    SiteDB,
    as_int,
    errors_html,
    esc,
    field_html,
    form_of,
    page,
    redirect,
    select_html,
)

SCHEMA = """
CREATE TABLE contacts(id INTEGER PRIMARY KEY, name TEXT, email TEXT, company TEXT);
CREATE TABLE messages(id INTEGER PRIMARY KEY, folder TEXT, sender_name TEXT, sender TEXT, recipients TEXT,
  cc TEXT, subject TEXT, body TEXT, date TEXT, read INTEGER, in_reply_to INTEGER, forward_of INTEGER);
"""
FOLDERS = [("inbox", "Inbox"), ("sent", "Sent"), ("archive", "Archive"), ("trash", "Trash")]
NAV = [
    ("Inbox", "/folder/inbox"),
    ("Sent", "/folder/sent"),
    ("Archive", "/folder/archive"),
    ("Trash", "/folder/trash"),
    ("Compose", "/compose"),
    ("Contacts", "/contacts"),
]
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[a-z]{2,}$", re.IGNORECASE)

FOLDER_JS = """
<script>
async function load() {
  const params = new URLSearchParams({folder: FOLDER, q: document.getElementById('f-q').value});
  const rows = await (await fetch('/api/messages?' + params)).json();
  const list = document.getElementById('messages');
  list.innerHTML = '';
  for (const row of rows) {
    const item = document.createElement('li');
    item.className = 'card';
    const link = document.createElement('a');
    link.href = '/message/' + row.id;
    link.textContent = row.subject;
    const who = document.createElement('span');
    who.textContent = ' - ' + row.sender_name + ', ' + row.date + (row.read ? '' : ' (unread)');
    item.append(link, who);
    list.appendChild(item);
  }
  if (!rows.length) list.innerHTML = '<li>No messages.</li>';
}
document.getElementById('search').addEventListener('submit', (e) => { e.preventDefault(); load(); });
load();
</script>"""


def routes(db: SiteDB) -> list[Route]:
    """The webmail's pages and its JSON message list."""

    async def home(request: Request) -> Response:
        return redirect("/folder/inbox")

    async def folder(request: Request) -> Response:
        name = request.path_params["name"]
        title = dict(FOLDERS).get(name, name.title())
        body = (
            '<form id="search" role="search" class="card">'
            + field_html("Search mail", "q", "", "search")
            + '<button type="submit">Search</button></form><ul id="messages" aria-label="Messages">'
            f"<li>Loading...</li></ul><script>const FOLDER = {name!r};</script>{FOLDER_JS}"
        )
        return page(SITE, title, body, NAV)

    async def api_messages(request: Request) -> Response:
        folder_name, query = request.query_params.get("folder", "inbox"), request.query_params.get("q", "")
        like = f"%{query.lower()}%"
        rows = db.all(
            "SELECT id, sender_name, subject, date, read FROM messages WHERE folder = ? AND "
            "(lower(subject) LIKE ? OR lower(body) LIKE ? OR lower(sender_name) LIKE ?) "
            "ORDER BY date DESC",
            [folder_name, like, like, like],
        )
        return JSONResponse(rows)

    async def message(request: Request) -> Response:
        mid = as_int(request.path_params["mid"], 0)
        row = db.one("SELECT * FROM messages WHERE id = ?", [mid])
        if row is None:
            return page(SITE, "Message not found", "<p>No such message.</p>", NAV)
        if request.method == "POST":
            form = await form_of(request)
            target = "trash" if form.get("action") == "delete" else form.get("folder", "")
            if target in dict(FOLDERS):
                db.run("UPDATE messages SET folder = ? WHERE id = ?", [target, mid])
            return redirect(f"/folder/{row['folder']}")
        db.run("UPDATE messages SET read = 1 WHERE id = ?", [mid])
        return page(SITE, row["subject"], _message_body(row), NAV)

    async def contacts(request: Request) -> Response:
        rows = "".join(
            f"<tr><td>{esc(c['name'])}</td><td>{esc(c['email'])}</td><td>{esc(c['company'])}</td></tr>"
            for c in db.all("SELECT * FROM contacts ORDER BY name")
        )
        body = (
            f'<table aria-label="Contacts"><tr><th>Name</th><th>Email</th><th>Company</th></tr>{rows}</table>'
        )
        return page(SITE, "Contacts", body, NAV)

    async def compose(request: Request) -> Response:
        return await _compose(db, request)

    return [
        Route("/", home),
        Route("/folder/{name}", folder),
        Route("/api/messages", api_messages),
        Route("/message/{mid}", message, methods=["GET", "POST"]),
        Route("/contacts", contacts),
        Route("/compose", compose, methods=["GET", "POST"]),
    ]


def _message_body(row: dict) -> str:
    moves = [(key, title) for key, title in FOLDERS if key != row["folder"]]
    return (
        f'<div class="card"><p>From: {esc(row["sender_name"])} &lt;{esc(row["sender"])}&gt;</p>'
        f"<p>To: {esc(row['recipients'])}</p><p>Date: {esc(row['date'])}</p>"
        f'<pre style="white-space:pre-wrap">{esc(row["body"])}</pre></div>'
        f'<a href="/compose?reply_to={row["id"]}">Reply</a> '
        f'<a href="/compose?forward={row["id"]}">Forward</a>'
        '<form method="post" class="card" aria-label="Move message">'
        + select_html("Move to", "folder", moves)
        + '<button type="submit" name="action" value="move">Move</button> '
        '<button type="submit" name="action" value="delete">Delete</button></form>'
    )


def _draft(db: SiteDB, params: dict[str, str]) -> dict[str, str]:
    """The compose form's starting values: empty, a reply or a forward of a message."""
    if source := db.one("SELECT * FROM messages WHERE id = ?", [as_int(params.get("reply_to"), 0)]):
        return {
            "to": source["sender"],
            "subject": f"Re: {source['subject']}",
            "body": "",
            "in_reply_to": str(source["id"]),
        }
    if source := db.one("SELECT * FROM messages WHERE id = ?", [as_int(params.get("forward"), 0)]):
        quoted = f"\n\n---------- Forwarded message ----------\nFrom: {source['sender']}\n{source['body']}"
        return {
            "to": "",
            "subject": f"Fwd: {source['subject']}",
            "body": quoted,
            "forward_of": str(source["id"]),
        }
    return {}


def _compose_errors(form: dict[str, str]) -> list[str]:
    errors = []
    addresses = [a.strip() for a in form.get("to", "").split(",") if a.strip()]
    if not addresses:
        errors.append("Add at least one recipient.")
    errors += [f"{a} is not a valid email address." for a in addresses if not EMAIL.match(a)]
    errors += [
        f"{a} is not a valid email address."
        for a in form.get("cc", "").split(",")
        if a.strip() and not EMAIL.match(a.strip())
    ]
    if not form.get("subject"):
        errors.append("The subject is required.")
    return errors


async def _compose(db: SiteDB, request: Request) -> Response:
    errors: list[str] = []
    if request.method == "POST":
        values = await form_of(request)
        errors = _compose_errors(values)
        if not errors:
            recipients = ", ".join(a.strip() for a in values["to"].split(",") if a.strip())
            db.run(
                "INSERT INTO messages(folder, sender_name, sender, recipients, "
                "cc, subject, body, date, read, "
                "in_reply_to, forward_of) VALUES ("
                "'sent', 'Sam Rivera', ?, ?, ?, ?, ?, '2026-06-28 12:00', 1, "
                "?, ?)",
                [
                    mail_data.OWNER,
                    recipients,
                    values.get("cc", ""),
                    values["subject"],
                    values.get("body", ""),
                    as_int(values.get("in_reply_to")),
                    as_int(values.get("forward_of")),
                ],
            )
            return redirect("/folder/sent")
    else:
        values = _draft(db, dict(request.query_params))
    hidden = "".join(
        f'<input type="hidden" name="{key}" value="{esc(values[key])}">'
        for key in ("in_reply_to", "forward_of")
        if values.get(key)
    )
    body = (
        errors_html(errors)
        + '<form method="post" action="/compose" class="card" aria-label="New message">'
        + hidden
        + field_html("To", "to", values.get("to", ""))
        + "<br>"
        + field_html("Cc", "cc", values.get("cc", ""))
        + "<br>"
        + field_html("Subject", "subject", values.get("subject", ""), size="60")
        + "<br>"
        + '<label for="f-body">Message</label><br><textarea id="f-body" name="body" rows="8" cols="70">'
        + esc(values.get("body", ""))
        + '</textarea><br><button type="submit">Send</button></form>'
    )
    return page(SITE, "New message", body, NAV)


SITE = Site(
    name="mail",
    title="Orchard Mail",
    schema=SCHEMA,
    rows=mail_data.rows,
    routes=routes,
    state_tables=("messages",),
)
