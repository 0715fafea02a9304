"""Training examples from episodes: the loss mask covers exactly the assistant tokens, for every template."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError
from orchard_envs.trainers.examples import EmptyMaskError, Tokenizer, episode_examples
from tests.chat_templates import TEMPLATES, end_token_id, other_end_token_ids, tokenizer_for
from tests.helpers import BASH_TOOLS, bash_call, training_episode


def episode(messages: list[dict], *, tools=BASH_TOOLS, turns=(), resolved=True) -> Episode:
    return training_episode(messages, tools=tools, turns=turns, resolved=resolved)


CONVERSATION = [
    {"role": "system", "content": "You fix bugs."},
    {"role": "user", "content": "The test fails."},
    {"role": "assistant", "content": "Let me look.", "tool_calls": [bash_call("c1", "ls")]},
    {"role": "tool", "tool_call_id": "c1", "content": "setup.py\nsrc"},
    {"role": "assistant", "content": None, "tool_calls": [bash_call("c2", "pytest -q")]},
    {"role": "tool", "tool_call_id": "c2", "content": "1 passed"},
    {"role": "assistant", "content": "Fixed: the test passes now."},
]


def tokenizer_of(name: str) -> Tokenizer:
    return Tokenizer.of(tokenizer_for(name), {end_token_id(name), *other_end_token_ids(name)})


def trained_texts(example, tokenizer: Tokenizer) -> list[str]:
    decode = tokenizer.chat.tokenizer.decode
    return [decode(example.input_ids[r.start : r.stop], skip_special_tokens=False) for r in example.replies]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_reply_is_trained_through_its_end_token_and_nothing_else(name):
    tokenizer = tokenizer_of(name)
    end = TEMPLATES[name].end_token
    examples = episode_examples(episode(CONVERSATION), tokenizer)
    replies = [reply for example in examples for reply in example.replies]
    assert [reply.message_index for reply in replies] == [2, 4, 6]
    texts = [text for example in examples for text in trained_texts(example, tokenizer)]
    for text in texts:
        assert text.endswith(end) and text.count(end) == 1
        assert "<|im_start|>" not in text and "<|start_header_id|>" not in text
        assert "setup.py" not in text and "1 passed" not in text  # tool output is context, not a target
    assert "ls" in texts[0] and "pytest -q" in texts[1]
    assert texts[2].removesuffix(end).strip() == "Fixed: the test passes now."
    for example in examples:  # loss only inside the replies
        mask = example.loss_mask()
        inside = {i for r in example.replies for i in range(r.start, r.stop)}
        assert {i for i, m in enumerate(mask) if m} == inside


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_reply_is_trained_under_exactly_its_generation_prompt(name):
    """The context before each reply is what the model was prompted with at that turn."""
    tokenizer = tokenizer_of(name)
    chat, decode = tokenizer.chat, tokenizer.chat.tokenizer.decode
    for example in episode_examples(episode(CONVERSATION), tokenizer):
        for reply in example.replies:
            before = decode(example.input_ids[: reply.start], skip_special_tokens=False)
            prompt = chat.render(CONVERSATION[: reply.message_index], BASH_TOOLS, add_generation_prompt=True)
            assert before == prompt


THINKING_TURNS = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>2+2 is 4</think>\nIt is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "<think>3+3 is 6</think>\nIt is 6."},
]


def test_a_template_that_rewrites_the_reply_itself_is_refused_without_token_ids():
    """The thinking template drops <think> from every reply it renders: its text is not what was written."""
    with pytest.raises(ConfigError, match="rewrites assistant message 1"):
        episode_examples(episode(THINKING_TURNS, tools=[]), tokenizer_of("thinking"))


def test_stored_token_ids_after_a_rewritten_history_start_a_new_example():
    """What the hf agent records under the thinking template: turn 2's prompt no longer holds turn 1's
    reasoning, so turn 2 is trained in its own example, under the context the model really had."""
    tokenizer = tokenizer_of("thinking")
    chat, encode, end = tokenizer.chat, tokenizer.encode, end_token_id("thinking")
    turns = []
    for index in (1, 3):
        prompt = encode(chat.render(THINKING_TURNS[:index], [], add_generation_prompt=True))
        turns.append(
            {
                "message_index": index,
                "prompt_token_ids": prompt,
                "token_ids": [*encode(THINKING_TURNS[index]["content"]), end],
            }
        )
    examples = episode_examples(episode(THINKING_TURNS, tools=[], turns=turns), tokenizer)
    assert [[r.message_index for r in e.replies] for e in examples] == [[1], [3]]
    assert "<think>2+2 is 4</think>" in trained_texts(examples[0], tokenizer)[0]
    second = tokenizer.chat.tokenizer.decode(examples[1].input_ids)
    assert "2+2 is 4" not in second and "<think>3+3 is 6</think>" in trained_texts(examples[1], tokenizer)[0]


# A ChatML template whose assistant replies are marked with {% generation %}: transformers' own assistant mask
# is the ground truth that incremental rendering must reproduce.
MARKED = """\
{%- for message in messages -%}
  {%- if message.role == 'assistant' -%}
    {{- '<|im_start|>assistant\\n' -}}
    {%- generation -%}{{- message.content + '<|im_end|>' -}}{%- endgeneration -%}
    {{- '\\n' -}}
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(texts, texts), min_size=1, max_size=4))
def test_masks_match_transformers_generation_markers(turns):
    tokenizer = _marked_tokenizer()
    messages = []
    for user, reply in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    ours = episode_examples(episode(messages, tools=[]), Tokenizer.of(tokenizer, {tokenizer.eos_token_id}))
    assert len(ours) == 1
    truth = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    expected = [t for t, m in zip(truth["input_ids"], truth["assistant_masks"], strict=True) if m]
    got = [t for t, m in zip(ours[0].input_ids, ours[0].loss_mask(), strict=True) if m]
    decode = tokenizer.decode
    assert decode(got, skip_special_tokens=False) == decode(expected, skip_special_tokens=False)
    whole = decode(truth["input_ids"], skip_special_tokens=False)
    assert decode(ours[0].input_ids, skip_special_tokens=False) == whole


