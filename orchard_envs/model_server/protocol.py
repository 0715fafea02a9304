"""The subset of OpenAI's chat and (token-id) completions requests that orchard-serve understands.

Validated up front.

Unknown fields are ignored (clients send `user`, `metadata`, penalties...), as OpenAI-compatible servers
commonly do; fields we do read are checked strictly, so a bad value is a 400 that names it rather than a
surprise later. Errors use OpenAI's body shape so the `openai` client raises its usual exception types.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_STOPS = 8


class APIError(Exception):
    """An error answered as OpenAI does: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        """The error in OpenAI's JSON shape, which OpenAI clients parse into their exceptions."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class FunctionCall(BaseModel):
    """A tool call's function; `arguments` is JSON text, as OpenAI sends it."""

    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    """A tool call in an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    """A chat message; unknown fields are ignored, as OpenAI's API does."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        if isinstance(content, list):
            for part in content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported ({'type': 'text', 'text': ...})")
        return content

    @model_validator(mode="after")
    def _content_where_required(self) -> Message:
        if self.content is None and self.role != "assistant":  # an empty reply may come back as null
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self

    def for_template(self) -> dict[str, Any]:
        """The message as `ChatFormat` takes it; `developer` is OpenAI's newer name for `system`."""
        message = self.model_dump(exclude_none=True)
        if self.role == "developer":
            message["role"] = "system"
        if self.content is None:
            message["content"] = None
        return message


class FunctionSpec(BaseModel):
    """A tool's name and JSON-schema parameters; extra keys pass through to the chat template."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    """A tool offered to the model."""

    type: Literal["function"]
    function: FunctionSpec


class SamplingRequest(BaseModel):
    """The fields chat and plain completions share: which model, how to sample, what comes back."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    return_token_ids: bool | None = None  # vLLM's extension: the prompt's and the choices' token ids
    stream: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOPS} non-empty strings")
        return stop

    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple, whether sent as one string, a list or nothing."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def wanted_tokens(self) -> int | None:
        """The completion length asked for, if any."""
        return self.max_tokens


class CompletionRequest(SamplingRequest):
    """OpenAI's (legacy) completions request with token-id prompts only, as RL rollout engines send
    them: text prompts are refused, since the server would have to guess how they tokenize."""

    prompt: list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)  # accepted; only the sampled token's come back

    @field_validator("prompt", mode="before")
    @classmethod
    def _token_ids_only(cls, prompt: Any) -> Any:
        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], str)):
            raise ValueError(
                "orchard-serve's completions take token-id prompts (a list of ids, or a list of such "
                "lists): tokenize first, or send messages to /v1/chat/completions"
            )
        if not prompt or (isinstance(prompt[0], list) and not all(prompt)):
            raise ValueError("a prompt needs at least one token id")
        return prompt

    def prompts(self) -> list[list[int]]:
        """The prompts as a list of token-id lists, whether one prompt or several were sent."""
        return [self.prompt] if isinstance(self.prompt[0], int) else self.prompt  # type: ignore[list-item]


class ChatCompletionRequest(SamplingRequest):
    """OpenAI's chat completion request, the fields orchard-serve honours; others are ignored."""

    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none"] | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)  # accepted; the top lists come back empty

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _no_forced_tools(cls, choice: Any) -> Any:
        if choice is not None and choice not in ("auto", "none"):
            raise ValueError("tool_choice must be 'auto' or 'none'; forcing a tool call is not supported")
        return choice

    def wanted_tokens(self) -> int | None:
        """OpenAI's newer `max_completion_tokens` first, then `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens

    def template_tools(self) -> list[dict[str, Any]]:
        """The tools the model is offered: none when the client said tool_choice 'none'."""
        if self.tool_choice == "none" or not self.tools:
            return []
        return [tool.model_dump(exclude_none=True) for tool in self.tools]
