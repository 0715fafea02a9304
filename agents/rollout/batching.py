"""Continuous batching over one local `transformers` model: many callers' rows share every forward pass.

Callers (episode threads, server requests) call `generate` from any thread and block on their own
result. One engine thread runs the batch: at each decode-step boundary, rows that finished leave (their
request is answered as soon as all its rows are done) and waiting requests join after a prefill of their
own, so a fast episode never waits for a slow one's whole generation, as it would in a static batch.

The KV cache is a `DynamicCache` we manage, its layers growing in place (`rollout.growing_cache`: a
decode step copies none of it): rows are left-padded, a row's position ids come from its own attention
mask (its real tokens), joining rows' caches are left-padded to the running length and concatenated,
leaving rows are dropped with `batch_select_indices` and all-padding columns are cut off.
With a prefix cache (`rollout.prefix_cache`), a leaving row's keys and values are kept, and a joining row
whose prompt extends a kept sequence prefills only its new tokens, on top of the kept ones.

What is exact and what is not:
- Sampled ids and their logprobs are the ones recorded; logprobs are the model's own (temperature 1).
- A prompt prefilled on top of cached keys and values may differ from a fresh prefill in the last bits
  (see `prefix_cache`); the cache is off unless the owner asks for one.
- Each row samples from its own `torch.Generator` (see `sampler`), so a seeded row's random draws never
  depend on its batch mates. Its logits can: a batched float forward pass (other padding, other matmul
  shapes) may differ from an unbatched one in the last bits, which can flip a near-tie. A rerun with the
  same requests arriving the same way (e.g. `-j 1`, or one call with the same prompts) reproduces exactly.
- Failures stay per request: a request is validated before it joins (empty prompt, ids outside the
  vocabulary, `ContextOverflow`); a prefill that fails is retried one request at a time, so only the
  culprit fails; a stop-string check that fails fails its own request. A decode step that fails (an
  engine fault, e.g. out of memory) fails the requests in that batch, and the engine carries on.
"""

from __future__ import annotations

import inspect
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf_backend import Generation, Sampling
from orchard_envs.agents.rollout.growing_cache import growing_cache
from orchard_envs.agents.rollout.prefix_cache import PrefixCache, shared_start
from orchard_envs.agents.rollout.sampler import RowSampler, row_seed, sample_rows


class _Request:
    """One `generate` call: its rows and the future its caller waits on."""

    def __init__(self, rows: list[_Row]) -> None:
        self.rows = rows
        self.remaining = len(rows)
        self.future: Future[list[Generation]] = Future()


@dataclass(eq=False)
class _Row:
    """One prompt being sampled."""

    prompt: list[int]
    budget: int  # new tokens allowed: max_new_tokens capped by the room left in the context window
    sampler: RowSampler
    stops: tuple[str, ...]
    request: _Request | None = None
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None
    error: BaseException | None = None  # what failed this row's request (left at the next retire)
    joined: bool = False  # in the running batch (it leaves through `_retire`)
    released: bool = False  # answered and no longer counted in flight


