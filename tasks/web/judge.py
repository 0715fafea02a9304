"""An optional LLM judge for open-ended web tasks (WebJudge style), through any agent endpoint.

The judge reads the instruction, the agent's final answer and the final page's text, and replies with a
line `VERDICT: PASS` or `VERDICT: FAIL`. It only ever adds a check: a task opts in with
`expected["judge"] = true` and still needs its state or answer checks to hold, so a bundled task is never
graded by the judge alone (and no web-mini task opts in).
"""

from __future__ import annotations

import re
from typing import Any

from orchard_envs.tasks.web.task import WebTask

VERDICT = re.compile(r"VERDICT:\s*(PASS|FAIL)", re.IGNORECASE)
MAX_PAGE_CHARS = 6000
SYSTEM = (
    "You judge whether a web agent completed a task. Read the task, the agent's final answer and the text of "
    "the last page it saw. Think briefly about whether every requirement of the task is met, then end with "
    "one line: VERDICT: PASS or VERDICT: FAIL."
)


class WebJudge:
    """Asks `agent` (anything with `act(messages, tools) -> AssistantTurn`) for a verdict."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def messages(self, task: WebTask, answer: str | None, page_text: str) -> list[dict[str, str]]:
        """The judge's prompt as chat messages."""
        user = (
            f"Task: {task.instruction}\n\nAgent's final answer: {answer or '(none)'}\n\n"
            f"Last page:\n{page_text[:MAX_PAGE_CHARS]}"
        )
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def judge(self, task: WebTask, answer: str | None, page_text: str) -> tuple[bool, str]:
        """(passed, the judge's reply); a reply without a verdict line counts as FAIL."""
        reply = self.agent.act(self.messages(task, answer, page_text), []).content or ""
        found = VERDICT.findall(reply)
        return bool(found) and found[-1].upper() == "PASS", reply
