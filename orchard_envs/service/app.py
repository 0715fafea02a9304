"""The env service: Orchard Env's REST API over any sandbox backend, plus our session/snapshot/fork.

Sandboxes are created in the background (`POST /sandboxes` answers 'pending' at once, `GET .../wait`
blocks until ready), as in Orchard Env, so slow backends never hold a request open. Every blocking
backend call runs on a worker thread. A sandbox lives for `ttl` seconds after its creation or its last
heartbeat, then the reaper closes it; `max_lifetime` caps that, and is the hard deadline handed to the
backend (whose spec TTL cannot be extended later).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import contextvars
import logging
import re
import secrets
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from fastapi import APIRouter, Depends, FastAPI, Query, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchard_envs import __version__, errors
from orchard_envs.errors import OrchardError, SandboxError, SandboxNotFound
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot
from orchard_envs.sandbox.spec import SandboxSpec
from orchard_envs.service.jobs import Job, JobRegistry, Lanes, Overloaded, clean_text
from orchard_envs.service.models import (
    EXTENSIONS,
    ApplyPatchRequest,
    ApplyPatchResponse,
    CreateSandboxRequest,
    CreateSandboxResponse,
    DeleteResponse,
    DownloadFileResponse,
    ExecRequest,
    FileEntry,
    ForkRequest,
    HealthResponse,
    HeartbeatResponse,
    JobResponse,
    ListFilesResponse,
    SandboxInfo,
    SandboxStatus,
    SnapshotResponse,
    UploadFileRequest,
    UploadFileResponse,
    format_cpu,
    format_memory,
    parse_cpu,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("orchard_request_id", default="")


@dataclass
class ServiceSettings:
    """Limits and timings; the defaults suit one developer machine."""

    max_sandboxes: int = 64  # live (pending or ready) sandboxes; more -> 503
    max_jobs: int = 256  # queued + running commands, patches, snapshots, forks; more -> 503
    max_workers: int = 16  # threads running jobs (one per busy sandbox at most)
    max_snapshots: int = 64
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


def _as_service_error(exc: Exception, default: int = 500) -> ServiceError:
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
        self.expires_at = min(now + self.ttl, self.deadline)

    def created(self) -> CreateSandboxResponse:
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
        while True:
            await asyncio.sleep(self.settings.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("reaper pass failed")

    def drop_snapshot(self, snapshot_id: str) -> bool:
        snapshot = self.snapshots.pop(snapshot_id, None)
        if snapshot is None:
            return False
        drop = getattr(self.backend, "drop_snapshot", None)  # not (yet) part of the Backend ABC
        if drop is not None:
            self._ops.submit(drop, snapshot)
        return True

    async def shutdown(self) -> None:
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


# -- HTTP plumbing -----------------------------------------------------------------------------------
def _error_response(error: ServiceError, retry_after: int) -> JSONResponse:
    body: dict[str, Any] = {"detail": clean_text(error.detail)}
    if error.error_type:
        body["error_type"] = error.error_type
    headers = {"Retry-After": str(retry_after)} if error.status == 503 else None
    return JSONResponse(body, status_code=error.status, headers=headers)


class _RequestIds:
    """Tags responses with X-Request-ID and turns unexpected exceptions into a JSON 500 (as Orchard)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        _request_id.set(request_id)
        started = False

        async def tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception as exc:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            body = {"error": "Internal server error", "detail": str(exc), "request_id": request_id}
            await JSONResponse(body, status_code=500)(scope, receive, tagged)


def _auth(api_key: str | None) -> Callable[..., Any]:
    """Orchard's X-API-Key check: 401 without a key, 403 with a wrong one. No key configured: open."""
    keys = {k for k in re.split(r"[,\s]+", api_key or "") if k}
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def verify(given: str | None = Security(header)) -> None:
        if not keys:
            return
        if not given:
            raise ServiceError(401, "Missing API key. Please provide X-API-Key header.", "ConfigError")
        if not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
            raise ServiceError(403, "Invalid API key", "ConfigError")

    return verify


