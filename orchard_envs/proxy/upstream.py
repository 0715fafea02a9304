"""Where the proxy sends calls: an OpenAI-compatible URL, or an Orchard agent in this process.

An upstream answers one non-streaming chat completion as OpenAI's JSON; the proxy streams it to clients
that asked for a stream. Asking upstream without streaming is what keeps the token ids: orchard-serve and
vLLM return them (`return_token_ids`) on whole responses.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Protocol

from orchard_envs.agents.base import Agent, AssistantTurn


class UpstreamError(Exception):
    """The upstream answered with an error; the proxy passes its status and body on."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"upstream answered {status}: {str(body)[:300]}")
        self.status, self.body = status, body


class Upstream(Protocol):
    """One chat completion, as OpenAI's response JSON."""

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer `body` (a chat-completions request, `stream` already removed)."""
        ...


class URLUpstream:
    """Any OpenAI-compatible server (orchard-serve, vLLM, a hosted API), asked for token ids by default."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        token_ids: bool = True,
        model: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self.token_ids, self.model = token_ids, model

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST to `<base_url>/chat/completions`; a non-200 answer raises UpstreamError."""
        request = dict(body)
        if self.model:
            request["model"] = self.model
        if self.token_ids:
            request.setdefault("return_token_ids", True)
            request.setdefault("logprobs", True)
        response = await self.client.post("/chat/completions", json=request)
        try:
            data = response.json()
        except ValueError:
            data = {"error": {"message": response.text[:1000], "type": "upstream_error"}}
        if response.status_code != 200:
            raise UpstreamError(response.status_code, data)
        return data

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()


class AgentUpstream:
    """An Orchard agent (hf, openai, a scripted one) as the upstream: its own model and sampling answer,
    whatever model or temperature the harness asks for, so a run's identity is the agent's."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._lock = threading.Lock()  # agents keep per-episode state: one call at a time

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The agent's turn for the request's messages and tools, in OpenAI's response shape."""
        turn = await asyncio.to_thread(self._act, body.get("messages") or [], body.get("tools") or [])
        return turn_response(turn, getattr(self.agent, "model", None) or self.agent.name)

    def _act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        with self._lock:
            return self.agent.act(messages, tools)


def turn_response(turn: AssistantTurn, model: str) -> dict[str, Any]:
    """An agent's turn as an OpenAI chat completion, token ids in vLLM's fields where the turn has them."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": turn.message(),
        "finish_reason": turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop"),
        "logprobs": None,
    }
    if turn.token_ids is not None:
        choice["token_ids"] = list(turn.token_ids)
    if turn.logprobs is not None:
        choice["logprobs"] = {
            "content": [{"token": "", "logprob": p, "top_logprobs": []} for p in turn.logprobs]
        }
    prompt, completion = turn.usage.get("prompt_tokens", 0), turn.usage.get("completion_tokens", 0)
    response: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    if turn.prompt_token_ids is not None:
        response["prompt_token_ids"] = list(turn.prompt_token_ids)
    return response
