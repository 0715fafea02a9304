"""The wiki: article search, articles with an infobox table, and related articles loaded by fetch()."""

from __future__ import annotations

import json
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchard_envs.tasks.web.sites import wiki_data
from orchard_envs.tasks.web.sites.common import Site, SiteDB, esc, field_html, page

SCHEMA = """
CREATE TABLE articles(slug TEXT PRIMARY KEY, title TEXT, kind TEXT, infobox TEXT, body TEXT, related TEXT);
"""
NAV = [("Main page", "/"), ("All articles", "/all")]
SEARCH_FORM = (
    '<form method="get" action="/search" role="search" class="card">'
    + field_html("Search the wiki", "q", "", "search")
    + '<button type="submit">Search</button></form>'
)
RELATED_JS = """
<script>
fetch('/api/related/' + encodeURIComponent(SLUG)).then(r => r.json()).then(rows => {
  const list = document.getElementById('related');
  list.innerHTML = '';
  for (const row of rows) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = '/wiki/' + encodeURIComponent(row.slug);
    link.textContent = row.title;
    item.appendChild(link);
    list.appendChild(item);
  }
});
</script>"""


def _link(article: dict) -> str:
    return f'<li><a href="/wiki/{quote(article["slug"])}">{esc(article["title"])}</a></li>'


def routes(db: SiteDB) -> list[Route]:
    """The wiki's pages and its related-articles endpoint."""

    async def home(request: Request) -> Response:
        body = (
            SEARCH_FORM
            + "<p>The free encyclopedia of an invented world. Search for a country, city or person.</p>"
        )
        return page(SITE, "Orchard Wiki", body, NAV)

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        found = (
            db.all(
                "SELECT * FROM articles WHERE lower(title) LIKE ? OR lower(body) LIKE ? ORDER BY title",
                [f"%{query.lower()}%"] * 2,
            )
            if query
            else []
        )
        listing = "".join(map(_link, found)) or f"<li>No articles match {esc(query)}.</li>"
        return page(
            SITE, "Search results", SEARCH_FORM + f'<ul aria-label="Search results">{listing}</ul>', NAV
        )

    async def everything(request: Request) -> Response:
        rows = db.all("SELECT * FROM articles ORDER BY title")
        return page(SITE, "All articles", f"<ul>{''.join(map(_link, rows))}</ul>", NAV)

    async def article(request: Request) -> Response:
        row = db.one("SELECT * FROM articles WHERE slug = ?", [request.path_params["slug"]])
        if row is None:
            return page(
                SITE, "No such article", SEARCH_FORM + "<p>The wiki has no article with this title.</p>", NAV
            )
        box = "".join(
            f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in json.loads(row["infobox"]).items()
        )
        body = (
            f'{SEARCH_FORM}<table aria-label="Infobox">{box}</table><p>{esc(row["body"])}</p>'
            "<h2>Related articles</h2>"
            '<ul id="related" aria-label="Related articles"><li>Loading...</li></ul>'
            f"<script>const SLUG = {json.dumps(row['slug'])};</script>{RELATED_JS}"
        )
        return page(SITE, row["title"], body, NAV)

    async def related(request: Request) -> Response:
        row = db.one("SELECT related FROM articles WHERE slug = ?", [request.path_params["slug"]])
        titles = json.loads(row["related"]) if row else []
        return JSONResponse([{"slug": wiki_data.slug(t), "title": t} for t in titles])

    return [
        Route("/", home),
        Route("/search", search),
        Route("/all", everything),
        Route("/wiki/{slug}", article),
        Route("/api/related/{slug}", related),
    ]


SITE = Site(
    name="wiki", title="Orchard Wiki", schema=SCHEMA, rows=wiki_data.rows, routes=routes, state_tables=()
)
