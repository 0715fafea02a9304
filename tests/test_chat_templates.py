"""Token-in-token-out across chat templates: simulated episodes drive the real HFAgent, prompt ledger and
runner bookkeeping, with a scripted "sampler" in place of the model.

The sampler spells each scripted reply with the tokenizer (plus the end-of-turn id unless the reply is cut
off), so its ids are what a model that wrote that text would have sampled. Everything else is the code
under test: `HFAgent.act` (ledger prompt -> generate -> parse -> record) and the runner's `_Progress`
(TurnTokens and `_extends` on the ids). Four templates on the real SmolLM2 vocabulary (`chat_templates`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from chat_templates import TEMPLATES, end_token_id, other_end_token_ids, tokenizer_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.agents.base import AssistantTurn, EpisodeContext
from orchard_envs.agents.chat_format import TOOLS_PREAMBLE, ChatFormat, ParsedReply
from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_backend import Generation, Sampling
from orchard_envs.agents.prompt_ledger import Prompt, PromptLedger
from orchard_envs.runner import _extends, _Progress

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]},
        },
    }
    for name, arg in (("read_file", "path"), ("run", "command"))
]
TOOL_NAMES = [tool["function"]["name"] for tool in TOOLS]

# Characters the SmolLM2 vocabulary can spell: it has no byte tokens for a few C0 controls (0x04, 0x06,
# 0x13, 0x14, 0x16, 0x1d) nor for the UTF-8 lead bytes F1/F2 (U+40000..U+BFFFF), which it silently drops,
# so a model on it can never sample those. `<` is left out so that random text never forms a tag; tags come
# only from the well-formed blocks drawn below. Whitespace is drawn on purpose: it is what templates touch.
CHARS = st.characters(
    codec="utf-8", max_codepoint=0x3FFFF, exclude_categories=("Cc",), exclude_characters="<"
)
WHITESPACE = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u2003", "\u3000", "\x1f"])
TEXT = st.lists(st.one_of(st.text(CHARS, min_size=1, max_size=10), WHITESPACE), max_size=5).map("".join)
TEMPLATE_NAMES = list(TEMPLATES)
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tool_call_blocks(draw: st.DrawFn) -> str:
    """A well-formed Hermes block, written the way models vary it (spacing, key name, escaping)."""
    arguments = draw(
        st.dictionaries(
            st.sampled_from(["path", "command", "count"]),
            st.one_of(TEXT, st.integers(-9, 999), st.booleans()),
            max_size=2,
        )
    )
    key = draw(st.sampled_from(["arguments", "arguments", "parameters"]))
    call = {"name": draw(st.sampled_from(TOOL_NAMES)), key: arguments}
    payload = json.dumps(call, ensure_ascii=draw(st.booleans()))
    before, after = draw(st.sampled_from(["", "\n"])), draw(st.sampled_from(["", "\n"]))
    return f"<tool_call>{before}{payload}{after}</tool_call>"


@st.composite
def replies(draw: st.DrawFn) -> str:
    """Prose with 0-2 tool-call blocks among it."""
    parts = [draw(TEXT)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(tool_call_blocks()), draw(TEXT)]
    return "".join(parts)


@dataclass(frozen=True)
class Step:
    """One model turn of the script and what the world answers."""

    reply: str
    thought: str | None  # a `<think>` prefix, used by the thinking template only
    truncated: bool  # cut off by the token budget: no end-of-turn id
    other_end: bool  # ended by an end id the template does not write (where the template has one)
    observations: tuple[str, str]  # tool results (one per call) or, without calls, the user's next message


@dataclass(frozen=True)
class Script:
    system: str
    user: str
    offer_tools: bool
    steps: tuple[Step, ...]


@st.composite
def steps(draw: st.DrawFn) -> Step:
    thought = draw(st.one_of(st.none(), st.tuples(TEXT, st.sampled_from(["", "\n", "\n\n"])).map("".join)))
    other_end = draw(st.sampled_from([False, False, False, True]))
    return Step(draw(replies()), thought, draw(st.booleans()), other_end, (draw(TEXT), draw(TEXT)))


scripts = st.builds(
    Script,
    system=TEXT,
    user=TEXT,
    offer_tools=st.sampled_from([True, True, False]),
    steps=st.lists(steps(), min_size=1, max_size=5).map(tuple),
)


class ScriptedGenerator:
    """Stands in for HFGenerator: 'samples' the next scripted reply, spelled by the tokenizer."""

    name = "scripted"

    def __init__(self, tokenizer: Any, end_ids: list[int], replies: list[tuple[str, int | None]]) -> None:
        self.tokenizer = tokenizer
        self.end_id = end_ids[0]  # the one the template writes
        self.end_token_ids = set(end_ids)
        self._replies = list(replies)
        self.conditioned: list[list[int]] = []  # the prompt ids each sample was drawn from
        self.sampled: list[list[int]] = []
        self.logprobs: list[list[float]] = []

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        (prompt,) = prompts
        text, end = self._replies.pop(0)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        assert self.tokenizer.decode(ids, skip_special_tokens=False) == text  # ids spell the reply exactly
        truncated = end is None
        if not truncated:
            ids.append(end)
        logprobs = [-0.25 * (i % 7) for i in range(len(ids))]
        self.conditioned.append(list(prompt))
        self.sampled.append(ids)
        self.logprobs.append(logprobs)
        return [Generation(list(ids), list(logprobs), "length" if truncated else "stop", len(prompt))]


@dataclass
class Played:
    """An episode as the runner would record it, plus what the test knows about how it was made."""

    template: str
    texts: list[str]  # the exact text of each reply
    ends: list[int | None]  # the end id each reply was sampled with, None where it was cut off
    tools: list[dict[str, Any]]
    generator: ScriptedGenerator
    prompts: list[Prompt] = field(default_factory=list)  # what the ledger returned each turn
    turns: list[AssistantTurn] = field(default_factory=list)
    before: list[list[dict[str, Any]]] = field(default_factory=list)  # the conversation each turn saw
    state: _Progress = field(default_factory=_Progress)
    messages: list[dict[str, Any]] = field(default_factory=list)


def reply_text(template: str, step: Step) -> str:
    if template == "thinking" and step.thought is not None:
        return f"<think>{step.thought}</think>{step.reply}"
    return step.reply


def play(template: str, script: Script) -> Played:
    """The runner's loop with the scripted sampler in place of the model and the script in place of an env."""
    tokenizer = tokenizer_for(template)
    texts = [reply_text(template, step) for step in script.steps]
    end_ids = [end_token_id(template), *other_end_token_ids(template)]
    ends: list[int | None] = []
    for step, text in zip(script.steps, texts, strict=True):
        # An empty reply cut off by the budget would be zero sampled tokens, which no sampler returns.
        if step.truncated and text:
            ends.append(None)
        else:
            ends.append(end_ids[-1] if step.other_end else end_ids[0])
    generator = ScriptedGenerator(tokenizer, end_ids, list(zip(texts, ends, strict=True)))
    tools = TOOLS if script.offer_tools else []
    played = Played(template, texts, ends, tools, generator)
    agent = HFAgent(generator=generator)  # type: ignore[arg-type]
    ask = agent.ledger.prompt

    def spy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Prompt:
        played.prompts.append(ask(messages, tools))
        return played.prompts[-1]

    agent.ledger.prompt = spy  # type: ignore[method-assign]
    agent.start(EpisodeContext("test", None, TOOL_NAMES if tools else [], lambda action: AssistantTurn()))
    messages = played.messages
    messages += [{"role": "system", "content": script.system}, {"role": "user", "content": script.user}]
    for step in script.steps:
        played.before.append([dict(message) for message in messages])
        turn = agent.act(list(messages), tools)
        played.turns.append(turn)
        played.state.record(turn, messages)
        if turn.tool_calls:
            for call, result in zip(turn.tool_calls, step.observations, strict=False):
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        else:
            messages.append({"role": "user", "content": step.observations[0]})
    return played


