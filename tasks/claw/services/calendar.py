"""The calendar service: the owner's events, their attendees, and free/busy over a window."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from orchard_envs.tasks.claw.services.base import (
    OWNER,
    ApiError,
    Body,
    Collection,
    Service,
    State,
    changes,
    format_time,
    normal_time,
    parse_time,
)

router = APIRouter()


class CreateBody(Body):
    """A new event; times are normalised and the end must follow the start."""

    title: str = Field(min_length=1)
    start: str
    end: str
    attendees: list[str] = Field(default_factory=list)
    location: str = ""
    description: str = ""


class UpdateBody(Body):
    """Fields to change on an event; None leaves a field as it is."""

    title: str | None = Field(None, min_length=1)
    start: str | None = None
    end: str | None = None
    location: str | None = None
    description: str | None = None


class InviteBody(Body):
    """Attendees to add to an event."""

    attendees: list[str] = Field(min_length=1)


def _span(event: dict[str, Any]) -> tuple[datetime, datetime]:
    return parse_time("start", str(event.get("start"))), parse_time("end", str(event.get("end")))


def _window(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    low = parse_time("start", start) if start else datetime.min
    high = parse_time("end", end) if end else datetime.max
    if low >= high:
        raise ApiError(400, "'end' must be after 'start'")
    return low, high


def _check_order(event: dict[str, Any]) -> None:
    start, end = _span(event)
    if end <= start:
        raise ApiError(400, f"'end' ({event['end']}) must be after 'start' ({event['start']})")


def _overlaps(span: tuple[datetime, datetime], low: datetime, high: datetime) -> bool:
    return span[0] < high and span[1] > low


def _attends(event: dict[str, Any], who: str) -> bool:
    who = who.casefold()
    return who == OWNER or any(str(a).casefold() == who for a in event.get("attendees") or [])


@router.get("/events")
async def list_events(state: State, start: str | None = None, end: str | None = None) -> list[dict[str, Any]]:
    """Events overlapping the window, by start time then id."""
    low, high = _window(start, end)
    found = [(span, e) for e in state.records("events") if _overlaps(span := _span(e), low, high)]
    return [e for _, e in sorted(found, key=lambda pair: (pair[0][0], pair[1]["id"]))]


@router.get("/freebusy")
async def free_busy(
    state: State, start: str, end: str, attendees: Annotated[list[str], Query(min_length=1)]
) -> dict[str, Any]:
    """Per attendee, the merged busy intervals inside the window (titles stay private, as in real
    calendars)."""
    low, high = _window(start, end)
    busy: dict[str, list[dict[str, str]]] = {}
    for who in attendees:
        spans = sorted(
            (max(span[0], low), min(span[1], high))
            for event in state.records("events")
            if _attends(event, who) and _overlaps(span := _span(event), low, high)
        )
        merged: list[list[datetime]] = []
        for s, e in spans:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        busy[who] = [{"start": format_time(s), "end": format_time(e)} for s, e in merged]
    return {"start": format_time(low), "end": format_time(high), "busy": busy}


@router.post("/events", status_code=201)
async def create(request: CreateBody, state: State) -> dict[str, Any]:
    """Create an event; a bad time or an end before the start is a 4xx."""
    fields = request.model_dump()
    fields["start"], fields["end"] = normal_time("start", request.start), normal_time("end", request.end)
    _check_order(fields)
    return state.insert("events", fields)


@router.patch("/events/{id}")
async def update(id: str, request: UpdateBody, state: State) -> dict[str, Any]:
    """Change an event; the result is validated before anything is written."""
    event = state.get("events", id)
    given = changes(request, "title, start, end, location, description")
    for field in ("start", "end"):
        if field in given:
            given[field] = normal_time(field, given[field])
    _check_order({**event, **given})  # validate before writing: a rejected update changes nothing
    event.update(given)
    return event


@router.post("/events/{id}/invite")
async def invite(id: str, request: InviteBody, state: State) -> dict[str, Any]:
    """Add attendees not already invited (compared case-insensitively)."""
    event = state.get("events", id)
    attendees = list(event.get("attendees") or [])
    for who in request.attendees:
        if who.casefold() not in {a.casefold() for a in attendees}:
            attendees.append(who)
    event["attendees"] = attendees
    return event


EVENTS_FIELDS = ("id", "title", "start", "end", "attendees", "location", "description")
SERVICE = Service("calendar", {"events": Collection("e", "event", EVENTS_FIELDS)}, router)
