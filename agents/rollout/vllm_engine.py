"""A colocated `vllm.LLM` as a `RolloutEngine` (the `vllm` extra, CUDA): token ids in, token ids out.

A `vllm.LLM` is not safe to call from several threads, and its `generate` batches whatever it is given. So
concurrent callers queue their prompts and whichever caller finds the engine free sends everything queued
so far in one `generate` call (one batch per round, every row with its own seed and sampling settings);
the others wait for their rows. `load_weights` takes the same lock, so an update lands between batches.

Untested against a real vLLM here (no CUDA on this project's machines): `tests/test_vllm_engine.py` tests
this code against a stand-in module. The attributes reached inside vLLM (`llm_engine.model_config`,
`vllm.inputs.TokensPrompt`, the `logprobs` layout, and the model's `load_weights` behind the executor)
move between vLLM versions; the errors say which one was not found.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf_backend import Generation, Sampling, checkpoint_eos, end_token_ids
from orchard_envs.agents.hf_models import DEFAULT_MODEL, resolve_model
from orchard_envs.agents.rollout.weights import as_state_dict
from orchard_envs.errors import ConfigError


def import_vllm() -> Any:
    """The vllm module, or a ConfigError that says how to install it or what to use instead."""
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "vLLM is not installed: `pip install 'orchard-envs[vllm]'` on a CUDA machine, or use the "
            "`hf` engine (transformers) or a running `vllm serve` / orchard-serve (agent `openai`, "
            "engine `server`)"
        ) from exc
    return vllm


def _row_sampling(sampling: Sampling, index: int) -> Sampling:
    """Row `index` of a call draws with its own seed, as the hf engine's rows do (`sampler.row_seed`)."""
    if sampling.seed is None:
        return sampling
    from orchard_envs.agents.rollout.sampler import row_seed

    return replace(sampling, seed=row_seed(sampling.seed, index))


class VLLMEngine:
    """One `vllm.LLM`; concurrent `generate` calls are sent to it together, one batch at a time."""

    def __init__(self, model: str = DEFAULT_MODEL, *, seed: int | None = None, **engine_options: Any) -> None:
        vllm = import_vllm()
        path = resolve_model(model)
        self.name = model
        self.llm = vllm.LLM(model=path, seed=seed or 0, **engine_options)
        self.tokenizer = self.llm.get_tokenizer()
        self.end_token_ids = end_token_ids(self.tokenizer, checkpoint_eos(path))
        self.context_tokens = int(self.llm.llm_engine.model_config.max_model_len)
        self._params, self._prompt = vllm.SamplingParams, vllm.inputs.TokensPrompt
        self._engine_lock = threading.Lock()  # one call into vLLM at a time: generate or load_weights
        self._queue_lock = threading.Lock()
        self._queued: list[tuple[list[int], Sampling, Future[Generation]]] = []
        self.weights_version = 0

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One sample per prompt; rows queued by other threads meanwhile go out in the same batch."""
        for prompt in prompts:
            if not prompt:
                raise ValueError("an empty prompt: there is nothing to condition on")
            if len(prompt) >= self.context_tokens:
                raise ContextOverflow(
                    f"the prompt has {len(prompt)} tokens; the window is {self.context_tokens}"
                )
        futures: list[Future[Generation]] = [Future() for _ in prompts]
        rows = [(prompt, _row_sampling(sampling, index)) for index, prompt in enumerate(prompts)]
        with self._queue_lock:
            self._queued += [(*row, future) for row, future in zip(rows, futures, strict=True)]
        while not all(future.done() for future in futures):
            with self._engine_lock:
                self._run_queued()
        return [future.result() for future in futures]

    def _run_queued(self) -> None:
        """Send every queued row in one `generate` call (under the engine lock)."""
        with self._queue_lock:
            batch, self._queued = self._queued, []
        if not batch:
            return
        requests = [self._prompt(prompt_token_ids=prompt) for prompt, _, _ in batch]
        params = [self._sampling_params(sampling) for _, sampling, _ in batch]
        try:
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        except Exception as exc:  # the batch fails, its callers see why; the engine carries on
            for _, _, future in batch:
                future.set_exception(exc)
            return
        for (prompt, _, future), output in zip(batch, outputs, strict=True):
            future.set_result(self._generation(prompt, output.outputs[0]))

    def _sampling_params(self, sampling: Sampling) -> Any:
        return self._params(
            max_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=True,  # the ids keep the stop string, as the hf engine's do
            logprobs=0,  # the sampled token's own logprob
        )

    def _generation(self, prompt: list[int], output: Any) -> Generation:
        ids = list(output.token_ids)
        logprobs = [step[token].logprob for step, token in zip(output.logprobs or [], ids, strict=False)]
        reason = "length" if output.finish_reason == "length" else "stop"
        return Generation(ids, logprobs, reason, len(prompt), {"weights_version": self.weights_version})

    def load_weights(self, state_dict_or_path: dict[str, Any] | str | Path) -> int:
        """New weights between batches, through the model's own `load_weights` (vLLM maps HF names)."""
        state = as_state_dict(state_dict_or_path)
        with self._engine_lock:
            self._model().load_weights(weights=list(state.items()))
            self.weights_version += 1
        return self.weights_version

    def _model(self) -> Any:
        """The model inside vLLM's single-process executor (where vLLM versions keep it)."""
        executor = getattr(self.llm.llm_engine, "model_executor", None)
        worker = getattr(executor, "driver_worker", None)
        worker = getattr(worker, "worker", worker)  # newer versions wrap the worker once more
        model = getattr(getattr(worker, "model_runner", None), "model", None)
        if model is None or not hasattr(model, "load_weights"):
            raise ConfigError(
                "this vLLM version keeps its model out of reach (llm_engine.model_executor.driver_worker"
                ".model_runner.model): run vLLM as a server with a weight-reload hook (engine `server`)"
            )
        return model