def keeps_history(template: str, previous_reply: str, end: int | None) -> bool:
    """Whether the template renders the previous reply exactly as sampled (so the prefix property holds).
    Every template writes its own end-of-turn id: a reply ended by another end id is rewritten."""
    if end is not None and end != end_token_id(template):
        return False
    if template == "llama3":  # `| trim`: outer whitespace (Python's str.strip, as Jinja uses) is dropped
        return previous_reply == previous_reply.strip()
    if template == "thinking":  # the reasoning of earlier turns is dropped
        return "</think>" not in previous_reply
    return True  # SmolLM2 and Qwen2.5-style ChatML: history verbatim


def encode(template: str, text: str) -> list[int]:
    return list(tokenizer_for(template).encode(text, add_special_tokens=False))


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
@EXAMPLES
@given(script=scripts)
def test_stored_ids_are_the_sampled_ids(template: str, script: Script) -> None:
    """(1) Each assistant turn keeps exactly the sampled ids, their logprobs and the prompt ids used."""
    played = play(template, script)
    generator, records = played.generator, played.state.turns
    assert len(records) == len(played.turns) == len(generator.sampled) == len(script.steps)
    for i, (turn, record) in enumerate(zip(played.turns, records, strict=True)):
        assert turn.token_ids == record.token_ids == generator.sampled[i]
        assert turn.logprobs == record.logprobs == generator.logprobs[i]
        assert turn.prompt_token_ids == record.prompt_token_ids == generator.conditioned[i]
        usage = {"prompt_tokens": len(turn.prompt_token_ids), "completion_tokens": len(turn.token_ids)}
        assert turn.usage == usage
        assert played.messages[record.message_index]["role"] == "assistant"
        assert played.messages[record.message_index] == turn.message()
        # what the harness sees is the parse of exactly the sampled text
        expected = ChatFormat.parse(played.texts[i], played.tools)
        assert turn.content == expected.content
        assert [c["function"] for c in turn.tool_calls] == [c["function"] for c in expected.tool_calls]
        assert turn.finish_reason == ("length" if played.ends[i] is None else "stop")


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
@EXAMPLES
@given(script=scripts)
def test_prompts_extend_exactly_when_history_is_verbatim(template: str, script: Script) -> None:
    """(2) Turn t+1's prompt ids start with turn t's prompt + sampled ids exactly when the template renders
    the reply as sampled: the reply was cut off or ended with the end id the template writes, and for
    Llama-style it has no outer whitespace (reply == reply.strip()), for the thinking template no
    `</think>`; SmolLM2 and Qwen2.5-style have no further condition. (3) Otherwise `extends_previous` is
    False, in the ledger and in the runner's record (checked on the ids themselves): it never claims True
    falsely, nor False needlessly. (4) A prompt that does not extend is a fresh tokenization of its text."""
    played = play(template, script)
    for i, (prompt, record) in enumerate(zip(played.prompts, played.state.turns, strict=True)):
        if i == 0:
            assert prompt.extends_previous is None and record.extends_previous is None
            assert prompt.token_ids == encode(template, prompt.text)
            continue
        head = played.generator.conditioned[i - 1] + played.generator.sampled[i - 1]
        extends = prompt.token_ids[: len(head)] == head
        expected = keeps_history(template, played.texts[i - 1], played.ends[i - 1])
        assert extends == expected, (played.texts[i - 1], prompt.text)
        assert prompt.extends_previous is expected
        assert record.extends_previous is extends
        assert _extends(played.state.turns[i - 1], played.turns[i]) is extends
        if not prompt.extends_previous:
            assert prompt.token_ids == encode(template, prompt.text)


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
@EXAMPLES
@given(script=scripts)
def test_prompt_text_is_the_templates_rendering(template: str, script: Script) -> None:
    """(5) The prompt is the template's rendering of the conversation with every reply as sampled, and its
    ids decode back to that text: byte-level BPE round-trips, the added specials decode as themselves."""
    played = play(template, script)
    chat, tokenizer = ChatFormat(tokenizer_for(template)), tokenizer_for(template)
    for i, prompt in enumerate(played.prompts):
        replies = iter(played.texts)
        conversation = [
            {**message, "raw_text": next(replies)} if message["role"] == "assistant" else message
            for message in played.before[i]
        ]
        assert prompt.text == chat.render(conversation, played.tools, add_generation_prompt=True)
        assert tokenizer.decode(prompt.token_ids, skip_special_tokens=False) == prompt.text


