"""The env service's state: sandboxes, snapshots and jobs, and the rules they live by (TTL, limits)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic

from orchard_envs import errors
from orchard_envs.env_service.jobs import JobRegistry, Lanes, Overloaded
from orchard_envs.env_service.models import (
    CreateSandboxRequest,
    CreateSandboxResponse,
    ForkRequest,
    SandboxInfo,
    SandboxStatus,
    format_cpu,
    format_memory,
    parse_cpu,
)
from orchard_envs.errors import OrchardError, SandboxNotFound
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot
from orchard_envs.sandbox.spec import SandboxSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("orchard_request_id", default="")


@dataclass
class ServiceSettings:
    """Limits and timings; the defaults suit one developer machine."""

    max_sandboxes: int = 64  # live (pending or ready) sandboxes; more -> 503
    max_jobs: int = 256  # queued + running commands, patches, snapshots, forks; more -> 503
    max_workers: int = 16  # threads running jobs (one per busy sandbox at most)
    max_snapshots: int = 64
    max_ptys: int = 64  # open terminals (WS /sandboxes/{id}/exec/pty); more are refused with 4503
    default_ttl: float = 3600.0  # seconds after creation / last heartbeat
    max_lifetime: float = 24 * 3600.0  # hard cap, whatever the heartbeats
    default_exec_timeout: float = 300.0  # Orchard's default for timeout_seconds
    ready_wait: float = 15.0  # how long exec/files wait for a pending sandbox
    reap_interval: float = 5.0
    job_retention: float = 3600.0  # finished jobs stay queryable this long
    retry_after: int = 1  # the Retry-After header of a 503


class ServiceError(Exception):
    """An HTTP error with a clear detail; `error_type` names the Orchard error a client should raise."""

    def __init__(self, status: int, detail: str, error_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.error_type = status, detail, error_type


# Status codes for errors raised by backends; the most specific class wins (checked in this order).
_STATUS: list[tuple[type[BaseException], int]] = [
    (Overloaded, 503),
    (errors.BackendUnavailable, 503),
    (errors.SandboxNotFound, 404),
    (errors.SandboxClosed, 404),
    (FileNotFoundError, 404),
    (errors.PathEscapeError, 400),
    (errors.PatchError, 400),
    (errors.ConfigError, 400),
    (IsADirectoryError, 400),
    (NotADirectoryError, 400),
    (PermissionError, 400),
    (ValueError, 400),
]


def _error_type(exc: BaseException) -> str | None:
    """The class name a client can map back: Orchard errors and builtin OS errors only."""
    for cls in type(exc).__mro__:
        known = getattr(errors, cls.__name__, None) is cls or getattr(builtins, cls.__name__, None) is cls
        if known and cls not in (Exception, BaseException):
            return cls.__name__
    return None


def as_service_error(exc: Exception, default: int = 500) -> ServiceError:
    """Any exception as a ServiceError: Orchard errors get their HTTP status, the rest `default`."""
    if isinstance(exc, ServiceError):
        return exc
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), default)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, Overloaded):
        return ServiceError(503, detail, "BackendUnavailable")
    return ServiceError(status, detail, _error_type(exc))


# -- sandbox records ---------------------------------------------------------------------------------
@dataclass
class Record:
    """What the service knows about one sandbox, ready or not."""

    sandbox_id: str
    namespace: str
    image: str
    block_network: bool
    cpu: str
    memory: str
    timeout: int
    ttl: float
    workdir: str
    created_at: float = field(default_factory=time.time)
    expires_at: float = 0.0
    deadline: float = 0.0
    status: SandboxStatus = SandboxStatus.PENDING
    status_message: str = ""
    error_type: str | None = None
    last_heartbeat: float | None = None
    sandbox: Sandbox | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self, now: float) -> None:
        """Push the expiry to `now + ttl`, never past the sandbox's hard deadline."""
        self.expires_at = min(now + self.ttl, self.deadline)

    def created(self) -> CreateSandboxResponse:
        """The answer to the create request that made this sandbox."""
        return CreateSandboxResponse(
            sandbox_id=self.sandbox_id,
            namespace=self.namespace,
            image=self.image,
            block_network=self.block_network,
            cpu=self.cpu,
            memory=self.memory,
            timeout=self.timeout,
            status=self.status,
            ttl=self.ttl,
            expires_at=self.expires_at,
            workdir=self.workdir,
        )

    def info(self) -> SandboxInfo:
        """The sandbox in Orchard Env's wire shape."""
        return SandboxInfo(
            sandbox_id=self.sandbox_id,
            namespace=self.namespace,
            image=self.image,
            pod_name=self.sandbox.id if self.sandbox else None,
            block_network=self.block_network,
            cpu=self.cpu,
            memory=self.memory,
            created_at=self.created_at,
            ready=self.status == SandboxStatus.READY,
            status=self.status,
            status_message=self.status_message,
            timeout=self.timeout,
            ttl=self.ttl,
            expires_at=self.expires_at,
            last_heartbeat=self.last_heartbeat,
            workdir=self.workdir,
            error_type=self.error_type,
        )


