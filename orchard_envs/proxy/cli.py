"""`orchard-proxy`: the recording proxy as a server, for harnesses run by hand (outside orchard-bench).

It mints `--episodes` keys (printed as one JSON line), forwards each call to `--upstream` (a URL) or to an
Orchard agent in process (`--agent hf`, `--agent hf:PATH`), and on Ctrl-C writes each key's calls as one
episode into `--out` (JSONL in our schema, unrewarded: nothing graded them).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from orchard_envs.cli_support import fail, parse_options, typer_app
from orchard_envs.errors import OrchardError

app = typer_app("orchard-proxy", "Serve a recording OpenAI-compatible proxy in front of a model.")


def episode_of(key_calls: list[Any], name: str) -> Any:
    """One key's calls as an Episode (status `submitted`, reward 0: the proxy alone grades nothing)."""
    from orchard_envs.episodes import Episode, EpisodeMetadata
    from orchard_envs.proxy.episode import build_transcript

    transcript = build_transcript(key_calls)
    meta = EpisodeMetadata(
        env_id="orchard-proxy",
        suite="",
        task_id=name,
        harness="external:proxy",
        agent="proxy",
        reward=0.0,
        status="submitted",
        steps=transcript.answered,
        tokens=transcript.tokens,
        model_calls=len(key_calls),
        history_rewrites=transcript.rewrites,
    )
    return Episode(
        messages=transcript.messages, tools=transcript.tools, metadata=meta, turns=transcript.turns
    )


def _upstream(upstream: str | None, api_key: str | None, agent: str | None, options: list[str]) -> Any:
    from orchard_envs.proxy.upstream import AgentUpstream, URLUpstream

    if (upstream is None) == (agent is None):
        raise ValueError("give exactly one of --upstream URL and --agent NAME")
    if upstream is not None:
        return URLUpstream(upstream, api_key)
    from orchard_envs.agents import get_agent

    name, _, model = str(agent).partition(":")
    return AgentUpstream(get_agent(name, **(parse_options(options) | ({"model": model} if model else {}))))


@app.command()
def serve(
    out: Path = typer.Option(..., help="JSONL file the episodes are written to at shutdown."),
    upstream: str | None = typer.Option(None, help="OpenAI-compatible base URL (…/v1) to forward to."),
    upstream_key: str | None = typer.Option(None, envvar="ORCHARD_UPSTREAM_API_KEY", help="Its API key."),
    agent: str | None = typer.Option(None, help="An Orchard agent in process instead: hf, hf:PATH."),
    option: list[str] = typer.Option([], help="Agent option key=value (repeatable)."),
    episodes: int = typer.Option(1, min=1, help="How many episode keys to mint."),
    max_calls: int | None = typer.Option(None, min=1, help="Calls per episode before 429s."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8100, help="TCP port (0: any free one)."),
) -> None:
    """Serve until interrupted, then write the episodes."""
    from orchard_envs.episodes import EpisodeWriter
    from orchard_envs.proxy.server import ProxyServer

    try:
        chosen = _upstream(upstream, upstream_key, agent, option)
        proxy = ProxyServer(chosen, port=port, host=host).start()
    except (OrchardError, ValueError) as exc:
        fail("orchard-proxy", str(exc))
    keys = {f"episode-{i}": proxy.recorder.open(max_calls) for i in range(episodes)}
    typer.echo(json.dumps({"base_url": proxy.url, "keys": keys}))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    with EpisodeWriter(out) as writer:
        for name, key in keys.items():
            writer.write(episode_of(proxy.recorder.close(key), name))
    proxy.stop()


def main() -> None:
    """The `orchard-proxy` console script."""
    app()
