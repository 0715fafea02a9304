"""The `remote` backend: sandboxes of an env service (ours, or an Orchard Env server) as `Sandbox`es.

Lifetime: the service reaps a sandbox `spec.ttl` seconds after its creation or its last heartbeat.
Nothing here sends heartbeats on its own; call `RemoteSandbox.heartbeat()` when a sandbox may sit idle
that long. Session exec, snapshot and fork use the service's extensions (advertised by `/health`);
against a server without them, session exec falls back to a fresh shell per command (with one
warning) and snapshot/fork raise SandboxError.
"""

from __future__ import annotations

import logging
import posixpath
import warnings
from typing import TYPE_CHECKING, Any

from orchard_envs.env_service.client import EnvClient
from orchard_envs.env_service.models import FileEntry, JobResponse
from orchard_envs.errors import ConfigError, OrchardError, PatchError, SandboxError
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot
from orchard_envs.sandbox.spec import ExecResult, FileInfo, SandboxSpec

if TYPE_CHECKING:
    from orchard_envs.env_service.process import ContainerProcess

log = logging.getLogger(__name__)


class RemoteBackend(Backend):
    """Sandboxes served over HTTP. `url` defaults to $ORCHARD_ENV_URL, then http://127.0.0.1:8080."""

    name = "remote"

    def __init__(self, url: str | None = None, api_key: str | None = None, **client_options: Any) -> None:
        self.client = EnvClient(url, api_key, **client_options)
        self._extensions: frozenset[str] | None = None
        self._warned_session = False

    @property
    def url(self) -> str:
        """The env service's address."""
        return self.client.url

    def extensions(self) -> frozenset[str]:
        """What the server offers beyond Orchard Env's API (asked once)."""
        if self._extensions is None:
            self._extensions = frozenset(self.client.health().extensions)
        return self._extensions

    def require(self, extension: str, what: str) -> None:
        """SandboxError naming `what` when the service lacks `extension` (e.g. a plain Orchard Env server)."""
        if extension not in self.extensions():
            raise SandboxError(
                f"the env service at {self.url} lacks the {extension!r} extension, so {what} is unavailable "
                "(a plain Orchard Env server?); run `orchard-env serve` for it"
            )

    def session_supported(self) -> bool:
        """Whether the service keeps shell sessions; warns once when it does not."""
        if "session" in self.extensions():
            return True
        if not self._warned_session:
            self._warned_session = True
            warnings.warn(
                f"the env service at {self.url} has no 'session' extension: exec(session=True) runs each "
                "command in a fresh shell there, so cwd and variables do not persist",
                RuntimeWarning,
                stacklevel=3,
            )
        return False

    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> RemoteSandbox:
        """As Backend.create; restoring a snapshot needs the service's "snapshot" extension."""
        if snapshot is not None:
            if snapshot.backend != self.name:
                raise ConfigError(f"{snapshot} was taken by the {snapshot.backend} backend, not by remote")
            self.require("snapshot", "creating a sandbox from a snapshot")
            info = self.client.create_sandbox(
                snapshot.spec.image, snapshot_id=snapshot.payload, ttl=snapshot.spec.ttl
            )
            return RemoteSandbox(self, info.sandbox_id, snapshot.spec)
        spec = spec or SandboxSpec()
        info = self.client.create_sandbox(
            spec.image,
            block_network=not spec.network,
            cpu=spec.cpu,
            memory=spec.memory,
            pids=spec.pids,
            disk=spec.disk,
            workdir=spec.workdir,
            env=spec.env or None,
            ttl=spec.ttl,
            max_output=spec.max_output,
        )
        sandbox = RemoteSandbox(self, info.sandbox_id, spec)
        if spec.base_dir is not None:  # a directory on this machine, so the client uploads it
            try:
                sandbox.upload_dir(spec.base_dir, spec.workdir)
            except BaseException:
                sandbox.close()
                raise
        return sandbox

    def drop_snapshot(self, snapshot: Snapshot) -> None:
        """Free a snapshot on the server (the Backend ABC has no such call yet)."""
        self.client.delete_snapshot(snapshot.payload)

    def close(self) -> None:
        """Close the HTTP client; sandboxes on the service live on until closed or expired."""
        self.client.close()


