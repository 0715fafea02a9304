"""Episode files: append-only JSONL while running, Parquet for sharing, a `datasets.Dataset` for training.

JSONL is the write path because appending a line is the only write that can't damage earlier episodes: each
episode is one `os.write` of a whole line to a file opened with O_APPEND, then fsync, so a crash loses at most
the episode in flight, and writers in other threads or processes never interleave inside a line. A torn last
line is expected after a crash; readers report it and go on, and the next writer starts on a fresh line.

pyarrow (Parquet) and `datasets` are optional and imported only when used.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchard_envs.episodes.images import image_paths, save_images
from orchard_envs.episodes.schema import (
    COLUMNS,
    JSON_COLUMNS,
    SCHEMA_VERSION,
    Episode,
    describe_error,
)
from orchard_envs.errors import ConfigError, OrchardError

PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH = 256


class InvalidEpisodeWarning(UserWarning):
    """A stored episode could not be read; it was skipped (the message names the file, line and reason)."""


@dataclass
class ReadReport:
    """What a read saw, so callers can tell a clean file from one with skipped lines."""

    episodes: int = 0  # yielded (valid and matching the filters)
    filtered_out: int = 0  # valid but not matching
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line or row number, reason)

    @property
    def skipped(self) -> int:
        """How many lines were left out as invalid."""
        return len(self.invalid)


class EpisodeWriter:
    """Appends episodes to JSONL, a line each, durable once `write` returns; threads may share one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not existed:
            _fsync_dir(self.path.parent)
        elif _ends_torn(self.path):
            self._append(b"\n")  # keep a crashed writer's partial line apart from ours

    def write(self, episode: Episode | dict[str, Any]) -> Episode:
        """Validate, append as one line, flush to disk; returns the episode written."""
        if not isinstance(episode, Episode):
            episode = Episode.model_validate(episode)
        save_images(episode.messages, self.path.parent)  # the images first: a line never names a missing one
        text = json.dumps(episode.to_row(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        self._append(text.encode("utf-8") + b"\n")
        return episode

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise OrchardError(f"the episode writer for {self.path} is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _ends_torn(path: Path) -> bool:
    with path.open("rb") as file:
        if file.seek(0, os.SEEK_END) == 0:
            return False
        file.seek(-1, os.SEEK_END)
        return file.read(1) != b"\n"


def _fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename durable too (a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == PARQUET_MAGIC


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, decoded row or None, reason it could not be decoded)."""
    with path.open("rb") as file:
        for line_no, raw in enumerate(file, 1):
            if not raw.strip():
                continue
            try:
                yield line_no, json.loads(raw.decode("utf-8")), None
            except UnicodeDecodeError as exc:
                yield line_no, None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
            except json.JSONDecodeError as exc:
                torn = " (truncated: the write was cut off)" if not raw.endswith(b"\n") else ""
                yield line_no, None, f"not valid JSON: {exc.msg} at column {exc.colno}{torn}"


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    _, pq = _pyarrow()
    row_no = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row, None


def read_episodes(
    path: str | os.PathLike[str],
    *,
    suite: str | None = None,
    split: str | None = None,
    harness: str | None = None,
    agent: str | None = None,
    model: str | None = None,
    min_reward: float | None = None,
    resolved: bool | None = None,
    on_error: Callable[[int, str], None] | None = None,
    report: ReadReport | None = None,
) -> Iterator[Episode]:
    """Yield the valid episodes of a JSONL or Parquet file that match every filter given.

    A line (or Parquet row) that is not a valid episode is never dropped silently: it is skipped with an
    `InvalidEpisodeWarning` naming file, line and reason, passed to `on_error(line_no, reason)`, and counted
    in `report`. A line still being written by another process can show up as truncated.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no episode file at {path}")
    wanted = {"suite": suite, "split": split, "harness": harness, "agent": agent, "model": model}
    wanted = {key: value for key, value in wanted.items() if value is not None}
    report = report if report is not None else ReadReport()
    parquet = _is_parquet(path)
    place = "row" if parquet else "line"
    for number, row, reason in (_parquet_rows if parquet else _jsonl_rows)(path):
        episode = None
        if reason is None:
            try:
                episode = Episode.from_row(row)
            except (ValueError, TypeError) as exc:
                reason = f"not a valid episode: {describe_error(exc)}"
        if episode is None:
            reason = reason or "unknown"
            report.invalid.append((number, reason))
            warnings.warn(f"{path}:{place} {number}: skipped: {reason}", InvalidEpisodeWarning, stacklevel=2)
            if on_error is not None:
                on_error(number, reason)
            continue
        meta = episode.metadata
        if (
            any(getattr(meta, key) != value for key, value in wanted.items())
            or (min_reward is not None and meta.reward < min_reward)
            or (resolved is not None and meta.resolved is not resolved)
        ):
            report.filtered_out += 1
            continue
        report.episodes += 1
        yield episode


def count_invalid(path: str | os.PathLike[str]) -> int:
    """How many lines (or rows) of an episode file are not valid episodes (each is also warned about)."""
    report = ReadReport()
    for _ in read_episodes(path, report=report):
        pass
    return report.skipped


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError("Parquet support needs pyarrow, not installed: pip install pyarrow") from None
    return pyarrow, pyarrow.parquet


def parquet_schema() -> Any:
    """Arrow schema of episode rows: JSON logical type for free-form values, plain types for the rest."""
    pa, _ = _pyarrow()
    json_type = pa.json_() if hasattr(pa, "json_") else pa.string()  # the JSON type came with pyarrow 19
    tokens = pa.list_(pa.int64())
    turn = pa.struct(
        [
            ("message_index", pa.int64()),
            ("prompt_token_ids", tokens),
            ("token_ids", tokens),
            ("logprobs", pa.list_(pa.float64())),
            ("finish_reason", pa.string()),
            ("extends_previous", pa.bool_()),
        ]
    )
    types = {
        "schema_version": pa.int64(),
        "messages": pa.list_(json_type),
        "tools": pa.list_(json_type),
        "turns": pa.list_(turn),
        "seed": pa.int64(),
        "reward": pa.float64(),
        "resolved": pa.bool_(),
        "steps": pa.int64(),
        "format_errors": pa.int64(),
        **dict.fromkeys(JSON_COLUMNS, json_type),
    }
    fields = [pa.field(name, types.get(name, pa.string())) for name in COLUMNS]
    return pa.schema(fields, metadata={"orchard.episodes.schema_version": str(SCHEMA_VERSION)})


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-typed values as JSON text (stdlib json: exact floats, unlike ujson)."""

    def text(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    row = dict(row)
    row["messages"] = [text(message) for message in row["messages"]]
    row["tools"] = [text(tool) for tool in row["tools"]]
    row.update((name, text(row[name])) for name in JSON_COLUMNS)
    return row


def _storage_schema(pa: Any, schema: Any) -> Any:
    """The schema with JSON types as their string storage (pyarrow can't build JSON arrays from Python)."""

    def plain(type_: Any) -> Any:
        if isinstance(type_, pa.BaseExtensionType):
            return type_.storage_type
        if pa.types.is_list(type_):
            return pa.list_(plain(type_.value_type))
        return type_

    return pa.schema([field.with_type(plain(field.type)) for field in schema], metadata=schema.metadata)


def to_parquet(
    source: str | os.PathLike[str], parquet_path: str | os.PathLike[str], **filters: Any
) -> ReadReport:
    """Convert an episode file (JSONL or Parquet) to Parquet atomically; invalid lines are reported, left out.

    The file appears complete or not at all: it is written to a temporary file beside the target, synced, then
    renamed over it. `filters` are `read_episodes`' keywords.
    """
    pa, pq = _pyarrow()
    target = Path(parquet_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    schema = parquet_schema()
    storage = _storage_schema(pa, schema)
    report = ReadReport()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp_name, schema) as writer:
            batch: list[dict[str, Any]] = []
            for episode in read_episodes(source, report=report, **filters):
                batch.append(_encode(episode.to_row()))
                if len(batch) >= PARQUET_BATCH:
                    writer.write_table(pa.Table.from_pylist(batch, schema=storage).cast(schema))
                    batch = []
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=storage).cast(schema))
        fd = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
        _fsync_dir(target.parent)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return report


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "load_dataset needs Hugging Face datasets, which is not installed: pip install 'datasets>=4.7'"
        ) from None
    if not hasattr(datasets, "Json"):
        raise ConfigError(
            f"load_dataset needs datasets>=4.7 (its Json feature); found {datasets.__version__}: "
            "pip install -U 'datasets>=4.7'"
        )
    return datasets


def episode_features() -> Any:
    """`datasets.Features` of episode rows; `messages` and `tools` are `List(Json())`, decoded to dicts."""
    datasets = _datasets()
    from datasets import Json, List, Value

    text, int64 = Value("string"), Value("int64")
    tokens = List(int64)
    turn = {
        "message_index": int64,
        "prompt_token_ids": tokens,
        "token_ids": tokens,
        "logprobs": List(Value("float64")),
        "finish_reason": text,
        "extends_previous": Value("bool"),
    }
    types = {
        "schema_version": int64,
        "messages": List(Json()),
        "tools": List(Json()),
        "turns": List(turn),
        "seed": int64,
        "reward": Value("float64"),
        "resolved": Value("bool"),
        "steps": int64,
        "format_errors": int64,
        **{name: Json() for name in JSON_COLUMNS},
    }
    return datasets.Features({name: types.get(name, text) for name in COLUMNS})


def _dataset_rows(
    path: str, stamp: tuple[int, int], filters: dict[str, Any], images: bool = False
) -> Iterator[dict[str, Any]]:
    del stamp  # only part of the cache key: a changed file is read again
    for episode in read_episodes(path, **filters):
        row = _encode(episode.to_row())  # text is stored as is; datasets' own encoder keeps 10 decimals
        if images:
            row["images"] = image_paths(episode.messages, Path(path).parent)
        yield row


def load_dataset(
    path: str | os.PathLike[str], *, cache_dir: str | None = None, images: bool = False, **filters: Any
) -> Any:
    """A Hugging Face `datasets.Dataset` of the valid episodes in a JSONL or Parquet file, one row each.

    Conversational format: `messages` (OpenAI messages) and `tools` (function schemas) decode to lists of
    dicts, ready for `tokenizer.apply_chat_template(row["messages"], tools=row["tools"])`; the metadata are
    columns beside them. Rows go through `read_episodes` (invalid lines reported and skipped; `filters` are
    its keywords). The stored JSON text is exact, but `datasets` decodes it with pandas' ujson, which can be
    off from about the 12th significant digit of a float inside a JSON column (`reward_breakdown`, `timings`,
    extras); `reward` is a float64 column and exact, and `read_episodes` gives exact values everywhere.
    `images=True` adds an `images` column: the screenshots the messages reference (stored beside the file),
    in order, as `datasets.Image` values.
    """
    datasets = _datasets()
    path = Path(path).resolve()
    if not path.exists():
        raise ConfigError(f"no episode file at {path}")
    info = path.stat()
    features = episode_features()
    if images:
        features = datasets.Features({**features, "images": datasets.List(datasets.Image())})
    gen_kwargs = {
        "path": str(path),
        "stamp": (info.st_size, info.st_mtime_ns),
        "filters": filters,
        "images": images,
    }
    try:
        return datasets.Dataset.from_generator(
            _dataset_rows, features=features, gen_kwargs=gen_kwargs, cache_dir=cache_dir
        )
    except ValueError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InvalidEpisodeWarning)
            if next(read_episodes(path, **filters), None) is not None:
                raise
        # datasets refuses a generator that yields nothing
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
