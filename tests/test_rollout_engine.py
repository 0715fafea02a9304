"""The batching rollout engine on a tiny random Llama (float32, CPU): batched = alone, seeds per row,
failures per request, weights swapped between batches.

Exact id equality between a batched and an unbatched run is what the engine promises up to float noise:
padding and batch shape change the logits by ~1e-7 here, and a flip needs two logits that close; with
these seeds none are (a failure would name the prompt). Seeded draws use one uniform per token from the
row's own generator, so they are compared exactly as well.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf_backend import HFGenerator, Sampling
from orchard_envs.agents.rollout import RolloutEngine, make_engine
from orchard_envs.agents.rollout.sampler import RowSampler, sample_rows
from orchard_envs.errors import ConfigError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

END = 0
VOCAB = 256
POISON = 255  # a token id the poisoned forward refuses during prefill


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config).eval()


class _Tokenizer:
    pad_token_id = 1

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids)


@pytest.fixture()
def generator() -> HFGenerator:
    torch.set_num_threads(1)
    return HFGenerator.from_loaded(tiny_model(), _Tokenizer(), {END}, "tiny")


PROMPTS = [[5, 6, 7], [9] * 11, [3, 4, 10, 11, 12, 13, 20], [40, 41]]
BUDGETS = [12, 5, 9, 16]


def alone(generator: HFGenerator, prompt, sampling):
    return generator.generate_locked([prompt], sampling)[0]


def test_it_is_a_rollout_engine_and_batches(generator):
    assert isinstance(generator, RolloutEngine) and generator.engine is not None
    with pytest.raises(ConfigError, match="known: hf, vllm, server"):
        make_engine("nope")


def test_concurrent_greedy_equals_each_prompt_alone(generator):
    """Rows of different lengths and budgets join and leave the running batch; each row's ids equal the
    pre-engine path's (`model.generate`, one prompt at a time), logprobs within float noise."""
    samplings = [Sampling(budget) for budget in BUDGETS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        batched = list(pool.map(lambda p, s: generator.generate([p], s)[0], PROMPTS, samplings))
    for prompt, sampling, got in zip(PROMPTS, samplings, batched, strict=True):
        want = alone(generator, prompt, sampling)
        assert got.token_ids == want.token_ids, prompt
        assert got.finish_reason == want.finish_reason and got.prompt_tokens == len(prompt)
        assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)
    assert generator.engine.stats["row_steps"] > generator.engine.stats["decode_steps"]  # rows shared steps


def test_a_row_joining_a_running_batch_is_unchanged(generator):
    """A request arriving while another is mid-generation joins at a step boundary (its cache is left-padded
    and merged); both results equal their solo runs."""
    long_one = generator.generate([PROMPTS[1]], Sampling(40))[0]
    engine = generator.engine
    results = {}
    first = threading.Thread(
        target=lambda: results.update(a=generator.generate([PROMPTS[1]], Sampling(40))[0])
    )
    first.start()
    while engine.stats["decode_steps"] < 3 and first.is_alive():
        time.sleep(0.001)
    results["b"] = generator.generate([PROMPTS[2]], Sampling(6))[0]
    first.join()
    assert results["a"].token_ids == long_one.token_ids
    assert results["b"].token_ids == alone(generator, PROMPTS[2], Sampling(6)).token_ids


def draws(generator, seed, prompt=PROMPTS[0], mates=0):
    """One seeded temperature-1 row, with `mates` other seeded rows submitted at the same time."""
    sampling = Sampling(12, temperature=1.0, seed=seed)
    jobs = [(prompt, sampling)] + [(PROMPTS[i % 4], Sampling(8, 1.0, seed=100 + i)) for i in range(mates)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda job: generator.generate([job[0]], job[1])[0], jobs))
    return results[0].token_ids


def test_seeds_are_per_row_and_reproducible(generator):
    solo = draws(generator, seed=7)
    assert draws(generator, seed=7) == solo  # a rerun reproduces
    assert draws(generator, seed=7, mates=3) == solo  # batch mates do not change this row's draws
    assert len({tuple(draws(generator, seed)) for seed in (1, 2, 3)}) == 3  # k trials differ


def test_n_rows_of_one_seeded_request_differ_and_row_zero_is_the_seed(generator):
    sampling = Sampling(12, temperature=1.0, seed=5)
    rows = generator.generate([PROMPTS[0]] * 3, sampling)
    assert len({tuple(row.token_ids) for row in rows}) == 3
    assert rows[0].token_ids == generator.generate([PROMPTS[0]], sampling)[0].token_ids


