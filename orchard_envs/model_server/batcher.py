"""Micro-batching: requests waiting at the same moment with the same sampling share one forward pass.

There is no timer. The first request runs at once; requests that arrive while a batch is generating queue
up and go together in the next call. The generator is thread-safe on its own, so batching only buys
throughput, and its failure modes stay per request: if a batch fails, each request in it is retried
alone, so one request's bad input never fails its neighbours. Requests with a seed run alone, so the
same seeded request gives the same sample whatever else is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from orchard_envs.agents.hf_backend import Generation, Sampling

GenerateFn = Callable[[list[list[int]], Sampling], list[Generation]]


@dataclass
class _Job:
    prompts: list[list[int]]
    sampling: Sampling
    future: asyncio.Future[list[Generation]]


class MicroBatcher:
    """Use from one event loop; `generate` is run on a worker thread, never on the loop."""

    def __init__(self, generate: GenerateFn, max_rows: int = 32) -> None:
        self._generate = generate
        self.max_rows = max_rows
        self._pending: list[_Job] = []
        self._drainer: asyncio.Task[None] | None = None

    async def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One generation per prompt (a request's `n` samples are its prompt repeated)."""
        future: asyncio.Future[list[Generation]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(prompts, sampling, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            jobs, self._pending = self._pending, []
            for batch in batches(jobs, self.max_rows):
                await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a cancelled request needs no sample
        if not live:
            return
        rows = [prompt for job in live for prompt in job.prompts]
        try:
            results = await asyncio.to_thread(self._generate, rows, live[0].sampling)
        except Exception as exc:
            if len(live) > 1:
                for job in live:
                    await self._run([job])
            elif not live[0].future.done():
                live[0].future.set_exception(exc)
            return
        start = 0
        for job in live:
            end = start + len(job.prompts)
            if not job.future.done():
                job.future.set_result(results[start:end])
            start = end


def batches(jobs: list[_Job], max_rows: int) -> list[list[_Job]]:
    """Jobs grouped by sampling in arrival order, each group cut into batches of at most `max_rows` rows
    (a job bigger than that goes alone, never split)."""
    groups: dict[Hashable, list[list[_Job]]] = {}
    for job in jobs:
        key: Hashable = job.sampling if job.sampling.seed is None else object()
        chunks = groups.setdefault(key, [[]])
        rows = sum(len(j.prompts) for j in chunks[-1])
        if chunks[-1] and rows + len(job.prompts) > max_rows:
            chunks.append([])
        chunks[-1].append(job)
    return [chunk for chunks in groups.values() for chunk in chunks]
