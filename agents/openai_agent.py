"""`openai`: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, orchard-serve, ...) as the policy.

Through the official `openai` client, so retries with exponential backoff on 429/5xx/connection errors are
the client's own. Token ids come back where the server offers vLLM's `return_token_ids` extension
(`prompt_token_ids` on the response, `token_ids` on each choice). A strict server that refuses an optional
extra (`return_token_ids`, `logprobs`, or `max_tokens` in favour of `max_completion_tokens`) is asked again
without it, and the agent stops sending it. Failures are mapped to what the runner understands:
a setup mistake (key, model, URL) is a `ConfigError` that stops the run, an unreachable or failing server
is `BackendUnavailable` (the episode is `infra_error`), an overlong prompt is `ContextOverflow`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from orchard_envs.agents.base import Agent, AssistantTurn, ContextOverflow, EpisodeContext
from orchard_envs.agents.sampling_seeds import EpisodeDraws
from orchard_envs.errors import BackendUnavailable, ConfigError

TOKEN_IDS_FIELD = "return_token_ids"
CONTEXT_ERROR = re.compile(
    r"context[ _](length|window)|maximum context|too many tokens|prompt is too long", re.I
)
LOCAL_KEY = "EMPTY"  # local servers (vLLM, orchard-serve without --api-key) accept any key


class OpenAIAgent(Agent):
    """Samples from a chat-completions endpoint; options left unset are left to the server's defaults."""

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        return_token_ids: bool = True,
        logprobs: bool = True,
    ) -> None:
        import openai

        self.model = model or os.environ.get("OPENAI_MODEL") or ""
        if not self.model:
            raise ConfigError("the openai agent needs a model name: pass model=... or set OPENAI_MODEL")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY") or (LOCAL_KEY if self.base_url else None)
        if not key:
            raise ConfigError(
                "the openai agent needs an API key: pass api_key=... or set OPENAI_API_KEY "
                "(or point base_url / OPENAI_BASE_URL at a local server)"
            )
        try:
            self.client = openai.OpenAI(
                api_key=key, base_url=self.base_url, timeout=timeout, max_retries=max_retries
            )
        except openai.OpenAIError as exc:
            raise ConfigError(f"cannot set up the openai client: {exc}") from exc
        self.return_token_ids = return_token_ids
        self.logprobs = logprobs
        self._max_completion_tokens = False
        self._seed = seed
        self._draws = EpisodeDraws(seed)
        self._turn = 0
        options = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": seed}
        self.sampling = {key: value for key, value in options.items() if value is not None}

    def preflight(self) -> None:
        """Fail early, with a ConfigError saying what to fix, when the model server cannot be reached."""
        import openai

        try:
            self.client.with_options(timeout=10, max_retries=1).models.list()
        except openai.APIConnectionError as exc:
            raise ConfigError(
                f"cannot reach the model server at {self._where()} ({exc}); start it, or fix base_url / "
                "OPENAI_BASE_URL"
            ) from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(
                f"{self._where()} refused the API key: pass api_key=... or set OPENAI_API_KEY"
            ) from exc
        except openai.APIStatusError:
            pass  # some servers have no /models; the first real request will tell

    def start(self, context: EpisodeContext) -> None:
        """Reset the turn count and seed draws for a new episode."""
        self._turn = 0
        self._draws = context.draws(self._seed)

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """One chat completion request; the seed is drawn per turn so that trials are independent."""
        request: dict[str, Any] = {"model": self.model, "messages": messages, **self.sampling}
        if tools:
            request["tools"] = tools
        seed = self._draws.seed(self._turn)  # per (run seed, task, trial, turn): trials are independent
        if seed is not None:
            request["seed"] = seed
        self._turn += 1
        return _turn(self._create(request))

    def _create(self, request: dict[str, Any]) -> Any:
        import openai

        try:
            while True:
                try:
                    return self.client.chat.completions.create(**self._adapted(request))
                except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                    if not self._adapt_to(_text(exc)):
                        raise
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ConfigError(
                f"the server at {self._where()} refused the API key ({exc.status_code}): pass api_key=... "
                "or set OPENAI_API_KEY"
            ) from exc
        except openai.NotFoundError as exc:
            raise ConfigError(
                f"{self._where()} answered 404 for model {self.model!r}: {_text(exc)}. Check model / "
                "OPENAI_MODEL, and that base_url / OPENAI_BASE_URL ends in /v1"
            ) from exc
        except openai.BadRequestError as exc:
            if exc.code == "context_length_exceeded" or CONTEXT_ERROR.search(_text(exc)):
                raise ContextOverflow(_text(exc)) from exc
            raise
        except openai.APIConnectionError as exc:  # timeouts included
            raise BackendUnavailable(f"cannot reach the model server at {self._where()}: {exc}") from exc
        except (openai.InternalServerError, openai.RateLimitError) as exc:
            raise BackendUnavailable(
                f"the model server at {self._where()} kept failing ({exc.status_code}) after retries: "
                f"{_text(exc)}"
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise BackendUnavailable(f"the model server at {self._where()} failed: {_text(exc)}") from exc
            raise

    def _adapted(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request with the optional extras this server has not refused so far."""
        request = dict(request)
        if self.logprobs:
            request["logprobs"] = True
        if self.return_token_ids:
            request["extra_body"] = {TOKEN_IDS_FIELD: True}
        if self._max_completion_tokens and "max_tokens" in request:
            request["max_completion_tokens"] = request.pop("max_tokens")
        return request

    def _adapt_to(self, refusal: str) -> bool:
        """Drop (or rename) the extra a strict server refused and remember it; False if none was named.
        Each extra is adapted at most once, so the retries end."""
        if self.return_token_ids and TOKEN_IDS_FIELD in refusal:
            self.return_token_ids = False
        elif self.logprobs and "logprobs" in refusal:
            self.logprobs = False
        elif (
            not self._max_completion_tokens
            and "max_completion_tokens" in refusal
            and "max_tokens" in self.sampling
        ):
            self._max_completion_tokens = True  # newer OpenAI models refuse max_tokens
        else:
            return False
        return True

    def _where(self) -> str:
        return self.base_url or "api.openai.com"


def _text(exc: Any) -> str:
    """The server's own error message (the client's `str` adds the status and the whole body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(exc)


def _turn(response: Any) -> AssistantTurn:
    """The first choice as a turn; token ids and logprobs only where the server sent them consistently."""
    choice = response.choices[0]
    message = choice.message
    tool_calls = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # a non-function (custom) tool call: keep it as the server sent it
            tool_calls.append(call.model_dump(exclude_none=True))
            continue
        tool_calls.append(
            {
                "id": call.id,
                "type": "function",
                "function": {"name": function.name, "arguments": function.arguments},
            }
        )
    token_ids = _ints((choice.model_extra or {}).get("token_ids"))
    prompt_ids = _ints((response.model_extra or {}).get("prompt_token_ids"))
    logprobs = None
    content = getattr(choice.logprobs, "content", None)
    if token_ids is not None and content is not None and len(content) == len(token_ids):
        logprobs = [float(entry.logprob) for entry in content]
    usage = response.usage
    return AssistantTurn(
        # null content only beside tool calls: an empty answer (all reasoning, cut by the length) is ""
        content=message.content if message.content is not None or tool_calls else "",
        tool_calls=tool_calls,
        prompt_token_ids=prompt_ids,
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason=choice.finish_reason,
        usage={"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        if usage
        else {},
    )


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(item, int) for item in value):
        return list(value)
    return None
