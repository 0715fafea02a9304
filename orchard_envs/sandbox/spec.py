"""The data that crosses the sandbox interface: the same models in process and over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: int | str | None) -> int | None:
    """Accept 512, '512m', '2g', '1.5GiB' (binary units) and return bytes."""
    if value is None or isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"cannot read size {value!r}; write bytes or a number with k/m/g/t, e.g. '2g'")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class SandboxSpec(BaseModel):
    """What a sandbox is made from. Equal specs are interchangeable, which is what the warm pool keys on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field("default", description="'default' (Debian + python3 + git) or a backend image/rootfs")
    cpu: float | None = Field(1.0, gt=0, description="CPU cores (quota); None for no limit")
    memory: int | None = Field(2 * 1024**3, gt=0, description="memory limit in bytes ('2g' accepted)")
    pids: int | None = Field(512, gt=0, description="max processes/threads")
    disk: int | None = Field(
        1024**3,
        gt=0,
        description="writable-storage limit in bytes ('1g' accepted): the total on local, per writable area "
        "(workdir, /tmp, /root) on docker",
    )
    ttl: float = Field(3600.0, gt=0, description="wall-clock lifetime in seconds; reaped after it")
    network: bool = Field(False, description="allow network access (off: loopback of its own only)")
    workdir: str = Field("/workspace", description="absolute working directory inside the sandbox")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables for every command")
    base_dir: Path | None = Field(None, description="host directory whose contents seed the workdir")
    max_output: int = Field(1024 * 1024, gt=0, description="per-stream output cap in bytes for exec")
    root: bool = Field(
        False,
        description="run commands as uid 0 instead of the unprivileged sandbox user, for tasks that need "
        "root (e.g. to chown files); on docker, root keeps only the file-administration capabilities "
        "(docker_backend.ROOT_CAPS): no raw sockets, mounts or device nodes either way",
    )

    @field_validator("memory", "disk", mode="before")
    @classmethod
    def _sizes(cls, value: int | str | None) -> int | None:
        return parse_size(value)

    @field_validator("workdir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"workdir must be an absolute path, got {value!r}")
        return value

    def __hash__(self) -> int:  # dict field makes the default hash fail; the JSON form is canonical
        return hash(self.model_dump_json())


class ExecResult(BaseModel):
    """Outcome of one command. `exit_code` is 124 when the command timed out (as GNU timeout does)."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Exit code 0 and no timeout."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """stdout then stderr, the way a terminal shows them to an agent."""
        return self.stdout + self.stderr


class FileInfo(BaseModel):
    """One entry of a directory listing."""

    name: str
    path: str
    type: str = Field(description="'file', 'dir', 'symlink' or 'other'")
    size: int = 0
    mode: int = 0


class SessionState(BaseModel):
    """What of a shell session survives a fork: its directory and exported variables."""

    cwd: str
    exports: str = Field("", description="`export -p` output, replayed into the new session")
