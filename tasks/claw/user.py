"""The user an agent can question with `ask_user`: scripted rules by default, an LLM endpoint when configured.

Scripted replies keep grading deterministic (the same question always gets the same answer); the endpoint
user is for studying how agents cope with a less predictable person.
"""

from __future__ import annotations

from typing import Any

import httpx

from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.tasks.claw.task import UserSim


class UserUnavailable(OrchardError):
    """The simulated-user endpoint could not be reached or gave no usable reply."""


class SimulatedUser:
    """Answers from the task's rules: the first rule with any keyword in the question (ignoring case)."""

    def __init__(self, user: UserSim) -> None:
        self.user = user

    def reply(self, question: str) -> str:
        """The first rule's reply whose keywords appear in the question, else the default."""
        text = question.lower()
        for rule in self.user.rules:
            if any(keyword.lower() in text for keyword in rule.if_contains):
                return rule.reply
        return self.user.default


def persona_prompt(user: UserSim) -> str:
    """A system prompt for an LLM playing the task's user: the persona plus what the scripted user knows."""
    facts = "\n".join(f"- {rule.reply}" for rule in user.rules)
    known = f"\nWhat you know and may tell the assistant when asked:\n{facts}" if facts else ""
    return (
        f"{user.persona}{known}\nAnswer the assistant's question briefly, in one or two sentences, as this "
        "person would. Do not do the assistant's work for it."
    )


class EndpointUser:
    """Asks an OpenAI-compatible chat-completions endpoint to play the user; keeps the conversation."""

    def __init__(
        self,
        base_url: str,
        model: str,
        persona: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url or not model:
            raise ConfigError("the simulated-user endpoint needs both base_url and model")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.messages: list[dict[str, str]] = [{"role": "system", "content": persona}]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def reply(self, question: str) -> str:
        """The user model's answer, asked over an OpenAI-compatible endpoint with the conversation so far."""
        self.messages.append({"role": "user", "content": question})
        url = f"{self.base_url}/chat/completions"
        try:
            response = self._client.post(url, json={"model": self.model, "messages": self.messages})
            response.raise_for_status()
            answer = _content(response.json())
        except ValueError:
            self.messages.pop()
            raise UserUnavailable(f"simulated-user endpoint {url} sent no usable chat completion") from None
        except httpx.HTTPStatusError as exc:
            self.messages.pop()
            status, text = exc.response.status_code, exc.response.text[:200]
            raise UserUnavailable(f"simulated-user endpoint {url} answered {status}: {text}") from None
        except httpx.HTTPError as exc:
            self.messages.pop()
            raise UserUnavailable(f"simulated-user endpoint {url} is unreachable: {exc}") from None
        self.messages.append({"role": "assistant", "content": answer})
        return answer

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _content(body: Any) -> str:
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("no chat completion") from None
    if not isinstance(content, str):
        raise ValueError("no text content")
    return content.strip()
