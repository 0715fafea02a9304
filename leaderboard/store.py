"""One run's results: SQLite (WAL) with each (task, trial) and its episode written in one transaction.

That single transaction is what makes a run exactly-once: a process killed at any point has either
committed a pair (it is skipped on resume) or not (it runs again); nothing is half-written or counted
twice. `episodes.jsonl` beside the database is an export of it, rewritten atomically.
"""

from __future__ import annotations

import errno
import fcntl
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
from orchard_envs.episodes.images import save_images
from orchard_envs.errors import ConfigError
from orchard_envs.leaderboard.fingerprint import describe_weights
from orchard_envs.leaderboard.stats import has_valid_tool_call

SCHEMA_VERSION = 1
DB_NAME = "results.db"
EPISODES_NAME = "episodes.jsonl"
LOCK_NAME = "run.lock"
# What decides the results; -k may grow on a resume, and -j or the executor never change them. `weights`
# (the checkpoint's hash or the served model's id) and `sampling` (the agent's effective settings, defaults
# included) catch a retrained `ckpt/NAME` or a changed default behind the same flags.
IDENTITY_KEYS = (
    "suite", "suite_version", "env_id", "split", "tasks", "limit", "agent", "agent_options", "harness",
    "harness_options", "env_options", "weights", "sampling",
)
COLUMNS = (
    "task_id", "trial", "status", "resolved", "reward", "steps", "turns", "prompt_tokens",
    "completion_tokens", "cost", "seconds", "attempts", "category", "split", "error", "episode_id",
    "episode", "finished_at",
)
# Where a grader's `suspicious` reasons sit in a stored episode row: the SWE grader's verdict reaches the
# episode's metadata (`metadata_extra`); `reward_breakdown` is read too, for graders that put it there.
SUSPICIOUS_KEY = "suspicious"
SUSPICIOUS_IN = ("metadata_extra", "reward_breakdown")
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
    """A digest of the config keys that define a run, so a resume can refuse a different run."""
    picked = {key: config.get(key) for key in IDENTITY_KEYS}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()


def difference(path: Path, previous: dict[str, Any], config: dict[str, Any]) -> str:
    """One line naming the first identity difference between the recorded run and this one, and what to do."""
    key = next(k for k in IDENTITY_KEYS if previous.get(k) != config.get(k))
    was, now = previous.get(key), config.get(key)
    if key == "weights":
        what = f"the model's weights differ: {describe_weights(was)} there, {describe_weights(now)} now"
        hint = "Use another --out for these weights, or restore the recorded ones to resume"
    elif key == "sampling" and isinstance(was, dict) and isinstance(now, dict):
        changed = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
        shown = ", ".join(f"{k}: {was.get(k)!r} there, {now.get(k)!r} now" for k in changed)
        what = f"the sampling differs: {shown}"
        hint = "Resume with the recorded sampling options (--option), or use another --out"
    else:
        what = f"{key}: {was!r} there, {now!r} now"
        hint = "Re-run with the same flags to resume, or use another --out"
    return f"{path} holds a different run ({what}); nothing was changed. {hint}"


