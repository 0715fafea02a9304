"""Problem statements for injected bugs: the misbehaviour as the failing tests show it, never the fix."""

from __future__ import annotations

import re

import httpx

from orchard_envs.errors import ConfigError

MAX_MESSAGE = 240
# Terminal escapes (pytest colours its assertion diffs: `\x1b[94m`) and other control characters, which a
# statement shown to a model or a person should not carry raw.
ANSI_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+][0-9A-Za-z]|[@-Z\\-_])"
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

REWRITE_PROMPT = (
    "Rewrite the following report as a short GitHub issue written by a user of the library. Describe what "
    "goes wrong and what was expected. Do not guess the cause, do not name source files or lines, and do "
    "not suggest a fix. Reply with the issue text only."
)


def plain_text(text: str) -> str:
    """`text` without terminal escape sequences and control characters (tabs and newlines kept)."""
    return CONTROL.sub("", ANSI_ESCAPE.sub("", text))


def template_statement(repo: str, failures: dict[str, str]) -> str:
    """A plain report from the failing tests' names and one-line failure messages."""
    lines = [f"Some behaviour of `{repo}` is broken: {len(failures)} of its tests now fail.", ""]
    for test, message in sorted(failures.items()):
        message = " ".join(plain_text(message).split())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        lines.append(f"- `{test}`" + (f" fails with: {message}" if message else " fails"))
    lines += [
        "",
        "Find the cause in the library's source code and fix it so that these tests pass again, "
        "without changing any test.",
    ]
    return "\n".join(lines)


def leaks_fix(statement: str, gold_patch: str) -> bool:
    """True if a rewritten statement quotes a line the fix adds (then the template is kept)."""
    added = [
        line[1:].strip()
        for line in gold_patch.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return any(len(line) >= 8 and line in statement for line in added)


def rewrite_statement(statement: str, gold_patch: str, url: str, model: str, api_key: str = "") -> str:
    """Ask any OpenAI-compatible endpoint to rewrite the template; keep the template if the reply leaks."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {
        "model": model,
        "temperature": 0.0,
        "messages": [{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": statement}],
    }
    try:
        reply = httpx.post(f"{url.rstrip('/')}/chat/completions", json=body, headers=headers, timeout=120)
        text = reply.raise_for_status().json()["choices"][0]["message"]["content"] or ""
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"the rewrite endpoint {url} did not answer a chat completion: {exc}") from None
    text = plain_text(text).strip()
    return statement if not text or leaks_fix(text, gold_patch) else text
