"""The proxy's HTTP app: `/v1/chat/completions` (and `/e/<key>/v1/...`), forwarded and recorded.

A call's episode is named by its key, sent as `Authorization: Bearer <key>` or in the path; a call with
no open episode's key is refused (401) and never forwarded. Requests are forwarded as the harness sent
them, without `stream`; a client that asked for a stream gets the whole reply as server-sent events.
Only `n=1` is supported: an episode is one line of turns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from orchard_envs import __version__
from orchard_envs.proxy.records import CallRecord, LimitReached, Recorder
from orchard_envs.proxy.upstream import Upstream, UpstreamError

MAX_BODY = 16 * 1024 * 1024  # a request larger than this is refused before it is parsed


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _key(request: Request, path_key: str | None) -> str:
    if path_key:
        return path_key
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def parse_reply(response: dict[str, Any], record: CallRecord) -> None:
    """Fill `record` from an OpenAI response: the message, usage, and token ids and logprobs if sent."""
    choice = (response.get("choices") or [{}])[0]
    record.reply = choice.get("message")
    record.finish_reason = choice.get("finish_reason")
    usage = response.get("usage") or {}
    record.usage = {k: int(v) for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    record.prompt_token_ids = _ints(response.get("prompt_token_ids"))
    record.token_ids = _ints(choice.get("token_ids"))
    content = (choice.get("logprobs") or {}).get("content")
    if record.token_ids is not None and isinstance(content, list) and len(content) == len(record.token_ids):
        record.logprobs = [float(entry.get("logprob", 0.0)) for entry in content]


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    return None


def sse_chunks(response: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A whole response as OpenAI's stream: role and content, each tool call, the finish, [DONE]."""
    choice = response["choices"][0]
    message = choice.get("message") or {}
    base = {
        "id": response.get("id", ""),
        "object": "chat.completion.chunk",
        "created": response.get("created", 0),
        "model": response.get("model", ""),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n".encode()

    yield chunk({"role": "assistant", "content": message.get("content") or ""})
    for index, call in enumerate(message.get("tool_calls") or []):
        yield chunk({"tool_calls": [{"index": index, **call}]})
    yield chunk({}, choice.get("finish_reason") or "stop")
    if include_usage:
        body = {**base, "choices": [], "usage": response.get("usage")}
        yield f"data: {json.dumps(body)}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _read_body(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error(413, f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except ValueError:
        return _error(400, "the request body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return _error(400, "invalid request: messages must be a non-empty list", "invalid_messages")
    if (body.get("n") or 1) != 1:
        return _error(400, "the recording proxy supports n=1 only (an episode is one line of turns)")
    return body


async def _forward(upstream: Upstream, body: dict[str, Any], record: CallRecord) -> JSONResponse | None:
    """Ask upstream; fill `record`; None on success, else the error answer to pass on."""
    request = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    try:
        response = await upstream.complete(request)
    except UpstreamError as exc:
        record.error = str(exc)
        return JSONResponse(exc.body, status_code=exc.status)
    except Exception as exc:  # an unreachable upstream or a crashed agent: the harness sees a 502
        record.error = f"{type(exc).__name__}: {exc}"
        return _error(502, f"upstream failed: {record.error}", "upstream_error")
    parse_reply(response, record)
    body["_response"] = response
    return None


def create_app(recorder: Recorder, upstream: Upstream | None = None) -> FastAPI:
    """The proxy over `recorder`; `upstream` answers episodes that were opened without their own."""
    app = FastAPI(title="orchard-proxy", version=__version__)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def models(request: Request, key: str | None = None) -> Response:
        if not recorder.known(_key(request, key)):
            return _error(401, "unknown episode key", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [{"id": "orchard-proxy", "object": "model"}]})

    async def chat(request: Request, key: str | None = None) -> Response:
        episode = _key(request, key)
        if not recorder.known(episode):
            return _error(
                401, "unknown episode key: calls need the key of an open episode", "invalid_api_key"
            )
        body = await _read_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            recorder.admit(episode)
        except LimitReached as exc:
            return _error(429, str(exc), "call_limit")
        chosen = recorder.upstream(episode) or upstream
        if chosen is None:
            return _error(503, "this proxy has no upstream for the episode")
        return await _answer(recorder, episode, chosen, body)

    for prefix in ("", "/e/{key}"):
        app.add_api_route(prefix + "/v1/models", models, methods=["GET"])
        app.add_api_route(prefix + "/v1/chat/completions", chat, methods=["POST"])
    return app


async def _answer(recorder: Recorder, episode: str, upstream: Upstream, body: dict[str, Any]) -> Response:
    started = time.perf_counter()
    record = CallRecord(
        messages=body["messages"], tools=body.get("tools") or [], stream=bool(body.get("stream"))
    )
    failed = await _forward(upstream, body, record)
    record.seconds = time.perf_counter() - started
    recorder.add(episode, record)
    if failed is not None:
        return failed
    response = body.pop("_response")
    if not record.stream:
        return JSONResponse(response)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return StreamingResponse(sse_chunks(response, include_usage), media_type="text/event-stream")