class ResultsStore:
    """Thread-safe: episode workers record through one connection behind a lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.Lock()
        self._run_lock: RunLock | None = None  # held by the process writing this run (create_or_resume)

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
        """A fresh run in `path`, or the same run resumed; a different run there is refused untouched.

        The returned store holds the run's lock until `close()` (or the process's end): a second process on
        the same folder is refused instead of running every job again beside the first."""
        path = Path(path)
        _refuse_foreign(path)  # before the lock file: a folder that is not a run gets nothing written into
        path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(path)
        try:
            store = cls._resume(path, config) if (path / DB_NAME).exists() else cls._create(path, config)
        except BaseException:
            lock.release()
            raise
        store._run_lock = lock
        return store

    @classmethod
    def _resume(cls, path: Path, config: dict[str, Any]) -> ResultsStore:
        cls.open(path).close()  # refuses an incompatible database before anything can write to it
        store = cls.open(path, readonly=False)
        try:
            previous = store.config
            if identity(previous) != identity(config):
                raise ConfigError(difference(path, previous, config))
        except BaseException:
            store.close()
            raise
        if config.get("k", 0) > previous.get("k", 0):
            store._set_meta(config=json.dumps({**previous, "k": config["k"]}))
        return store

    @classmethod
    def _create(cls, path: Path, config: dict[str, Any]) -> ResultsStore:
        _refuse_foreign(path)  # again under the lock
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
        """The run's config as stored when the run began."""
        return json.loads(self._meta()["config"])

    @property
    def created_at(self) -> str:
        """When the run began, as stored ("" when not recorded)."""
        return self._meta().get("created_at", "")

    def done(self) -> set[tuple[str, int]]:
        """The (task, trial) pairs already stored, which a resumed run skips."""
        with self._lock:
            return {(task, trial) for task, trial in self._db.execute("SELECT task_id, trial FROM results")}

    def record(
        self, task_id: str, trial: int, episode: Episode, *, attempts: int, category: str | None
    ) -> bool:
        """Commit one (task, trial) with its episode; False if it was already there (never counted twice).
        Its screenshots go into the run folder first: a committed episode never names a missing one."""
        save_images(episode.messages, self.path)
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
        """The result columns of every finished (task, trial), plus `suspicious`: the grader's doubts about
        the episode (empty when it has none), and `valid_tool_call` (stats.has_valid_tool_call)."""
        columns = [c for c in COLUMNS if c != "episode"]
        picked = [*columns, *(f"json_extract(episode, '$.{where}')" for where in SUSPICIOUS_IN)]
        picked.append("json_extract(episode, '$.messages')")
        with self._lock:
            found = self._db.execute(f"SELECT {', '.join(picked)} FROM results ORDER BY task_id, trial")
            rows = [(dict(zip(columns, row, strict=False)), row[len(columns) :]) for row in found]
        for row, (*holders, messages) in rows:
            row["resolved"] = None if row["resolved"] is None else bool(row["resolved"])
            row["suspicious"] = _suspicious(tuple(holders))
            row["valid_tool_call"] = has_valid_tool_call(_json_list(messages), row["steps"])
        return [row for row, _ in rows]

    def episodes(self) -> Iterator[Episode]:
        """Every stored episode, read all at once under the lock, parsed lazily."""
        with self._lock:
            texts = [text for (text,) in self._db.execute(EPISODES_SQL)]
        for text in texts:
            yield Episode.from_row(json.loads(text))

    def episode(self, task_id: str, trial: int) -> Episode | None:
        """One finished (task, trial)'s episode, or None when it has not finished."""
        with self._lock:
            found = self._db.execute(
                "SELECT episode FROM results WHERE task_id = ? AND trial = ?", (task_id, trial)
            ).fetchone()
        return None if found is None else Episode.from_row(json.loads(found[0]))

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
        """Close the database and release the run's lock, if this store held it."""
        self._db.close()
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None

    def _meta(self) -> dict[str, str]:
        with self._lock:
            try:
                return dict(self._db.execute("SELECT key, value FROM meta"))
            except sqlite3.DatabaseError as exc:
                raise ConfigError(f"{self.path / DB_NAME} is not a readable results database: {exc}") from exc

    def _set_meta(self, **values: str) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())


class RunLock:
    """An exclusive `flock` on LOCK_NAME in a run folder, held while one process writes the run.

    flock, not SQLite's own locks: those serialise single writes, while two processes would both run every
    job. The kernel drops the lock when the holder dies (SIGKILL included), so a crash never leaves a run
    locked; the pid written into the file only names the holder in the refusal."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the run lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            self.release()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConfigError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(
                f"{folder} is in use by another orchard-bench run{by}; nothing was changed. Wait for it to "
                "finish (then run this again to resume), or use another --out"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Closing the descriptor drops the lock (the file stays: removing it would race a new holder)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _refuse_foreign(path: Path) -> None:
    """A folder holding files but no results database is someone else's: never written into."""
    foreign = path.is_dir() and not (path / DB_NAME).exists()
    if foreign and any(entry.name != LOCK_NAME for entry in path.iterdir()):
        raise ConfigError(f"{path} is not empty and holds no {DB_NAME}; use an empty or new --out")


def _suspicious(holders: tuple[Any, ...]) -> list[str]:
    """The reasons found under SUSPICIOUS_KEY in the episode's metadata_extra or reward_breakdown (JSON
    text from SQLite, or NULL), in that order; a single text counts as one reason."""
    reasons: list[str] = []
    for text in holders:
        try:
            holder = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            continue
        found = holder.get(SUSPICIOUS_KEY) if isinstance(holder, dict) else None
        if isinstance(found, str):
            found = [found]
        if isinstance(found, list):
            reasons += [str(reason) for reason in found if reason and str(reason) not in reasons]
    return reasons


def _json_list(text: Any) -> list[Any]:
    """A JSON array stored as text (SQLite's json_extract), or [] when it is not one."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(target, uri=uri, check_same_thread=False, timeout=30)
    if not uri:
        connection.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the log before it returns, so it survives the process being killed
        # (SIGKILL, OOM); only a power cut may lose the last commits, never corrupt the database.
        connection.execute("PRAGMA synchronous=NORMAL")
    return connection