@EXAMPLES
@given(script=scripts, thought=TEXT)
def test_thinking_history_is_retokenized_and_flagged(script: Script, thought: str) -> None:
    """(4) The thinking template drops an earlier turn's `<think>` block, so the next prompt cannot extend
    the last: it says so, and its ids are a fresh tokenization of the rendered text."""
    first = replace(script.steps[0], thought=thought)
    script = Script(script.system, script.user, script.offer_tools, (first, *script.steps[1:]))
    played = play("thinking", script)
    for i in range(1, len(played.prompts)):
        prompt, record = played.prompts[i], played.state.turns[i]
        if "<think>" in played.texts[i - 1]:
            assert "<think>" not in prompt.text
            assert prompt.extends_previous is False and record.extends_previous is False
            assert prompt.token_ids == encode("thinking", prompt.text)


# ---- examples ----

LS_CALL = {"id": "c1", "type": "function", "function": {"name": "run", "arguments": '{"command": "ls"}'}}


def test_parse_reads_hermes_tool_calls() -> None:
    text = (
        'Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>\n'
        '<tool_call>{"name": "run", "parameters": {"command": "ls -l"}}</tool_call>\n'
        "<tool_call>\n{not json}\n</tool_call>"
    )
    reply = ChatFormat.parse(text, TOOLS)
    assert reply.content == "Let me look.\n\n\n<tool_call>\n{not json}\n</tool_call>"  # kept as written
    functions = [call["function"] for call in reply.tool_calls]
    assert functions == [
        {"name": "read_file", "arguments": '{"path": "a.py"}'},
        {"name": "run", "arguments": '{"command": "ls -l"}'},
    ]
    assert all(call["type"] == "function" for call in reply.tool_calls)
    assert len({call["id"] for call in reply.tool_calls}) == 2
    only_calls = ChatFormat.parse('<tool_call>{"name": "run", "arguments": "ls"}</tool_call>', TOOLS)
    assert only_calls.content is None
    assert only_calls.tool_calls[0]["function"] == {"name": "run", "arguments": "ls"}


