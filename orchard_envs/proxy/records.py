"""What the proxy keeps of each call, and the per-episode keys calls are attributed by.

Keys are minted by the host (`Recorder.open`), unguessable, and the only way a call gets recorded: a call
with an unknown key is refused. Records are read in process only; no endpoint lists or returns them.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallRecord:
    """One chat completion as the harness sent it and as the upstream answered it."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    reply: dict[str, Any] | None = None  # the assistant message, None when the call failed
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    error: str | None = None
    stream: bool = False
    seconds: float = 0.0


@dataclass
class _Episode:
    max_calls: int | None
    upstream: Any = None  # this episode's own upstream (its agent), else the proxy's
    calls: list[CallRecord] = field(default_factory=list)
    refused: int = 0  # calls past max_calls, answered with an error and not forwarded


class LimitReached(Exception):
    """An episode asked for more calls than its limit allows."""


class Recorder:
    """Thread-safe store of every open episode's calls, keyed by the episode's secret key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._episodes: dict[str, _Episode] = {}

    def open(self, max_calls: int | None = None, upstream: Any = None) -> str:
        """A new episode (answered by `upstream` if given); returns the key its calls must carry."""
        key = "orch-" + secrets.token_urlsafe(24)
        with self._lock:
            self._episodes[key] = _Episode(max_calls, upstream)
        return key

    def upstream(self, key: str) -> Any:
        """The episode's own upstream, or None for the proxy's default."""
        with self._lock:
            episode = self._episodes.get(key)
            return episode.upstream if episode else None

    def known(self, key: str) -> bool:
        """Whether `key` names an open episode (compared as the dict lookup; keys are 32 random bytes)."""
        with self._lock:
            return key in self._episodes

    def admit(self, key: str) -> None:
        """Count a call against the episode's limit; LimitReached past it."""
        with self._lock:
            episode = self._episodes[key]
            if episode.max_calls is not None and len(episode.calls) >= episode.max_calls:
                episode.refused += 1
                raise LimitReached(f"this episode's limit of {episode.max_calls} model calls is reached")

    def add(self, key: str, record: CallRecord) -> None:
        """Append a finished call to its episode (dropped if the episode was closed meanwhile)."""
        with self._lock:
            episode = self._episodes.get(key)
            if episode is not None:
                episode.calls.append(record)

    def calls(self, key: str) -> list[CallRecord]:
        """The episode's calls so far, in the order they finished."""
        with self._lock:
            return list(self._episodes[key].calls)

    def refused(self, key: str) -> int:
        """How many calls the episode's limit refused."""
        with self._lock:
            return self._episodes[key].refused

    def close(self, key: str) -> list[CallRecord]:
        """Forget the episode (its key stops working) and return its calls."""
        with self._lock:
            episode = self._episodes.pop(key, None)
        return list(episode.calls) if episode else []
