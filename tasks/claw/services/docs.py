"""The docs service: the owner's documents (a flat drive of paths), searched, read, written, deleted."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from orchard_envs.tasks.claw.services.base import (
    ApiError,
    Body,
    Collection,
    Service,
    ServiceState,
    State,
    changes,
    text_matches,
)

router = APIRouter()
SUMMARY_FIELDS = ("id", "path", "title", "updated")


class CreateBody(Body):
    """A new document; without `path`, one is made from the title."""

    title: str = Field(min_length=1)
    content: str
    path: str | None = Field(None, min_length=1)


class UpdateBody(Body):
    """Fields to change on a document; None leaves a field as it is."""

    content: str | None = None
    title: str | None = Field(None, min_length=1)


def _free_path(state: ServiceState, title: str) -> str:
    """`<slug>.md`, numbered when taken: a new document never silently shares another's path."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-") or "untitled"
    taken = {d.get("path") for d in state.records("documents")}
    path, n = f"{slug}.md", 2
    while path in taken:
        path, n = f"{slug}-{n}.md", n + 1
    return path


@router.get("/documents")
async def search(state: State, query: str) -> list[dict[str, Any]]:
    """Summaries of documents whose title, path or content match `query`, by id."""
    found = [d for d in state.records("documents") if text_matches(query, d, ("title", "path", "content"))]
    return [{field: d.get(field) for field in SUMMARY_FIELDS} for d in sorted(found, key=lambda d: d["id"])]


@router.get("/documents/{id}")
async def read(id: str, state: State) -> dict[str, Any]:
    """One document in full; 404 when there is none."""
    return state.get("documents", id)


@router.post("/documents", status_code=201)
async def create(request: CreateBody, state: State) -> dict[str, Any]:
    """Create a document; a path already taken is a 409."""
    if request.path is not None and any(d.get("path") == request.path for d in state.records("documents")):
        raise ApiError(409, f"a document already exists at path {request.path!r}")
    path = request.path or _free_path(state, request.title)
    fields = {"path": path, "title": request.title, "content": request.content, "updated": state.now}
    return state.insert("documents", fields)


@router.patch("/documents/{id}")
async def update(id: str, request: UpdateBody, state: State) -> dict[str, Any]:
    """Change a document, stamping it with the service clock."""
    document = state.get("documents", id)
    document.update(changes(request, "content, title"), updated=state.now)
    return document


@router.delete("/documents/{id}")
async def delete(id: str, state: State) -> dict[str, Any]:
    """Delete a document; 404 when there is none."""
    state.delete("documents", id)
    return {"deleted": id}


DOCUMENTS_FIELDS = ("id", "path", "title", "content", "updated")
SERVICE = Service("docs", {"documents": Collection("d", "document", DOCUMENTS_FIELDS)}, router)
