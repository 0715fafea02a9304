"""The recording proxy: an OpenAI-compatible endpoint that forwards calls upstream and records them.

`orchard-proxy` serves it; external agent CLIs (`harnesses/external.py`) reach it from inside a sandbox
through a forwarder. Each call is attributed to an episode by its key (`Authorization: Bearer <key>` or
the path `/e/<key>/v1/...`), and an episode's calls become one `Episode` (`episode.calls_to_episode`).
Importing this package loads nothing heavy: FastAPI and httpx load where used.
"""

from __future__ import annotations

__all__ = ["CallRecord", "Recorder"]

from orchard_envs.proxy.records import CallRecord, Recorder