def create_app(
    backend: Backend, api_key: str | None = None, settings: ServiceSettings | None = None
) -> FastAPI:
    """The service over `backend` (which the caller keeps and closes). `api_key` may list several keys."""
    settings = settings or ServiceSettings()
    service = EnvService(backend, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(service.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await service.shutdown()

    app = FastAPI(title="Orchard env service", version=__version__, lifespan=lifespan)
    app.state.service = service
    app.add_middleware(_RequestIds)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc, settings.retry_after)

    async def mapped(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(_as_service_error(exc), settings.retry_after)

    app.add_exception_handler(OrchardError, mapped)
    app.add_exception_handler(Overloaded, mapped)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"service": "orchard-env", "version": __version__, "status": "running"}

    @app.get("/health")
    async def health() -> HealthResponse:
        return HealthResponse(version=__version__, backend=backend.name, extensions=list(EXTENSIONS))

    api = APIRouter(dependencies=[Depends(_auth(api_key))])
    _sandbox_routes(api, service)
    _job_routes(api, service)
    _file_routes(api, service)
    _extension_routes(api, service)
    app.include_router(api)
    return app


def _sandbox_routes(api: APIRouter, service: EnvService) -> None:
    @api.get("/resources")
    async def resources() -> dict[str, Any]:
        s = service.settings
        return {
            "status": "ok",
            "backend": service.backend.name,
            "sandboxes": len(service.records),
            "max_sandboxes": s.max_sandboxes,
            "jobs_pending": service.lanes.pending,
            "max_jobs": s.max_jobs,
            "snapshots": len(service.snapshots),
            "max_snapshots": s.max_snapshots,
        }

    @api.post("/sandboxes")
    async def create_sandbox(request: CreateSandboxRequest) -> CreateSandboxResponse:
        return service.start(request).created()

    @api.get("/sandboxes/{sandbox_id}")
    async def get_sandbox(sandbox_id: str) -> SandboxInfo:
        return service.record(sandbox_id).info()

    @api.get("/sandboxes/{sandbox_id}/wait")
    async def wait_sandbox(sandbox_id: str, timeout: float = Query(3600, ge=0)) -> SandboxInfo:
        record = service.record(sandbox_id)
        try:
            await asyncio.wait_for(record.ready.wait(), timeout)
        except TimeoutError:
            raise ServiceError(
                408, f"Sandbox {sandbox_id} did not become ready within {timeout:g}s"
            ) from None
        return record.info()

    @api.delete("/sandboxes/{sandbox_id}")
    async def delete_sandbox(sandbox_id: str) -> DeleteResponse:
        await service.delete(sandbox_id)  # unknown ids too, as Orchard: deleting is idempotent
        return DeleteResponse(sandbox_id=sandbox_id)

    @api.post("/sandboxes/{sandbox_id}/heartbeat")
    async def heartbeat(sandbox_id: str) -> HeartbeatResponse:
        record = service.record(sandbox_id)
        now = time.time()
        record.last_heartbeat = now
        record.touch(now)
        return HeartbeatResponse(sandbox_id=sandbox_id, expires_at=record.expires_at)


def _job_routes(api: APIRouter, service: EnvService) -> None:
    @api.post("/sandboxes/{sandbox_id}/exec")
    async def exec_command(sandbox_id: str, request: ExecRequest) -> JobResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 404)
        text = request.command if isinstance(request.command, str) else " ".join(request.command)
        command = text
        if request.login_shell:  # as Orchard's agent: a login shell that also reads ~/.bashrc
            command = "bash --login -c " + shlex.quote(f"if [ -f ~/.bashrc ]; then . ~/.bashrc; fi; {text}")
        timeout = request.timeout_seconds or service.settings.default_exec_timeout
        job = service.jobs.submit_exec(
            sandbox_id, sandbox, command, timeout, request.cwd, request.env, request.session, display=text
        )
        if request.wait:  # a 'running' answer means this wait ran out, as in Orchard
            await service.jobs.wait(job, timeout + 30)
        return job.response()

    @api.get("/jobs/{job_id}")
    async def get_job(job_id: str) -> JobResponse:
        return _job(service, job_id).response()

    @api.get("/jobs/{job_id}/wait")
    async def wait_job(job_id: str, timeout: float = Query(300, ge=0)) -> JobResponse:
        # Orchard answers 200 with status 'running' when the wait runs out; clients poll again.
        return (await service.jobs.wait(_job(service, job_id), timeout)).response()

    @api.post("/sandboxes/{sandbox_id}/apply_patch")
    async def apply_patch(sandbox_id: str, request: ApplyPatchRequest) -> ApplyPatchResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 404)
        where = request.cwd or sandbox.spec.workdir
        return await service.in_lane(sandbox_id, lambda: _git_apply(sandbox, request, where))


def _job(service: EnvService, job_id: str) -> Job:
    job = service.jobs.get(job_id)
    if job is None:
        raise ServiceError(404, f"Job {job_id} not found")
    return job


