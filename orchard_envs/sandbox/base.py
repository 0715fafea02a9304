"""The one sandbox contract every backend honours: lifecycle in `Backend`, capability in `Sandbox`."""

from __future__ import annotations

import io
import posixpath
import shlex
import tarfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from orchard_envs.errors import PatchError, SandboxClosed, SandboxError
from orchard_envs.sandbox.spec import ExecResult, FileInfo, SandboxSpec, SessionState


def new_sandbox_id() -> str:
    """A fresh id, unique enough to name host folders and containers."""
    return "sb-" + uuid.uuid4().hex[:12]


class Snapshot:
    """A frozen copy of a sandbox's files (and session state) that new sandboxes can start from.

    The payload is backend-specific (a directory copy, a committed image, a server-side id).
    """

    def __init__(self, backend: str, spec: SandboxSpec, session: SessionState | None, payload: Any) -> None:
        self.backend = backend
        self.spec = spec
        self.session = session
        self.payload = payload
        self.id = "snap-" + uuid.uuid4().hex[:12]

    def __repr__(self) -> str:
        return f"Snapshot({self.id}, backend={self.backend})"


class Sandbox(ABC):
    """An isolated place to run commands and keep files.

    `exec(..., session=True)` runs in a persistent bash session (cwd, variables and background jobs
    persist, like a terminal); `session=False` runs in a fresh shell. Paths are sandbox paths;
    relative ones are taken from `spec.workdir`.
    """

    backend_name: str = "abstract"

    def __init__(self, sandbox_id: str, spec: SandboxSpec) -> None:
        self.id = sandbox_id
        self.spec = spec
        self._closed = False
        self.created_at = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether close() was called; calls on a closed sandbox raise."""
        return self._closed

    def close(self) -> None:
        """Release everything the sandbox holds. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._close()

    @abstractmethod
    def _close(self) -> None: ...

    def warm(self) -> None:
        """Start the persistent session now, so the first agent command pays nothing (used by pools)."""
        self.exec("true")

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosed(f"sandbox {self.id} is closed; create a new one (or fork before closing)")

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}({self.id}, {state})"

    # -- commands --------------------------------------------------------------------------------
    @abstractmethod
    def exec(
        self,
        command: str,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        session: bool = True,
    ) -> ExecResult:
        """Run a bash command. With cwd/env given in session mode, they apply to this call only."""

    def open_pty(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> Any:
        """Start `argv` on a pseudo-terminal made inside the sandbox, for programs that need a tty.

        Returns a handle shaped as Orchard Env's ContainerProcess: `read`, `read_all`, `write_stdin`
        (b"\\x03" is ctrl-C), `resize`, `kill`, `wait`, `close`. Default: the relay of
        `orchard_envs.sandbox.pty`, over a fresh shell of the local or docker backend.
        """
        from orchard_envs.sandbox.pty import open_pty

        return open_pty(self, argv, env=env, cwd=cwd, rows=rows, cols=cols)

    # -- files -----------------------------------------------------------------------------------
    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """The file's bytes; SandboxFileNotFound if absent, SandboxError for a directory."""

    @abstractmethod
    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write a file, creating parent directories."""

    @abstractmethod
    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """The entries of a directory; SandboxFileNotFound if absent."""

    def upload_tar(self, data: bytes, dest: str = ".") -> None:
        """Extract a tar archive (bytes) into `dest`, creating it.

        Default: stage the archive in /tmp and run `tar` inside the sandbox, where a link already in
        `dest` cannot redirect a write outside it. Backends with a native archive call override this.
        """
        target = shlex.quote(self.abspath(dest))
        staged = _staging_path("tar")
        self.write_file(staged, data, 0o600)
        self._checked(
            f"mkdir -p {target} && tar -xf {staged} -C {target} --no-same-owner; s=$?; "
            f"rm -f {staged}; exit $s",
            f"upload to {self.abspath(dest)}",
        )

    def download_tar(self, path: str = ".") -> bytes:
        """A tar archive of `path`'s contents (members relative to `path`); staged like upload_tar."""
        source = self.abspath(path)
        staged = _staging_path("tar")
        try:
            self._checked(f"tar -cf {staged} -C {shlex.quote(source)} .", f"download of {source}")
            return self.read_file(staged)
        finally:
            self.exec(f"rm -f {staged}", timeout=60, session=False)

    def _checked(self, command: str, what: str) -> None:
        """A one-shot internal command whose failure is an infrastructure error naming `what`."""
        result = self.exec(command, timeout=300, session=False)
        if result.exit_code != 0:
            raise SandboxError(f"{what} failed: {(result.stderr or result.stdout).strip()}")

    def upload_dir(self, host_dir: str | Path, dest: str = ".") -> None:
        """Copy a host directory's contents into `dest` (one tar, so one round trip)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(host_dir), arcname=".")
        self.upload_tar(buf.getvalue(), dest)

    def download_dir(self, path: str, host_dir: str | Path) -> None:
        """Copy `path`'s contents into a host directory; tar's "data" filter refuses unsafe members."""
        Path(host_dir).mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(self.download_tar(path))) as tar:
            tar.extractall(host_dir, filter="data")

    def apply_patch(self, patch: str, cwd: str | None = None) -> None:
        """`git apply` a unified diff in `cwd` (default: workdir); raises PatchError with git's reason."""
        self._check_open()
        target = _staging_path("patch")
        self.write_file(target, patch if patch.endswith("\n") else patch + "\n")
        where = cwd or self.spec.workdir
        result = self.exec(
            f"git apply --whitespace=nowarn {target}; s=$?; rm -f {target}; exit $s",
            timeout=120,
            cwd=where,
            session=False,
        )
        if result.exit_code != 0:
            reason = (result.stderr or result.stdout).strip() or "git apply failed without a message"
            raise PatchError(f"patch does not apply in {where}: {reason}")

    # -- state -----------------------------------------------------------------------------------
    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Copy the full state (files, and the session's cwd and exports) into a Snapshot."""

    @abstractmethod
    def fork(self) -> Sandbox:
        """A new, independent sandbox that starts from this one's current state."""

    def abspath(self, path: str) -> str:
        """Normalise a sandbox path lexically, taking relative paths from the workdir."""
        return posixpath.normpath(posixpath.join(self.spec.workdir, path))


class Backend(ABC):
    """Creates sandboxes of one kind. Backends are cheap to construct; the work happens in create()."""

    name: str = "abstract"

    @abstractmethod
    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> Sandbox:
        """A ready sandbox for `spec`, or one restored from `snapshot` (whose spec wins)."""

    def drop_snapshot(self, snapshot: Snapshot) -> None:
        """Free what a snapshot holds (copies, images); sandboxes made from it are unaffected."""

    def close(self) -> None:
        """Release backend-wide resources (clients, pools). Sandboxes are closed on their own."""


def _staging_path(suffix: str) -> str:
    """An unguessable /tmp name, so a command in the sandbox can't plant a link there in advance."""
    return f"/tmp/.orchard-{uuid.uuid4().hex}.{suffix}"


def session_replay_script(state: SessionState) -> str:
    """Bash that recreates a session's exports and cwd in a fresh shell (readonly clashes stay quiet)."""
    return f"{{ {state.exports}\n}} 2>/dev/null\ncd {shlex.quote(state.cwd)} 2>/dev/null || true"
