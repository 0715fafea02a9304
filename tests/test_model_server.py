"""orchard-serve on a real uvicorn server: the real SmolLM2 where the model's output matters, a scripted
generator (real tokenizer, fixed reply) where a test needs a reply the tiny model would not reliably write."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from helpers import FixedReplyGenerator, serving

from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import Generation, HFGenerator, Sampling
from orchard_envs.model_server.app import create_app
from orchard_envs.model_server.batcher import MicroBatcher

MAX_TOKENS = 12
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
BASH = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}
TOOL_REPLY = 'Let me look.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>'


@pytest.fixture(scope="module")
def generator(hf_generator: HFGenerator) -> HFGenerator:
    return hf_generator


@pytest.fixture(scope="module")
def url(generator):
    with serving(create_app(generator)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0)


def prompt_ids(generator: HFGenerator, messages, tools=()) -> list[int]:
    text = ChatFormat(generator.tokenizer).render(messages, list(tools), add_generation_prompt=True)
    return generator.tokenizer.encode(text, add_special_tokens=False)


def post(url: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60, **kwargs)


def test_health_and_models(url, client, generator):
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": generator.name}
    listing = httpx.get(f"{url}/v1/models").json()
    assert listing["object"] == "list" and listing["data"][0]["id"] == generator.name
    assert [model.id for model in client.models.list()] == [generator.name]


def test_completion_is_token_exact(client, generator):
    response = client.chat.completions.create(
        model=generator.name,
        messages=HELLO,
        max_tokens=MAX_TOKENS,
        temperature=0,
        logprobs=True,
        extra_body={"return_token_ids": True},
    )
    choice = response.choices[0]
    ids = choice.model_extra["token_ids"]
    prompt = prompt_ids(generator, HELLO)
    assert response.model_extra["prompt_token_ids"] == prompt
    assert ids == generator.generate([prompt], Sampling(MAX_TOKENS, 0.0))[0].token_ids
    body = ids[:-1] if ids[-1] in generator.end_token_ids else ids
    assert choice.message.content == generator.tokenizer.decode(body, skip_special_tokens=False)
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    entries = choice.logprobs.content
    assert len(entries) == len(ids) == response.usage.completion_tokens
    assert all(entry.logprob <= 0 and entry.top_logprobs == [] for entry in entries)
    assert response.usage.prompt_tokens == len(prompt)
    assert response.usage.total_tokens == len(prompt) + len(ids)
    assert response.object == "chat.completion" and response.model == generator.name


def test_token_ids_and_logprobs_only_when_asked(url):
    body = post(url, {"messages": HELLO, "max_tokens": 4, "temperature": 0}).json()
    assert "prompt_token_ids" not in body and "token_ids" not in body["choices"][0]
    assert body["choices"][0]["logprobs"] is None


def test_n_samples_share_one_batch(url, generator, monkeypatch):
    batches = []
    real = generator.generate

    def spy(prompts, sampling):
        batches.append(len(prompts))
        return real(prompts, sampling)

    monkeypatch.setattr(generator, "generate", spy)
    body = {
        "messages": HELLO,
        "max_tokens": 8,
        "n": 2,
        "seed": 7,
        "temperature": 1.0,
        "return_token_ids": True,
    }
    response = post(url, body).json()
    assert batches == [2]
    assert [c["index"] for c in response["choices"]] == [0, 1]
    used = sum(len(c["token_ids"]) for c in response["choices"])
    assert response["usage"]["completion_tokens"] == used
    assert post(url, body).json()["choices"] == response["choices"]  # seeded: the same two samples again


def test_concurrent_requests_each_get_their_own_answer(url, generator):
    questions = ["Name a fruit.", "What is 2+2?", "Say hello.", "Name a colour."]
    messages = [[{"role": "user", "content": q}] for q in questions]
    expected = [
        generator.generate([prompt_ids(generator, m)], Sampling(8, 0.0))[0].token_ids for m in messages
    ]

    def ask(conversation):
        body = {"messages": conversation, "max_tokens": 8, "temperature": 0, "return_token_ids": True}
        return post(url, body).json()["choices"][0]["token_ids"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, messages)) == expected


def test_tool_calls_become_openai_tool_calls(generator):
    scripted = FixedReplyGenerator(generator, TOOL_REPLY)
    with serving(create_app(scripted)) as url:
        messages = [{"role": "user", "content": "List the files."}]
        body = {"messages": messages, "tools": [BASH], "return_token_ids": True}
        response = post(url, body).json()
        choice = response["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me look."
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"]["name"] == "bash"
        assert json.loads(call["function"]["arguments"]) == {"command": "ls"}
        assert choice["token_ids"] == scripted.reply_ids
        assert response["prompt_token_ids"] == prompt_ids(generator, messages, [BASH])

        # the call goes back as history (assistant tool_calls + tool message), and tool_choice none
        # means no tools offered and nothing parsed
        history = [
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "README.md"},
        ]
        body = {"messages": history, "tools": [BASH], "tool_choice": "none", "return_token_ids": True}
        response = post(url, body).json()
        choice = response["choices"][0]
        assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
        assert choice["message"]["content"] == TOOL_REPLY
        prompt = generator.tokenizer.decode(response["prompt_token_ids"])
        assert "<tools>" not in prompt and "<tool_response>\nREADME.md" in prompt and '"ls"' in prompt


def test_text_parts_and_stop_strings(generator):
    scripted = FixedReplyGenerator(generator, "Hello there. STOP and more")
    with serving(create_app(scripted, served_name="tiny")) as url:
        content = [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi."}]
        # an empty earlier reply may come back as null content; fields we don't read are ignored
        messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": None}]
        messages.append({"role": "user", "content": content})
        body = {"model": "tiny", "messages": messages, "stop": "STOP", "user": "u1", "presence_penalty": 0}
        response = post(url, body).json()
        assert response["choices"][0]["message"]["content"] == "Hello there. "
        assert "Say hi." in generator.tokenizer.decode(scripted.batches[0][0])


def test_a_chat_template_that_refuses_the_messages_is_a_400(generator):
    scripted = FixedReplyGenerator(generator, "hi")
    scripted.tokenizer = copy.deepcopy(generator.tokenizer)
    scripted.tokenizer.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    with serving(create_app(scripted)) as url:
        response = post(url, {"messages": HELLO})
    assert response.status_code == 400 and "roles must alternate" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "x"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": HELLO, "stream": True}, "stream"),
        ({"messages": HELLO, "max_tokens": -1}, "max_tokens"),
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "tool_choice": "required", "tools": [BASH]}, "tool_choice"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages.0"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_bad_requests_are_openai_style_400s(url, body, param):
    response = post(url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"].startswith(param) and error["message"]


def test_malformed_json_and_unknown_model(url, client):
    response = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", timeout=30)
    assert response.status_code == 400 and response.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-7", messages=HELLO, max_tokens=1)
    assert caught.value.code == "model_not_found"


def test_api_key(generator):
    with serving(create_app(generator, api_key="sesame")) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # liveness stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sesame"}):
            response = httpx.get(f"{url}/v1/models", headers=headers)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)
        assert [model.id for model in good.models.list()] == [generator.name]


def test_context_overflow(url, client, generator, monkeypatch):
    monkeypatch.setattr(generator, "context_tokens", 16)
    response = post(url, {"messages": HELLO, "max_tokens": 4})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=generator.name, messages=HELLO, max_tokens=4)
    assert caught.value.code == "context_length_exceeded"


def test_batcher_groups_requests_waiting_together():
    """The first request runs at once; those arriving meanwhile share the next call if they sample alike."""
    release, calls = threading.Event(), []

    def generate(prompts, sampling):
        calls.append(([p[0] for p in prompts], sampling.temperature))
        release.wait(10)
        return [Generation([p[0]], [0.0], "stop") for p in prompts]

    async def scenario():
        batcher = MicroBatcher(generate)
        greedy, hot = Sampling(4, 0.0), Sampling(4, 1.0)
        first = asyncio.ensure_future(batcher.generate([[1]], greedy))
        while not calls:
            await asyncio.sleep(0.001)
        waiting = [([[2], [3]], greedy), ([[4]], hot), ([[5]], greedy), ([[6]], Sampling(4, 0.0, seed=1))]
        rest = [asyncio.ensure_future(batcher.generate(prompts, s)) for prompts, s in waiting]
        await asyncio.sleep(0.01)  # all four are queued behind the running call
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert calls == [([1], 0.0), ([2, 3, 5], 0.0), ([4], 1.0), ([6], 0.0)]
    assert [[g.token_ids for g in gens] for gens in [first, *rest]] == [
        [[1]],
        [[2], [3]],
        [[4]],
        [[5]],
        [[6]],
    ]


def test_batcher_isolates_a_failing_request():
    def generate(prompts, sampling):
        if [666] in prompts:
            raise ValueError("bad prompt")
        return [Generation(p, [0.0], "stop") for p in prompts]

    async def scenario():
        batcher = MicroBatcher(generate)
        jobs = [batcher.generate([[1]], Sampling(2)), batcher.generate([[666]], Sampling(2))]
        return await asyncio.gather(*jobs, return_exceptions=True)

    good, bad = asyncio.run(scenario())
    assert good[0].token_ids == [1] and isinstance(bad, ValueError)


@pytest.mark.parametrize("model", ["/nonexistent/checkpoint", "{tmp}"])
def test_cli_bad_model_is_a_one_line_error(model, tmp_path):
    argv = ["--model", model.format(tmp=tmp_path), "--port", "1"]
    code = "from orchard_envs.model_server.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("orchard-serve: error:")]
    assert len(errors) == 1 and str(model.format(tmp=tmp_path)) in errors[0]
