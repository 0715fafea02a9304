"""One run's results: SQLite (WAL) with each (task, trial) and its episode written in one transaction.

That single transaction is what makes a run exactly-once: a process killed at any point has either
committed a pair (it is skipped on resume) or not (it runs again); nothing is half-written or counted
twice. `episodes.jsonl` beside the database is an export of it, rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchard_envs import __version__
from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError

SCHEMA_VERSION = 1
DB_NAME = "results.db"
EPISODES_NAME = "episodes.jsonl"
# What decides the results; -k may grow on a resume, and -j or the executor never change them.
IDENTITY_KEYS = (
    "suite", "suite_version", "env_id", "split", "tasks", "limit", "agent", "agent_options", "harness",
    "harness_options", "env_options",
)
COLUMNS = (
    "task_id", "trial", "status", "resolved", "reward", "steps", "turns", "prompt_tokens",
    "completion_tokens", "cost", "seconds", "attempts", "category", "split", "error", "episode_id",
    "episode", "finished_at",
)
EPISODES_SQL = "SELECT episode FROM results ORDER BY task_id, trial"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT NOT NULL, trial INTEGER NOT NULL, status TEXT NOT NULL, resolved INTEGER,
    reward REAL NOT NULL, steps INTEGER NOT NULL, turns INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost REAL, seconds REAL NOT NULL, attempts INTEGER NOT NULL,
    category TEXT, split TEXT, error TEXT NOT NULL DEFAULT '', episode_id TEXT NOT NULL,
    episode TEXT NOT NULL, finished_at TEXT NOT NULL, PRIMARY KEY (task_id, trial)
);
"""


def identity(config: dict[str, Any]) -> str:
    picked = {key: config.get(key) for key in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()


class ResultsStore:
    """Thread-safe: episode workers record through one connection behind a lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, readonly: bool = True) -> ResultsStore:
        """An existing results directory (for the leaderboard, reports, exports and resumes)."""
        path = Path(path)
        database = path / DB_NAME
        if not database.exists():
            raise ConfigError(f"{path} holds no {DB_NAME}: not an orchard-bench results directory")
        uri = f"file:{database}?mode=ro" if readonly else str(database)
        store = cls(path, _connect(uri, uri=readonly))
        found = store._meta().get("schema_version")
        if found != str(SCHEMA_VERSION):
            store.close()
            raise ConfigError(
                f"{path} was written by an incompatible orchard-bench (results schema {found}, this one "
                f"reads {SCHEMA_VERSION}); use another --out, or the version that wrote it"
            )
        return store

    @classmethod
    def create_or_resume(cls, path: Path, config: dict[str, Any]) -> ResultsStore:
        """A fresh run in `path`, or the same run resumed; a different run there is refused untouched."""
        path = Path(path)
        if (path / DB_NAME).exists():
            cls.open(path).close()  # refuses an incompatible database before anything can write to it
            store = cls.open(path, readonly=False)
            previous = store.config
            if identity(previous) != identity(config):
                key = next(k for k in IDENTITY_KEYS if previous.get(k) != config.get(k))
                raise ConfigError(
                    f"{path} holds a different run ({key}: {previous.get(key)!r} there, {config.get(key)!r} "
                    "now); nothing was changed. Re-run with the same flags to resume, or use another --out"
                )
            if config.get("k", 0) > previous.get("k", 0):
                store._set_meta(config=json.dumps({**previous, "k": config["k"]}))
            return store
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise ConfigError(f"{path} is not empty and holds no {DB_NAME}; use an empty or new --out")
        store = cls(path, _connect(str(path / DB_NAME)))
        with store._db:
            store._db.executescript(SCHEMA)
        store._set_meta(
            schema_version=str(SCHEMA_VERSION),
            config=json.dumps(config),
            config_hash=identity(config),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            orchard_version=__version__,
        )
        return store

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self._meta()["config"])

    @property
    def created_at(self) -> str:
        return self._meta().get("created_at", "")

    def done(self) -> set[tuple[str, int]]:
        with self._lock:
            return {(task, trial) for task, trial in self._db.execute("SELECT task_id, trial FROM results")}

    def record(
        self, task_id: str, trial: int, episode: Episode, *, attempts: int, category: str | None
    ) -> bool:
        """Commit one (task, trial) with its episode; False if it was already there (never counted twice)."""
        meta = episode.metadata
        assistant = sum(message.get("role") == "assistant" for message in episode.messages)
        values = {
            "task_id": task_id,
            "trial": trial,
            "status": meta.status,
            "resolved": None if meta.resolved is None else int(meta.resolved),
            "reward": meta.reward,
            "steps": meta.steps,
            "turns": assistant,
            "prompt_tokens": meta.tokens.get("prompt", 0),
            "completion_tokens": meta.tokens.get("completion", 0),
            "cost": (meta.model_extra or {}).get("cost"),
            "seconds": meta.timings.get("episode", 0.0),
            "attempts": attempts,
            "category": category,
            "split": meta.split,
            "error": str((meta.model_extra or {}).get("error") or ""),
            "episode_id": meta.episode_id,
            "episode": json.dumps(episode.to_row()),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock, self._db:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [values[column] for column in COLUMNS],
            )
        return cursor.rowcount == 1

    def rows(self) -> list[dict[str, Any]]:
        columns = [c for c in COLUMNS if c != "episode"]
        with self._lock:
            found = self._db.execute(f"SELECT {', '.join(columns)} FROM results ORDER BY task_id, trial")
            rows = [dict(zip(columns, row, strict=True)) for row in found]
        for row in rows:
            row["resolved"] = None if row["resolved"] is None else bool(row["resolved"])
        return rows

    def episodes(self) -> Iterator[Episode]:
        with self._lock:
            texts = [text for (text,) in self._db.execute(EPISODES_SQL)]
        for text in texts:
            yield Episode.from_row(json.loads(text))

    def export_episodes(self) -> Path:
        """Rewrite episodes.jsonl from the database (write to a temporary file, then rename)."""
        target = self.path / EPISODES_NAME
        with tempfile.NamedTemporaryFile("w", dir=self.path, delete=False, suffix=".tmp") as tmp:
            with self._lock:
                for (text,) in self._db.execute(EPISODES_SQL):
                    tmp.write(text + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o644)  # an ordinary file to share, not the temporary file's private mode
        os.replace(tmp.name, target)
        return target

    def close(self) -> None:
        self._db.close()

    def _meta(self) -> dict[str, str]:
        with self._lock:
            try:
                return dict(self._db.execute("SELECT key, value FROM meta"))
            except sqlite3.DatabaseError as exc:
                raise ConfigError(f"{self.path / DB_NAME} is not a readable results database: {exc}") from exc

    def _set_meta(self, **values: str) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(target, uri=uri, check_same_thread=False, timeout=30)
    if not uri:
        connection.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the log before it returns, so it survives the process being killed
        # (SIGKILL, OOM); only a power cut may lose the last commits, never corrupt the database.
        connection.execute("PRAGMA synchronous=NORMAL")
    return connection
