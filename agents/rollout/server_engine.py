"""Any OpenAI-compatible server that takes token-id prompts, as a `RolloutEngine`.

`generate` sends one `/v1/completions` request per call with the prompts as token ids and
`return_token_ids` (vLLM's and orchard-serve's extension), so what comes back is the exact sampled ids and
their logprobs, never re-tokenized text. Calls from many threads go out at once (the client is shared and
thread-safe) and the server batches them. `load_weights` is orchard-serve's hook:
`POST /v1/weights/reload {"path": DIR}`; a state dict is first saved as a checkpoint folder in
`weights_dir`, which the server must be able to read (same machine or a shared file system).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf_backend import Generation, Sampling, checkpoint_eos, end_token_ids
from orchard_envs.agents.hf_models import resolve_model
from orchard_envs.errors import BackendUnavailable, ConfigError


class ServerEngine:
    """Samples from a served model; `tokenizer` (a folder or name) is the served model's, for agents."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: str | None = None,
        weights_dir: str | Path | None = None,
        timeout: float = 600.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        card = self._served_model(model)
        self.name = card["id"]
        self.context_tokens = int(card.get("max_model_len") or 1 << 30)
        self._tokenizer_source = tokenizer or self.name
        self._tokenizer: Any = None
        self.weights_dir = Path(weights_dir) if weights_dir else None
        self.weights_version = 0

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST and parse; an unreachable or failing server is infrastructure, a 4xx names the mistake."""
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"the rollout server at {self.base_url} is unreachable: {exc}") from exc
        return self._checked(response, path)

    def _checked(self, response: httpx.Response, path: str) -> dict[str, Any]:
        """The parsed body of a 2xx; each failure as the error that says whose it is."""
        if response.status_code >= 500:
            raise BackendUnavailable(f"the rollout server answered {response.status_code}: {response.text}")
        if response.status_code >= 400:
            error = _error(response)
            if error.get("code") == "context_length_exceeded":
                raise ContextOverflow(error.get("message", response.text))
            if response.status_code in (401, 403, 404):
                raise ConfigError(f"{self.base_url}{path}: {error.get('message', response.text)}")
            raise ValueError(error.get("message", response.text))
        return response.json()

    def _served_model(self, wanted: str | None) -> dict[str, Any]:
        try:
            response = self.client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"cannot list the models of {self.base_url}: {exc}; is the server running "
                "(e.g. `orchard-serve --model PATH`)?"
            ) from exc
        cards = self._checked(response, "/v1/models").get("data", [])
        for card in cards:
            if wanted is None or card.get("id") == wanted:
                return card
        names = ", ".join(card.get("id", "?") for card in cards) or "none"
        raise ConfigError(f"{self.base_url} does not serve {wanted!r}; it serves: {names}")

    @property
    def tokenizer(self) -> Any:
        """The served model's tokenizer, loaded locally on first use (agents render prompts with it)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                path = resolve_model(self._tokenizer_source)
                tokenizer = AutoTokenizer.from_pretrained(path)
            except (OSError, ConfigError) as exc:
                raise ConfigError(
                    f"no local tokenizer for {self._tokenizer_source!r}: pass tokenizer=PATH (the served "
                    f"model's folder) to ServerEngine ({exc})"
                ) from exc
            self._end_ids = end_token_ids(tokenizer, checkpoint_eos(path))
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def end_token_ids(self) -> set[int]:
        """The ids that end a turn: the checkpoint's generation config's eos ids and the tokenizer's."""
        self.tokenizer  # noqa: B018 - loads both
        return self._end_ids

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One sample per prompt, in one request: the server draws row i as its own engine's row i."""
        body: dict[str, Any] = {
            "model": self.name,
            "prompt": prompts,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "logprobs": 0,
            "return_token_ids": True,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        choices = sorted(self._post("/v1/completions", body)["choices"], key=lambda choice: choice["index"])
        if len(choices) != len(prompts):
            raise BackendUnavailable(f"asked for {len(prompts)} completions, the server sent {len(choices)}")
        return [self._generation(prompt, choice) for prompt, choice in zip(prompts, choices, strict=True)]

    def _generation(self, prompt: list[int], choice: dict[str, Any]) -> Generation:
        ids = choice.get("token_ids")
        if ids is None:
            raise ConfigError(
                f"{self.base_url} does not return token ids (`return_token_ids`): use orchard-serve or a "
                "vLLM recent enough to support it"
            )
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        version = {"weights_version": self.weights_version}
        return Generation(list(ids), list(logprobs), reason, len(prompt), version)

    def load_weights(self, state_dict_or_path: dict[str, Any] | str | Path) -> int:
        """The server reloads from a checkpoint folder; a state dict is saved as one first."""
        if isinstance(state_dict_or_path, dict):  # saved for the server to read, removed once it has
            with tempfile.TemporaryDirectory(prefix="orchard-weights-", dir=self.weights_dir) as folder:
                _save_state_dict(state_dict_or_path, Path(folder))
                return self.load_weights(folder)
        answer = self._post("/v1/weights/reload", {"path": str(Path(state_dict_or_path).resolve())})
        self.weights_version = int(answer.get("weights_version", self.weights_version + 1))
        return self.weights_version

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()


def _save_state_dict(state: dict[str, Any], folder: Path) -> None:
    """`model.safetensors` in `folder`; tensors are copied apart, as safetensors refuses shared storage."""
    from safetensors.torch import save_file

    tensors = {name: tensor.detach().to("cpu").clone().contiguous() for name, tensor in state.items()}
    save_file(tensors, str(folder / "model.safetensors"))


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except ValueError:
        return {}
    return error if isinstance(error, dict) else {}