def supports(model: Any) -> bool:
    """Whether the engine can drive this model: every cache layer a plain full-attention `DynamicLayer`
    (sliding-window, recurrent or encoder-decoder caches are not left-padded and merged this way)."""
    from transformers.cache_utils import DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # a config the cache cannot read: let generate() handle that model
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class BatchingEngine:
    """The batching generator of one loaded model. `owner` holds `model`, `tokenizer`, `device`,
    `end_token_ids`, `pad_token_id` and `context_tokens` (read at each request, so it may change)."""

    def __init__(self, owner: Any, max_rows: int = 64, prefix_cache_bytes: int = 0) -> None:
        self.owner = owner
        self.max_rows = max_rows
        self.prefix = PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.weights_version = 0  # bumped by each load_weights; recorded in Generation.extra
        self.stats = {"prefills": 0, "decode_steps": 0, "row_steps": 0}
        self._cond = threading.Condition()
        self._model_lock = threading.Lock()  # held by the engine thread while it runs the model
        self._waiting: deque[_Request] = deque()
        self._active: list[_Row] = []
        self._inflight = 0  # rows taken from the queue and not yet answered
        self._paused = False
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._thread: threading.Thread | None = None
        base = owner.model.get_base_model() if hasattr(owner.model, "get_base_model") else owner.model  # peft
        parameters = inspect.signature(base.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last = "logits_to_keep" in parameters

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One sample per prompt; blocks until all are done; thread-safe (batches across callers)."""
        if not prompts:
            return []
        request = _Request([self._row(prompt, sampling, index) for index, prompt in enumerate(prompts)])
        for row in request.rows:
            row.request = request
        with self._cond:
            self._waiting.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="rollout-engine", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return request.future.result()

    def load_weights(self, state_dict: dict[str, Any]) -> int:
        """Copy `state_dict` into the model between batches: admission pauses, the running rows finish on
        the old weights, then the weights change; every generation comes from one version. Returns it."""
        from orchard_envs.agents.rollout.weights import copy_into

        with self._cond:
            self._paused = True
            try:
                self._cond.wait_for(lambda: self._inflight == 0)
                with self._model_lock:
                    copy_into(self.owner.model, state_dict)
                    self.weights_version += 1
                    if self.prefix is not None:  # kept keys and values came from the old weights
                        self.prefix.clear()
            finally:
                self._paused = False
                self._cond.notify_all()
        return self.weights_version

    def _row(self, prompt: list[int], sampling: Sampling, index: int) -> _Row:
        """Validate one prompt in the caller's thread: a bad request fails before it joins anyone."""
        vocabulary = self.owner.model.get_input_embeddings().num_embeddings
        if not prompt:
            raise ValueError("an empty prompt: a prompt needs at least one token")
        if min(prompt) < 0 or max(prompt) >= vocabulary:
            raise ValueError(f"prompt token ids must lie in [0, {vocabulary}): the model's vocabulary")
        window = self.owner.context_tokens
        if len(prompt) >= window:
            raise ContextOverflow(
                f"the prompt has {len(prompt)} tokens; the model's context window is {window}"
            )
        sampler = RowSampler(sampling.temperature, sampling.top_p, row_seed(sampling.seed, index))
        return _Row(list(prompt), min(sampling.max_new_tokens, window - len(prompt)), sampler, sampling.stop)

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._active or (self._waiting and not self._paused))
                    joining = self._take()
                with self._model_lock:
                    if joining:
                        self._admit(joining)
                    if self._active:
                        self._decode()
                    self._retire()

    def _take(self) -> list[_Request]:
        """Waiting requests that fit in the batch (a request bigger than `max_rows` runs on its own)."""
        taken: list[_Request] = []
        while self._waiting and not self._paused:
            rows = len(self._waiting[0].rows)
            if self._inflight and self._inflight + rows > self.max_rows:
                break
            taken.append(self._waiting.popleft())
            self._inflight += rows
        return taken

    def _admit(self, requests: list[_Request]) -> None:
        """Prefill the joining requests together; if that fails, one at a time so only the culprit fails."""
        try:
            self._prefill([row for request in requests for row in request.rows])
        except Exception as exc:
            if len(requests) == 1:
                self._fail(requests[0], exc)
                return
            for request in requests:
                try:
                    self._prefill(request.rows)
                except Exception as alone:
                    self._fail(request, alone)

    def _prefill(self, rows: list[_Row]) -> None:
        """Every row's first token: rows with a cached prefix each on top of it, the others together. All
        forward passes run before any row joins, so a failure leaves the batch as it was."""
        for row in rows:  # a retry after a failed group prefill starts the rows afresh
            row.ids, row.logprobs, row.finish, row.error = [], [], None, None
        if self.prefix is not None and len(rows) > 1:
            self._share_start(rows)
        passes, fresh = [], []
        for row in rows:
            reused, layers = self.prefix.lookup(row.prompt) if self.prefix is not None else (0, None)
            if layers is None:
                fresh.append(row)
            else:
                passes.append(([row], *self._prefill_on(row, reused, layers)))
        if fresh:
            passes.append((fresh, *self._prefill_fresh(fresh)))
        for group, logits, cache, mask in passes:
            self.stats["prefills"] += 1
            self._sample(group, logits)  # the first new token of each row
            self._join(group, cache, mask.to(self.owner.device))

    def _share_start(self, rows: list[_Row]) -> None:
        """Rows joining together that start alike (one suite's system prompt and tools) prefill that start
        once: it goes into the prefix cache, and each row then prefills only its own rest on top of it."""
        assert self.prefix is not None
        start = min(shared_start([row.prompt for row in rows]), min(len(row.prompt) for row in rows) - 1)
        if start < self.prefix.min_reuse or self.prefix.reusable(rows[0].prompt) >= start:
            return
        ids = torch.tensor([rows[0].prompt[:start]], dtype=torch.long)
        cache = DynamicCache(config=self.owner.model.config)
        self._forward(ids, torch.ones_like(ids), torch.arange(start).unsqueeze(0), cache)
        self.stats["prefills"] += 1
        self.prefix.store(rows[0].prompt[:start], [(layer.keys, layer.values) for layer in cache.layers])

    def _prefill_fresh(self, rows: list[_Row]) -> tuple[Any, Any, torch.Tensor]:
        """One left-padded forward pass over the rows' whole prompts."""
        longest = max(len(row.prompt) for row in rows)
        ids = torch.full((len(rows), longest), self.owner.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, longest - len(row.prompt) :] = torch.tensor(row.prompt, dtype=torch.long)
            mask[i, longest - len(row.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = growing_cache(self.owner.model.config)
        return self._forward(ids, mask, positions, cache), cache, mask

    def _prefill_on(
        self, row: _Row, reused: int, layers: list[tuple[Any, Any]]
    ) -> tuple[Any, Any, torch.Tensor]:
        """The prompt's tokens after the first `reused`, on top of their cached keys and values."""
        cache = growing_cache(self.owner.model.config)
        for index, (keys, values) in enumerate(layers):
            cache.update(keys, values, index)
        ids = torch.tensor([row.prompt[reused:]], dtype=torch.long)
        mask = torch.ones((1, len(row.prompt)), dtype=torch.long)
        positions = torch.arange(reused, len(row.prompt)).unsqueeze(0)
        return self._forward(ids, mask, positions, cache), cache, mask

    def _decode(self) -> None:
        """One step for every running row: feed its last sampled token, sample the next."""
        assert self._mask is not None
        rows = self._active
        tokens = torch.tensor([[row.ids[-1]] for row in rows], dtype=torch.long)
        positions = self._mask.sum(-1, keepdim=True)
        mask = torch.cat([self._mask, torch.ones_like(positions)], dim=-1)
        try:
            logits = self._forward(tokens, mask, positions, self._cache)
        except Exception as exc:  # an engine fault: answer this batch's requests with it, start afresh
            for request in {id(row.request): row.request for row in rows}.values():
                self._fail(request, exc)  # type: ignore[arg-type]
            self._cache = self._mask = None
            return
        self._mask = mask
        self.stats["decode_steps"] += 1
        self.stats["row_steps"] += len(rows)
        self._sample(rows, logits)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        device = self.owner.device
        kwargs = {self._cache_arg: cache, "use_cache": True}
        if self._keep_last:
            kwargs["logits_to_keep"] = 1
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        out = self.owner.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs)
        return out.logits[:, -1]

    def _sample(self, rows: list[_Row], logits: torch.Tensor) -> None:
        ids, logprobs = sample_rows(logits, [row.sampler for row in rows])
        for row, token, logprob in zip(rows, ids, logprobs, strict=True):
            row.ids.append(token)
            row.logprobs.append(logprob)
            try:
                row.finish = self._finish(row, token)
            except Exception as exc:  # e.g. the tokenizer failed on a stop-string check: this request only
                row.error = exc

    def _finish(self, row: _Row, token: int) -> str | None:
        """Why the row ends after `token`, if it does: a stop string completed by this token (the earliest
        prefix that contains one, as before), an end token (kept, as sampled), or the budget."""
        if row.stops:
            text = self.owner.tokenizer.decode(row.ids, skip_special_tokens=False)
            if any(stop in text for stop in row.stops):
                return "stop"
        if token in self.owner.end_token_ids:
            return "stop"
        return "length" if len(row.ids) >= row.budget else None

    def _join(self, rows: list[_Row], cache: Any, mask: torch.Tensor) -> None:
        """Left-pad the shorter of the running and the joining caches to one length, then concatenate
        (all new tensors are built before any is assigned, so a failure leaves the batch as it was)."""
        if self._cache is None or self._mask is None:
            self._cache, self._mask = cache, mask
        else:
            length = max(self._mask.shape[1], mask.shape[1])
            merged = [
                (_cat_left(old.keys, new.keys, length, 2), _cat_left(old.values, new.values, length, 2))
                for old, new in zip(self._cache.layers, cache.layers, strict=True)
            ]
            self._mask = _cat_left(self._mask, mask, length, 1)
            for layer, (keys, values) in zip(self._cache.layers, merged, strict=True):
                layer.keys, layer.values = keys, values
        for row in rows:
            row.joined = True
        self._active = self._active + list(rows)

    def _retire(self) -> None:
        """Drop finished rows (and rows of failed requests); answer requests whose rows are all done."""
        leaving = {i for i, row in enumerate(self._active) if row.finish or row.error or _answered(row)}
        if not leaving:
            return
        for i in sorted(leaving):
            row = self._active[i]
            if row.error is not None:
                self._fail(row.request, row.error)
            elif self.prefix is not None and row.finish and not _answered(row) and self._mask is not None:
                self._keep(i, row)  # a finished row of a request still waiting for its answer
            self._release([row])
        keep = [i for i in range(len(self._active)) if i not in leaving]
        if not keep:
            self._cache = self._mask = None
            self._active = []
            return
        assert self._mask is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        mask = self._mask[index]
        start = int(mask.any(0).long().argmax())  # leading columns that are padding in every row
        for layer in self._cache.layers:
            layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
        self._mask = mask[:, start:]
        self._active = [self._active[i] for i in keep]

    def _keep(self, index: int, row: _Row) -> None:
        """Hand the prefix cache the row's sequence: its prompt and the ids fed so far (all but the last
        sampled one), which are the row's last columns of the running cache."""
        assert self.prefix is not None and self._mask is not None and self._cache is not None
        length = int(self._mask[index].sum())
        sequence = row.prompt + row.ids[:-1]
        if len(sequence) != length:  # never expected; a cache that could be wrong is worse than none
            return
        row_slice = (slice(index, index + 1), slice(None), slice(-length, None))
        layers = [(kv.keys[row_slice].clone(), kv.values[row_slice].clone()) for kv in self._cache.layers]
        self.prefix.store(sequence, layers)

    def _release(self, rows: list[_Row]) -> None:
        """Rows leave the in-flight count; a request whose rows have all left gets its answer."""
        with self._cond:
            for row in rows:
                if not row.released:
                    row.released = True
                    self._inflight -= 1
                    row.request.remaining -= 1  # type: ignore[union-attr]
            self._cond.notify_all()
        request = rows[0].request
        assert request is not None
        if request.remaining == 0 and not request.future.done():
            version = self.weights_version
            request.future.set_result([_generation(row, version) for row in request.rows])

    def _fail(self, request: _Request, exc: BaseException) -> None:
        """Answer `request` with `exc`; its rows in the batch leave at the next retire, the others now."""
        if not request.future.done():
            request.future.set_exception(exc)
        outside = [row for row in request.rows if not row.joined]
        if outside:
            self._release(outside)


def _answered(row: _Row) -> bool:
    return row.request is not None and row.request.future.done()


def _generation(row: _Row, weights_version: int) -> Generation:
    extra = {"weights_version": weights_version}
    return Generation(row.ids, row.logprobs, row.finish or "length", len(row.prompt), extra)


def _cat_left(old: torch.Tensor, new: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """`old` then `new` along the batch dimension, each left-padded along `dim` to `length`."""
    return torch.cat([_pad_left(old, length, dim), _pad_left(new, length, dim)])


def _pad_left(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Zeros in front along `dim` up to `length` (masked out, so their value never matters)."""
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