class EnvService:
    """Sandboxes, snapshots and jobs of one running service; all methods run on the event loop."""

    def __init__(self, backend: Backend, settings: ServiceSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.records: dict[str, Record] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.lanes = Lanes(settings.max_workers, settings.max_jobs)
        self.jobs = JobRegistry(self.lanes, settings.job_retention)
        self._ops = ThreadPoolExecutor(
            max_workers=max(4, settings.max_workers), thread_name_prefix="orchard-op"
        )
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking backend call on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._ops, fn, *args)

    async def in_lane(self, sandbox_id: str, fn: Callable[[], T]) -> T:
        """Run `fn` after the sandbox's queued commands, counted against max_jobs."""
        return await _lane_result(self.lanes.submit(sandbox_id, fn), sandbox_id)

    # -- lookup ----------------------------------------------------------------------------------
    def record(self, sandbox_id: str) -> Record:
        """The live record; a 404 ServiceError if unknown or past its TTL (whether or not reaped yet)."""
        record = self.records.get(sandbox_id)
        if record is None:
            raise ServiceError(404, f"Sandbox {sandbox_id} not found", "SandboxNotFound")
        if record.expires_at <= time.time():  # past its TTL: gone now, whenever the reaper runs
            raise ServiceError(404, f"Sandbox {sandbox_id} not found: its TTL passed", "SandboxNotFound")
        return record

    async def ready_sandbox(self, sandbox_id: str, status_if_not: int) -> tuple[Record, Sandbox]:
        """The sandbox once ready (waiting up to `ready_wait` for a pending one)."""
        record = self.record(sandbox_id)
        if record.status == SandboxStatus.PENDING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.ready.wait(), self.settings.ready_wait)
        if record.status != SandboxStatus.READY or record.sandbox is None:
            why = f": {record.status_message}" if record.status_message else ""
            raise ServiceError(status_if_not, f"Sandbox {sandbox_id} is not ready ({record.status}{why})")
        return record, record.sandbox

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, request: CreateSandboxRequest) -> Record:
        """Register a sandbox and create it in the background."""
        sandbox_id = request.sandbox_id or uuid.uuid4().hex[:8]
        self._check_capacity(sandbox_id)
        snapshot = None
        if request.snapshot_id is not None:
            snapshot = self.snapshots.get(request.snapshot_id)
            if snapshot is None:
                raise ServiceError(404, f"Snapshot {request.snapshot_id} not found", "SandboxNotFound")
            spec = snapshot.spec
        else:
            spec = self._spec(request)
        record = self._register(
            sandbox_id,
            spec,
            ttl=request.ttl,
            timeout=request.timeout,
            cpu=request.cpu if request.cpu is not None and snapshot is None else None,
            memory=request.memory if request.memory is not None and snapshot is None else None,
        )
        if snapshot is not None:
            self._spawn(record, lambda: self.run(self.backend.create, None, snapshot))
        else:
            self._spawn(record, lambda: self.run(self.backend.create, spec))
        return record

    def fork(self, parent_id: str, parent: Sandbox, request: ForkRequest) -> Record:
        """Register a fork of `parent`, made on the parent's lane after its queued commands."""
        sandbox_id = request.sandbox_id or uuid.uuid4().hex[:8]
        self._check_capacity(sandbox_id)
        source = self.record(parent_id)
        future = self.lanes.submit(parent_id, parent.fork)  # after the parent's queued commands
        record = self._register(
            sandbox_id, parent.spec, ttl=request.ttl or source.ttl, timeout=source.timeout
        )
        record.cpu, record.memory = source.cpu, source.memory
        self._spawn(record, lambda: _lane_result(future, parent_id))
        return record

    def _check_capacity(self, sandbox_id: str) -> None:
        if sandbox_id in self.records:
            raise ServiceError(409, f"Sandbox {sandbox_id} already exists; delete it or pick another id")
        live = sum(r.status != SandboxStatus.FAILED for r in self.records.values())
        if live >= self.settings.max_sandboxes:
            raise ServiceError(
                503,
                f"{live} sandboxes exist (the limit is {self.settings.max_sandboxes}); "
                "delete some or retry shortly",
                "BackendUnavailable",
            )

    def _spec(self, request: CreateSandboxRequest) -> SandboxSpec:
        fields: dict[str, Any] = {
            "image": request.image,
            "network": not request.block_network,
            "ttl": self.settings.max_lifetime,
        }
        if request.cpu is not None:
            fields["cpu"] = parse_cpu(request.cpu)
        for name in ("memory", "pids", "disk", "workdir", "env", "max_output"):
            if getattr(request, name) is not None:
                fields[name] = getattr(request, name)
        try:
            return SandboxSpec(**fields)
        except pydantic.ValidationError as exc:
            raise ServiceError(422, _validation_text(exc), "ConfigError") from None

    def _register(
        self,
        sandbox_id: str,
        spec: SandboxSpec,
        ttl: float | None,
        timeout: int | None,
        cpu: str | float | None = None,
        memory: str | int | None = None,
    ) -> Record:
        now = time.time()
        record = Record(
            sandbox_id=sandbox_id,
            image=spec.image,
            block_network=not spec.network,
            cpu=str(cpu) if cpu is not None else format_cpu(spec.cpu),
            memory=str(memory) if memory is not None else format_memory(spec.memory),
            timeout=timeout or 3600,
            ttl=ttl or self.settings.default_ttl,
            workdir=spec.workdir,
            created_at=now,
            deadline=now + self.settings.max_lifetime,
            namespace=self.backend.name,
        )
        record.touch(now)
        self.records[sandbox_id] = record
        return record

    def _spawn(self, record: Record, make: Callable[[], Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._create(record, make))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(self, record: Record, make: Callable[[], Any]) -> None:
        try:
            sandbox = await make()
        except Exception as exc:
            if not isinstance(exc, OrchardError):
                log.exception("creating sandbox %s failed", record.sandbox_id)
            record.status, record.status_message = SandboxStatus.FAILED, str(exc) or type(exc).__name__
            record.error_type = _error_type(exc)
            record.ready.set()
            return
        if self.records.get(record.sandbox_id) is not record:  # deleted while it was being made
            await self.run(sandbox.close)
            return
        record.sandbox, record.status = sandbox, SandboxStatus.READY
        record.ready.set()

    async def delete(self, sandbox_id: str) -> bool:
        """Forget the sandbox, cancel its queued work and close it; False if it was unknown."""
        record = self.records.pop(sandbox_id, None)
        if record is None:
            return False
        self.lanes.cancel_lane(sandbox_id)
        if record.status == SandboxStatus.PENDING:  # wake its waiters; the creator closes what it made
            record.status, record.status_message = SandboxStatus.FAILED, "deleted before it became ready"
            record.ready.set()
        if record.sandbox is not None:
            try:
                await self.run(record.sandbox.close)
            except Exception:
                log.exception("closing sandbox %s failed", sandbox_id)
        return True

    async def reap(self) -> int:
        """Close sandboxes whose TTL passed without a heartbeat; forget old jobs."""
        now = time.time()
        expired = [sid for sid, record in self.records.items() if record.expires_at <= now]
        for sandbox_id in expired:
            log.info("reaping sandbox %s: its TTL passed without a heartbeat", sandbox_id)
            await self.delete(sandbox_id)
        self.jobs.prune(now)
        return len(expired)

    async def reap_forever(self) -> None:
        """Delete expired sandboxes every `reap_interval`; a failed pass is logged, not fatal."""
        while True:
            await asyncio.sleep(self.settings.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("reaper pass failed")

    def drop_snapshot(self, snapshot_id: str) -> bool:
        """Forget the snapshot and free it in the background; False if it was unknown."""
        snapshot = self.snapshots.pop(snapshot_id, None)
        if snapshot is None:
            return False
        drop = getattr(self.backend, "drop_snapshot", None)  # not (yet) part of the Backend ABC
        if drop is not None:
            self._ops.submit(drop, snapshot)
        return True

    async def shutdown(self) -> None:
        """Let running tasks finish (30 s at most), then delete every sandbox and snapshot."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=30)
        self.lanes.shutdown()
        await asyncio.gather(*(self.delete(sid) for sid in list(self.records)), return_exceptions=True)
        for snapshot_id in list(self.snapshots):
            self.drop_snapshot(snapshot_id)
        self._ops.shutdown(wait=True)


async def _lane_result(future: Future[T], sandbox_id: str) -> T:
    """Await a lane task; its cancellation (the sandbox was deleted first) becomes SandboxNotFound."""
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if future.cancelled() and not (task and task.cancelling()):
            raise SandboxNotFound(f"Sandbox {sandbox_id} was deleted before this ran") from None
        raise


def _validation_text(exc: pydantic.ValidationError) -> str:
    parts = []
    for item in exc.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


