"""Test helpers shared by several test files."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that name it; without it Nagle and delayed ACKs
    # add ~40 ms to every keep-alive response (as in tasks/claw/host.py)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class FixedReplyGenerator:
    """The real tokenizer and a fixed reply (then the end token): for replies the tiny model would not
    reliably write. Records each batch it was asked for. Stands in for HFGenerator in server tests."""

    def __init__(self, real: Any, reply: str) -> None:
        self.name, self.tokenizer, self.context_tokens = "scripted", real.tokenizer, real.context_tokens
        self.end_token_ids, self.pad_token_id = real.end_token_ids, real.pad_token_id
        self.reply_ids = [*real.tokenizer.encode(reply, add_special_tokens=False), min(real.end_token_ids)]
        self.batches: list[list[list[int]]] = []

    def generate(self, prompts: list[list[int]], sampling: Any) -> list[Any]:
        from orchard_envs.agents.hf_backend import Generation

        self.batches.append(prompts)
        ids = self.reply_ids
        return [Generation(list(ids), [-0.5] * len(ids), "stop", len(prompt)) for prompt in prompts]


def assert_round_trips(episode: Any, folder: Any) -> None:
    """The episode written to JSONL reads back the same, and loads as a `datasets` dataset with the same
    messages, tools and token ids."""
    from orchard_envs.episodes import EpisodeWriter, load_dataset, read_episodes

    path = folder / "episodes.jsonl"
    with EpisodeWriter(path) as writer:
        writer.write(episode)
    (loaded,) = read_episodes(path)
    assert loaded.messages == episode.messages and loaded.turns == episode.turns
    assert loaded.metadata == episode.metadata
    row = load_dataset(path, cache_dir=str(folder / "hf"))[0]
    assert row["messages"] == episode.messages and row["tools"] == episode.tools
    assert [turn["token_ids"] for turn in row["turns"]] == [turn.token_ids for turn in episode.turns]


BASH_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "bash",
            "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    }
]


def bash_call(call_id: str, command: str) -> dict[str, Any]:
    """An OpenAI tool call of the `bash` tool in BASH_TOOLS."""
    arguments = json.dumps({"command": command})
    return {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": arguments}}


def training_episode(
    messages: list[dict[str, Any]],
    *,
    tools: Any = None,
    turns: Any = (),
    resolved: bool = True,
    task_id: str = "t-1",
) -> Any:
    """A SWE-shaped episode around `messages`, for the trainer tests (reward follows `resolved`)."""
    from orchard_envs.episodes import Episode

    metadata = {
        "env_id": "orchard/SWE-v0",
        "suite": "toy",
        "task_id": task_id,
        "split": "train",
        "harness": "tool-calling",
        "agent": "oracle",
        "reward": float(resolved),
        "resolved": resolved,
        "status": "submitted",
    }
    tools = BASH_TOOLS if tools is None else tools
    return Episode(messages=messages, tools=list(tools), metadata=metadata, turns=list(turns))


def listen(address: str) -> tuple[socket.socket, int]:
    """A TCP server on `address` (port chosen by the kernel) that accepts and drops every connection, in
    a thread; for tests of what a sandbox can reach. Close the socket to stop it."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(16)

    def accept_forever() -> None:
        while True:
            try:
                server.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return server, server.getsockname()[1]


def host_address() -> str:
    """This host's address on its outward interface (where a server bound to 0.0.0.0 is reachable)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()
