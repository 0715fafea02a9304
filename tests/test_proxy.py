"""The recording proxy: forwarding, recording, per-episode keys, streaming, and calls -> one episode."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from proxy_helpers import Scripted, bash_call, response

from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.proxy.episode import build_transcript
from orchard_envs.proxy.records import CallRecord
from orchard_envs.proxy.server import ProxyServer

TOOLS = [
    {"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {}}}}
]


@pytest.fixture
def proxy():
    upstream = Scripted()
    with ProxyServer(upstream, port=0) as server:
        server.scripted = upstream
        yield server


def client(proxy: ProxyServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url, api_key=key, max_retries=0)


def test_a_call_is_forwarded_and_recorded_with_tokens(proxy):
    key = proxy.recorder.open()
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    reply = client(proxy, key).chat.completions.create(model="any", messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "reply 0"
    (record,) = proxy.recorder.calls(key)
    assert record.messages == messages and record.tools == TOOLS
    assert record.reply == {"role": "assistant", "content": "reply 0"}
    assert record.usage["prompt_tokens"] == 7 and record.usage["completion_tokens"] == 3
    assert record.prompt_token_ids == [7, 1, 7, 1] and record.token_ids == [100, 2]
    assert record.logprobs == [-0.25, -0.25]
    assert "stream" not in proxy.scripted.bodies[0]  # asked upstream whole, which keeps the ids


def test_a_streamed_call_arrives_whole_and_is_recorded(proxy):
    key = proxy.recorder.open()
    stream = client(proxy, key).chat.completions.create(
        model="any",
        messages=[{"role": "user", "content": "u"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "reply 0"
    assert chunks[-1].usage.completion_tokens == 3
    (record,) = proxy.recorder.calls(key)
    assert record.stream and record.token_ids == [100, 2]


def test_tool_calls_stream_as_openai_deltas():
    class Caller:
        async def complete(self, body):
            return response(bash_call("ls -la"))

    with ProxyServer(Caller(), port=0) as server:
        key = server.recorder.open()
        chunks = list(
            client(server, key).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "u"}], stream=True
            )
        )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "bash" and '"ls -la"' in calls[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_calls_without_an_open_episodes_key_are_refused_and_not_forwarded(proxy):
    with pytest.raises(openai.AuthenticationError):
        client(proxy, "orch-guessed").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "u"}]
        )
    key = proxy.recorder.open()
    proxy.recorder.close(key)
    with pytest.raises(openai.AuthenticationError):  # a closed episode's key stops working
        client(proxy, key).chat.completions.create(model="m", messages=[{"role": "user", "content": "u"}])
    assert proxy.scripted.bodies == []


def test_the_key_in_the_path_attributes_calls_too(proxy):
    first, second = proxy.recorder.open(), proxy.recorder.open()
    url = f"http://127.0.0.1:{proxy.port}/e/{second}/v1/chat/completions"
    answer = httpx.post(url, json={"messages": [{"role": "user", "content": "u"}]})
    assert answer.status_code == 200
    assert len(proxy.recorder.calls(second)) == 1 and proxy.recorder.calls(first) == []


def test_no_endpoint_returns_another_episodes_calls(proxy):
    """Records are read in process only: a client holding one key cannot list or fetch any episode's calls."""
    mine, theirs = proxy.recorder.open(), proxy.recorder.open()
    client(proxy, theirs).chat.completions.create(model="m", messages=[{"role": "user", "content": "secret"}])
    base = f"http://127.0.0.1:{proxy.port}"
    headers = {"Authorization": f"Bearer {mine}"}
    for path in (
        "/v1/calls",
        f"/v1/episodes/{theirs}",
        "/calls",
        f"/e/{theirs}/calls",
        "/v1/chat/completions",
    ):
        answer = httpx.get(base + path, headers=headers)
        assert answer.status_code in (404, 405) and "secret" not in answer.text


def test_n_above_one_and_the_call_limit_are_refused(proxy):
    key = proxy.recorder.open(max_calls=1)
    chat = client(proxy, key).chat.completions
    with pytest.raises(openai.BadRequestError, match="n=1"):
        chat.create(model="m", messages=[{"role": "user", "content": "u"}], n=2)
    chat.create(model="m", messages=[{"role": "user", "content": "u"}])
    with pytest.raises(openai.RateLimitError, match="limit of 1"):
        chat.create(model="m", messages=[{"role": "user", "content": "u"}])
    assert len(proxy.recorder.calls(key)) == 1 and proxy.recorder.refused(key) == 1


def test_many_episodes_share_one_proxy_without_mixing(proxy):
    keys = [proxy.recorder.open() for _ in range(6)]

    async def talk():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}") as http:

            async def one(i, key):
                for turn in range(3):
                    body = {"messages": [{"role": "user", "content": f"episode {i} turn {turn}"}]}
                    await http.post(
                        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
                    )

            await asyncio.gather(*(one(i, key) for i, key in enumerate(keys)))

    asyncio.run(talk())
    for i, key in enumerate(keys):
        contents = [r.messages[0]["content"] for r in proxy.recorder.calls(key)]
        assert sorted(contents) == [f"episode {i} turn {t}" for t in range(3)]


def test_an_upstream_error_is_passed_on_and_recorded():
    class Failing:
        async def complete(self, body):
            raise RuntimeError("model fell over")

    with ProxyServer(Failing(), port=0) as server:
        key = server.recorder.open()
        with pytest.raises(openai.APIStatusError) as caught:
            client(server, key).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "u"}]
            )
        assert caught.value.status_code == 502
        (record,) = server.recorder.calls(key)
    assert record.reply is None and "model fell over" in record.error


def _record(messages, reply, prompt, ids):
    return CallRecord(
        messages=messages,
        tools=TOOLS,
        reply=reply,
        prompt_token_ids=prompt,
        token_ids=ids,
        usage={"prompt_tokens": len(prompt), "completion_tokens": len(ids)},
    )


def test_calls_become_one_episode_split_where_the_history_was_rewritten():
    system, user = {"role": "system", "content": "s"}, {"role": "user", "content": "task"}
    a1 = {"role": "assistant", "content": "one", "extra": {"harness": "private"}}
    a2 = {"role": "assistant", "content": "two"}
    obs = {"role": "user", "content": "obs"}
    calls = [
        _record([system, user], a1, [1, 2], [3]),
        _record([system, user, a1, obs], a2, [1, 2, 3, 4], [5]),  # extends: ids and messages
        _record([system, {"role": "user", "content": "summary"}], a2, [1, 9], [6]),  # rewritten history
    ]
    transcript = build_transcript(calls)
    assert [t.extends_previous for t in transcript.turns] == [None, True, False]
    assert transcript.rewrites == 1
    roles = [m["role"] for m in transcript.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "system", "user", "assistant"]
    assert "extra" not in transcript.messages[2]  # the harness's own fields are not chat fields
    meta = EpisodeMetadata(
        env_id="e", suite="s", task_id="t", harness="external:x", agent="a", reward=0.0, status="submitted"
    )
    episode = Episode(
        messages=transcript.messages, tools=transcript.tools, metadata=meta, turns=transcript.turns
    )
    assert [t.message_index for t in episode.turns] == [2, 4, 7]


def test_ids_that_do_not_extend_are_flagged_even_when_the_messages_do():
    user = {"role": "user", "content": "task"}
    a1 = {"role": "assistant", "content": "one"}
    calls = [_record([user], a1, [1, 2], [3]), _record([user, a1, user], a1, [1, 7, 3], [4])]
    assert [t.extends_previous for t in build_transcript(calls).turns] == [None, False]
