"""`WS /sandboxes/{id}/exec/pty`: Orchard Env's interactive terminal over a websocket.

Frames are JSON text, terminal bytes base64 in `data`, as Orchard's SDK speaks them:
client -> server: `init` (once, first: cmd, env, cwd, rows, cols, login_shell), `stdin`, `resize`,
`signal` (`sig`: TERM, KILL, INT, HUP, QUIT), `close` (TERM the command; its exit still follows);
server -> client: `ready` (pid inside the sandbox), `stdout` (stdout and stderr merged, as a terminal
does), then `exit` (`code`, negative when a signal killed it) or `error` (`message`), then the server
closes. A refused session is accepted, told why in an `error` frame and closed with Orchard's codes:
4401 bad key, 4404 unknown sandbox, 4409 not ready, 4400 bad init, 4503 too many terminals.

The key may come as `X-API-Key` (our clients), `?api_key=` or `Sec-WebSocket-Protocol: api_key.KEY`
(Orchard's). Output is forwarded with backpressure: the relay in the sandbox waits while the client
reads slowly, so a flood of output never piles up in the service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pydantic
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from orchard_envs.env_service.jobs import clean_text
from orchard_envs.env_service.models import PtyInit
from orchard_envs.env_service.state import EnvService, ServiceError
from orchard_envs.errors import OrchardError
from orchard_envs.sandbox.pty import PtyProcess, open_pty, signal_number

log = logging.getLogger(__name__)
INIT_TIMEOUT = 10.0
BUFFERED_CHUNKS = 64  # output chunks (up to 64 KiB each) queued for one client before the relay waits
_CODES = {401: 4401, 403: 4401, 404: 4404, 409: 4409, 400: 4400, 503: 4503}


class Refused(Exception):
    """A session that cannot start: `code` is the websocket close code, `message` the error frame."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class QueueSink:
    """Hands a PtyProcess's output to the event loop, holding the reader thread while the client lags."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: asyncio.Queue[bytes | tuple[int | None, str | None]] = asyncio.Queue()
        self._credits = threading.Semaphore(BUFFERED_CHUNKS)
        self._stopped = threading.Event()

    def data(self, chunk: bytes) -> None:
        """Queue a chunk, blocking the reader thread while `BUFFERED_CHUNKS` are unsent (until `stop`)."""
        while not self._credits.acquire(timeout=0.5):
            if self._stopped.is_set():
                return
        self._put(chunk)

    def done(self, code: int | None, error: str | None) -> None:
        """Queue the end of the session: (exit code, error)."""
        self._put((code, error))

    def _put(self, item: bytes | tuple[int | None, str | None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)

    def sent(self) -> None:
        """One queued chunk reached the client: let the reader queue another."""
        self._credits.release()

    def stop(self) -> None:
        """Release a reader blocked in `data` (the client left); later output is dropped."""
        self._stopped.set()


def add_pty_route(app: FastAPI, service: EnvService, key_ok: Callable[[str | None], bool]) -> None:
    """Mount the terminal websocket on `app`; `key_ok` checks the API key the client offers."""
    live: set[PtyProcess] = set()

    @app.websocket("/sandboxes/{sandbox_id}/exec/pty")
    async def exec_pty(ws: WebSocket, sandbox_id: str) -> None:
        key, subprotocol = _offered_key(ws)
        await ws.accept(subprotocol=subprotocol)
        sink = QueueSink(asyncio.get_running_loop())
        try:
            if not key_ok(key):
                raise Refused(4401, "Missing or invalid API key (X-API-Key, ?api_key= or api_key.KEY)")
            proc = await _start(ws, service, sandbox_id, sink, len(live))
        except Refused as refused:
            await _finish(ws, {"type": "error", "message": refused.message}, refused.code)
            return
        live.add(proc)
        try:
            await _converse(ws, proc, sink)
        finally:
            live.discard(proc)
            sink.stop()
            await service.run(proc.close)


def _offered_key(ws: WebSocket) -> tuple[str | None, str | None]:
    """The API key a client sent, and the subprotocol to echo if it came as one."""
    given = ws.headers.get("x-api-key") or ws.query_params.get("api_key")
    if given:
        return given, None
    for offered in ws.headers.get("sec-websocket-protocol", "").split(","):
        offered = offered.strip()
        if offered.startswith("api_key."):
            return offered.removeprefix("api_key."), offered
    return None, None


async def _start(
    ws: WebSocket, service: EnvService, sandbox_id: str, sink: QueueSink, live: int
) -> PtyProcess:
    try:
        _, sandbox = await service.ready_sandbox(sandbox_id, 404)
    except ServiceError as exc:
        raise Refused(_CODES.get(exc.status, 4500), exc.detail) from None
    init = await _init(ws)
    limit = service.settings.max_ptys
    if live >= limit:
        raise Refused(4503, f"{live} terminals are open (the limit is {limit}); close one and retry")
    start = partial(
        open_pty, sandbox, init.argv(), env=init.env, cwd=init.cwd, rows=init.rows, cols=init.cols, sink=sink
    )
    try:
        proc = await service.run(start)
    except OrchardError as exc:
        raise Refused(4500, f"spawn failed: {clean_text(str(exc))}") from None
    await ws.send_text(json.dumps({"type": "ready", "pid": proc.pid}))
    return proc


async def _init(ws: WebSocket) -> PtyInit:
    try:
        raw = await asyncio.wait_for(ws.receive_text(), INIT_TIMEOUT)
    except TimeoutError:
        raise Refused(4400, f"no init frame within {INIT_TIMEOUT:g}s") from None
    except (WebSocketDisconnect, KeyError, RuntimeError):
        raise Refused(4400, "the client left before its init frame") from None
    try:
        return PtyInit.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in exc.errors())
        raise Refused(4400, f"bad init frame: {reasons}") from None


async def _converse(ws: WebSocket, proc: PtyProcess, sink: QueueSink) -> None:
    """Output to the client until the command ends; the client's frames to the terminal meanwhile."""
    listener = asyncio.create_task(_listen(ws, proc))
    try:
        while True:
            item = await sink.items.get()
            if isinstance(item, bytes):
                sink.sent()
                await ws.send_text(json.dumps({"type": "stdout", "data": base64.b64encode(item).decode()}))
                continue
            code, error = item
            frame = {"type": "exit", "code": code} if error is None else {"type": "error", "message": error}
            await _finish(ws, frame, 1000 if error is None else 4500)
            return
    except (WebSocketDisconnect, RuntimeError):
        return  # the client left; closing the pty kills what runs on it
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _listen(ws: WebSocket, proc: PtyProcess) -> None:
    while True:
        try:
            raw = await ws.receive_text()
        except (WebSocketDisconnect, KeyError, RuntimeError):
            await asyncio.to_thread(proc.close)  # the client is gone: end the session
            return
        try:
            await asyncio.to_thread(_apply, proc, json.loads(raw))
        except (ValueError, TypeError, KeyError, binascii.Error, OrchardError) as exc:
            log.debug("ignoring a pty frame: %s", exc)  # as Orchard: a bad frame is skipped


def _apply(proc: PtyProcess, frame: Any) -> None:
    """One client frame onto the terminal."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    if kind == "stdin":
        proc.write_stdin(base64.b64decode(frame.get("data") or "", validate=True))
    elif kind == "resize":
        proc.resize(int(frame["rows"]), int(frame["cols"]))
    elif kind == "signal":
        proc.kill(signal_number(frame.get("sig") or "TERM"))
    elif kind == "close":
        proc.kill("TERM")


async def _finish(ws: WebSocket, frame: dict[str, Any], code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_text(json.dumps(frame))
        await ws.close(code=code)
