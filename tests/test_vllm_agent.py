"""The `vllm` agent and `VLLMEngine`: our code around vLLM, against a stand-in `vllm` in `sys.modules`.

What is tested is ours: clones share one engine and take turns calling it (a `vllm.LLM` is not safe to
call from several threads), each request carries the draw seed of (run seed, task, trial, turn) and the
agent's sampling options, and the engine's reply becomes a token-exact turn. The stand-in is not vLLM:
a real engine needs CUDA and the `vllm` extra, which this project's machines lack, so the last test (the
real engine) skips here; the docs say vLLM is untested on real hardware.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from types import SimpleNamespace
from typing import Any

import pytest

from orchard_envs.agents import get_agent
from orchard_envs.agents.base import AssistantTurn, ContextOverflow, EpisodeContext
from orchard_envs.agents.hf_backend import Sampling
from orchard_envs.agents.rollout import make_engine
from orchard_envs.agents.rollout.sampler import row_seed
from orchard_envs.agents.sampling_seeds import draw_seed
from orchard_envs.agents.vllm_agent import VLLMAgent
from orchard_envs.errors import ConfigError

HELLO = [{"role": "user", "content": "Say hello."}]
REPLY = "hello"


class SamplingParams:
    """Keeps the options it was built with, as the real one does (as attributes)."""

    def __init__(self, **options: Any) -> None:
        self.options = options


class FakeModel:
    """Records the weights it was given, as vLLM's models' `load_weights(weights=iterable)` takes them."""

    def __init__(self) -> None:
        self.loaded: list[dict[str, Any]] = []

    def load_weights(self, weights: Any) -> None:
        self.loaded.append(dict(weights))


class FakeLLM:
    """Answers every prompt with REPLY and an end token; counts how many `generate` calls overlap."""

    built: list[FakeLLM] = []
    window = 4096

    def __init__(self, model: str, seed: int = 0, **options: Any) -> None:
        from transformers import AutoTokenizer

        self.model, self.seed, self.options = model, seed, options
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model_runner = SimpleNamespace(model=FakeModel())
        self.llm_engine = SimpleNamespace(
            model_config=SimpleNamespace(max_model_len=self.window),
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=self.model_runner)),
        )
        self.gate: threading.Event | None = None  # when set up, the next call waits for it
        self.fail_next = False
        self.calls: list[tuple[list[Any], SamplingParams, bool]] = []
        self.inside = self.most_inside = 0
        self._count = threading.Lock()  # guards the counters only, never the call itself
        FakeLLM.built.append(self)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[Any], params: list[SamplingParams], use_tqdm: bool = True) -> list[Any]:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            # Long enough that, without the agent's lock, a second thread released by the barrier below is
            # inside at the same time; with the lock the count is 1 however long this takes.
            time.sleep(0.02)
            self.calls.append((prompts, params, use_tqdm))
            if self.gate is not None:
                gate, self.gate = self.gate, None
                gate.wait()
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("CUDA out of memory (stand-in)")
            ids = [*self.tokenizer.encode(REPLY, add_special_tokens=False), self.tokenizer.eos_token_id]
            logprobs = [{token: SimpleNamespace(logprob=-0.5)} for token in ids]
            output = SimpleNamespace(token_ids=ids, logprobs=logprobs, finish_reason="stop")
            return [SimpleNamespace(outputs=[output]) for _ in prompts]
        finally:
            with self._count:
                self.inside -= 1


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}  # type: ignore[attr-defined]
    module.LLM, module.SamplingParams, module.inputs = FakeLLM, SamplingParams, inputs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    monkeypatch.setattr(FakeLLM, "built", [])
    return module


def context_of(task_id: str, trial: int) -> EpisodeContext:
    """What the runner hands a model agent for one (task, trial) job (no hidden task)."""
    return EpisodeContext("orchard/SWE-v0", None, [], AssistantTurn, task_id=task_id, trial=trial)


def test_clones_share_one_engine_which_never_calls_vllm_from_two_threads(fake_vllm, tiny_model):
    agent = get_agent("vllm", model=tiny_model, max_new_tokens=5)
    clones = [agent.clone() for _ in range(4)]
    (engine,) = FakeLLM.built  # one engine for all: clones never load the model again
    assert all(clone.generator.llm is engine for clone in clones)
    ready = threading.Barrier(len(clones))
    failures: list[BaseException] = []

    def episode(clone: VLLMAgent, trial: int) -> None:
        try:
            clone.start(context_of("t", trial))
            ready.wait()
            for _ in range(3):
                assert clone.act(HELLO, []).content == REPLY
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=episode, args=(c, i)) for i, c in enumerate(clones)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert sum(len(prompts) for prompts, _, _ in engine.calls) == 12  # every turn, some of them batched
    assert engine.most_inside == 1  # serialised: never two calls at once


def test_each_request_carries_its_draw_seed_and_the_sampling_options(fake_vllm, tiny_model):
    agent = VLLMAgent(tiny_model, seed=3, temperature=0.7, top_p=0.9, max_new_tokens=5, enforce_eager=True)
    (engine,) = FakeLLM.built
    assert (engine.model, engine.seed, engine.options) == (tiny_model, 3, {"enforce_eager": True})
    assert agent.sampling == {"max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    agent.start(context_of("parse-1", 2))
    first = agent.act(HELLO, [])
    second = agent.act([*HELLO, first.message(), {"role": "user", "content": "Again."}], [])
    options = [params.options for _, (params,), _ in engine.calls]
    common = {"max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "logprobs": 0}
    common |= {"stop": None, "include_stop_str_in_output": True}
    assert options == [{**common, "seed": draw_seed(3, "parse-1", 2, turn)} for turn in (0, 1)]
    (prompt,), (_,), use_tqdm = engine.calls[0]
    assert prompt == {"prompt_token_ids": first.prompt_token_ids} and use_tqdm is False
    assert first.token_ids == [
        *engine.tokenizer.encode(REPLY, add_special_tokens=False),
        engine.tokenizer.eos_token_id,
    ]
    assert first.logprobs == [-0.5] * len(first.token_ids) and first.finish_reason == "stop"
    assert second.prompt_token_ids[: len(first.prompt_token_ids)] == first.prompt_token_ids
    agent.start(context_of("parse-1", 3))  # the next trial of the task: another draw
    agent.act(HELLO, [])
    assert engine.calls[-1][1][0].options["seed"] == draw_seed(3, "parse-1", 3, 0)


def test_unseeded_sampling_sends_no_seed(fake_vllm, tiny_model):
    agent = VLLMAgent(tiny_model, max_new_tokens=5)
    agent.act(HELLO, [])
    (engine,) = FakeLLM.built
    assert engine.calls[0][1][0].options["seed"] is None and "seed" not in agent.sampling


def test_a_prompt_beyond_the_window_is_context_overflow(fake_vllm, tiny_model, monkeypatch):
    monkeypatch.setattr(FakeLLM, "window", 8)
    agent = VLLMAgent(tiny_model, max_new_tokens=5)
    with pytest.raises(ContextOverflow, match="the window is 8"):
        agent.act(HELLO, [])
    assert FakeLLM.built[0].calls == []


def test_the_real_engine_samples_a_token_exact_turn():
    """Only where vLLM and CUDA are installed (never on this project's machines so far)."""
    pytest.importorskip("vllm", reason="the vllm extra is not installed (it needs CUDA)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM is installed but there is no CUDA device")
    agent = get_agent("vllm", max_new_tokens=8, seed=1, temperature=1.0, gpu_memory_utilization=0.3)
    agent.start(context_of("t", 0))
    turn = agent.act(HELLO, [])
    assert turn.token_ids and turn.logprobs is not None and len(turn.logprobs) == len(turn.token_ids)


def test_concurrent_calls_queued_while_the_engine_is_busy_go_out_as_one_batch(fake_vllm, tiny_model):
    engine = make_engine("vllm", tiny_model)
    llm = engine.llm
    llm.gate = gate = threading.Event()
    sampling = Sampling(max_new_tokens=5)
    results: list[Any] = []
    prompts = ([1, 2], [3], [4, 5], [6])
    threads = [
        threading.Thread(target=lambda p=p: results.append(engine.generate([p], sampling)), daemon=True)
        for p in prompts
    ]
    threads[0].start()
    while not llm.calls:  # the first call is inside vLLM (held at the gate)
        time.sleep(0.005)
    for thread in threads[1:]:
        thread.start()
    while len(engine._queued) < 3:  # the other three wait in the queue
        time.sleep(0.005)
    gate.set()
    for thread in threads:
        thread.join()
    sizes = [len(prompts) for prompts, _, _ in llm.calls]
    assert sizes == [1, 3] and len(results) == 4  # one round for the three that queued meanwhile
    assert sorted(p["prompt_token_ids"] for p in llm.calls[1][0]) == [[3], [4, 5], [6]]


def test_the_rows_of_one_call_draw_with_their_own_seeds(fake_vllm, tiny_model):
    engine = make_engine("vllm", tiny_model)
    engine.generate([[1], [1], [1]], Sampling(max_new_tokens=5, temperature=1.0, seed=5))
    seeds = [params.options["seed"] for params in engine.llm.calls[0][1]]
    assert seeds == [row_seed(5, 0), row_seed(5, 1), row_seed(5, 2)] and len(set(seeds)) == 3


def test_a_failing_batch_fails_its_callers_and_the_engine_carries_on(fake_vllm, tiny_model):
    engine = make_engine("vllm", tiny_model)
    engine.llm.fail_next = True
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.generate([[1, 2]], Sampling(max_new_tokens=5))
    (generation,) = engine.generate([[1, 2]], Sampling(max_new_tokens=5))
    assert generation.finish_reason == "stop" and generation.prompt_tokens == 2


def test_load_weights_goes_to_the_model_inside_vllm_and_bumps_the_version(fake_vllm, tiny_model):
    import torch

    engine = make_engine("vllm", tiny_model)
    assert engine.load_weights({"lm_head.weight": torch.zeros(2, 2)}) == 1
    assert engine.load_weights(tiny_model) == 2  # a save_pretrained folder: its tensors, read on the CPU
    first, second = engine.llm.model_runner.model.loaded
    assert list(first) == ["lm_head.weight"] and "model.embed_tokens.weight" in second
    (generation,) = engine.generate([[1]], Sampling(max_new_tokens=5))
    assert generation.extra == {"weights_version": 2}
    engine.llm.model_runner.model = None  # a vLLM version that keeps its model elsewhere
    with pytest.raises(ConfigError, match="engine `server`"):
        engine.load_weights(tiny_model)


def test_a_missing_vllm_is_a_config_error_that_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(ConfigError, match=r"orchard-envs\[vllm\].*engine `server`"):
        make_engine("vllm")


def test_the_grpo_trainer_sends_vllm_the_weights_after_every_update(fake_vllm, tmp_path, monkeypatch):
    """`orchard-train grpo --engine vllm`: the rollouts come from the (stand-in) vLLM, which gets the
    starting weights and then the trained ones after every update; the exported checkpoint is what it
    ends on. The stand-in answers a colour drawn from each request's seed, so groups have variance."""
    import random

    import rl_toy
    from test_grpo_train import toy_config

    from orchard_envs.trainers.grpo import train
    from orchard_envs.trainers.metrics import read_metrics

    def colour_reply(self, prompts, params, use_tqdm=True):
        replies = []
        for param in params:
            word = random.Random(param.options.get("seed")).choice(rl_toy.COLOURS)
            ids = [*self.tokenizer.encode(word, add_special_tokens=False), self.tokenizer.eos_token_id]
            logprobs = [{token: SimpleNamespace(logprob=-1.0)} for token in ids]
            output = SimpleNamespace(token_ids=ids, logprobs=logprobs, finish_reason="stop")
            replies.append(SimpleNamespace(outputs=[output]))
        return replies

    def copy_weights(self, weights):  # as vLLM does: copied into its own tensors, not shared with training
        self.loaded.append({name: tensor.detach().clone() for name, tensor in weights})

    monkeypatch.setattr(FakeLLM, "generate", colour_reply)
    monkeypatch.setattr(FakeModel, "load_weights", copy_weights)
    rl_toy.register()
    model = rl_toy.build_tiny_model(tmp_path / "model")
    result = train(toy_config(model, tmp_path / "out", steps=3, engine="vllm"))
    (llm,) = FakeLLM.built
    assert llm.options["gpu_memory_utilization"] == 0.3
    updates = sum(not row.get("skipped") for row in read_metrics(result.out))
    assert updates >= 1
    loaded = llm.model_runner.model.loaded
    assert len(loaded) == 1 + updates  # the start, then after every update
    trained = result.model.state_dict()
    assert set(loaded[-1]) == set(trained)
    assert all((loaded[-1][name] == value).all() for name, value in trained.items())
    assert not all((loaded[0][name] == value).all() for name, value in trained.items())  # it did train
    with pytest.raises(ValueError, match="without --lora"):
        toy_config(model, tmp_path, engine="vllm", lora=True)