@pytest.mark.parametrize("block", ["{}", '{"name": ""}', "[1, 2]", '{"name": 3}', "{not json"])
def test_a_block_that_names_no_function_stays_text_and_the_episode_stays_valid(block) -> None:
    """A malformed block once became a call with an empty name, which no episode may hold: the whole
    orchard-bench run crashed when the runner built that episode."""
    from orchard_envs.episodes import Episode

    text = f"<tool_call>{block}</tool_call>"
    reply = ChatFormat.parse(text, TOOLS)
    assert reply == ParsedReply(text, [])
    message = {"role": "assistant", "content": reply.content}
    metadata = {"env_id": "e", "suite": "s", "task_id": "t", "harness": "tool-calling", "agent": "hf",
                "reward": 0.0, "status": "format_errors"}
    Episode(messages=[{"role": "user", "content": "hi"}, message], metadata=metadata)


def test_an_empty_reply_is_empty_text_not_a_message_without_content() -> None:
    """Found by hypothesis through the runner: an empty reply parsed to content None and no calls, which no
    episode may hold."""
    assert ChatFormat.parse("", TOOLS) == ParsedReply("", [])
    assert ChatFormat.parse("  \n", TOOLS) == ParsedReply("", [])


def test_parse_without_tools_is_all_content() -> None:
    text = ' <tool_call>{"name": "run", "arguments": {}}</tool_call> '
    reply = ChatFormat.parse(text, [])
    assert reply.content == text and reply.tool_calls == []


def test_template_without_native_tools_gets_them_in_the_system_message() -> None:
    chat = ChatFormat(tokenizer_for("smollm2"))
    assert not chat.native_tools and not chat.native_tool_role
    schemas = "\n".join(json.dumps(tool["function"]) for tool in TOOLS)
    preamble = TOOLS_PREAMBLE.format(schemas=schemas)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Fix it."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [LS_CALL],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.py"},
    ]
    text = chat.render(messages, TOOLS, add_generation_prompt=True)
    system = text.split("<|im_end|>")[0]
    assert system == f"<|im_start|>system\nBe brief.\n\n{preamble}"
    call = '<tool_call>\n{"name": "run", "arguments": {"command": "ls"}}\n</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>" in text  # a call someone else wrote, in Hermes text
    result = "<|im_start|>user\n<tool_response>\na.py\n</tool_response><|im_end|>\n"
    assert text.endswith(f"{result}<|im_start|>assistant\n")
    # no system message of its own: the tools become one
    no_system = chat.render(messages[1:2], TOOLS, add_generation_prompt=False)
    assert no_system.startswith(f"<|im_start|>system\n{preamble}<|im_end|>")
    assert "# Tools" not in chat.render(messages[:2], [], add_generation_prompt=True)


