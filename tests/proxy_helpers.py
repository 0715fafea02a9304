"""Upstreams for the proxy tests: a scripted one in process, and an OpenAI-compatible server that solves
swe-mini instances by replaying their gold patch as shell commands (what mini-swe-agent then runs)."""

from __future__ import annotations

import json
import uuid
from typing import Any

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"  # mini-swe-agent's end of the task


def response(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An OpenAI chat completion with one choice."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish, **extra.pop("choice", {})}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [choice],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        **extra,
    }


def bash_call(command: str) -> dict[str, Any]:
    """An assistant message calling mini-swe-agent's (and SWE's) `bash` tool."""
    call = {
        "id": f"call_{uuid.uuid4().hex[:8]}",
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"command": command})},
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}


class Scripted:
    """In-process upstream: replies 'reply N', N counting the request's assistant messages; records bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One reply, with prompt/completion ids that extend turn to turn as a real server's would."""
        self.bodies.append(body)
        n = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        prompt: list[int] = []  # each earlier reply's own ids, so a kept history extends the last prompt
        for message in body["messages"]:
            content = str(message.get("content") or "")
            if message.get("role") == "assistant" and content.startswith("reply "):
                prompt += [100 + int(content.split()[1]), 2]
            else:
                prompt += [7, len(content)]
        logprobs = {"content": [{"token": "t", "logprob": -0.25, "top_logprobs": []}] * 2}
        return response(
            {"role": "assistant", "content": f"reply {n}"},
            prompt_token_ids=prompt,
            choice={"token_ids": [100 + n, 2], "logprobs": logprobs},
        )


def gold_replay_app() -> Any:
    """The server: the instance is found by its problem statement in the request; the first call applies
    the gold patch with `git apply`, the second submits."""
    from fastapi import FastAPI

    from orchard_envs.tasks.swe.instance import load_suite

    instances = load_suite("swe-mini", None)
    app = FastAPI()
    app.state.calls = 0

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        app.state.calls += 1
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        instance = next(i for i in instances if i.problem_statement.strip() in text)
        done = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        if done == 0:
            marker = "ORCHARD_GOLD_EOF"
            command = f"git apply <<'{marker}'\n{instance.patch}\n{marker}\n"
            return response(bash_call(command))
        return response(bash_call(SUBMIT))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "gold", "object": "model"}]}

    return app


def scripted_app() -> Any:
    """`Scripted` as an OpenAI-compatible HTTP server (an upstream URL for the proxy)."""
    from fastapi import FastAPI

    scripted, app = Scripted(), FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        return await scripted.complete(body)

    return app
