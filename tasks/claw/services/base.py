"""Shared machinery of the Claw services: in-memory state, the audit log, fault injection, control routes.

Each service module only declares a `Service` (its collections and an `APIRouter`); `create_service_app`
wraps it in an app that records every agent-facing call and injects faults, so grading can read the final
state and the call trace, and robustness can be scored, without any route knowing about either.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OWNER = "me@acme.com"  # the assistant's user: sender of mail, attendee of every event
DEFAULT_NOW = "2026-03-02T09:00"  # services never read the clock, so scores stay reproducible
FaultKind = Literal["429", "500", "timeout"]
FAULT_ANSWERS: dict[str, tuple[int, dict[str, str]]] = {
    "429": (429, {"error": "rate limited, retry later"}),
    "500": (500, {"error": "internal error"}),
    "timeout": (504, {"error": "gateway timeout: the service did not answer in time"}),
}


class ApiError(Exception):
    """An error of the caller's making; answers `status` with `{"error": message}` like a real API."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Body(BaseModel):
    """Base of request bodies: unknown fields are an error, as the tool schemas say."""

    model_config = ConfigDict(extra="forbid")


class Faults(Body):
    """Injected faults: calls fail at random with probability `rate` (seeded), and at the `schedule`d seqs."""
    rate: float = Field(0.0, ge=0.0, le=1.0)
    kinds: list[FaultKind] = Field(default_factory=lambda: ["429", "500", "timeout"], min_length=1)
    seed: int = 0
    schedule: list[int] = Field(default_factory=list)

    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds_as_text(cls, value: Any) -> Any:
        """YAML reads `kinds: [429, 500]` as numbers; the contract spells them as strings."""
        return [str(kind) for kind in value] if isinstance(value, list) else value


class ResetRequest(Body):
    """A new episode's state: the fixture records per collection, faults and the clock."""
    fixture: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    faults: Faults = Field(default_factory=Faults)
    now: str | None = None  # the service clock (timestamps of new records); DEFAULT_NOW when absent


@dataclass(frozen=True)
class Collection:
    """One kind of record of a service, with its id prefix and its fields."""
    prefix: str  # new ids are f"{prefix}{n}", n continuing after the fixture's
    noun: str  # for 404 sentences: "no message with id 'm9'"
    # The fields of its records (docs/claw.md "Services and their tools"): what the routes write and read.
    # A task's checks may name these and the fields of its own fixture records, nothing else.
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    """A Claw service: its collections and its routes."""
    name: str
    collections: dict[str, Collection]
    router: APIRouter


