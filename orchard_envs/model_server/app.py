"""The orchard-serve HTTP app: OpenAI chat completions (and token-id completions) over one `HFGenerator`.

A request is rendered with the model's own chat template (`ChatFormat`, tools included), tokenized once,
sampled as token ids, and decoded and parsed back into an OpenAI message. With `return_token_ids` the
response carries the exact prompt and sampled ids (vLLM's convention), so RL data collected through this
server is token-exact. `/v1/completions` takes token-id prompts only (what an RL rollout engine sends:
`ServerEngine`) and answers the sampled ids and logprobs. Everything that touches the tokenizer or the
model runs on worker threads.

An `HFGenerator` batches concurrent requests itself (its rollout engine: continuous batching, per-row
seeds), so requests go straight to it from a thread pool; a generator without an engine goes through
`MicroBatcher`. `POST /v1/weights/reload {"path": DIR}` loads new weights from a checkpoint folder
between batches (for RL: the trainer saves, the server reloads); it sits behind the API key.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchard_envs import __version__
from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import Generation, HFGenerator, Sampling
from orchard_envs.agents.prompt_ledger import without_end_token
from orchard_envs.errors import ConfigError
from orchard_envs.model_server.batcher import MicroBatcher
from orchard_envs.model_server.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
)

MIN_LOGPROB = -9999.0  # what OpenAI reports for "impossible": JSON has no -inf


class Completer:
    """Request -> prompt ids -> generations -> OpenAI response, for one model."""

    def __init__(self, generator: HFGenerator, served_name: str, default_max_tokens: int | None) -> None:
        try:
            self.chat = ChatFormat(generator.tokenizer)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.generator = generator
        self.served_name = served_name
        self.default_max_tokens = default_max_tokens
        self.batcher = MicroBatcher(lambda prompts, sampling: self.generator.generate(prompts, sampling))
        self.engine = getattr(generator, "engine", None)  # batches across threads on its own
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="serve-generate")

    async def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """Through the generator's own engine when it has one, else through the micro-batcher."""
        if self.engine is None:
            return await self.batcher.generate(prompts, sampling)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.generator.generate, prompts, sampling)

    def prompt_ids(self, request: ChatCompletionRequest) -> list[int]:
        """The request rendered with the model's chat template, as token ids; a refusing template is a 400."""
        from jinja2 import TemplateError

        messages = [message.for_template() for message in request.messages]
        try:
            text = self.chat.render(messages, request.template_tools(), add_generation_prompt=True)
        except TemplateError as exc:  # e.g. templates that insist on alternating user/assistant roles
            message = f"the model's chat template refused these messages: {exc}"
            raise APIError(400, message, param="messages") from exc
        return list(self.generator.tokenizer.encode(text, add_special_tokens=False))

    def sampling(self, request: SamplingRequest, prompt_tokens: int) -> Sampling:
        """Sampling settings capped to the context room left; ContextOverflow if the prompt fills it."""
        room = self.generator.context_tokens - prompt_tokens
        if room < 1:
            raise ContextOverflow(
                f"the prompt has {prompt_tokens} tokens; the model's context window is "
                f"{self.generator.context_tokens}"
            )
        wanted = request.wanted_tokens() or self.default_max_tokens or room
        temperature = 1.0 if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        return Sampling(min(wanted, room), temperature, top_p, request.seed, request.stops())

    def check(self, request: SamplingRequest) -> None:
        """Streaming and other models' names are refused."""
        if request.stream:
            raise APIError(
                400, "streaming is not supported by orchard-serve: send stream false", param="stream"
            )
        if request.model and request.model != self.served_name:
            raise APIError(
                404,
                f"The model `{request.model}` does not exist; this server serves `{self.served_name}`",
                param="model",
                code="model_not_found",
            )

    async def complete(self, request: ChatCompletionRequest) -> dict[str, Any]:
        """One chat completion in OpenAI's response shape."""
        self.check(request)
        prompt = await asyncio.to_thread(self.prompt_ids, request)
        sampling = self.sampling(request, len(prompt))
        generations = await self.generate([prompt] * (request.n or 1), sampling)
        choices = await asyncio.to_thread(self.choices, request, generations)
        response: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": sum(len(g.token_ids) for g in generations),
                "total_tokens": len(prompt) + sum(len(g.token_ids) for g in generations),
            },
        }
        if request.return_token_ids:
            response["prompt_token_ids"] = prompt
        return response

    async def complete_tokens(self, request: CompletionRequest) -> dict[str, Any]:
        """Token-id prompts in, `n` samples of each out (prompt-major, as OpenAI orders them), in the
        completions response shape; one batch, so row i draws as row i of `HFGenerator.generate` would."""
        self.check(request)
        prompts = request.prompts()
        sampling = self.sampling(request, max(len(prompt) for prompt in prompts))
        rows = [prompt for prompt in prompts for _ in range(request.n or 1)]
        try:
            generations = await self.generate(rows, sampling)
        except ValueError as exc:  # e.g. an id outside the vocabulary
            raise APIError(400, str(exc), param="prompt") from exc
        choices = await asyncio.to_thread(self.text_choices, request, rows, generations)
        completion_tokens = sum(len(g.token_ids) for g in generations)
        prompt_tokens = sum(len(prompt) for prompt in prompts)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.served_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def text_choices(
        self, request: CompletionRequest, rows: list[list[int]], generations: list[Generation]
    ) -> list[dict[str, Any]]:
        """Completions choices: the text (cut at stop strings), the ids and their logprobs."""
        decode, stops = self.generator.tokenizer.decode, request.stops()
        out = []
        for index, (prompt, generation) in enumerate(zip(rows, generations, strict=True)):
            body = without_end_token(generation.token_ids, self.generator.end_token_ids)
            choice: dict[str, Any] = {
                "index": index,
                "text": _before_stop(decode(body, skip_special_tokens=False), stops),
                "finish_reason": generation.finish_reason,
                "logprobs": None,
            }
            if request.logprobs is not None:
                tokens = [decode([token], skip_special_tokens=False) for token in generation.token_ids]
                finite = [_reportable(lp) for lp in generation.logprobs]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": finite, "top_logprobs": None}
            if request.return_token_ids:
                choice["prompt_token_ids"], choice["token_ids"] = prompt, generation.token_ids
            out.append(choice)
        return out

    def choices(self, request: ChatCompletionRequest, generations: list[Generation]) -> list[dict[str, Any]]:
        """OpenAI choices from generations: cut at stop strings, tool calls parsed by the chat template."""
        tools, stops = request.template_tools(), request.stops()
        decode = self.generator.tokenizer.decode
        out = []
        for index, generation in enumerate(generations):
            body = without_end_token(generation.token_ids, self.generator.end_token_ids)
            text = _before_stop(decode(body, skip_special_tokens=False), stops)
            reply = self.chat.parse(text, tools)
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if reply.tool_calls:
                message["tool_calls"] = reply.tool_calls
            choice: dict[str, Any] = {
                "index": index,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else generation.finish_reason,
                "logprobs": self.logprobs(generation) if request.logprobs else None,
            }
            if request.return_token_ids:
                choice["token_ids"] = generation.token_ids
            out.append(choice)
        return out

    def logprobs(self, generation: Generation) -> dict[str, Any]:
        """One entry per sampled token (the end token included, as its id is in `token_ids`)."""
        entries = []
        for token_id, logprob in zip(generation.token_ids, generation.logprobs, strict=True):
            token = self.generator.tokenizer.decode([token_id], skip_special_tokens=False)
            entries.append(
                {
                    "token": token,
                    "logprob": _reportable(logprob),
                    "bytes": list(token.encode("utf-8")),
                    "top_logprobs": [],
                }
            )
        return {"content": entries}


