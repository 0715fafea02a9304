"""The rollout engine's prefix cache on the tiny random Llama of test_rollout_engine: a turn that extends a
finished one prefills only its new tokens and samples what a fresh prefill samples; the cache empties
when the weights change; the trainer's colocated generator has none.

Ids are compared exactly and logprobs to 1e-5: reused keys and values come from another pass (another
length), which moves these float32 logits by ~1e-7 (test_rollout_engine's measure); a flip of an id would
need two logits that close, and with these seeds there are none."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import rl_toy
from test_rollout_engine import END, POISON, _Tokenizer, tiny_model

from orchard_envs.agents.hf_backend import HFGenerator, Sampling
from orchard_envs.agents.rollout.batching import BatchingEngine
from orchard_envs.agents.rollout.prefix_cache import MIN_REUSE, PrefixCache

torch = pytest.importorskip("torch")


def engines(seed: int = 0) -> tuple[BatchingEngine, BatchingEngine]:
    """(with a prefix cache, without one), over the same weights."""
    torch.set_num_threads(1)
    generator = HFGenerator.from_loaded(tiny_model(seed), _Tokenizer(), {END}, "tiny")
    return BatchingEngine(generator, prefix_cache_bytes=64 << 20), generator.engine


def tokens(n: int, seed: int) -> list[int]:
    draw = random.Random(seed)
    return [draw.randrange(2, POISON) for _ in range(n)]


def assert_same(a, b) -> None:
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    for x, y in zip(a, b, strict=True):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)


@pytest.mark.parametrize("sampling", [Sampling(8), Sampling(8, temperature=1.0, seed=3)])
def test_the_next_turn_prefills_only_its_new_tokens_and_samples_the_same(sampling):
    cached, plain = engines()
    first = tokens(70, seed=1)
    reply = cached.generate([first], sampling)[0]
    kept = first + reply.token_ids[:-1]  # the last sampled id was never fed
    assert len(cached.prefix) == 1
    second = first + reply.token_ids + tokens(12, seed=2)  # the reply, then the observation
    assert_same(cached.generate([second], sampling), plain.generate([second], sampling))
    assert cached.prefix.stats["hits"] == 1 and cached.prefix.stats["reused_tokens"] == len(kept)


def test_cached_rows_join_a_running_batch_with_fresh_ones():
    cached, plain = engines()
    starts = [tokens(66 + i, seed=10 + i) for i in range(4)]
    replies = [g.token_ids for g in cached.generate(starts, Sampling(6))]
    nexts = [s + r + tokens(9, seed=20 + i) for i, (s, r) in enumerate(zip(starts, replies, strict=True))]
    nexts.append(tokens(80, seed=30))  # nothing cached for this one
    with ThreadPoolExecutor(len(nexts)) as pool:
        got = list(pool.map(lambda p: cached.generate([p], Sampling(10))[0], nexts))
    assert_same(got, [plain.generate([p], Sampling(10))[0] for p in nexts])
    assert cached.prefix.stats["hits"] >= 4


def test_rows_that_join_together_prefill_their_shared_start_once():
    cached, plain = engines()
    system = tokens(90, seed=40)  # a suite's system prompt and tools
    prompts = [[*system, 2 + i, *tokens(5 + i, seed=50 + i)] for i in range(3)]
    got = cached.generate(prompts, Sampling(6))  # one call: its rows join together
    assert_same(got, plain.generate(prompts, Sampling(6)))
    assert cached.prefix.stats["hits"] == 3 and cached.prefix.stats["reused_tokens"] == 3 * len(system)


def test_new_weights_empty_the_cache():
    cached, _ = engines(seed=0)
    other = tiny_model(seed=5)
    first = tokens(70, seed=1)
    cached.generate([first], Sampling(4))
    assert len(cached.prefix) == 1
    cached.load_weights(other.state_dict())
    assert len(cached.prefix) == 0
    reference = HFGenerator.from_loaded(other, _Tokenizer(), {END}, "other")
    assert_same(cached.generate([first], Sampling(4)), reference.generate([first], Sampling(4)))


def _layers(length: int, fill: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((1, 2, length, 4), fill), torch.full((1, 2, length, 4), fill)) for _ in range(2)]


def test_the_cache_keeps_the_longest_sequences_within_its_budget():
    per_token = 2 * 2 * (2 * 4 * 4)  # layers x (keys, values) x heads x dim x float32 bytes
    cache = PrefixCache(max_bytes=per_token * 200)
    base = list(range(100, 100 + MIN_REUSE))
    cache.store(base[: MIN_REUSE - 1], _layers(MIN_REUSE - 1))  # too short to be worth keeping
    assert len(cache) == 0
    cache.store(base, _layers(len(base)))
    cache.store([*base, 1, 2, 3], _layers(len(base) + 3))  # extends the first: replaces it
    assert len(cache) == 1
    reused, layers = cache.lookup([*base, 1, 2, 3])
    assert reused == len(base) + 2 and layers[0][0].shape[2] == reused  # one token left to prefill
    assert cache.lookup(base[:10] + [0] * 80) == (0, None)  # shares too little
    other = list(range(500, 500 + 150))
    cache.store(other, _layers(len(other)))  # over budget with the first: the older one goes
    assert len(cache) == 1 and cache.lookup([*base, 9])[1] is None and cache.lookup([*other, 9])[0] == 150
    assert cache.bytes == per_token * 150


def test_only_generators_loaded_from_a_checkpoint_keep_prefixes(tmp_path):
    folder = rl_toy.build_tiny_model(tmp_path / "toy")
    assert HFGenerator(str(folder), device="cpu").engine.prefix is not None
    assert HFGenerator(str(folder), device="cpu", prefix_cache_mib=0).engine.prefix is None
    trained = HFGenerator(str(folder), device="cpu").model
    assert HFGenerator.from_loaded(trained, _Tokenizer(), {END}, "policy").engine.prefix is None


def test_a_failed_decode_step_with_a_row_done_at_prefill_leaves_the_engine_working(monkeypatch):
    """A row that finished at its prefill and a decode step that then fails in the same round: the row's
    request is answered with the failure, nothing is kept from the dropped cache, the engine goes on."""
    import threading

    cached, plain = engines()
    model, original = cached.owner.model, cached.owner.model.forward
    hold, held, decodes = threading.Event(), threading.Event(), {"n": 0}

    def gated(*args, **kwargs):
        if kwargs["input_ids"].shape[1] > 1 and not held.is_set():
            held.set()
            hold.wait(30)  # the first prefill waits, so the next two requests join in one round
        elif kwargs["input_ids"].shape == (3, 1):  # the first step with all three rows
            decodes["n"] += 1
            if decodes["n"] == 1:
                raise RuntimeError("device fault")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", gated)
    prompts = [tokens(70, seed=60), tokens(75, seed=61), tokens(80, seed=62)]
    budgets = [Sampling(8), Sampling(8), Sampling(1)]  # the last one is done at its prefill
    outcomes: list[object] = [None] * 3

    def call(index: int) -> None:
        try:
            outcomes[index] = cached.generate([prompts[index]], budgets[index])
        except RuntimeError as exc:
            outcomes[index] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert held.wait(30)
    others = [threading.Thread(target=call, args=(i,)) for i in (1, 2)]
    for thread in others:
        thread.start()
    while len(cached._waiting) < 2:
        threading.Event().wait(0.01)
    hold.set()
    for thread in [first, *others]:
        thread.join(60)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes), outcomes
    assert len(cached.prefix) == 0
    after = threading.Thread(target=call, args=(1,))
    after.start()
    after.join(60)
    assert not after.is_alive(), "the engine stopped answering"
    assert_same(outcomes[1], plain.generate([prompts[1]], Sampling(8)))
