"""Episode records: schema validation, JSONL store (bad lines, crashes, threads), Parquet, `datasets`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.episodes import (
    STATUSES,
    Episode,
    EpisodeMetadata,
    EpisodeWriter,
    InvalidEpisodeWarning,
    ReadReport,
    count_invalid,
    current_versions,
    load_dataset,
    read_episodes,
    to_parquet,
)
from orchard_envs.episodes.schema import COLUMNS, INT64_MAX, INT64_MIN, describe_error
from orchard_envs.errors import ConfigError, OrchardError

HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None


def function(name: str, properties: dict) -> dict:
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": properties}},
    }


# Deliberately clashing schemas: `default` is an int in one tool and a string in another.
BASH = [function("bash", {"command": {"type": "string"}})]
EDITOR = [
    function("edit", {"line": {"type": "integer", "default": 3}, "mode": {"enum": ["a", "b"]}}),
    function("note", {"line": {"type": "string", "default": "x"}}),
]
PLAIN = [
    {"role": "system", "content": "You fix bugs."},
    {"role": "user", "content": "Fix it ✓ 修复"},
    {"role": "assistant", "content": "Done."},
]
WITH_CALLS = [
    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "look first",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "edit", "arguments": '{"line": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "note", "arguments": "{not json"}},
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "Error: invalid arguments"},
    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    {"role": "assistant", "content": "", "tool_calls": []},
]


def make(messages=PLAIN, tools=BASH, turns=(), **meta) -> Episode:
    metadata = {
        "env_id": "orchard/SWE-v0",
        "suite": "swe-mini",
        "task_id": "t-1",
        "split": "test",
        "harness": "native",
        "agent": "react",
        "model": "m-1",
        "reward": 1.0,
        "status": "submitted",
        **meta,
    }
    return Episode(messages=list(messages), tools=list(tools), metadata=metadata, turns=list(turns))


def mixed() -> list[Episode]:
    return [
        make(task_id="a", reward=1.0, resolved=True, grading={"f2p": ["t1"], "ok": True}),
        make(WITH_CALLS, EDITOR, task_id="b", reward=0.25, resolved=False, agent="oracle",
             turns=[{"message_index": 1, "token_ids": [5, 6, 7], "logprobs": [-0.5, -1e-9, 0.0],
                     "prompt_token_ids": [1, 2], "finish_reason": "tool_calls"}]),
        make(task_id="c", reward=0.0, status="step_limit", suite="other", split="dev", model=None,
             reward_breakdown={"tests": 0.0, "format": -0.1}),
    ]


def write_all(path: Path, episodes: list[Episode]) -> None:
    with EpisodeWriter(path) as writer:
        for episode in episodes:
            writer.write(episode)


def same(a: Episode, b: Episode) -> bool:
    """Equal down to JSON text: catches 1 vs 1.0 and key order, which == would let through."""
    return json.dumps(a.to_row()) == json.dumps(b.to_row())


# --- schema -------------------------------------------------------------------------------------------------


def test_row_is_flat_and_round_trips():
    for episode in mixed():
        row = episode.to_row()
        assert tuple(row) == COLUMNS
        assert row["metadata_extra"] == (episode.metadata.model_extra or {})
        back = Episode.from_row(json.loads(json.dumps(row)))
        assert back == episode and same(back, episode)
    assert mixed()[0].to_row()["metadata_extra"] == {"grading": {"f2p": ["t1"], "ok": True}}


def test_metadata_defaults():
    meta = make().metadata
    assert len(meta.episode_id) == 32 and meta.episode_id != make().metadata.episode_id
    assert meta.versions == current_versions()
    assert set(meta.versions) == {"orchard_envs", "gymnasium", "python"}
    assert datetime.fromisoformat(meta.created_at).tzinfo == UTC
    assert meta.created_at.endswith("Z")
    assert set(STATUSES) == set(EpisodeMetadata.model_fields["status"].annotation.__args__)


def _calls(*arguments) -> dict:
    calls = [{"id": f"c{i}", "type": "function", "function": {"name": "bash", "arguments": a}}
             for i, a in enumerate(arguments)]
    return {"role": "assistant", "content": None, "tool_calls": calls}


USER = {"role": "user", "content": "go"}


@pytest.mark.parametrize(
    ("messages", "tools", "turns", "expected"),
    [
        ([USER, {"role": "bot", "content": "x"}], BASH, [], "messages[1]: role 'bot' is not one of"),
        ([USER, {"role": "assistant"}], BASH, [], "messages[1] (assistant): has neither content nor"),
        ([USER, {"role": "assistant", "content": None}], BASH, [], "messages[1] (assistant): has neither"),
        ([USER, _calls({"cmd": "ls"})], BASH, [],
         "messages[1].tool_calls[0].function.arguments must be a JSON string"),
        ([USER, _calls("{}"), {"role": "tool", "tool_call_id": "nope", "content": "x"}], BASH, [],
         "messages[2] (tool): tool_call_id 'nope' answers no tool_call"),
        ([USER, {"role": "tool", "tool_call_id": "c0", "content": "x"}], BASH, [], "messages[1] (tool)"),
        ([USER, _calls("{}"), {"role": "tool", "tool_call_id": "c0", "content": "x"},
          {"role": "tool", "tool_call_id": "c0", "content": "y"}], BASH, [], "'c0' was already answered"),
        ([USER, _calls("{}"), {"role": "assistant", "content": "hm"}, {"role": "tool", "tool_call_id": "c0",
          "content": "late"}], BASH, [], "messages[3] (tool)"),
        ([USER, {"role": "tool", "content": "x"}], BASH, [], "messages[1] (tool): tool_call_id must be"),
        ([{"role": "user", "content": None}], BASH, [], "messages[0] (user): content must be"),
        ([USER, {"role": "assistant", "content": "x", "score": float("nan")}], BASH, [],
         "messages[1].score: nan is not a finite number"),
        ([USER, {"role": "assistant", "content": "x", "span": (1, 2)}], BASH, [],
         "messages[1].span: tuple is not JSON"),
        ([{"role": "user", "content": "\ud800"}], BASH, [], "messages[0].content: text is not valid Unicode"),
        ([USER, {"role": "assistant", "content": "x", "n": 2**64}], BASH, [], "does not fit in 64 bits"),
        ([USER, "hello"], BASH, [], "messages.1"),
        (PLAIN, BASH + BASH, [], "tools[1]: tool name 'bash' appears twice"),
        (PLAIN, [{"name": "bash"}], [], "tools[0]: expected"),
        (PLAIN, BASH, [{"message_index": 1, "token_ids": [1]}], "turns[0].message_index 1 is not an"),
        (PLAIN, BASH, [{"message_index": 2, "token_ids": [1, 2], "logprobs": [-1.0]}],
         "logprobs has 1 entries but token_ids has 2"),
        (PLAIN, BASH, [{"message_index": 2, "token_ids": [-1]}], "non-negative"),
    ],
)
def test_invalid_episodes_are_rejected_naming_the_place(messages, tools, turns, expected):
    with pytest.raises(ValueError) as excinfo:
        make(messages, tools, turns)
    assert expected in str(excinfo.value)
    assert expected in describe_error(excinfo.value)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"status": "done"}, "metadata.status"),
        ({"reward": float("inf")}, "metadata.reward"),
        ({"created_at": "yesterday"}, "not an ISO 8601 timestamp"),
        ({"created_at": "2024-05-01T12:00:00"}, "has no timezone"),
        ({"sampling": {"stop": ("a",)}}, "sampling.stop: tuple is not JSON"),
        ({"custom": {1: "x"}}, "custom: key 1 is not a string"),
        ({"steps": -1}, "metadata.steps"),
    ],
)
def test_invalid_metadata_is_rejected(meta, expected):
    with pytest.raises(ValueError) as excinfo:
        make(**meta)
    assert expected in describe_error(excinfo.value)


def test_top_level_is_strict_and_rows_are_checked():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Episode(messages=PLAIN, metadata=make().metadata, notes="x")
    row = make().to_row()
    with pytest.raises(ValueError, match="unknown column"):
        Episode.from_row({**row, "bogus": 1})
    with pytest.raises(ValueError, match="schema_version 2 is not supported"):
        Episode.from_row({**row, "schema_version": 2})
    with pytest.raises(ValueError, match="metadata_extra repeats"):
        Episode.from_row({**row, "metadata_extra": {"reward": 5}})


# --- JSONL store --------------------------------------------------------------------------------------------


def test_jsonl_round_trip_one_line_each(tmp_path):
    path = tmp_path / "runs" / "episodes.jsonl"
    episodes = mixed()
    write_all(path, episodes)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and "修复" in lines[0]  # UTF-8 as is, not \u escapes
    report = ReadReport()
    back = list(read_episodes(path, report=report))
    assert [b == e and same(b, e) for b, e in zip(back, episodes, strict=True)] == [True] * 3
    assert report == ReadReport(episodes=3)
    write_all(path, episodes[:1])  # a second writer appends, never rewrites
    assert path.read_text(encoding="utf-8").splitlines()[:3] == lines
    assert len(list(read_episodes(path))) == 4


@pytest.mark.parametrize(
    ("filters", "task_ids"),
    [
        ({}, ["a", "b", "c"]),
        ({"suite": "swe-mini"}, ["a", "b"]),
        ({"split": "dev"}, ["c"]),
        ({"agent": "oracle"}, ["b"]),
        ({"harness": "native", "model": "m-1"}, ["a", "b"]),
        ({"min_reward": 0.25}, ["a", "b"]),
        ({"resolved": False}, ["b"]),
        ({"resolved": True, "min_reward": 1.0}, ["a"]),
        ({"suite": "nope"}, []),
    ],
)
def test_filters(tmp_path, filters, task_ids):
    path = tmp_path / "e.jsonl"
    write_all(path, mixed())
    report = ReadReport()
    assert [e.metadata.task_id for e in read_episodes(path, report=report, **filters)] == task_ids
    assert (report.episodes, report.filtered_out) == (len(task_ids), 3 - len(task_ids))


def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    path = tmp_path / "e.jsonl"
    good = [json.dumps(e.to_row()).encode() for e in mixed()]
    invalid = json.dumps(make().to_row() | {"status": "exploded"}).encode()
    # 1 good, 2 truncated JSON, 3 good, 4 valid JSON but not an episode, 5 blank, 6 not UTF-8, 7 good
    path.write_bytes(b"\n".join([good[0], good[1][:40], good[1], invalid, b"", b"\xff\xfe", good[2]]) + b"\n")
    seen: list[tuple[int, str]] = []
    report = ReadReport()
    with pytest.warns(InvalidEpisodeWarning) as warned:
        back = list(read_episodes(path, on_error=lambda n, reason: seen.append((n, reason)), report=report))
    assert [e.metadata.task_id for e in back] == ["a", "b", "c"]
    assert [n for n, _ in seen] == [2, 4, 6] and report.invalid == seen
    assert "not valid JSON" in seen[0][1]
    assert "not a valid episode" in seen[1][1] and "metadata.status" in seen[1][1]
    assert "not UTF-8" in seen[2][1]
    messages = [str(w.message) for w in warned]
    assert messages[0].startswith(f"{path}:line 2: skipped: not valid JSON")
    assert messages[1].startswith(f"{path}:line 4: skipped: not a valid episode")
    with pytest.warns(InvalidEpisodeWarning):
        assert count_invalid(path) == 3


def test_torn_last_line_after_a_crash(tmp_path):
    path = tmp_path / "e.jsonl"
    episodes = mixed()
    write_all(path, episodes[:2])
    third = json.dumps(episodes[2].to_row())
    with path.open("a", encoding="utf-8") as file:  # the crash: half a line, no newline
        file.write(third[: len(third) // 2])
    seen: list[int] = []
    with pytest.warns(InvalidEpisodeWarning, match="line 3.*truncated"):
        back = list(read_episodes(path, on_error=lambda n, _: seen.append(n)))
    assert [e.metadata.task_id for e in back] == ["a", "b"] and seen == [3]
    write_all(path, episodes[2:])  # the restarted run appends on a fresh line
    report = ReadReport()
    with pytest.warns(InvalidEpisodeWarning):
        back = list(read_episodes(path, report=report))
    assert [e.metadata.task_id for e in back] == ["a", "b", "c"]
    assert [n for n, _ in report.invalid] == [3]


def test_threads_sharing_writers_write_intact_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    threads_n, per_thread = 8, 25
    big = "x" * 200_000  # larger than any pipe or stdio buffer
    with EpisodeWriter(path) as shared, EpisodeWriter(path) as other:

        def work(t: int) -> None:
            writer = other if t % 4 == 0 else shared
            for k in range(per_thread):
                messages = [USER, {"role": "assistant", "content": f"{t}-{k}" + (big if k % 10 == 0 else "")}]
                writer.write(make(messages, task_id=f"{t}-{k}"))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(path.read_bytes().splitlines()) == threads_n * per_thread
    report = ReadReport()
    ids = [e.metadata.task_id for e in read_episodes(path, report=report)]
    assert report.skipped == 0
    assert sorted(ids) == sorted(f"{t}-{k}" for t in range(threads_n) for k in range(per_thread))


def test_writer_validates_and_refuses_after_close(tmp_path):
    path = tmp_path / "e.jsonl"
    writer = EpisodeWriter(path)
    written = writer.write(make().model_dump())  # a dict is validated into an Episode
    assert isinstance(written, Episode)
    with pytest.raises(ValueError, match="messages"):
        writer.write({"messages": [{"role": "bot"}], "metadata": make().metadata.model_dump()})
    writer.close()
    with pytest.raises(OrchardError, match="closed"):
        writer.write(make())
    assert len(path.read_text().splitlines()) == 1
    with pytest.raises(ConfigError, match="no episode file"):
        list(read_episodes(tmp_path / "missing.jsonl"))


# --- Parquet ------------------------------------------------------------------------------------------------


def test_parquet_round_trip_and_types(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    source, target = tmp_path / "e.jsonl", tmp_path / "out" / "e.parquet"
    episodes = mixed()
    write_all(source, episodes)
    with source.open("a") as file:
        file.write("{torn\n")
    with pytest.warns(InvalidEpisodeWarning, match="line 4"):
        report = to_parquet(source, target)
    assert report.episodes == 3 and [n for n, _ in report.invalid] == [4]
    assert [p.name for p in target.parent.iterdir()] == ["e.parquet"]  # no temp file left behind
    schema = pq.read_schema(target)
    assert str(schema.field("messages").type) == "list<element: extension<arrow.json>>"
    assert str(schema.field("reward").type) == "double"
    assert "binary field_id=-1 metadata_extra (JSON)" in str(pq.ParquetFile(target).schema)
    back = list(read_episodes(target))
    assert all(b == e and same(b, e) for b, e in zip(back, episodes, strict=True))
    assert [e.metadata.task_id for e in read_episodes(target, suite="swe-mini", min_reward=0.5)] == ["a"]
    to_parquet(target, tmp_path / "again.parquet", agent="oracle")
    assert [e.metadata.task_id for e in read_episodes(tmp_path / "again.parquet")] == ["b"]


def test_empty_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "e.jsonl").write_text("")
    assert to_parquet(tmp_path / "e.jsonl", tmp_path / "e.parquet") == ReadReport()
    assert list(read_episodes(tmp_path / "e.parquet")) == []


def test_missing_optional_dependencies_say_what_to_install(tmp_path, monkeypatch):
    write_all(tmp_path / "e.jsonl", mixed()[:1])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match="pip install pyarrow"):
        to_parquet(tmp_path / "e.jsonl", tmp_path / "e.parquet")
    assert not (tmp_path / "e.parquet").exists()
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError, match=r"pip install 'datasets>=4\.7'"):
        load_dataset(tmp_path / "e.jsonl")


def test_importing_episodes_loads_no_heavy_dependency():
    code = (
        "import sys, orchard_envs.episodes\n"
        "print([m for m in ('pyarrow', 'datasets', 'torch', 'pandas') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- Hugging Face datasets ----------------------------------------------------------------------------------


def test_datasets_loads_episodes_whose_tools_and_messages_differ(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    episodes = mixed()
    jsonl, parquet, cache = tmp_path / "e.jsonl", tmp_path / "e.parquet", str(tmp_path / "cache")
    write_all(jsonl, episodes)
    to_parquet(jsonl, parquet)

    def check(ds, expected=episodes) -> None:
        assert ds.num_rows == len(expected)
        for row, episode in zip(ds, expected, strict=True):
            assert row["messages"] == episode.messages  # exact dicts: no keys padded in, none lost
            assert row["tools"] == episode.tools
            assert row["reward"] == episode.metadata.reward
            assert Episode.from_row(row) == episode

    ours_jsonl = load_dataset(jsonl, cache_dir=cache)
    assert type(ours_jsonl.features["messages"].feature).__name__ == "Json"
    check(ours_jsonl)
    check(load_dataset(parquet, cache_dir=cache))
    check(load_dataset(parquet, cache_dir=cache, resolved=False), episodes[1:2])
    # Without Orchard: the Parquet file alone tells datasets that messages and tools are JSON.
    check(datasets.load_dataset("parquet", data_files=str(parquet), split="train", cache_dir=cache))
    from orchard_envs.episodes import episode_features

    rows = [episode.to_row() for episode in episodes]
    ds = datasets.Dataset.from_list(rows, features=episode_features())
    assert [r["messages"] for r in ds] == [e.messages for e in episodes]
    assert [r["tools"] for r in ds] == [e.tools for e in episodes]

    with jsonl.open("a") as file:  # the file grew (torn line included): not served from the cache
        file.write(json.dumps(make(task_id="d").to_row()) + "\n{torn")
    with pytest.warns(InvalidEpisodeWarning, match="line 5"):
        grown = load_dataset(jsonl, cache_dir=cache)
    assert grown["task_id"] == ["a", "b", "c", "d"]
    with pytest.warns(InvalidEpisodeWarning, match="line 5"):
        empty = load_dataset(jsonl, cache_dir=cache, suite="nope")
    assert empty.num_rows == 0 and set(empty.column_names) == set(COLUMNS)


# --- property: any valid episode round-trips exactly --------------------------------------------------------

text = st.text(max_size=12)
keys = st.text(min_size=1, max_size=8)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(INT64_MIN, INT64_MAX) | finite | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
content = text | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2)
extra_keys = st.sampled_from(["reasoning_content", "name", "x_meta", "refusal"])
extras = st.dictionaries(extra_keys, json_values, max_size=2)


@st.composite
def conversations(draw) -> list[dict]:
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    messages.append({"role": "user", "content": draw(content)})
    for turn in range(draw(st.integers(0, 4))):
        n_calls = draw(st.integers(0, 3))
        message = {"role": "assistant", **draw(extras)}
        if n_calls:
            message["content"] = draw(st.none() | text)
            names = st.sampled_from(["bash", "edit", "gone"])
            message["tool_calls"] = [
                {"id": f"call_{turn}_{k}", "type": "function",
                 "function": {"name": draw(names), "arguments": draw(text)}}
                for k in range(n_calls)
            ]
        else:
            message["content"] = draw(content)
        messages.append(message)
        answered = draw(st.permutations(range(n_calls)))[: draw(st.integers(0, n_calls))]
        for k in answered:
            messages.append({"role": "tool", "tool_call_id": f"call_{turn}_{k}", "content": draw(content)})
        if draw(st.booleans()):
            messages.append({"role": "user", "content": draw(content), **draw(extras)})
    return messages


@st.composite
def episodes(draw) -> Episode:
    messages = draw(conversations())
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    turns = []
    for index in sorted(draw(st.sets(st.sampled_from(assistant))) if assistant else []):
        token_ids = draw(st.lists(st.integers(0, 2**31), max_size=6))
        turns.append({
            "message_index": index,
            "token_ids": token_ids,
            "prompt_token_ids": draw(st.none() | st.lists(st.integers(0, 2**31), max_size=4)),
            "logprobs": draw(st.none() | st.lists(finite, min_size=len(token_ids), max_size=len(token_ids))),
            "finish_reason": draw(st.none() | text),
        })
    tools = draw(st.lists(st.sampled_from(BASH + EDITOR), unique_by=lambda t: t["function"]["name"]))
    metadata = {
        "env_id": draw(text), "suite": draw(text), "task_id": draw(text), "split": draw(st.none() | text),
        "harness": draw(text), "agent": draw(text), "model": draw(st.none() | text),
        "sampling": draw(st.dictionaries(keys, json_values, max_size=3)),
        "seed": draw(st.none() | st.integers(INT64_MIN, INT64_MAX)), "reward": draw(finite),
        "reward_breakdown": draw(st.dictionaries(keys, finite, max_size=3)),
        "resolved": draw(st.none() | st.booleans()), "status": draw(st.sampled_from(STATUSES)),
        "steps": draw(st.integers(0, 10**6)), "format_errors": draw(st.integers(0, 100)),
        "tokens": draw(st.dictionaries(keys, st.integers(0, INT64_MAX), max_size=2)),
        "timings": draw(st.dictionaries(keys, finite, max_size=2)),
        "versions": draw(st.dictionaries(keys, text, max_size=2)),
        "created_at": draw(st.datetimes(timezones=st.just(UTC))).isoformat(),
        **draw(st.dictionaries(keys.filter(lambda k: k not in EpisodeMetadata.model_fields), json_values,
                               max_size=3)),
    }
    return Episode(messages=messages, tools=tools, metadata=metadata, turns=turns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(episodes(), min_size=1, max_size=3))
def test_any_valid_episode_round_trips_exactly(generated):
    with tempfile.TemporaryDirectory() as tmp:
        jsonl, parquet = Path(tmp) / "e.jsonl", Path(tmp) / "e.parquet"
        write_all(jsonl, generated)
        for path in (jsonl, parquet) if HAVE_PYARROW else (jsonl,):
            if path is parquet:
                to_parquet(jsonl, parquet)
            report = ReadReport()
            back = list(read_episodes(path, report=report))
            assert report.skipped == 0
            assert len(back) == len(generated)
            for b, e in zip(back, generated, strict=True):
                assert b == e and same(b, e)