def _git_apply(sandbox: Sandbox, request: ApplyPatchRequest, where: str) -> ApplyPatchResponse:
    """Orchard's apply_patch: failure is a 200 with success=false and git's output."""
    target = f"/tmp/.orchard-{uuid.uuid4().hex[:8]}.patch"
    patch = request.patch if request.patch.endswith("\n") else request.patch + "\n"
    try:
        sandbox.write_file(target, patch)
        result = sandbox.exec(
            f"git apply --whitespace=nowarn {target}; s=$?; rm -f {target}; exit $s",
            timeout=request.timeout_seconds,
            cwd=where,
            session=False,
        )
    except Exception as exc:
        return ApplyPatchResponse(success=False, error=clean_text(str(exc) or type(exc).__name__))
    error = None
    if result.timed_out:
        error = f"git apply timed out after {request.timeout_seconds:g}s"
    elif result.exit_code != 0:
        error = f"patch does not apply in {where}"
    return ApplyPatchResponse(
        success=result.exit_code == 0 and not result.timed_out,
        stdout=clean_text(result.stdout),
        stderr=clean_text(result.stderr),
        exit_code=result.exit_code,
        error=error,
    )


def _file_error(exc: Exception) -> ServiceError:
    """File operations fail mostly on the caller's paths: a plain SandboxError here is a 400."""
    return _as_service_error(exc, default=400 if isinstance(exc, SandboxError) else 500)


def _file_routes(api: APIRouter, service: EnvService) -> None:
    @api.post("/sandboxes/{sandbox_id}/files")
    async def upload_file(sandbox_id: str, request: UploadFileRequest) -> UploadFileResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 400)
        try:
            data = base64.b64decode(request.content)
        except (binascii.Error, ValueError) as exc:
            raise ServiceError(400, f"content is not valid base64: {exc}", "ValueError") from None
        mode = request.mode
        if isinstance(mode, str):
            try:
                mode = int(mode, 8)
            except ValueError:
                raise ServiceError(
                    400, f"mode {mode!r} is not an octal number like '0755'", "ValueError"
                ) from None
        try:
            await service.run(sandbox.write_file, request.path, data, 0o644 if mode is None else mode)
        except Exception as exc:
            raise _file_error(exc) from None
        return UploadFileResponse(success=True, path=request.path, size=len(data))

    @api.get("/sandboxes/{sandbox_id}/files")
    async def download_file(sandbox_id: str, path: str) -> DownloadFileResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 400)
        try:
            data = await service.run(sandbox.read_file, path)
        except FileNotFoundError:
            raise ServiceError(404, f"File not found: {path}", "SandboxFileNotFound") from None
        except IsADirectoryError:
            raise ServiceError(
                400, f"Not a file: {path} is a directory; list it instead", "SandboxError"
            ) from None
        except Exception as exc:
            raise _file_error(exc) from None
        return DownloadFileResponse(path=path, content=base64.b64encode(data).decode(), size=len(data))

    @api.get("/sandboxes/{sandbox_id}/files/list")
    async def list_files(sandbox_id: str, path: str | None = None) -> ListFilesResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 400)
        where = path or sandbox.spec.workdir
        try:
            entries = await service.run(sandbox.list_dir, where)
        except FileNotFoundError:
            raise ServiceError(404, f"Path not found: {where}", "SandboxFileNotFound") from None
        except Exception as exc:
            raise _file_error(exc) from None
        files = [
            FileEntry(
                name=clean_text(e.name),
                type="directory" if e.type == "dir" else "file",
                size=e.size,
                path=clean_text(e.path),
                kind=e.type,
                mode=e.mode,
            )
            for e in entries
        ]
        return ListFilesResponse(path=where, files=files)


def _extension_routes(api: APIRouter, service: EnvService) -> None:
    @api.post("/sandboxes/{sandbox_id}/snapshot")
    async def snapshot(sandbox_id: str) -> SnapshotResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 404)
        if len(service.snapshots) >= service.settings.max_snapshots:
            raise ServiceError(
                503,
                f"{len(service.snapshots)} snapshots exist (the limit is {service.settings.max_snapshots}); "
                "delete some with DELETE /snapshots/{id}",
                "BackendUnavailable",
            )
        snap = await service.in_lane(sandbox_id, sandbox.snapshot)
        service.snapshots[snap.id] = snap
        return SnapshotResponse(
            snapshot_id=snap.id, sandbox_id=sandbox_id, image=snap.spec.image, created_at=time.time()
        )

    @api.delete("/snapshots/{snapshot_id}")
    async def delete_snapshot(snapshot_id: str) -> dict[str, str]:
        service.drop_snapshot(snapshot_id)
        return {"status": "deleted", "snapshot_id": snapshot_id}

    @api.post("/sandboxes/{sandbox_id}/fork")
    async def fork(sandbox_id: str, request: ForkRequest | None = None) -> CreateSandboxResponse:
        _, sandbox = await service.ready_sandbox(sandbox_id, 404)
        return service.fork(sandbox_id, sandbox, request or ForkRequest()).created()