def test_native_template_gets_the_tools_and_structured_calls() -> None:
    chat = ChatFormat(tokenizer_for("qwen25"))
    assert chat.native_tools and chat.native_tool_role
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Fix it."},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [LS_CALL],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.py"},
    ]
    text = chat.render(messages, TOOLS, add_generation_prompt=True)
    assert json.dumps(TOOLS[0]) in text and "You can call these functions" not in text
    call = '<tool_call>\n{"name": "run", "arguments": {"command": "ls"}}\n</tool_call>'
    assert f"<|im_start|>assistant\nLooking.\n{call}<|im_end|>" in text  # arguments parsed for the template
    assert "<|im_start|>user\n<tool_response>\na.py\n</tool_response><|im_end|>" in text


def test_edited_history_is_retokenized_and_flagged() -> None:
    """Context trimming rewrote an old tool result: the prompt cannot extend the last one, and says so."""
    tokenizer = tokenizer_for("smollm2")
    ledger, end = PromptLedger(ChatFormat(tokenizer)), end_token_id("smollm2")
    messages: list[dict[str, Any]] = [{"role": "system", "content": "S"}, {"role": "user", "content": "Go."}]
    records = []
    for i in range(3):
        if i == 2:  # the harness trims context: the first tool result is replaced by a stub
            messages[3] = {**messages[3], "content": "[output trimmed]"}
        prompt = ledger.prompt(messages, TOOLS)
        text = f'<tool_call>\n{{"name": "run", "arguments": {{"command": "echo {i}"}}}}\n</tool_call>'
        sampled = [*tokenizer.encode(text, add_special_tokens=False), end]
        reply = ChatFormat.parse(text, TOOLS)
        turn = AssistantTurn(reply.content, reply.tool_calls, prompt.token_ids, sampled)
        ledger.record(turn.message(), sampled, {end})
        records.append((prompt, turn))
        messages.append(turn.message())
        call_id = reply.tool_calls[0]["id"]
        messages.append({"role": "tool", "tool_call_id": call_id, "content": f"out {i}\n" * 3})
    (first, t1), (second, _), (third, _) = records
    assert second.extends_previous is True
    assert second.token_ids[: len(first.token_ids) + len(t1.token_ids)] == first.token_ids + t1.token_ids
    assert third.extends_previous is False
    assert third.token_ids == list(tokenizer.encode(third.text, add_special_tokens=False))
    assert "[output trimmed]" in third.text and "out 0" not in third.text
    state = _Progress()
    for _, turn in records:
        state.record(turn, [])
    assert [record.extends_previous for record in state.turns] == [None, True, False]


def test_reply_cut_inside_a_character_still_extends() -> None:
    """The budget can run out between the byte tokens of one character: the reply text then ends in U+FFFD,
    yet the next prompt carries the sampled ids themselves, not a re-encoding of that text."""
    tokenizer, end = tokenizer_for("smollm2"), end_token_id("smollm2")
    ledger = PromptLedger(ChatFormat(tokenizer))
    messages: list[dict[str, Any]] = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    first = ledger.prompt(messages, [])
    spelled = tokenizer.encode("Voilà 😀😀", add_special_tokens=False)
    sampled = spelled[:-1]  # the last emoji is several byte tokens; keep all but its last one
    raw = tokenizer.decode(sampled)
    assert raw.endswith("\ufffd")
    turn = AssistantTurn(raw, [], first.token_ids, sampled)
    ledger.record(turn.message(), sampled, {end})
    messages += [turn.message(), {"role": "user", "content": "More"}]
    second = ledger.prompt(messages, [])
    assert second.extends_previous is True
    assert second.token_ids[: len(first.token_ids) + len(sampled)] == first.token_ids + sampled
    assert tokenizer.decode(second.token_ids, skip_special_tokens=False) == second.text
