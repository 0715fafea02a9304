"""Jobs: commands the service runs in sandboxes on a bounded thread pool, one at a time per sandbox.

Backend calls block (a command may run for minutes), so they run on worker threads and never on the
event loop. Like Orchard Env, commands in one sandbox run in submission order, one after another; a
sandbox with queued work holds at most one worker, so a busy sandbox cannot starve the others. When
more than `max_pending` tasks are queued or running, `submit` raises `Overloaded` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchard_envs.env_service.models import FINAL_STATUSES, JobResponse, JobStatus
from orchard_envs.errors import OrchardError
from orchard_envs.sandbox.base import Sandbox
from orchard_envs.sandbox.spec import ExecResult

log = logging.getLogger(__name__)
T = TypeVar("T")


class Overloaded(Exception):
    """Too much work is queued; the caller should retry later (HTTP 503)."""


def clean_text(text: str) -> str:
    """Text that always encodes as UTF-8 JSON (a backend may hand back lone surrogates)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # os.fsdecode's escapes: recover the original bytes, then replace what is not UTF-8
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


class Completion:
    """A one-shot flag that worker threads set and any number of event-loop coroutines await."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        """Whether `set` was called; a cheap check that never waits."""
        return self._set

    def set(self) -> None:
        """Mark done and wake every waiter, from any thread; waiters on closed loops are skipped."""
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, timeout: float | None) -> bool:
        """True once set; False if `timeout` seconds passed first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._set:
                return True
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Lanes:
    """A bounded thread pool that runs tasks in FIFO order per lane (one lane per sandbox)."""

    def __init__(self, max_workers: int, max_pending: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="orchard-job")
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._queues: dict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
        return self._pending

    def submit(self, lane: str, fn: Callable[[], T]) -> Future[T]:
        """Queue `fn` behind the lane's earlier tasks; Overloaded (HTTP 503) when too much is pending."""
        future: Future[T] = Future()
        with self._lock:
            if self._pending >= self._max_pending:
                raise Overloaded(
                    f"{self._pending} jobs are queued or running (the limit is {self._max_pending}); "
                    "retry shortly"
                )
            self._pending += 1
            queue = self._queues.get(lane)
            idle = queue is None
            if idle:
                queue = self._queues[lane] = deque()
            queue.append((future, fn))
        if idle:
            self._pool.submit(self._drain, lane)
        return future

    def cancel_lane(self, lane: str) -> int:
        """Cancel the lane's queued (not yet running) tasks; returns how many."""
        with self._lock:
            queue = self._queues.get(lane)
            if not queue:
                return 0
            # the head may be running; everything behind it has not started
            dropped = [queue.pop() for _ in range(len(queue) - 1)]
            self._pending -= len(dropped)
        for future, _ in dropped:
            future.cancel()
        return len(dropped)

    def _drain(self, lane: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[lane]
                future, fn = queue[0]
            ran = future.set_running_or_notify_cancel()
            result: Any = None
            error: BaseException | None = None
            if ran:
                try:
                    result = fn()
                except BaseException as exc:
                    error = exc
            # free the slot before the waiter wakes, so it can submit its next job at once
            with self._lock:
                queue.popleft()
                self._pending -= 1
                last = not queue
                if last:
                    del self._queues[lane]
            if ran and error is not None:
                future.set_exception(error)
            elif ran:
                future.set_result(result)
            if last:
                return

    def shutdown(self) -> None:
        """Cancel every queued task and stop the pool without waiting for running ones."""
        with self._lock:
            lanes = list(self._queues)
        for lane in lanes:
            self.cancel_lane(lane)
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Job:
    """One command's record, in Orchard Env's job shape."""

    job_id: str
    sandbox_id: str
    command: str
    session: bool = False
    status: JobStatus = JobStatus.QUEUED
    result: ExecResult | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    done: Completion = field(default_factory=Completion)

    def finish(self, result: ExecResult | None, error: str | None) -> None:
        """Record the outcome; SUCCEEDED needs exit code 0 and no timeout. Sets status last, for readers."""
        self.result, self.error = result, error
        ok = result is not None and result.exit_code == 0 and not result.timed_out
        self.completed_at = time.time()
        self.status = JobStatus.SUCCEEDED if ok else JobStatus.FAILED  # last: readers check status
        self.done.set()

    def response(self) -> JobResponse:
        """The job in Orchard Env's wire shape, its texts made safe for JSON."""
        result = self.result
        return JobResponse(
            job_id=self.job_id,
            sandbox_id=self.sandbox_id,
            command=clean_text(self.command),
            status=self.status,
            stdout=clean_text(result.stdout) if result else "",
            stderr=clean_text(result.stderr) if result else "",
            exit_code=result.exit_code if result else None,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            error=clean_text(self.error) if self.error else None,
            timed_out=bool(result and result.timed_out),
            truncated=bool(result and result.truncated),
            duration=result.duration if result else None,
            session=self.session,
        )


class JobRegistry:
    """Creates, runs, finds and forgets exec jobs."""

    def __init__(self, lanes: Lanes, retention: float) -> None:
        self.lanes = lanes
        self.retention = retention
        self._jobs: dict[str, Job] = {}

    def submit_exec(
        self,
        sandbox_id: str,
        sandbox: Sandbox,
        command: str,
        timeout: float,
        cwd: str | None,
        env: dict[str, str] | None,
        session: bool,
        display: str | None = None,
    ) -> Job:
        """Queue `command` in the sandbox's lane. Raises Overloaded when the service is full."""
        job = Job(
            job_id=str(uuid.uuid4()), sandbox_id=sandbox_id, command=display or command, session=session
        )

        def run() -> None:
            job.started_at = time.time()
            job.status = JobStatus.RUNNING
            try:
                result = sandbox.exec(command, timeout=timeout, cwd=cwd, env=env, session=session)
            except OrchardError as exc:
                job.finish(None, str(exc))
                return
            except Exception as exc:
                log.exception("job %s failed", job.job_id)
                job.finish(None, f"{type(exc).__name__}: {exc}")
                return
            if sandbox.closed:  # deleted or reaped mid-command: the output is not trustworthy
                job.finish(None, f"sandbox {sandbox_id} was deleted while the command ran")
            elif result.timed_out:
                job.finish(result, f"Command timed out after {timeout:g}s")
            else:
                job.finish(result, None)

        def cancelled(future: Future[None]) -> None:
            if future.cancelled():
                job.finish(None, f"sandbox {sandbox_id} was deleted before the command ran")

        self.lanes.submit(sandbox_id, run).add_done_callback(cancelled)
        self._jobs[job.job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown or already forgotten."""
        return self._jobs.get(job_id)

    async def wait(self, job: Job, timeout: float | None) -> Job:
        """The job once it finished, or as it is after `timeout` seconds (status 'running')."""
        if job.status not in FINAL_STATUSES:
            await job.done.wait(timeout)
        return job

    def prune(self, now: float | None = None) -> int:
        """Forget finished jobs older than the retention period (Orchard keeps them an hour)."""
        cutoff = (now or time.time()) - self.retention
        old = [
            job_id
            for job_id, job in self._jobs.items()
            if job.status in FINAL_STATUSES and (job.completed_at or 0) < cutoff
        ]
        for job_id in old:
            del self._jobs[job_id]
        return len(old)

    @property
    def active(self) -> int:
        """Jobs not yet finished, for /health and /resources."""
        return sum(job.status not in FINAL_STATUSES for job in self._jobs.values())
