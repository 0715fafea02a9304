"""Wire models of the env service, shared by the server and both clients.

Field names, defaults and status strings follow Orchard Env's REST API (microsoft/Orchard,
`orchard_env/orchestrator/api.py` and `docs/api.md`) so that its clients work unchanged. Fields that
Orchard lacks are our extensions: optional in requests, extra keys in responses (Orchard's clients read
responses with `.get`, and pydantic models ignore unknown request fields, as Orchard's do).
"""

from __future__ import annotations

import re
import shlex
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

from orchard_envs.sandbox.spec import parse_size

EXTENSIONS = ("session", "snapshot", "fork")
"""What `/health` advertises beyond Orchard Env's API; RemoteSandbox checks these before using them."""

SANDBOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")


def parse_cpu(value: str | float | None) -> float | None:
    """Kubernetes-style CPU ('4', '0.5', '2000m') or a number, in cores."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    match = _CPU.match(value)
    if not match:
        raise ValueError(f"cannot read cpu {value!r}; write cores ('2', '0.5') or millicores ('500m')")
    cores = float(match.group(1))
    return cores / 1000 if match.group(2) else cores


def _check_sandbox_id(value: str) -> str:
    if not SANDBOX_ID.match(value):
        raise ValueError("sandbox_id must be 1-63 characters of letters, digits, '.', '_' or '-'")
    return value


SandboxId = Annotated[str, AfterValidator(_check_sandbox_id)]


def format_cpu(cores: float | None) -> str:
    """The wire form of a CPU limit: "unlimited" for None, else cores without trailing zeros."""
    return "unlimited" if cores is None else f"{cores:g}"


def format_memory(size: int | None) -> str:
    """Bytes as Kubernetes quantities ('2Gi'), the form Orchard Env reports memory in."""
    if size is None:
        return "unlimited"
    for unit, factor in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


class JobStatus(StrEnum):
    """Orchard Env's job statuses: queued -> running -> succeeded | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class SandboxStatus(StrEnum):
    """A sandbox's lifecycle state, Orchard Env's strings."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


# -- sandboxes ---------------------------------------------------------------------------------------
class CreateSandboxRequest(BaseModel):
    """Orchard's create request plus our SandboxSpec fields (pids, disk, workdir, env, ttl), snapshot_id."""

    image: str = Field("default", description="'default' is the built-in base environment")
    block_network: bool = True
    sandbox_id: SandboxId | None = None
    cpu: str | float | None = Field(None, description="cores: '4', '0.5', '2000m'")
    memory: str | int | None = Field(None, description="bytes or a quantity: '16Gi', '512m'")
    timeout: int | None = Field(None, description="seconds a client should wait for readiness (Orchard)")
    # extensions
    pids: int | None = Field(None, gt=0)
    disk: str | int | None = None
    workdir: str | None = None
    env: dict[str, str] | None = None
    ttl: float | None = Field(None, gt=0, description="seconds without a heartbeat before it is reaped")
    max_output: int | None = Field(None, gt=0)
    snapshot_id: str | None = Field(None, description="start from this snapshot (its spec wins)")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | float | None) -> str | float | None:
        parsed = parse_cpu(value)
        if parsed is not None and parsed <= 0:
            raise ValueError("cpu must be positive")
        return value

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        parse_size(value)
        return value


class CreateSandboxResponse(BaseModel):
    """The answer to a create: the sandbox's id and the limits it actually got."""

    sandbox_id: str
    namespace: str
    image: str
    block_network: bool
    cpu: str
    memory: str
    timeout: int
    status: str = SandboxStatus.PENDING
    # extensions
    ttl: float | None = None
    expires_at: float | None = None
    workdir: str | None = None


class SandboxInfo(BaseModel):
    """`GET /sandboxes/{id}` and `/wait`. A failed creation has status 'failed' and the reason."""

    sandbox_id: str
    namespace: str
    image: str
    pod_name: str | None = None
    block_network: bool
    cpu: str
    memory: str
    created_at: float
    ready: bool
    status: str
    status_message: str = ""
    # extensions
    timeout: int | None = None
    ttl: float | None = None
    expires_at: float | None = None
    last_heartbeat: float | None = None
    workdir: str | None = None
    error_type: str | None = None


class DeleteResponse(BaseModel):
    """The answer to a delete."""

    status: str = "deleted"
    sandbox_id: str