_MARKED_CACHE: list = []


def _marked_tokenizer():
    if not _MARKED_CACHE:
        import copy

        tokenizer = copy.deepcopy(tokenizer_for("smollm2"))
        tokenizer.chat_template = MARKED
        _MARKED_CACHE.append(tokenizer)
    return _MARKED_CACHE[0]


def test_stored_token_ids_are_used_verbatim_and_a_broken_chain_starts_a_new_example():
    tokenizer = tokenizer_of("smollm2")
    chat, encode = tokenizer.chat, tokenizer.encode
    end = end_token_id("smollm2")
    messages = [*CONVERSATION[:2], {"role": "assistant", "content": "one"}]
    messages += [{"role": "user", "content": "more"}, {"role": "assistant", "content": "two"}]
    first_prompt = encode(chat.render(messages[:2], BASH_TOOLS, add_generation_prompt=True))
    first_reply = [*encode("one"), end]
    between = "\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n"
    second_prompt = first_prompt + first_reply + encode(between)
    second_reply = encode("two")  # cut by the length limit: no end token, trained as sampled
    turns = [
        {"message_index": 2, "prompt_token_ids": first_prompt, "token_ids": first_reply},
        {"message_index": 4, "prompt_token_ids": second_prompt, "token_ids": second_reply},
    ]
    [example] = episode_examples(episode(messages, turns=turns), tokenizer)
    assert example.source == "token_ids"
    assert example.input_ids == second_prompt + second_reply
    assert [example.input_ids[r.start : r.stop] for r in example.replies] == [first_reply, second_reply]

    turns[1]["prompt_token_ids"] = [*encode("a trimmed context"), end]  # the harness cut the history
    examples = episode_examples(episode(messages, turns=turns), tokenizer)
    assert [e.input_ids[-len(second_reply) :] for e in examples][1] == second_reply
    assert [[r.message_index for r in e.replies] for e in examples] == [[2], [4]]


def test_token_ids_of_a_text_harness_are_used_though_the_episode_lists_tools():
    """react and bash describe the tools in their prompt and send none through the API; the episode still
    lists the env's tools. Its ids are this model's and must be trained verbatim, not re-rendered with a
    tool block the model never saw (the bug: every such episode fell back to the template)."""
    tokenizer = tokenizer_of("qwen25")
    end = end_token_id("qwen25")
    messages = [*CONVERSATION[:2], {"role": "assistant", "content": "one"}]
    render = tokenizer.chat.render
    prompt = tokenizer.encode(render(messages[:2], [], add_generation_prompt=True))
    assert prompt != tokenizer.encode(render(messages[:2], BASH_TOOLS, add_generation_prompt=True))
    turns = [{"message_index": 2, "prompt_token_ids": prompt, "token_ids": [*tokenizer.encode("one"), end]}]
    [example] = episode_examples(episode(messages, turns=turns), tokenizer)
    assert example.source == "token_ids"
    assert example.input_ids == [*prompt, *tokenizer.encode("one"), end]


def test_token_ids_of_another_model_are_not_trusted():
    tokenizer = tokenizer_of("smollm2")
    messages = [*CONVERSATION[:2], {"role": "assistant", "content": "one"}]
    turns = [{"message_index": 2, "prompt_token_ids": [5, 6, 7], "token_ids": [8, 9]}]
    [example] = episode_examples(episode(messages, turns=turns), tokenizer)
    assert example.source == "template"
    assert trained_texts(example, tokenizer) == ["one<|im_end|>"]


def test_a_template_without_an_end_token_fails_loudly():
    import copy

    tokenizer = copy.deepcopy(tokenizer_for("smollm2"))
    tokenizer.chat_template = "{%- for m in messages -%}{{ m.role }}: {{ m.content }}\n{%- endfor -%}"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(EmptyMaskError, match="no end-of-turn token"):
        episode_examples(episode(messages, tools=[]), Tokenizer.of(tokenizer, {tokenizer.eos_token_id}))


def test_credit_assignment_masks_replies_but_keeps_them_as_context():
    tokenizer = tokenizer_of("qwen25")
    [example] = episode_examples(episode(CONVERSATION), tokenizer)
    full, partial = example.loss_mask(), example.loss_mask({2})
    assert sum(partial) == example.trained_tokens({2}) < sum(full) == example.trained_tokens()
    first = example.replies[0]
    assert partial[first.start : first.stop] == full[first.start : first.stop]
    assert not any(partial[first.stop :])