def test_top_p_keeps_the_nucleus_and_logprobs_stay_untempered():
    logits = torch.tensor([[3.0, 2.0, 1.0, -5.0]])
    probs = logits.softmax(-1)[0]  # 0.665, 0.245, 0.090, ...
    seen = set()
    for seed in range(200):
        ids, logprobs = sample_rows(logits, [RowSampler(1.0, 0.8, seed)])
        seen.add(ids[0])
        assert logprobs[0] == pytest.approx(float(probs[ids[0]].log()), abs=1e-6)
    assert seen == {0, 1}  # 0.665 < 0.8, so the second token is in the nucleus; the third is not
    assert sample_rows(logits, [RowSampler(0.0, 1.0, 0)])[0] == [0]  # greedy


def hold_and_release(engine, submit):
    """Submit several requests while admission is paused, so they join in one prefill group."""
    with engine._cond:
        engine._paused = True
    with ThreadPoolExecutor(len(submit)) as pool:
        futures = [pool.submit(job) for job in submit]
        while len(engine._waiting) < len(submit):
            time.sleep(0.001)
        with engine._cond:
            engine._paused = False
            engine._cond.notify_all()
        return [f.exception() or f.result() for f in futures]


def test_a_failing_request_fails_alone(generator, monkeypatch):
    """A prefill that fails (here: a forward that refuses token POISON) is retried request by request, so
    only the request that holds it fails; its group mates get the ids they would get alone."""
    model = generator.model
    original = model.forward

    def poisoned(*args, **kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1 and (ids == POISON).any():
            raise RuntimeError("poisoned prompt")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", poisoned)
    good = [PROMPTS[0], PROMPTS[3]]
    jobs = [lambda p=p: generator.generate([p], Sampling(6))[0] for p in good]
    jobs.insert(1, lambda: generator.generate([[7, POISON, 8]], Sampling(6)))
    first, bad, second = hold_and_release(generator.engine, jobs)
    assert isinstance(bad, RuntimeError) and "poisoned" in str(bad)
    monkeypatch.setattr(model, "forward", original)
    assert first.token_ids == alone(generator, good[0], Sampling(6)).token_ids
    assert second.token_ids == alone(generator, good[1], Sampling(6)).token_ids
    assert generator.engine._inflight == 0


def test_bad_prompts_fail_their_own_call(generator):
    """Validated before joining: an overflowing or out-of-vocabulary prompt fails its call, not its mates."""
    generator.context_tokens = 10
    jobs = [
        lambda: generator.generate([[5] * 10], Sampling(4)),  # fills the window
        lambda: generator.generate([[VOCAB + 3]], Sampling(4)),  # outside the vocabulary
        lambda: generator.generate([[5] * 6], Sampling(8))[0],  # fits: 4 tokens of room
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
    overflow, foreign, fits = (f.exception() or f.result() for f in futures)
    assert isinstance(overflow, ContextOverflow) and "context window is 10" in str(overflow)
    assert isinstance(foreign, ValueError) and "vocabulary" in str(foreign)
    assert len(fits.token_ids) == 4 and fits.finish_reason == "length"


def test_a_failed_decode_step_fails_its_batch_and_the_engine_carries_on(generator, monkeypatch):
    model, original = generator.model, generator.model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if kwargs["input_ids"].shape[1] == 1:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("device fault")
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", flaky)
    with pytest.raises(RuntimeError, match="device fault"):
        generator.generate([PROMPTS[0]], Sampling(8))
    again = generator.generate([PROMPTS[0]], Sampling(8))[0]
    assert again.token_ids == alone(generator, PROMPTS[0], Sampling(8)).token_ids


def test_load_weights_from_a_state_dict_or_a_checkpoint(generator, tmp_path):
    other = tiny_model(seed=1)
    want = HFGenerator.from_loaded(other, _Tokenizer(), {END}, "other").generate([PROMPTS[0]], Sampling(10))
    before = generator.generate([PROMPTS[0]], Sampling(10))[0]
    assert before.token_ids != want[0].token_ids and before.extra["weights_version"] == 0
    assert generator.load_weights(other.state_dict()) == 1
    after = generator.generate([PROMPTS[0]], Sampling(10))[0]
    assert after.token_ids == want[0].token_ids and after.extra["weights_version"] == 1
    tiny_model(seed=0).save_pretrained(tmp_path / "ckpt")
    assert generator.load_weights(str(tmp_path / "ckpt")) == 2
    assert generator.generate([PROMPTS[0]], Sampling(10))[0].token_ids == before.token_ids


def test_load_weights_refuses_a_partial_or_foreign_update(generator):
    state = tiny_model(seed=1).state_dict()
    weight = generator.model.lm_head.weight.clone()
    with pytest.raises(ConfigError, match="the weights lack 20"):
        generator.load_weights({"model.embed_tokens.weight": state["model.embed_tokens.weight"]})
    with pytest.raises(ConfigError, match="the model lacks"):
        generator.load_weights({**state, "extra.weight": torch.zeros(1)})
    bad = {**state, "lm_head.weight": torch.zeros(3, 3)}
    with pytest.raises(ConfigError, match="shape"):
        generator.load_weights(bad)
    assert torch.equal(generator.model.lm_head.weight, weight)  # nothing was applied