class HeartbeatResponse(BaseModel):
    """The answer to a heartbeat: the sandbox's new expiry (None: it never expires)."""

    status: str = "ok"
    sandbox_id: str
    expires_at: float | None = None


# -- jobs --------------------------------------------------------------------------------------------
class ExecRequest(BaseModel):
    """A command to run in a sandbox; a string runs under a shell, a list runs as argv."""

    command: str | list[str]
    timeout_seconds: float | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    login_shell: bool = False
    wait: bool = False
    # extension: run in the sandbox's persistent shell session (cwd and variables persist)
    session: bool = False


class ExecResponse(BaseModel):
    """What Orchard returns for `wait: false`; our server sends the full JobResponse, a superset."""

    job_id: str
    status: str = JobStatus.QUEUED


class JobResponse(BaseModel):
    """A job's state and, once done, its output; the fields after `error` are our extensions."""

    job_id: str
    sandbox_id: str
    command: str
    status: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    # extensions
    timed_out: bool = False
    truncated: bool = False
    duration: float | None = None
    session: bool = False

    @property
    def done(self) -> bool:
        """Whether the job reached a final status (its output will not change)."""
        return self.status in FINAL_STATUSES


class ApplyPatchRequest(BaseModel):
    """A unified diff to apply in a sandbox."""

    patch: str
    timeout_seconds: float = 30
    cwd: str | None = Field(None, description="extension; Orchard applies in the working directory")


class ApplyPatchResponse(BaseModel):
    """Whether the patch applied, with git's output; a patch that fails is not an HTTP error."""

    success: bool
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    error: str | None = None


# -- files -------------------------------------------------------------------------------------------
class UploadFileRequest(BaseModel):
    """A file to write into a sandbox, its content base64."""

    path: str
    content: str = Field(description="base64")
    mode: str | int | None = Field(None, description="'0755' or an int; the sandbox agent's optional field")


class UploadFileResponse(BaseModel):
    """The answer to an upload: where the file went and its size in bytes."""

    success: bool = True
    path: str
    size: int


class DownloadFileResponse(BaseModel):
    """A file read from a sandbox, its content base64."""

    path: str
    content: str = Field(description="base64")
    size: int


class FileEntry(BaseModel):
    """Orchard's listing entry ('file' or 'directory') plus our exact kind, mode and path."""

    name: str
    type: str
    size: int
    modified: str | None = None
    # extensions
    path: str | None = None
    kind: str | None = Field(None, description="'file', 'dir', 'symlink' or 'other'")
    mode: int | None = None


class ListFilesResponse(BaseModel):
    """A directory listing of a sandbox."""

    path: str
    files: list[FileEntry]


# -- extensions --------------------------------------------------------------------------------------
class SnapshotResponse(BaseModel):
    """A saved image of a sandbox (the snapshot extension), to fork from."""

    snapshot_id: str
    sandbox_id: str
    image: str
    created_at: float


class ForkRequest(BaseModel):
    """Options for a fork: the new sandbox's id (generated when None) and TTL."""

    sandbox_id: SandboxId | None = None
    ttl: float | None = Field(None, gt=0)


class HealthResponse(BaseModel):
    """The service's identity; `extensions` lists what it offers beyond Orchard Env's API."""

    status: str = "healthy"
    service: str = "orchard-env"
    version: str = ""
    backend: str = ""
    extensions: list[str] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error: FastAPI's `detail`, plus the Orchard error class name so clients can re-raise it."""

    detail: str | list
    error_type: str | None = None


class PtyInit(BaseModel):
    """The first frame on `WS /sandboxes/{id}/exec/pty` (Orchard Env's init frame; unknown keys ignored)."""

    type: str = "init"
    cmd: list[str] = Field(min_length=1)
    env: dict[str, str] | None = None
    cwd: str | None = None
    rows: int = Field(24, ge=1, le=10000)
    cols: int = Field(80, ge=1, le=10000)
    login_shell: bool = False

    @field_validator("type")
    @classmethod
    def _is_init(cls, value: str) -> str:
        if value != "init":
            raise ValueError(f"the first frame must have type 'init', not {value!r}")
        return value

    def argv(self) -> list[str]:
        """The command, wrapped as Orchard's agent does for a login shell that also reads ~/.bashrc."""
        if not self.login_shell:
            return list(self.cmd)
        joined = shlex.join(self.cmd)
        return ["bash", "--login", "-i", "-c", f"if [ -f ~/.bashrc ]; then . ~/.bashrc; fi; {joined}"]