class ServiceState:
    """One service's collections, its fixture, its audit log and its fault generator."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.reset(ResetRequest())

    def reset(self, request: ResetRequest) -> None:
        """Replace the state with the fixture; a bad fixture is a 400 and changes nothing."""
        known = self.service.collections
        for name, records in request.fixture.items():
            if name not in known:
                raise ApiError(400, f"service {self.service.name} has no collection {name!r}; "
                                    f"known: {', '.join(known)}")
            ids = [record.get("id") for record in records]
            if not all(isinstance(i, str) and i for i in ids):
                raise ApiError(400, f"every record of {name!r} needs a non-empty string 'id'")
            if len(set(ids)) != len(ids):
                raise ApiError(400, f"collection {name!r} has duplicate ids")
        self.fixture = {name: copy.deepcopy(request.fixture.get(name, [])) for name in known}
        self.collections = copy.deepcopy(self.fixture)
        self.now = normal_time("now", request.now or DEFAULT_NOW)
        self.calls: list[dict[str, Any]] = []
        self.faults = request.faults
        self._rng = random.Random(request.faults.seed)
        self._seq = 0
        self._next_id = {name: _max_number(c.prefix, self.collections[name]) + 1 for name, c in known.items()}

    # --- records -------------------------------------------------------------------------------------

    def records(self, collection: str) -> list[dict[str, Any]]:
        """The live records of a collection (mutable: routes change them in place)."""
        return self.collections[collection]

    def get(self, collection: str, record_id: str) -> dict[str, Any]:
        """The record; a 404 ApiError the model can read when there is none."""
        for record in self.collections[collection]:
            if record["id"] == record_id:
                return record
        raise ApiError(404, f"no {self.service.collections[collection].noun} with id {record_id!r}")

    def insert(self, collection: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a new record under a fresh id (the id comes first, for readable JSON)."""
        record = {"id": self.new_id(collection), **fields}
        self.collections[collection].append(record)
        return record

    def delete(self, collection: str, record_id: str) -> dict[str, Any]:
        """Remove the record and return it; a 404 ApiError when there is none."""
        record = self.get(collection, record_id)
        self.collections[collection].remove(record)
        return record

    def new_id(self, collection: str) -> str:
        """An id never used in the collection, even by fixture records written in another style."""
        prefix = self.service.collections[collection].prefix
        taken = {record["id"] for record in self.collections[collection]}
        while True:  # never reuse an id, even one the fixture spelled in another style
            candidate = f"{prefix}{self._next_id[collection]}"
            self._next_id[collection] += 1
            if candidate not in taken:
                return candidate

    # --- audit and faults ----------------------------------------------------------------------------

    def next_call(self) -> tuple[int, FaultKind | None]:
        """The next call's seq and its fault: a scheduled seq gets the first of `kinds`; with a rate, one
        draw per call (always taken, so later calls' faults do not depend on earlier outcomes)."""
        seq, self._seq = self._seq, self._seq + 1
        kind: FaultKind | None = None
        if self.faults.rate > 0 and self._rng.random() < self.faults.rate:
            kind = self._rng.choice(self.faults.kinds)
        if kind is None and seq in self.faults.schedule:
            kind = self.faults.kinds[0]
        return seq, kind

    def snapshot(self) -> dict[str, Any]:
        """Everything the service holds, as JSON: a `restore` of it continues exactly here (the fault
        draws and new ids included), so an env fork behaves as the original would have."""
        version, internal, gauss = self._rng.getstate()
        return {
            "fixture": copy.deepcopy(self.fixture),
            "collections": copy.deepcopy(self.collections),
            "now": self.now,
            "calls": copy.deepcopy(self.calls),
            "faults": self.faults.model_dump(mode="json"),
            "rng": [version, list(internal), gauss],
            "seq": self._seq,
            "next_id": dict(self._next_id),
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Become the state a `snapshot` recorded."""
        self.fixture = copy.deepcopy(snapshot["fixture"])
        self.collections = copy.deepcopy(snapshot["collections"])
        self.now = snapshot["now"]
        self.calls = copy.deepcopy(snapshot["calls"])
        self.faults = Faults.model_validate(snapshot["faults"])
        version, internal, gauss = snapshot["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._seq = int(snapshot["seq"])
        self._next_id = {name: int(n) for name, n in snapshot["next_id"].items()}

    def audit(self) -> dict[str, Any]:
        """What the grader reads: the calls in order, the final state and the fixture."""
        return {
            "calls": sorted(self.calls, key=lambda call: call["seq"]),
            "state": self.collections,
            "fixture": self.fixture,
        }


def _max_number(prefix: str, records: Iterable[dict[str, Any]]) -> int:
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)")
    numbers = [int(m.group(1)) for r in records if (m := pattern.fullmatch(str(r.get("id", ""))))]
    return max(numbers, default=0)


def current_state(request: Request) -> ServiceState:
    """The service state of the app serving `request` (a FastAPI dependency)."""
    return request.app.state.claw


State = Annotated[ServiceState, Depends(current_state)]


# --- helpers the service modules share ----------------------------------------------------------------


def parse_time(field: str, value: str) -> datetime:
    """An ISO 8601 date or date-time as a naive datetime (aware ones converted to UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{field!r} must be an ISO 8601 date-time like 2026-03-02T09:00, "
                            f"not {value!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def format_time(moment: datetime) -> str:
    """ISO time without seconds unless they are non-zero, as the fixtures write it."""
    return moment.isoformat(timespec="seconds" if moment.second else "minutes")


def normal_time(field: str, value: str) -> str:
    """Stored form of a date-time: minutes precision unless seconds matter, so checks compare literally."""
    return format_time(parse_time(field, value))


def normal_date(field: str, value: str) -> str:
    """A due date: a bare date stays a date, a date-time gets the normal date-time form."""
    moment = parse_time(field, value)
    return moment.date().isoformat() if len(value.strip()) == 10 else format_time(moment)


def text_matches(query: str | None, record: dict[str, Any], fields: Iterable[str]) -> bool:
    """Case-insensitive substring search over string fields and list-of-string fields."""
    if not query:
        return True
    needle = query.casefold()
    for field in fields:
        value = record.get(field)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and needle in v.casefold() for v in values):
            return True
    return False


def changes(body: BaseModel, fields: str) -> dict[str, Any]:
    """The fields a PATCH body sets (omitted or null means unchanged); 400 when it sets none."""
    given = body.model_dump(exclude_none=True)
    if not given:
        raise ApiError(400, f"nothing to update: give at least one of {fields}")
    return given


# --- the app -----------------------------------------------------------------------------------------


def create_service_app(service: Service, timeout_s: float = 1.0) -> FastAPI:
    """The service's routes plus `/_reset`, `/_audit`, `/_health`, recording and faults."""
    app = FastAPI(title=f"claw-{service.name}", docs_url=None, redoc_url=None, openapi_url="/_openapi.json")
    state = ServiceState(service)
    app.state.claw = state
    app.include_router(service.router)

    @app.post("/_reset")
    async def reset(request: ResetRequest) -> dict[str, bool]:
        state.reset(request)
        return {"ok": True}

    @app.get("/_audit")
    async def audit() -> dict[str, Any]:
        return state.audit()

    @app.get("/_snapshot")
    async def snapshot() -> dict[str, Any]:
        return state.snapshot()

    @app.post("/_restore")
    async def restore(request: Request) -> dict[str, bool]:
        state.restore(await request.json())
        return {"ok": True}

    @app.get("/_health")
    async def health() -> dict[str, str]:
        return {"service": service.name}

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(AuditMiddleware, state=state, timeout_s=timeout_s)
    return app


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    where = f"{request.method} {request.url.path}"
    message = {404: f"no such endpoint: {where}", 405: f"method not allowed: {where}"}.get(
        exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"error": describe_validation(exc.errors())}, status_code=400)


