"""Clients of the env service (and of Orchard Env servers): `EnvClient` (sync) and `AsyncEnvClient`.

Both share one implementation: every method is a generator ("flow") that yields the HTTP calls it
needs and receives the decoded replies (or has the mapped error thrown in), so only the transport
loop differs between them.
Connection failures and 503s are retried with exponential backoff and jitter (requests that may have
reached the server only when repeating them is harmless); long waits are split into server-side waits
of at most `wait_chunk` seconds, continued on 408. HTTP errors become `orchard_envs.errors` classes
carrying the server's `detail`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import random
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import httpx

from orchard_envs import errors
from orchard_envs.env_service.models import (
    ApplyPatchResponse,
    FileEntry,
    HealthResponse,
    HeartbeatResponse,
    JobResponse,
    ListFilesResponse,
    SandboxInfo,
    SnapshotResponse,
    UploadFileResponse,
)
from orchard_envs.errors import (
    BackendUnavailable,
    ConfigError,
    OrchardError,
    SandboxError,
    SandboxFileNotFound,
    SandboxNotFound,
)

if TYPE_CHECKING:
    from orchard_envs.env_service.process import AsyncContainerProcess, ContainerProcess

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_EXEC_TIMEOUT = 300.0  # what Orchard Env applies when timeout_seconds is absent
T = TypeVar("T")


class WaitTimeout(SandboxError, TimeoutError):
    """A wait for a sandbox or a job ran out (HTTP 408, or the client's own deadline)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about base * 2**n, at most `max_delay`."""

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds before retry `attempt` (0-based), honouring a server's Retry-After up to `max_delay`."""
        step = min(self.max_delay, self.base_delay * 2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                step = min(self.max_delay, max(step, float(retry_after)))
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    read_timeout: float | None = None  # None: the client's default
    idempotent: bool = False  # safe to resend after the server may have seen it


Flow = Generator[_Call, Any, T]


def _number(value: float) -> float | int:
    """Integral values as ints: Orchard Env declares its timeouts as int."""
    return int(value) if float(value).is_integer() else value


def _drop_none(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if v is not None}


def _detail(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase, None
    if not isinstance(body, dict):
        return str(body), None
    detail = body.get("detail", body)
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail), body.get("error_type")


def _orchard_class(name: str | None) -> type[OrchardError] | None:
    cls = getattr(errors, name, None) if name else None
    return cls if isinstance(cls, type) and issubclass(cls, OrchardError) else None


def error_from_response(response: httpx.Response, url: str) -> OrchardError:
    """The Orchard error for an HTTP error answer, its message the server's detail."""
    status = response.status_code
    detail, error_type = _detail(response)
    where = f"[HTTP {status} from {response.request.method} {response.request.url.path}]"
    if status in (401, 403):
        return ConfigError(
            f"the env service at {url} refused the API key: {detail} {where}; "
            "pass api_key= or set ORCHARD_ENV_API_KEY"
        )
    if status == 408:
        return WaitTimeout(f"{detail} {where}")
    if status == 422:
        return ConfigError(f"invalid request: {detail} {where}")
    if status == 503:
        return BackendUnavailable(f"the env service at {url} is overloaded: {detail} {where}")
    cls = _orchard_class(error_type)
    if error_type == "FileNotFoundError" or (
        status == 404 and cls is None and detail.startswith(("File not found", "Path not found"))
    ):
        cls = SandboxFileNotFound
    if cls is None:
        cls = SandboxNotFound if status == 404 else ConfigError if status == 409 else SandboxError
    return cls(f"{detail} {where}")


def _transport_error(exc: httpx.TransportError, url: str) -> OrchardError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(
        exc, httpx.ConnectTimeout | httpx.PoolTimeout
    ):
        return WaitTimeout(f"the env service at {url} did not answer in time ({type(exc).__name__})")
    return BackendUnavailable(f"cannot reach the env service at {url}: {type(exc).__name__}: {exc}")


def _retryable(exc: httpx.TransportError, call: _Call) -> bool:
    """Resend only what certainly never reached the server, or what is harmless to repeat."""
    unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return unsent or call.idempotent


def _decode(response: httpx.Response, url: str) -> Any:
    if response.status_code >= 400:
        raise error_from_response(response, url)
    return response.json()


def _not_ready_error(info: SandboxInfo) -> OrchardError:
    cls = _orchard_class(info.error_type) or SandboxError
    return cls(f"sandbox {info.sandbox_id} failed to start: {info.status_message or info.status}")


class _Flows:
    """Configuration and the transport-free logic of both clients."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        wait_chunk: float = 60.0,
    ) -> None:
        self.url = (url or os.environ.get("ORCHARD_ENV_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("ORCHARD_ENV_API_KEY") or None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.wait_chunk = wait_chunk

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def _timeout(self, call: _Call) -> httpx.Timeout:
        read = self.timeout if call.read_timeout is None else max(call.read_timeout, self.timeout)
        return httpx.Timeout(read, connect=min(10.0, self.timeout))

    # -- sandboxes -------------------------------------------------------------------------------
    def _create(self, payload: dict[str, Any], wait: bool, wait_timeout: float | None) -> Flow[SandboxInfo]:
        created = yield _Call("POST", "/sandboxes", json=_drop_none(payload))
        sandbox_id = created["sandbox_id"]
        if not wait:
            return (yield from self._get(sandbox_id))
        timeout = wait_timeout if wait_timeout is not None else float(created.get("timeout") or 3600)
        return (yield from self._ready(sandbox_id, timeout))

    def _get(self, sandbox_id: str) -> Flow[SandboxInfo]:
        data = yield _Call("GET", f"/sandboxes/{sandbox_id}", idempotent=True)
        return SandboxInfo.model_validate(data)

    def _wait_sandbox(self, sandbox_id: str, timeout: float) -> Flow[SandboxInfo]:
        deadline = time.monotonic() + timeout
        while True:
            chunk = math.ceil(max(0.0, min(self.wait_chunk, deadline - time.monotonic())))
            try:
                data = yield _Call(
                    "GET",
                    f"/sandboxes/{sandbox_id}/wait",
                    params={"timeout": chunk},
                    read_timeout=chunk + 30,
                    idempotent=True,
                )
                return SandboxInfo.model_validate(data)
            except WaitTimeout:
                if time.monotonic() >= deadline:
                    raise WaitTimeout(
                        f"sandbox {sandbox_id} did not become ready within {timeout:g}s"
                    ) from None

    def _ready(self, sandbox_id: str, timeout: float) -> Flow[SandboxInfo]:
        """Wait until ready; on failure or timeout delete it (as Orchard's client does) and raise."""
        try:
            info = yield from self._wait_sandbox(sandbox_id, timeout)
        except WaitTimeout:
            yield from self._delete(sandbox_id, quiet=True)
            raise
        if info.status != "ready" and not info.ready:
            yield from self._delete(sandbox_id, quiet=True)
            raise _not_ready_error(info)
        return info

    def _delete(self, sandbox_id: str, quiet: bool = False) -> Flow[None]:
        try:
            yield _Call("DELETE", f"/sandboxes/{sandbox_id}", idempotent=True)
        except (SandboxNotFound, BackendUnavailable):
            if not quiet:
                raise

    def _heartbeat(self, sandbox_id: str) -> Flow[HeartbeatResponse]:
        data = yield _Call("POST", f"/sandboxes/{sandbox_id}/heartbeat", idempotent=True)
        return HeartbeatResponse.model_validate(data)

    # -- jobs ------------------------------------------------------------------------------------
    def _exec(self, sandbox_id: str, payload: dict[str, Any], wait: bool) -> Flow[JobResponse]:
        timeout = payload.get("timeout_seconds") or DEFAULT_EXEC_TIMEOUT
        data = yield _Call(
            "POST",
            f"/sandboxes/{sandbox_id}/exec",
            json=_drop_none({**payload, "wait": wait}),
            read_timeout=timeout + 60 if wait else None,
        )
        if "created_at" not in data:  # Orchard's short answer {job_id, status}
            data = yield _Call("GET", f"/jobs/{data['job_id']}", idempotent=True)
        job = JobResponse.model_validate(data)
        if not wait or job.done:
            return job
        return (yield from self._wait_job(job.job_id, timeout + 60))

    def _job(self, job_id: str) -> Flow[JobResponse]:
        return JobResponse.model_validate((yield _Call("GET", f"/jobs/{job_id}", idempotent=True)))

    def _wait_job(self, job_id: str, timeout: float) -> Flow[JobResponse]:
        deadline = time.monotonic() + timeout
        while True:
            chunk = math.ceil(max(0.0, min(self.wait_chunk, deadline - time.monotonic())))
            try:
                data = yield _Call(
                    "GET",
                    f"/jobs/{job_id}/wait",
                    params={"timeout": chunk},
                    read_timeout=chunk + 30,
                    idempotent=True,
                )
                job = JobResponse.model_validate(data)
                if job.done:
                    return job
                status = job.status
            except WaitTimeout:  # a server that answers a finished wait with 408
                status = "running"
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {status} after {timeout:g}s")

    def _apply_patch(self, sandbox_id: str, payload: dict[str, Any]) -> Flow[ApplyPatchResponse]:
        data = yield _Call("POST", f"/sandboxes/{sandbox_id}/apply_patch", json=_drop_none(payload))
        return ApplyPatchResponse.model_validate(data)

    # -- files -----------------------------------------------------------------------------------
    def _upload(
        self, sandbox_id: str, path: str, data: bytes | str, mode: int | None
    ) -> Flow[UploadFileResponse]:
        raw = data.encode() if isinstance(data, str) else data
        payload = {
            "path": path,
            "content": base64.b64encode(raw).decode("ascii"),
            "mode": None if mode is None else f"{mode:04o}",
        }
        reply = yield _Call(
            "POST", f"/sandboxes/{sandbox_id}/files", json=_drop_none(payload), idempotent=True
        )
        return UploadFileResponse.model_validate(reply)

    def _download(self, sandbox_id: str, path: str) -> Flow[bytes]:
        reply = yield _Call("GET", f"/sandboxes/{sandbox_id}/files", params={"path": path}, idempotent=True)
        return base64.b64decode(reply["content"])

    def _list(self, sandbox_id: str, path: str | None) -> Flow[list[FileEntry]]:
        params = {"path": path} if path is not None else None
        reply = yield _Call("GET", f"/sandboxes/{sandbox_id}/files/list", params=params, idempotent=True)
        return ListFilesResponse.model_validate(reply).files

    # -- extensions ------------------------------------------------------------------------------
    def _snapshot(self, sandbox_id: str) -> Flow[SnapshotResponse]:
        return SnapshotResponse.model_validate((yield _Call("POST", f"/sandboxes/{sandbox_id}/snapshot")))

    def _delete_snapshot(self, snapshot_id: str) -> Flow[None]:
        yield _Call("DELETE", f"/snapshots/{snapshot_id}", idempotent=True)

    def _fork(self, sandbox_id: str, payload: dict[str, Any], wait: bool) -> Flow[SandboxInfo]:
        created = yield _Call("POST", f"/sandboxes/{sandbox_id}/fork", json=_drop_none(payload))
        if not wait:
            return (yield from self._get(created["sandbox_id"]))
        return (yield from self._ready(created["sandbox_id"], float(created.get("timeout") or 3600)))

    def _simple(self, method: str, path: str) -> Flow[Any]:
        return (yield _Call(method, path, idempotent=True))


def _create_payload(
    image: str,
    block_network: bool,
    sandbox_id: str | None,
    cpu: str | float | None,
    memory: str | int | None,
    timeout: int | None,
    extras: dict[str, Any],
) -> dict[str, Any]:
    base = {
        "image": image,
        "block_network": block_network,
        "sandbox_id": sandbox_id,
        "cpu": cpu,
        "memory": memory,
        "timeout": timeout,
    }
    return {**base, **extras}


def _exec_payload(
    command: str | list[str],
    timeout_seconds: float | None,
    cwd: str | None,
    env: dict[str, str] | None,
    login_shell: bool,
    session: bool,
) -> dict[str, Any]:
    return {
        "command": command,
        "timeout_seconds": None if timeout_seconds is None else _number(timeout_seconds),
        "cwd": cwd,
        "env": env,
        "login_shell": login_shell or None,
        "session": session or None,  # omitted when false: plain Orchard requests stay plain
    }


class EnvClient(_Flows):
    """Blocking client. `url` defaults to $ORCHARD_ENV_URL, then http://127.0.0.1:8080; the API key
    to $ORCHARD_ENV_API_KEY. Thread-safe; use as a context manager or call close()."""

    def __init__(self, url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        super().__init__(url, api_key, **options)
        self._http = httpx.Client(base_url=self.url, headers=self._headers())

    def _run(self, flow: Flow[T]) -> T:
        reply: Any = None
        error: OrchardError | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            try:
                reply = self._send(step)
            except OrchardError as exc:
                error = exc

    def _send(self, call: _Call) -> Any:
        for attempt in range(self.retry.attempts):
            last = attempt + 1 == self.retry.attempts
            try:
                response = self._http.request(
                    call.method, call.path, json=call.json, params=call.params, timeout=self._timeout(call)
                )
            except httpx.TransportError as exc:
                if last or not _retryable(exc, call):
                    raise _transport_error(exc, self.url) from exc
                time.sleep(self.retry.delay(attempt))
                continue
            if response.status_code == 503 and not last:
                time.sleep(self.retry.delay(attempt, response.headers.get("Retry-After")))
                continue
            return _decode(response, self.url)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the HTTP connections; sandboxes on the server live on until deleted or expired."""
        self._http.close()

    def __enter__(self) -> EnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ---------------------------------------------------------------------------------------
    def health(self) -> HealthResponse:
        """The server's status, version, backend and the extensions it offers (see `models.EXTENSIONS`)."""
        return HealthResponse.model_validate(self._run(self._simple("GET", "/health")))

    def resources(self) -> dict[str, Any]:
        """The server's capacity and use, as it reports them (an untyped dict: servers differ)."""
        return self._run(self._simple("GET", "/resources"))

    def create_sandbox(
        self,
        image: str = "default",
        *,
        block_network: bool = True,
        sandbox_id: str | None = None,
        cpu: str | float | None = None,
        memory: str | int | None = None,
        timeout: int | None = None,
        wait: bool = True,
        **extras: Any,
    ) -> SandboxInfo:
        """Create a sandbox; with `wait`, block until ready (raising, and deleting it, if it failed).

        `extras`: our extensions pids, disk, workdir, env, ttl, max_output, snapshot_id.
        """
        payload = _create_payload(image, block_network, sandbox_id, cpu, memory, timeout, extras)
        return self._run(self._create(payload, wait, timeout))

    def get_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """The sandbox's current state, without waiting for it to become ready."""
        return self._run(self._get(sandbox_id))

    def wait_sandbox(self, sandbox_id: str, timeout: float = 3600.0) -> SandboxInfo:
        """Block until the sandbox is ready or failed; WaitTimeout after `timeout` seconds."""
        return self._run(self._wait_sandbox(sandbox_id, timeout))

    def delete_sandbox(self, sandbox_id: str) -> None:
        """Delete the sandbox and its jobs; safe to repeat (retried as idempotent)."""
        self._run(self._delete(sandbox_id))

    def heartbeat(self, sandbox_id: str) -> HeartbeatResponse:
        """Push the sandbox's expiry back by its TTL; long episodes must call this or lose the sandbox."""
        return self._run(self._heartbeat(sandbox_id))

    @overload
    def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: Literal[False] = False,
        rows: int = 24,
        cols: int = 80,
    ) -> JobResponse: ...

    @overload
    def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: Literal[True],
        rows: int = 24,
        cols: int = 80,
    ) -> ContainerProcess: ...

    def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: bool = False,
        rows: int = 24,
        cols: int = 80,
    ) -> JobResponse | ContainerProcess:
        """Run a command; with `wait`, until it finished (the job's final status).

        `pty=True` (as in Orchard's SDK) starts it on a terminal of `rows` x `cols` instead and returns
        its handle at once; `timeout_seconds`, `session` and `wait` do not apply then.
        """
        if pty:
            return self.open_pty(
                sandbox_id, command, cwd=cwd, env=env, rows=rows, cols=cols, login_shell=login_shell
            )
        payload = _exec_payload(command, timeout_seconds, cwd, env, login_shell, session)
        return self._run(self._exec(sandbox_id, payload, wait))

    def open_pty(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
        login_shell: bool = False,
    ) -> ContainerProcess:
        """A command on a terminal in the sandbox (a string runs under `bash -c`); see process.py."""
        from orchard_envs.env_service.process import ContainerProcess, init_frame, pty_url

        init = init_frame(command, env, cwd, rows, cols, login_shell)
        return ContainerProcess(pty_url(self.url, sandbox_id), init, self._headers(), self.timeout)

    def get_job(self, job_id: str) -> JobResponse:
        """The job's current state; `JobResponse.done` says whether it finished."""
        return self._run(self._job(job_id))

    def wait_job(self, job_id: str, timeout: float = 300.0) -> JobResponse:
        """Block until the job finished; raises WaitTimeout after `timeout` s (the job keeps running)."""
        return self._run(self._wait_job(job_id, timeout))

    def apply_patch(
        self, sandbox_id: str, patch: str, *, timeout_seconds: float = 30, cwd: str | None = None
    ) -> ApplyPatchResponse:
        """Apply a unified diff; a patch that does not apply is `success=False`, not an error."""
        payload = {"patch": patch, "timeout_seconds": _number(timeout_seconds), "cwd": cwd}
        return self._run(self._apply_patch(sandbox_id, payload))

    def upload_file(
        self, sandbox_id: str, path: str, data: bytes | str, mode: int | None = None
    ) -> UploadFileResponse:
        """Write `data` (str is UTF-8 encoded) to `path` in the sandbox; `mode` as an int or '0755'."""
        return self._run(self._upload(sandbox_id, path, data, mode))

    def download_file(self, sandbox_id: str, path: str) -> bytes:
        """The file's bytes; the whole file travels base64 in one answer, so keep it small."""
        return self._run(self._download(sandbox_id, path))

    def list_files(self, sandbox_id: str, path: str | None = None) -> list[FileEntry]:
        """The entries of a directory in the sandbox (the working directory when `path` is None)."""
        return self._run(self._list(sandbox_id, path))

    def snapshot(self, sandbox_id: str) -> SnapshotResponse:
        """Save the sandbox as an image (an extension: check `health().extensions` for "snapshot")."""
        return self._run(self._snapshot(sandbox_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove a snapshot image; sandboxes forked from it are unaffected."""
        self._run(self._delete_snapshot(snapshot_id))

    def fork(
        self, sandbox_id: str, *, new_id: str | None = None, ttl: float | None = None, wait: bool = True
    ) -> SandboxInfo:
        """A new sandbox copied from this one (an extension); with `wait`, block until it is ready."""
        return self._run(self._fork(sandbox_id, {"sandbox_id": new_id, "ttl": ttl}, wait))


class AsyncEnvClient(_Flows):
    """The same API as EnvClient, on httpx.AsyncClient; use `async with` or `await aclose()`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        super().__init__(url, api_key, **options)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers())

    async def _run(self, flow: Flow[T]) -> T:
        reply: Any = None
        error: OrchardError | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                return stop.value
            reply, error = None, None
            try:
                reply = await self._send(step)
            except OrchardError as exc:
                error = exc

    async def _send(self, call: _Call) -> Any:
        for attempt in range(self.retry.attempts):
            last = attempt + 1 == self.retry.attempts
            try:
                response = await self._http.request(
                    call.method, call.path, json=call.json, params=call.params, timeout=self._timeout(call)
                )
            except httpx.TransportError as exc:
                if last or not _retryable(exc, call):
                    raise _transport_error(exc, self.url) from exc
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if response.status_code == 503 and not last:
                await asyncio.sleep(self.retry.delay(attempt, response.headers.get("Retry-After")))
                continue
            return _decode(response, self.url)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the HTTP connections; sandboxes on the server live on until deleted or expired."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEnvClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- API ---------------------------------------------------------------------------------------
    async def health(self) -> HealthResponse:
        """As EnvClient.health."""
        return HealthResponse.model_validate(await self._run(self._simple("GET", "/health")))

    async def resources(self) -> dict[str, Any]:
        """As EnvClient.resources."""
        return await self._run(self._simple("GET", "/resources"))

    async def create_sandbox(
        self,
        image: str = "default",
        *,
        block_network: bool = True,
        sandbox_id: str | None = None,
        cpu: str | float | None = None,
        memory: str | int | None = None,
        timeout: int | None = None,
        wait: bool = True,
        **extras: Any,
    ) -> SandboxInfo:
        """As EnvClient.create_sandbox: with `wait`, until ready (raising, and deleting it, if it failed)."""
        payload = _create_payload(image, block_network, sandbox_id, cpu, memory, timeout, extras)
        return await self._run(self._create(payload, wait, timeout))

    async def get_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """As EnvClient.get_sandbox."""
        return await self._run(self._get(sandbox_id))

    async def wait_sandbox(self, sandbox_id: str, timeout: float = 3600.0) -> SandboxInfo:
        """As EnvClient.wait_sandbox."""
        return await self._run(self._wait_sandbox(sandbox_id, timeout))

    async def delete_sandbox(self, sandbox_id: str) -> None:
        """As EnvClient.delete_sandbox."""
        await self._run(self._delete(sandbox_id))

    async def heartbeat(self, sandbox_id: str) -> HeartbeatResponse:
        """As EnvClient.heartbeat."""
        return await self._run(self._heartbeat(sandbox_id))

    @overload
    async def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: Literal[False] = False,
        rows: int = 24,
        cols: int = 80,
    ) -> JobResponse: ...

    @overload
    async def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: Literal[True],
        rows: int = 24,
        cols: int = 80,
    ) -> AsyncContainerProcess: ...

    async def exec(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        timeout_seconds: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        login_shell: bool = False,
        session: bool = False,
        wait: bool = True,
        pty: bool = False,
        rows: int = 24,
        cols: int = 80,
    ) -> JobResponse | AsyncContainerProcess:
        """As EnvClient.exec; with `pty=True` the handle is an AsyncContainerProcess."""
        if pty:
            return await self.open_pty(
                sandbox_id, command, cwd=cwd, env=env, rows=rows, cols=cols, login_shell=login_shell
            )
        payload = _exec_payload(command, timeout_seconds, cwd, env, login_shell, session)
        return await self._run(self._exec(sandbox_id, payload, wait))

    async def open_pty(
        self,
        sandbox_id: str,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
        login_shell: bool = False,
    ) -> AsyncContainerProcess:
        """As EnvClient.open_pty, on asyncio: an AsyncContainerProcess to `await` reads and writes on."""
        from orchard_envs.env_service.process import AsyncContainerProcess, init_frame, pty_url

        init = init_frame(command, env, cwd, rows, cols, login_shell)
        url = pty_url(self.url, sandbox_id)
        return await AsyncContainerProcess.connect(url, init, self._headers(), self.timeout)

    async def get_job(self, job_id: str) -> JobResponse:
        """As EnvClient.get_job."""
        return await self._run(self._job(job_id))

    async def wait_job(self, job_id: str, timeout: float = 300.0) -> JobResponse:
        """As EnvClient.wait_job."""
        return await self._run(self._wait_job(job_id, timeout))

    async def apply_patch(
        self, sandbox_id: str, patch: str, *, timeout_seconds: float = 30, cwd: str | None = None
    ) -> ApplyPatchResponse:
        """As EnvClient.apply_patch."""
        payload = {"patch": patch, "timeout_seconds": _number(timeout_seconds), "cwd": cwd}
        return await self._run(self._apply_patch(sandbox_id, payload))

    async def upload_file(
        self, sandbox_id: str, path: str, data: bytes | str, mode: int | None = None
    ) -> UploadFileResponse:
        """As EnvClient.upload_file."""
        return await self._run(self._upload(sandbox_id, path, data, mode))

    async def download_file(self, sandbox_id: str, path: str) -> bytes:
        """As EnvClient.download_file."""
        return await self._run(self._download(sandbox_id, path))

    async def list_files(self, sandbox_id: str, path: str | None = None) -> list[FileEntry]:
        """As EnvClient.list_files."""
        return await self._run(self._list(sandbox_id, path))

    async def snapshot(self, sandbox_id: str) -> SnapshotResponse:
        """As EnvClient.snapshot."""
        return await self._run(self._snapshot(sandbox_id))

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """As EnvClient.delete_snapshot."""
        await self._run(self._delete_snapshot(snapshot_id))

    async def fork(
        self, sandbox_id: str, *, new_id: str | None = None, ttl: float | None = None, wait: bool = True
    ) -> SandboxInfo:
        """As EnvClient.fork."""
        return await self._run(self._fork(sandbox_id, {"sandbox_id": new_id, "ttl": ttl}, wait))