class ReloadRequest(BaseModel):
    """`POST /v1/weights/reload`: a checkpoint folder (save_pretrained) on the server's machine."""

    path: str


def _reportable(logprob: float) -> float:
    """A logprob as JSON can carry it: -inf (an impossible token) as OpenAI's floor."""
    return logprob if math.isfinite(logprob) else MIN_LOGPROB


def _before_stop(text: str, stops: tuple[str, ...]) -> str:
    """OpenAI leaves the stop string out of the text (the token ids keep it, as vLLM's do)."""
    cuts = [text.find(stop) for stop in stops if stop in text]
    return text[: min(cuts)] if cuts else text


def _auth(api_key: str | None) -> Any:
    """OpenAI's `Authorization: Bearer <key>`; no key configured means an open server."""

    async def verify(request: Request) -> None:
        if not api_key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(
                401, "missing API key: send the header `Authorization: Bearer <key>`", code="invalid_api_key"
            )
        if not secrets.compare_digest(given.strip().encode(), api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    return verify


def _validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 becomes OpenAI's 400, naming the first offending field."""
    problems, param = [], None
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        param = param or where or None
        problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return APIError(400, "invalid request: " + "; ".join(problems), param=param)


def _install_error_handlers(app: FastAPI) -> None:
    def answer(error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return answer(APIError(exc.status_code, str(exc.detail)))

    @app.exception_handler(ContextOverflow)
    async def overflow(request: Request, exc: ContextOverflow) -> JSONResponse:
        return answer(APIError(400, str(exc), param="messages", code="context_length_exceeded"))

    @app.exception_handler(ConfigError)
    async def bad_setting(request: Request, exc: ConfigError) -> JSONResponse:
        return answer(APIError(400, str(exc)))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return answer(APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error"))


def create_app(
    generator: HFGenerator,
    served_name: str | None = None,
    api_key: str | None = None,
    *,
    default_max_tokens: int | None = None,
) -> FastAPI:
    """The server over `generator` (which the caller loads). Without `max_tokens` a request may fill the
    rest of the context window, as with OpenAI and vLLM, unless `default_max_tokens` caps it."""
    completer = Completer(generator, served_name or generator.name, default_max_tokens)
    started = int(time.time())
    app = FastAPI(title="orchard-serve", version=__version__)
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": completer.served_name}

    api = APIRouter(prefix="/v1", dependencies=[Depends(_auth(api_key))])

    @api.get("/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": completer.served_name,
            "object": "model",
            "created": started,
            "owned_by": "orchard",
            "max_model_len": generator.context_tokens,
        }
        return {"object": "list", "data": [card]}

    @api.post("/chat/completions")
    async def chat_completions(request: ChatCompletionRequest) -> JSONResponse:
        return JSONResponse(await completer.complete(request))

    @api.post("/completions")
    async def completions(request: CompletionRequest) -> JSONResponse:
        return JSONResponse(await completer.complete_tokens(request))

    @api.post("/weights/reload")
    async def reload(body: ReloadRequest) -> dict[str, Any]:
        if not hasattr(generator, "load_weights"):
            raise APIError(400, "this server's generator cannot load weights")
        version = await asyncio.to_thread(generator.load_weights, body.path)
        return {"status": "ok", "path": body.path, "weights_version": version}

    app.include_router(api)
    return app