class RemoteSandbox(Sandbox):
    """One sandbox of an env service; every call is one or a few HTTP requests."""

    backend_name = "remote"

    def __init__(self, backend: RemoteBackend, sandbox_id: str, spec: SandboxSpec) -> None:
        super().__init__(sandbox_id, spec)
        self._backend = backend
        self._client = backend.client

    def heartbeat(self) -> float | None:
        """Restart the sandbox's TTL on the service; returns the new expiry (epoch seconds) if told."""
        self._check_open()
        return self._client.heartbeat(self.id).expires_at

    def _close(self) -> None:
        try:
            self._client.delete_sandbox(self.id)
        except OrchardError as exc:  # closing must not fail; the service's TTL reaps it anyway
            log.warning("could not delete remote sandbox %s: %s", self.id, exc)

    # -- commands --------------------------------------------------------------------------------
    def exec(
        self,
        command: str,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        session: bool = True,
    ) -> ExecResult:
        """Run a command. `timeout=None` means the server's default limit (300 s on Orchard Env)."""
        self._check_open()
        session = session and self._backend.session_supported()
        job = self._client.exec(self.id, command, timeout_seconds=timeout, cwd=cwd, env=env, session=session)
        return self._result(job)

    def open_pty(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> ContainerProcess:
        """A terminal over the service's `WS /sandboxes/{id}/exec/pty` (ours or Orchard Env's)."""
        self._check_open()
        where = self.abspath(cwd) if cwd else self.spec.workdir
        return self._client.open_pty(self.id, list(argv), cwd=where, env=env, rows=rows, cols=cols)

    def _result(self, job: JobResponse) -> ExecResult:
        if job.exit_code is None:
            raise SandboxError(f"command in sandbox {self.id} did not run: {job.error or job.status}")
        timed_out = job.timed_out or (job.exit_code == 124 and "timed out" in (job.error or "").lower())
        duration = job.duration
        if duration is None:
            duration = (job.completed_at or 0.0) - (job.started_at or job.completed_at or 0.0)
        return ExecResult(
            exit_code=job.exit_code,
            stdout=job.stdout,
            stderr=job.stderr,
            duration=duration,
            timed_out=timed_out,
            truncated=job.truncated,
        )

    # -- files -----------------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """Download the file over HTTP (base64 in one answer: keep files small)."""
        self._check_open()
        return self._client.download_file(self.id, self.abspath(path))

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Upload the file over HTTP."""
        self._check_open()
        self._client.upload_file(self.id, self.abspath(path), data, mode)

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List the directory over HTTP."""
        self._check_open()
        base = self.abspath(path)
        return [_file_info(entry, base) for entry in self._client.list_files(self.id, base)]

    def apply_patch(self, patch: str, cwd: str | None = None) -> None:
        """`git apply` on the server; raises PatchError with git's reason."""
        self._check_open()
        where = self.abspath(cwd) if cwd else self.spec.workdir
        reply = self._client.apply_patch(self.id, patch, timeout_seconds=120, cwd=where)
        if not reply.success:
            reason = (
                (reply.stderr or reply.stdout).strip() or reply.error or "git apply failed without a message"
            )
            raise PatchError(f"patch does not apply in {where}: {reason}")

    # -- state -----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """A snapshot kept by the service (needs its "snapshot" extension); the session is not captured."""
        self._check_open()
        self._backend.require("snapshot", "snapshot()")
        reply = self._client.snapshot(self.id)
        snap = Snapshot(self._backend.name, self.spec, None, reply.snapshot_id)
        snap.id = reply.snapshot_id
        return snap

    def fork(self) -> RemoteSandbox:
        """A fork made by the service (needs its "fork" extension)."""
        self._check_open()
        self._backend.require("fork", "fork()")
        info = self._client.fork(self.id, ttl=self.spec.ttl)
        return RemoteSandbox(self._backend, info.sandbox_id, self.spec)


def _file_info(entry: FileEntry, base: str) -> FileInfo:
    kind = entry.kind or ("dir" if entry.type == "directory" else "file")
    path = entry.path or posixpath.join(base, entry.name)
    return FileInfo(name=entry.name, path=path, type=kind, size=entry.size, mode=entry.mode or 0)
