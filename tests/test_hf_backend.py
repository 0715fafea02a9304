"""HFGenerator and HFAgent against the real default model (SmolLM2-135M-Instruct), on CPU in float32.

Float32 on CPU is deterministic run to run, and left padding changes the logits only by ~1e-5, so greedy ids
are compared exactly (these prompts have no near-ties within 16 tokens); logprobs within 1e-3. Budgets stay
at 16 new tokens or fewer so the file takes seconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_backend import Generation, HFGenerator, Sampling
from orchard_envs.agents.prompt_ledger import without_end_token
from orchard_envs.runner import _Progress

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

HI = "Say hi."
FRANCE = "What is the capital of France? Answer in one word."  # greedy: "The capital of France is Paris."
POEM = "Write a long poem about the sea and the sky and everything in between, please."


@pytest.fixture(scope="module")
def generator(hf_generator: HFGenerator) -> HFGenerator:
    return hf_generator


def prompt(generator: HFGenerator, question: str) -> list[int]:
    text = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(generator.tokenizer.encode(text, add_special_tokens=False))


def forward_logprobs(generator: HFGenerator, prompt_ids: list[int], ids: list[int]) -> Any:
    """log p(ids[i] | prompt + ids[:i]) from one plain forward pass, no cache, no padding."""
    with torch.inference_mode():
        logits = generator.model(torch.tensor([prompt_ids + ids])).logits[0].float()
    steps = logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(ids)].log_softmax(-1)
    return steps, steps[torch.arange(len(ids)), torch.tensor(ids)]


def test_greedy_is_deterministic(generator: HFGenerator) -> None:
    ids = prompt(generator, HI)
    first, second = (generator.generate([ids], Sampling(16))[0] for _ in range(2))
    assert first.token_ids == second.token_ids and first.logprobs == second.logprobs
    assert first.prompt_tokens == len(ids)


def test_batch_equals_each_prompt_alone(generator: HFGenerator) -> None:
    """Left padding must not leak into the shorter rows (mask and positions), nor a finished row's padding
    into its ids: FRANCE ends after 8 tokens while the others run out of budget."""
    prompts = [prompt(generator, question) for question in (HI, FRANCE, POEM)]
    assert len({len(ids) for ids in prompts}) == 3
    batch = generator.generate(prompts, Sampling(16))
    for ids, together in zip(prompts, batch, strict=True):
        alone = generator.generate([ids], Sampling(16))[0]
        assert together.token_ids == alone.token_ids
        assert together.finish_reason == alone.finish_reason
        assert together.prompt_tokens == len(ids)
        assert together.logprobs == pytest.approx(alone.logprobs, abs=1e-3)
    assert [g.finish_reason for g in batch] == ["length", "stop", "length"]


@pytest.mark.parametrize(
    "sampling", [Sampling(12), Sampling(12, temperature=0.7, top_p=0.9, seed=3)], ids=["greedy", "sampled"]
)
def test_logprobs_are_the_models_own(generator: HFGenerator, sampling: Sampling) -> None:
    """One logprob per sampled id, under the model's untempered distribution (whatever the sampling
    settings), equal to a separate forward pass over prompt + sampled ids; greedy picks the argmax."""
    prompts = [prompt(generator, question) for question in (POEM, HI)]  # HI is left-padded
    for ids, generation in zip(prompts, generator.generate(prompts, sampling), strict=True):
        assert len(generation.logprobs) == len(generation.token_ids) > 0
        assert all(value <= 0 for value in generation.logprobs)
        steps, chosen = forward_logprobs(generator, ids, generation.token_ids)
        assert generation.logprobs == pytest.approx(chosen.tolist(), abs=1e-3)
        if sampling.temperature == 0:
            assert steps.argmax(-1).tolist() == generation.token_ids


def test_finish_reasons(generator: HFGenerator) -> None:
    cut = generator.generate([prompt(generator, HI)], Sampling(4))[0]
    assert cut.finish_reason == "length" and len(cut.token_ids) == 4
    assert not set(cut.token_ids) & generator.end_token_ids
    done = generator.generate([prompt(generator, FRANCE)], Sampling(16))[0]
    assert done.finish_reason == "stop"
    assert done.token_ids[-1] in generator.end_token_ids  # the end token is kept, as sampled
    assert not set(done.token_ids[:-1]) & generator.end_token_ids
    assert generator.tokenizer.decode(done.token_ids[:-1]).strip() == "The capital of France is Paris."


def test_stop_strings_cut_at_the_token_that_completes_them(generator: HFGenerator) -> None:
    ids = prompt(generator, HI)
    full = generator.generate([ids], Sampling(16))[0]
    decode = generator.tokenizer.decode
    assert decode(full.token_ids).startswith("Hello there! I'm")
    # "here" ends inside the token " there"; "I'm" spans two tokens. The earliest completion wins.
    for stops in [("here",), ("I'm",), ("I'm", "here"), ("!",)]:
        length = next(k for k in range(1, 17) if any(stop in decode(full.token_ids[:k]) for stop in stops))
        stopped = generator.generate([ids], Sampling(16, stop=stops))[0]
        assert stopped.token_ids == full.token_ids[:length], stops
        assert stopped.logprobs == pytest.approx(full.logprobs[:length], abs=1e-5)
        assert stopped.finish_reason == "stop"
    assert generator.generate([ids], Sampling(2, stop=("I'm",)))[0].finish_reason == "length"
    absent = generator.generate([ids], Sampling(16, stop=("zebra",)))[0]
    assert absent.token_ids == full.token_ids and absent.finish_reason == "length"


def test_seeded_sampling_is_reproducible(generator: HFGenerator) -> None:
    ids = prompt(generator, POEM)

    def draw(seed: int) -> Generation:
        return generator.generate([ids], Sampling(12, temperature=1.0, seed=seed))[0]

    assert draw(7).token_ids == draw(7).token_ids
    assert len({tuple(draw(seed).token_ids) for seed in (1, 2, 3)}) > 1  # it does sample


def test_context_overflow(generator: HFGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = prompt(generator, POEM)
    monkeypatch.setattr(generator, "context_tokens", len(ids))
    with pytest.raises(ContextOverflow):
        generator.generate([ids], Sampling(4))
    with pytest.raises(ContextOverflow):  # one prompt too long fails the batch
        generator.generate([ids[:5], ids], Sampling(4))
    monkeypatch.setattr(generator, "context_tokens", len(ids) + 2)
    fits = generator.generate([ids], Sampling(16))[0]  # the budget shrinks to what the window has left
    assert len(fits.token_ids) == 2 and fits.finish_reason == "length"


def test_agent_turns_extend_each_other(generator: HFGenerator) -> None:

    agent = HFAgent(generator=generator, max_new_tokens=8)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": FRANCE},
    ]
    state = _Progress()
    first = agent.act(list(messages), [])
    state.record(first, messages)
    messages.append({"role": "user", "content": "And of Italy?"})
    second = agent.act(list(messages), [])
    state.record(second, messages)
    for turn in (first, second):
        assert turn.token_ids and turn.prompt_token_ids and turn.logprobs
        usage = {"prompt_tokens": len(turn.prompt_token_ids), "completion_tokens": len(turn.token_ids)}
        assert turn.usage == usage
        assert len(turn.logprobs) == len(turn.token_ids)
    text = agent.chat.render(messages[:2], [], add_generation_prompt=True)
    assert first.prompt_token_ids == list(generator.tokenizer.encode(text, add_special_tokens=False))
    head = first.prompt_token_ids + first.token_ids
    assert second.prompt_token_ids[: len(head)] == head  # SmolLM2's template keeps history verbatim
    assert [record.extends_previous for record in state.turns] == [None, True]
    # what the model was conditioned on reads as the template's rendering of the reply it sampled
    sampled = generator.tokenizer.decode(without_end_token(first.token_ids, generator.end_token_ids))
    conversation = [*messages[:2], {**messages[2], "raw_text": sampled}, messages[3]]
    rendered = agent.chat.render(conversation, [], add_generation_prompt=True)
    assert generator.tokenizer.decode(second.prompt_token_ids, skip_special_tokens=False) == rendered


def test_a_checkpoints_own_generation_config_does_not_change_what_is_sampled(generator, tmp_path):
    # regression: generate() filled unset fields from the checkpoint's generation_config, so a repetition
    # penalty there made "greedy" pick tokens other than the argmax of the distribution we record
    import json
    import shutil

    from orchard_envs.agents.hf_models import resolve_model

    source = resolve_model("SmolLM2-135M-Instruct")
    checkpoint = tmp_path / "penalised"
    shutil.copytree(source, checkpoint, ignore=shutil.ignore_patterns("*.safetensors"))
    (checkpoint / "model.safetensors").symlink_to(f"{source}/model.safetensors")
    config = json.loads((checkpoint / "generation_config.json").read_text())
    config.update(repetition_penalty=1.5, no_repeat_ngram_size=2, top_k=5)
    (checkpoint / "generation_config.json").write_text(json.dumps(config))
    penalised = HFGenerator(str(checkpoint), device="cpu")
    assert penalised.checkpoint_generation_config.repetition_penalty == 1.5
    ids = prompt(penalised, "Repeat after me: one one one one one one one one.")
    (out,) = penalised.generate([ids], Sampling(max_new_tokens=16))
    steps, _ = forward_logprobs(penalised, ids, out.token_ids)
    assert steps.argmax(-1).tolist() == out.token_ids
