"""The contacts service: the owner's address book."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from orchard_envs.tasks.claw.services.base import (
    ApiError,
    Body,
    Collection,
    Service,
    State,
    changes,
    text_matches,
)

router = APIRouter()
TEXT_FIELDS = ("name", "email", "phone", "company", "title", "notes")


class CreateBody(Body):
    """A new contact."""

    name: str = Field(min_length=1)
    email: str = ""
    phone: str = ""
    company: str = ""
    title: str = ""
    notes: str = ""


class UpdateBody(Body):
    """Fields to change on a contact; None leaves a field as it is."""

    name: str | None = Field(None, min_length=1)
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    notes: str | None = None


def _check_email(email: str | None) -> None:
    if email and ("@" not in email or email.startswith("@") or email.endswith("@") or " " in email.strip()):
        raise ApiError(400, f"'email' is not a valid address: {email!r}")


@router.get("/contacts")
async def search(state: State, query: str) -> list[dict[str, Any]]:
    """Contacts whose text fields match `query`, by name then id."""
    found = [c for c in state.records("contacts") if text_matches(query, c, TEXT_FIELDS)]
    return sorted(found, key=lambda c: (str(c.get("name") or "").casefold(), c["id"]))


@router.get("/contacts/{id}")
async def get(id: str, state: State) -> dict[str, Any]:
    """One contact; 404 when there is none."""
    return state.get("contacts", id)


@router.post("/contacts", status_code=201)
async def create(request: CreateBody, state: State) -> dict[str, Any]:
    """Create a contact; a malformed email is refused."""
    _check_email(request.email)
    return state.insert("contacts", request.model_dump())


@router.patch("/contacts/{id}")
async def update(id: str, request: UpdateBody, state: State) -> dict[str, Any]:
    """Change a contact; a malformed email is refused."""
    contact = state.get("contacts", id)
    given = changes(request, ", ".join(TEXT_FIELDS))
    _check_email(given.get("email"))
    contact.update(given)
    return contact


CONTACTS_FIELDS = ("id", "name", "email", "phone", "company", "title", "notes")
SERVICE = Service("contacts", {"contacts": Collection("c", "contact", CONTACTS_FIELDS)}, router)
