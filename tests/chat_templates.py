"""Chat templates for the token-in-token-out tests, written for these tests after the public conventions.

Each one makes a different demand on the prompt ledger: ChatML with native tools (Qwen2.5-like) keeps
history verbatim; a Llama-3-like template trims every message, so replies with outer whitespace are
rewritten; a Qwen3-like "thinking" template drops `<think>...</think>` from earlier replies. SmolLM2's own
template (role + content only, no tools) is the fourth. All of them run on the real SmolLM2 vocabulary: a
copy of its tokenizer gets the template and the template's special strings as single added ids, so they can
serve as end-of-turn tokens the way they do in the real models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

# The system message, then a block listing the tools when there are any. Shared by both ChatML templates.
_CHATML_SYSTEM = """\
{%- if messages and messages[0].role == 'system' -%}
  {%- set system_text = messages[0].content -%}
  {%- set conversation = messages[1:] -%}
{%- else -%}
  {%- set system_text = 'You are an assistant in an Orchard test.' -%}
  {%- set conversation = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system_text -}}
{%- if tools -%}
  {{- '\\n\\n# Tools\\n\\nThe functions below can be called; each line is one JSON schema.\\n<tools>' -}}
  {%- for tool in tools -%}
    {{- '\\n' + (tool | tojson) -}}
  {%- endfor -%}
  {{- '\\n</tools>\\n\\nTo call one, answer with a block per call:\\n<tool_call>\\n' -}}
  {{- '{"name": "<function>", "arguments": {"<parameter>": <value>}}\\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
"""

# Tool results: consecutive `tool` messages share one user turn, each in its own <tool_response> block.
_CHATML_TOOL = """\
    {%- if loop.first or conversation[loop.index0 - 1].role != 'tool' -%}
      {{- '<|im_start|>user' -}}
    {%- endif -%}
    {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' -}}
    {%- if loop.last or conversation[loop.index0 + 1].role != 'tool' -%}
      {{- '<|im_end|>\\n' -}}
    {%- endif -%}
"""

# An assistant message carrying structured tool calls (one written by someone else, e.g. a replay).
_CHATML_CALLS = """\
    {{- '<|im_start|>assistant' -}}
    {%- if text -%}
      {{- '\\n' + text -}}
    {%- endif -%}
    {%- for call in message.tool_calls -%}
      {%- set function = call.function if call.function is defined else call -%}
      {{- '\\n<tool_call>\\n{"name": "' + function.name + '", "arguments": ' -}}
      {{- (function.arguments | tojson) + '}\\n</tool_call>' -}}
    {%- endfor -%}
    {{- '<|im_end|>\\n' -}}
"""

QWEN25_STYLE = (
    _CHATML_SYSTEM
    + """\
{%- for message in conversation -%}
  {%- set text = message.content if message.content is string else '' -%}
  {%- if message.role == 'tool' -%}
"""
    + _CHATML_TOOL
    + """\
  {%- elif message.role == 'assistant' and message.tool_calls -%}
"""
    + _CHATML_CALLS
    + """\
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\\n' + text + '<|im_end|>\\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""
)

# Like QWEN25_STYLE, except that an assistant turn in the history loses its reasoning: whatever precedes the
# last `</think>` is dropped, and so are the newlines right after it. (Qwen3 keeps the reasoning of the
# turns after the last user message; this one drops it everywhere, which is simpler to state.)
THINKING_STYLE = (
    _CHATML_SYSTEM
    + """\
{%- for message in conversation -%}
  {%- set text = message.content if message.content is string else '' -%}
  {%- if message.role == 'assistant' and '</think>' in text -%}
    {%- set text = text.split('</think>')[-1].lstrip('\\n') -%}
  {%- endif -%}
  {%- if message.role == 'tool' -%}
"""
    + _CHATML_TOOL
    + """\
  {%- elif message.role == 'assistant' and message.tool_calls -%}
"""
    + _CHATML_CALLS
    + """\
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\\n' + text + '<|im_end|>\\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""
)

# Headers around each role, every content trimmed, tools as JSON ahead of the first user message (the Llama
# 3.1 default), tool results under the `ipython` role, calls written as {"name", "parameters"}.
LLAMA3_STYLE = """\
{{- '<|begin_of_text|>' -}}
{%- if messages and messages[0].role == 'system' -%}
  {%- set system_text = messages[0].content | trim -%}
  {%- set conversation = messages[1:] -%}
{%- else -%}
  {%- set system_text = '' -%}
  {%- set conversation = messages -%}
{%- endif -%}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' -}}
{%- if tools -%}
  {{- 'Environment: ipython\\n\\n' -}}
{%- endif -%}
{{- system_text + '<|eot_id|>' -}}
{%- set state = namespace(tools_pending=(tools is not none and tools | length > 0)) -%}
{%- for message in conversation -%}
  {%- set text = (message.content if message.content is string else '') | trim -%}
  {%- if message.role == 'user' and state.tools_pending -%}
    {%- set state.tools_pending = false -%}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- 'Functions you may call are listed below. To call one, reply with the JSON object ' -}}
    {{- '{"name": <function name>, "parameters": <arguments as an object>}.\\n\\n' -}}
    {%- for tool in tools -%}
      {{- (tool | tojson(indent=2)) + '\\n\\n' -}}
    {%- endfor -%}
    {{- text + '<|eot_id|>' -}}
  {%- elif message.role == 'assistant' and message.tool_calls -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
    {%- for call in message.tool_calls -%}
      {%- set function = call.function if call.function is defined else call -%}
      {%- if not loop.first -%}
        {{- '\\n' -}}
      {%- endif -%}
      {{- '{"name": "' + function.name + '", "parameters": ' + (function.arguments | tojson) + '}' -}}
    {%- endfor -%}
    {{- '<|eot_id|>' -}}
  {%- elif message.role == 'tool' -%}
    {{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + text + '<|eot_id|>' -}}
  {%- else -%}
    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + text + '<|eot_id|>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
{%- endif -%}
"""


@dataclass(frozen=True)
class Template:
    """A chat template plus what the tokenizer needs for it: its special strings and its end-of-turn one."""

    name: str
    source: str | None  # None: the tokenizer's own template (SmolLM2)
    end_token: str  # the one the template writes after each assistant message
    special_tokens: tuple[str, ...] = ()
    # Other ids that also end generation in the real models (their generation config lists several); the
    # template never writes them, so a reply ended by one cannot be extended verbatim.
    other_end_tokens: tuple[str, ...] = ()


SMOLLM2 = Template("smollm2", None, "<|im_end|>")
QWEN25 = Template("qwen25", QWEN25_STYLE, "<|im_end|>", other_end_tokens=("<|endoftext|>",))
LLAMA3 = Template(
    "llama3",
    LLAMA3_STYLE,
    "<|eot_id|>",
    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"),
    other_end_tokens=("<|end_of_text|>",),
)
THINKING = Template("thinking", THINKING_STYLE, "<|im_end|>", ("<think>", "</think>"))
TEMPLATES = {template.name: template for template in (SMOLLM2, QWEN25, LLAMA3, THINKING)}


@cache
def base_tokenizer() -> Any:
    """The real SmolLM2 tokenizer (its model is converted into the Orchard cache on first use)."""
    from transformers import AutoTokenizer

    from orchard_envs.agents.hf_models import DEFAULT_MODEL, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))


@cache
def tokenizer_for(name: str) -> Any:
    """A copy of the SmolLM2 tokenizer carrying template `name`; never mutate what this returns."""
    template = TEMPLATES[name]
    tokenizer = copy.deepcopy(base_tokenizer())
    if template.source is not None:
        tokenizer.chat_template = template.source
    if template.special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(template.special_tokens)})
    for token in (*template.special_tokens, template.end_token, *template.other_end_tokens):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token!r} must be one id, got {ids}"
    return tokenizer


def end_token_id(name: str) -> int:
    """The id the template writes at the end of an assistant message."""
    return tokenizer_for(name).convert_tokens_to_ids(TEMPLATES[name].end_token)


def other_end_token_ids(name: str) -> list[int]:
    return [tokenizer_for(name).convert_tokens_to_ids(token) for token in TEMPLATES[name].other_end_tokens]
