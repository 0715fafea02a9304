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
import contextlib
import re
import secrets
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchard_envs import __version__
from orchard_envs.env_service.jobs import Job, Overloaded, clean_text
from orchard_envs.env_service.models import (
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
    SnapshotResponse,
    UploadFileRequest,
    UploadFileResponse,
)
from orchard_envs.env_service.pty_route import add_pty_route
from orchard_envs.env_service.state import (
    EnvService,
    ServiceError,
    ServiceSettings,
    as_service_error,
    log,
    request_id_var,
)
from orchard_envs.errors import OrchardError, SandboxError
from orchard_envs.sandbox.base import Backend, Sandbox


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
        request_id_var.set(request_id)
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


def _key_check(api_key: str | None) -> Callable[[str | None], bool]:
    """Whether a given key is one of the configured ones (any key, or none, when none is configured)."""
    keys = [k.encode() for k in re.split(r"[,\s]+", api_key or "") if k]

    def ok(given: str | None) -> bool:
        if not keys:
            return True
        return given is not None and any(secrets.compare_digest(given.encode(), k) for k in keys)

    return ok


def _auth(key_ok: Callable[[str | None], bool]) -> Callable[..., Any]:
    """Orchard's X-API-Key check: 401 without a key, 403 with a wrong one. No key configured: open."""
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def verify(given: str | None = Security(header)) -> None:
        if key_ok(given):
            return
        if not given:
            raise ServiceError(401, "Missing API key. Please provide X-API-Key header.", "ConfigError")
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
        return _error_response(as_service_error(exc), settings.retry_after)

    app.add_exception_handler(OrchardError, mapped)
    app.add_exception_handler(Overloaded, mapped)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"service": "orchard-env", "version": __version__, "status": "running"}

    @app.get("/health")
    async def health() -> HealthResponse:
        return HealthResponse(version=__version__, backend=backend.name, extensions=list(EXTENSIONS))

    key_ok = _key_check(api_key)
    api = APIRouter(dependencies=[Depends(_auth(key_ok))])
    _sandbox_routes(api, service)
    _job_routes(api, service)
    _file_routes(api, service)
    _extension_routes(api, service)
    app.include_router(api)
    add_pty_route(app, service, key_ok)
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
    return as_service_error(exc, default=400 if isinstance(exc, SandboxError) else 500)


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
