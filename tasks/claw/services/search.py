"""The web search service: a read-only corpus of pages (the fixture's `pages`) and a deterministic ranker."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from orchard_envs.tasks.claw.services.base import Collection, Service, State

router = APIRouter()
TOP_K = 5
SNIPPET_CHARS = 160
# Words every page shares: without this list "what is the ..." would rank pages by their grammar.
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "me", "my", "of", "on", "or", "the", "this", "to", "was", "what", "when", "where",
    "which", "who", "why", "with",
})


def terms(text: str) -> list[str]:
    """The words of `text` that count for ranking: lower-cased, stopwords left out."""
    return [t for t in re.findall(r"[a-z0-9]+", text.casefold()) if t not in STOPWORDS]


def id_key(page_id: str) -> tuple[str, int, str]:
    """Natural order of ids (p2 before p10), the tie-breaker of equal scores."""
    match = re.fullmatch(r"(\D*)(\d+)", page_id)
    return (match.group(1), int(match.group(2)), "") if match else (page_id, -1, page_id)


def snippet(text: str, query_terms: set[str]) -> str:
    """About SNIPPET_CHARS of the text, starting a little before the first query term it contains."""
    text = " ".join(text.split())
    first = min(
        (m.start() for m in re.finditer(r"[A-Za-z0-9]+", text) if m.group().casefold() in query_terms),
        default=0,
    )
    start = max(0, first - 40)
    if start:
        start = text.find(" ", start) + 1 or start  # begin on a word
    piece = text[start : start + SNIPPET_CHARS]
    if start + SNIPPET_CHARS < len(text):
        piece = piece.rsplit(" ", 1)[0] + " ..."
    return ("... " if start else "") + piece


@router.get("/search")
async def web_search(state: State, query: str) -> list[dict[str, Any]]:
    """Score = how many distinct query terms the page's title and text contain; ties go by id."""
    wanted = set(terms(query))
    scored = []
    for page in state.records("pages"):
        text = str(page.get("text") or "")
        score = len(wanted & set(terms(f"{page.get('title') or ''} {text}")))
        if score:
            scored.append((-score, id_key(page["id"]), page))
    scored.sort(key=lambda item: item[:2])
    return [
        {"id": p["id"], "url": p.get("url"), "title": p.get("title"),
         "snippet": snippet(str(p.get("text") or ""), wanted)}
        for _, _, p in scored[:TOP_K]
    ]


@router.get("/pages/{id}")
async def web_open(id: str, state: State) -> dict[str, Any]:
    """One page in full; 404 when there is none."""
    return state.get("pages", id)


PAGES_FIELDS = ("id", "url", "title", "text")
SERVICE = Service("search", {"pages": Collection("p", "page", PAGES_FIELDS)}, router)