def describe_validation(errors: Any) -> str:
    """One sentence naming the first bad field, from pydantic's error list."""
    if not errors:
        return "the request is invalid"
    error = errors[0]
    loc = list(error.get("loc", ()))
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path") else loc  # where, then which field
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    kind = error.get("type", "")
    if kind == "json_invalid":
        return "the request body is not valid JSON"
    if not field:
        return "the request body is missing" if kind == "missing" else "the request body must be an object"
    if kind == "missing":
        return f"missing required field {field!r}"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    message = str(error.get("msg", "is invalid")).rstrip(".")
    return f"invalid {field!r}: {message[0].lower()}{message[1:]}"


class AuditMiddleware:
    """Records every non-underscore call (faulted and failed ones too) and injects the scheduled faults.

    A pure ASGI middleware: the request body is read once and replayed to the route, and the response is
    buffered so its JSON lands in the audit before the client sees it (an audit read right after a call
    always includes that call). A faulted call never reaches the route, so it cannot change state.
    """

    def __init__(self, app: ASGIApp, state: ServiceState, timeout_s: float) -> None:
        self.app, self.state, self.timeout_s = app, state, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass control routes (`/_...`) and non-HTTP traffic through; audit (or fault) the rest."""
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        seq, fault = self.state.next_call()
        call = {"seq": seq, "method": scope["method"], "path": scope["path"], "query": _query(scope),
                "body": _decode(raw), "status": None, "response": None, "fault": fault}
        calls = self.state.calls  # this episode's log: a reset during a slow call must not receive it
        if fault is None:
            messages = await self._forward(scope, raw, receive)
        else:
            messages = _json_messages(*FAULT_ANSWERS[fault])
        call["status"] = messages[0]["status"]
        call["response"] = _decode(b"".join(m.get("body", b"") for m in messages[1:]))
        calls.append(call)  # before a timeout's sleep: a client that gave up still finds the call audited
        if fault == "timeout":
            await asyncio.sleep(self.timeout_s)
        for message in messages:
            await send(message)

    async def _forward(self, scope: Scope, raw: bytes, receive: Receive) -> list[Message]:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, replay, capture)
        except Exception:  # a bug in a route: answer and audit it like a real API's 500
            traceback.print_exc(file=sys.stderr)
            return _json_messages(500, {"error": "internal error"})
        return messages or _json_messages(500, {"error": "internal error: no response"})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _json_messages(status: int, payload: Any) -> list[Message]:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


def _query(scope: Scope) -> dict[str, Any]:
    """The query string as a dict; a repeated key (a list argument) maps to the list of its values."""
    query: dict[str, Any] = {}
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        if key in query:
            query[key] = [*query[key], value] if isinstance(query[key], list) else [query[key], value]
        else:
            query[key] = value
    return query


def _decode(raw: bytes) -> Any:
    """JSON when it parses, the text otherwise, null when empty."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
