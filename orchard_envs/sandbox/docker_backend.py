"""The `docker` backend: one container per sandbox on a local Docker Engine.

Container shape, and why:

* TTL: the main process is `sleep <ttl>` under Docker's init (tini, `init=True`; Debian's docker.io
  ships it as docker-init), and the container has `auto_remove`: when the TTL passes, sleep ends,
  the container stops and the daemon removes it with its volumes, even if the Python process that
  created it is long dead. `reap_expired` removes any that slipped through (belt and braces).
* Disk: the root filesystem is read-only; the writable areas (the workdir, /tmp and /root) are
  anonymous `local`-driver volumes of `type=tmpfs`, each capped at `spec.disk`. Nothing a command
  writes reaches the host disk, and a disk filler gets ENOSPC. Tmpfs pages count against the memory
  limit, so each area is also kept below it (`area_size`): one full area still leaves memory to run
  `rm`. Filling several areas at once can exhaust memory; then the sandbox's OOM killer pays, not
  the host. `auto_remove` deletes the anonymous volumes with the container. Logging is off (writing
  to PID 1's stdout can't fill a json log), and an `fsize` ulimit just above `spec.disk` bounds any
  single file elsewhere (e.g. in a VOLUME a custom image declares). The price of the read-only root:
  `apt-get` and `pip install` into system paths fail (`pip install --user` works).
* Privileges: every process runs as the unprivileged sandbox user (uid SANDBOX_UID, `orchard` in the
  base image; numeric, so any image works) with all capabilities dropped and `no-new-privileges`, so
  a setuid binary gains nothing and a kernel bug that needs a capability inside the container is out
  of reach. The writable areas are owned by that uid and mounted nosuid,nodev, and whatever the host
  writes into them (files, tars, base_dir) is rewritten to belong to it, so the agent can change
  every file it was given and no upload carries a setuid-root or device file. `SandboxSpec(root=True)`
  runs as uid 0 instead, with only the file-administration capabilities `ROOT_CAPS` (chown, read or
  write any file, setuid to other users, kill theirs): never raw sockets, mounts, device nodes,
  chroot or capability changes, which no task needs and which widen the kernel's attack surface.
* Commands: the persistent session is ONE `docker exec` of bash with stdin attached; each command
  is bytes on that socket (shell.ShellSession's protocol), no new exec per command. One-shot
  commands are a fresh `docker exec bash -c`. Timeouts kill the command's process tree from the host
  (`procs`, using the exec's host pid), which needs the daemon on this host.
* Files: `tar` run in an exec as the sandbox user, its archive on the exec's stdin or stdout; not
  Docker's archive API (see `DockerSandbox._tar`). The image needs GNU `tar` (the base image's; a
  custom image must have it, as it must have bash). Paths are checked against the writable areas
  twice: lexically, and after a `realpath` inside the container (run in a private helper shell, so
  it costs no new exec), so a symlink can't make the files API read or write elsewhere (e.g. /etc).
  A missing path raises SandboxFileNotFound (a SandboxError and a FileNotFoundError).
* Snapshots are tars of the writable areas (a `docker commit` would miss the tmpfs volumes) plus the
  session's cwd and exports; fork creates a container from them and replays the session.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import posixpath
import shlex
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors
import requests
from docker.types import DriverConfig, LogConfig, Mount, Ulimit

from orchard_envs.errors import (
    BackendUnavailable,
    ConfigError,
    PathEscapeError,
    SandboxError,
    SandboxFileNotFound,
    SandboxNotFound,
)
from orchard_envs.sandbox import procs
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot, new_sandbox_id, session_replay_script
from orchard_envs.sandbox.docker_channel import DOCKER_ERRORS, ExecChannel
from orchard_envs.sandbox.docker_image import (
    BASE_IMAGE,
    BASE_VERSION,
    SANDBOX_HOME,
    SANDBOX_UID,
    VERSION_LABEL,
    docker_client,
)
from orchard_envs.sandbox.shell import STDERR, ChannelClosed, ShellSession
from orchard_envs.sandbox.spec import ExecResult, FileInfo, SandboxSpec, SessionState

SANDBOX_LABEL = "orchard.sandbox"
DEADLINE_LABEL = "orchard.deadline"
ID_LABEL = "orchard.id"
SHELL_ARGV = ["bash", "--noprofile", "--norc"]
HOME, TMP = SANDBOX_HOME, "/tmp"
AREA_MODES = {TMP: "1777", HOME: "700"}
REAP_INTERVAL = 30.0
HELPER_TIMEOUT = 30.0
HELPER_MAX_OUTPUT = 64 * 1024 * 1024
START_TIMEOUT = 10.0
FSIZE_SLACK = 1024 * 1024
MIN_HEADROOM = 64 * 1024 * 1024  # memory kept free of tmpfs pages so commands can still run
COPY_CHUNK = 1024 * 1024
# What root=True keeps of Docker's default capabilities; NET_RAW, MKNOD, SYS_CHROOT, SETPCAP, SETFCAP,
# NET_BIND_SERVICE (unprivileged ports start at 0 in a container anyway) and AUDIT_WRITE stay dropped.
ROOT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")


# -- errors ----------------------------------------------------------------------------------------
def _explanation(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def translate(exc: Exception, sandbox_id: str, what: str) -> SandboxError:
    """Turn a Docker SDK/transport error into the SandboxError subclass a caller can act on."""
    text = _explanation(exc)
    if not isinstance(exc, docker.errors.APIError):  # (APIError is a requests.HTTPError: test it first)
        return BackendUnavailable(f"lost the Docker Engine while trying to {what}: {text}")
    lowered = text.lower()
    if "no such container" in lowered or "no such exec" in lowered:
        return SandboxNotFound(f"sandbox {sandbox_id} no longer exists (closed, or removed after its TTL)")
    if exc.status_code == 409 and ("not running" in lowered or "removal" in lowered or "dead" in lowered):
        return SandboxNotFound(f"sandbox {sandbox_id} has stopped (its TTL passed or it was killed)")
    if "could not find the file" in lowered:
        return SandboxFileNotFound(f"cannot {what}: no such file or directory")
    if "read-only" in lowered:
        return PathEscapeError(f"cannot {what}: the path is on the read-only part of the sandbox")
    return SandboxError(f"cannot {what}: {text}")


# -- the sandbox -----------------------------------------------------------------------------------
class DockerSandbox(Sandbox):
    """A sandbox that is one container; see the module docstring for its shape."""

    backend_name = "docker"

    def __init__(
        self,
        backend: DockerBackend,
        sandbox_id: str,
        spec: SandboxSpec,
        container_id: str,
        init_pid: int,
        session: SessionState | None = None,
    ) -> None:
        super().__init__(sandbox_id, spec)
        self._backend = backend
        self._api = backend.api
        self.container_id = container_id
        self._init_pid = init_pid
        self.areas = writable_areas(spec)
        self.uid = sandbox_uid(spec)
        self._session: ShellSession | None = None
        self._helper: ShellSession | None = None
        self._session_lock = threading.Lock()
        self._helper_lock = threading.Lock()
        self._cwd = session.cwd if session else spec.workdir
        self._replay = session_replay_script(session) if session else None

    @contextlib.contextmanager
    def _docker(self, what: str) -> Iterator[None]:
        try:
            yield
        except DOCKER_ERRORS as exc:
            raise translate(exc, self.id, what) from exc

    # -- shells ------------------------------------------------------------------------------------
    def _open_shell(self, max_output: int, cwd: str, kill: bool) -> ShellSession:
        with self._docker("start a shell"):
            channel = ExecChannel.open(self._api, self.container_id, SHELL_ARGV, stdin=True)
        shell = ShellSession(channel, max_output, cwd=cwd)
        if kill:
            shell.kill_command = lambda since: self._kill_since(channel, since)
        return shell

    def shell_channel(self) -> ExecChannel:
        """A fresh bash in the container on its own stream, read by another thread (the pty relay)."""
        self._check_open()
        with self._docker("start a shell"):
            channel = ExecChannel.open(self._api, self.container_id, SHELL_ARGV, stdin=True)
        channel.check_before_send = False
        return channel

    def _kill_since(self, channel: ExecChannel, since: float) -> None:
        """Kill what a command started: the shell's descendants, and orphans adopted by the init.

        Orphans can't be traced to their command, so an orphan of a concurrent one-shot command that
        started after `since` goes too; commands of one sandbox rarely overlap.
        """
        if channel.host_pid:
            procs.kill_started_since(channel.host_pid, since)
        if self._init_pid:
            kill_orphans_since(self._init_pid, since)

    def _live_session(self) -> ShellSession:
        """The agent's session, (re)started in the last known cwd, or replaying a fork's state."""
        if self._session is None or not self._session.alive:
            shell = self._open_shell(self.spec.max_output, self.spec.workdir, kill=True)
            restore = self._replay or f"cd {shlex.quote(self._cwd)} 2>/dev/null || true"
            started = shell.run(restore, timeout=START_TIMEOUT)
            if not shell.alive:
                self._ensure_running()
                raise SandboxError(
                    f"sandbox {self.id}: a new shell died at once (exit {started.exit_code}); the sandbox "
                    "is probably out of memory (files in its tmpfs areas count against the limit)"
                )
            self._session, self._replay = shell, None
        return self._session

    def _session_exec(self, command: str, timeout: float | None, cwd: str | None, env: Any) -> ExecResult:
        with self._session_lock:
            shell = self._live_session()
            try:
                result = shell.run(command, timeout, cwd, env)
            except ChannelClosed:  # the stream was gone before the command was sent
                shell.close()
                self._ensure_running()
                return self._live_session().run(command, timeout, cwd, env)
            self._cwd = shell.cwd
            if not shell.alive:
                self._ensure_running()  # a dead container must never look like a finished command
            return result

    def _ensure_running(self) -> None:
        with self._docker("inspect the sandbox"):
            state = self._api.inspect_container(self.container_id)["State"]
        if not state.get("Running"):
            raise SandboxNotFound(f"sandbox {self.id} has stopped (its TTL passed or it was killed)")

    def exec(
        self,
        command: str,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        session: bool = True,
    ) -> ExecResult:
        """As Sandbox.exec; a one-shot command (session=False) gets a fresh shell killed afterwards."""
        self._check_open()
        where = self.abspath(cwd) if cwd else None
        if session:
            return self._session_exec(command, timeout, where, env)
        # A one-shot command is a fresh shell driven by the same protocol as the session.
        shell = self._open_shell(self.spec.max_output, self.spec.workdir, kill=True)
        try:
            result = shell.run(command, timeout, where, env)
        finally:
            shell.close()
        if not result.timed_out and result.exit_code == 137:
            self._ensure_running()  # a dead container must never look like a finished command
        return result

    # -- helper shell (files API) -----------------------------------------------------------------
    def _helper_run(self, command: str) -> ExecResult:
        """Run a short internal command in a private bash (not the agent's session): no new exec.

        The commands are idempotent (realpath, mkdir -p, find), so one that lost its shell (an agent
        ran `kill -9 -1`) is retried once in a fresh one.
        """
        with self._helper_lock:
            for _ in range(2):
                if self._helper is None or not self._helper.alive:
                    self._helper = self._open_shell(HELPER_MAX_OUTPUT, "/", kill=False)
                try:
                    result: ExecResult | None = self._helper.run(command, timeout=HELPER_TIMEOUT)
                except ChannelClosed:
                    result = None
                if result is not None and self._helper.alive:
                    return result
                self._helper.close()
                self._ensure_running()
        raise SandboxError(f"sandbox {self.id}: its internal helper shell keeps dying")

    def _resolve(self, path: str) -> tuple[str, str, bool]:
        """(real path, 'file'|'dir'|'none', parent exists) of `path`, refusing anything outside the areas."""
        self._check_open()
        lexical = self._area_path(path)
        probe = (
            f"__r=$(realpath -m -- {shlex.quote(lexical)})\n"
            'if [ -d "$__r" ]; then __k=dir; elif [ -e "$__r" ]; then __k=file; else __k=none; fi\n'
            'if [ -d "${__r%/*}/" ]; then __p=1; else __p=0; fi\n'
            'printf "%s\\0%s\\0%s" "$__r" "$__k" "$__p"'
        )
        result = self._helper_run(probe)
        parts = result.stdout.split("\0")
        if len(parts) != 3 or not parts[0].startswith("/"):
            raise SandboxError(f"cannot resolve {lexical!r} in sandbox {self.id}: {result.stderr.strip()}")
        real, kind, parent = parts
        if _area_of(real, self.areas) is None:
            raise PathEscapeError(
                f"{path!r} resolves to {real!r}, outside the sandbox's writable areas "
                f"({', '.join(self.areas)}); use exec to read other files"
            )
        return real, kind, parent == "1"

    def _area_path(self, path: str) -> str:
        absolute = self.abspath(path)
        if _area_of(absolute, self.areas) is None:
            raise PathEscapeError(
                f"{path!r} is {absolute!r}, outside the sandbox's writable areas "
                f"({', '.join(self.areas)}); use exec to read other files"
            )
        return absolute

    def _mkdirs(self, path: str) -> None:
        result = self._helper_run(f"mkdir -p -- {shlex.quote(path)}")
        if result.exit_code != 0:
            raise SandboxError(f"cannot create directory {path}: {result.stderr.strip()}")

    # -- files -------------------------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        """Read through a `tar -c` in the container, not the session: works while the session is busy."""
        real, kind, _ = self._resolve(path)
        shown = self.abspath(path)
        if kind == "none":
            raise SandboxFileNotFound(f"no such file in sandbox {self.id}: {shown}")
        if kind == "dir":
            raise SandboxError(f"{shown} is a directory; use list_dir or download_tar")
        parent, name = posixpath.split(real)
        data, code = self._tar(["-c", "-f", "-", "-C", parent, "--", name], None, f"read {shown}")
        if code != 0:  # 1: it changed while tar read it
            raise SandboxError(f"cannot read {shown}: it changed while being read")
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member is not None and member.isreg() else None
                if handle is None:
                    raise SandboxError(f"{shown} is not a regular file")
                return handle.read()
        except tarfile.TarError as exc:
            raise SandboxError(f"cannot read {shown}: it changed while being read ({exc})") from None

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write through a `tar -x` in the container, owned by the sandbox user; parents are created."""
        real, kind, parent_exists = self._resolve(path)
        if kind == "dir":
            raise SandboxError(f"cannot write {self.abspath(path)}: it is a directory")
        parent, name = posixpath.split(real)
        if not parent_exists:
            self._mkdirs(parent)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._untar(parent, _file_tar(name, payload, mode, self.uid), f"write {real}")

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """As Sandbox.list_dir, listed by a helper run in the container."""
        real, kind, _ = self._resolve(path)
        base = self.abspath(path)
        if kind == "none":
            raise SandboxFileNotFound(f"no such directory in sandbox {self.id}: {base}")
        if kind != "dir":
            raise SandboxError(f"{base} is not a directory")
        listing = self._helper_run(
            f"find {shlex.quote(real)}/ -mindepth 1 -maxdepth 1 -printf '%f\\0%y\\0%s\\0%m\\0'"
        )
        if listing.exit_code != 0:
            raise SandboxError(f"cannot list {base}: {listing.stderr.strip()}")
        fields = listing.stdout.split("\0")[:-1]
        entries = [fields[i : i + 4] for i in range(0, len(fields) - 3, 4)]
        kinds = {"f": "file", "d": "dir", "l": "symlink"}
        infos = [
            FileInfo(
                name=name, path=base.rstrip("/") + "/" + name, type=kinds.get(kind, "other"),
                size=int(size), mode=int(perms, 8),
            )
            for name, kind, size, perms in entries
        ]
        return sorted(infos, key=lambda info: info.name)

    def upload_tar(self, data: bytes, dest: str = ".") -> None:
        """As Sandbox.upload_tar; members are owned by the sandbox user, not by root."""
        try:
            owned = owned_tar(data, self.uid)
        except tarfile.TarError as exc:
            raise SandboxError(f"cannot extract into {self.abspath(dest)}: not a tar ({exc})") from exc
        self._extract(owned, dest)

    def upload_dir(self, host_dir: str | os.PathLike[str], dest: str = ".") -> None:
        """Like the base class's, but the tar is made owned by the sandbox user in one pass."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(host_dir), arcname=".", filter=lambda member: _owned_member(member, self.uid))
        self._extract(buf.getvalue(), dest)

    def _extract(self, data: bytes, dest: str) -> None:
        """Extract a tar whose members already belong to the sandbox user."""
        real, kind, _ = self._resolve(dest)
        if kind == "file":
            raise SandboxError(f"cannot extract into {self.abspath(dest)}: it is a file")
        if kind == "none":
            self._mkdirs(real)
        self._untar(real, data, f"extract an archive into {real}")

    def download_tar(self, path: str = ".") -> bytes:
        """As Sandbox.download_tar, through a `tar -c` in the container."""
        real, kind, _ = self._resolve(path)
        if kind == "none":
            raise SandboxFileNotFound(f"no such file or directory in sandbox {self.id}: {self.abspath(path)}")
        return self._archive(real, kind == "dir", f"archive {real}")

    def _archive(self, real: str, is_dir: bool, what: str) -> bytes:
        """A tar of a folder's contents (members relative to it) or of one file; files that change
        while tar reads them are taken as they were read (a live tree is never frozen)."""
        where, name = (real, ".") if is_dir else posixpath.split(real)
        return self._tar(["-c", "-f", "-", "-C", where, "--", name], None, what)[0]

    def _untar(self, dest: str, data: bytes, what: str) -> None:
        _, code = self._tar(["-x", "-p", "-f", "-", "-C", dest], data, what)
        if code != 0:
            raise SandboxError(f"cannot {what}: tar exited with {code}")

    def _tar(self, args: list[str], stdin: bytes | None, what: str) -> tuple[bytes, int]:
        """Run `tar` in a fresh exec, as the sandbox's user in the container's own mount namespace:
        (its stdout, its exit status: 0, or 1 when a file changed while being read). A fatal error
        (status 2) raises SandboxError in tar's words.

        Not Docker's archive API: for each of its calls the daemon mounts the container's root and
        volumes in its own namespace, and in loaded CI runs files uploaded that way were missing from
        running containers (where in the daemon they went was not pinned down). An exec sees exactly
        what the agent sees, through the container's own mounts, and can do nothing the agent could not.
        """
        with self._docker(what):
            channel = ExecChannel.open(self._api, self.container_id, ["tar", *args], stdin=stdin is not None)
        out, err = bytearray(), bytearray()
        try:
            if stdin is not None:
                with contextlib.suppress(ChannelClosed):  # tar quit early: its stderr says why
                    channel.send(stdin)
                channel.close_stdin()
            while True:
                try:
                    frames = channel.recv(HELPER_TIMEOUT)
                except ChannelClosed:
                    break
                if not frames:
                    channel.kill()
                    raise SandboxError(f"cannot {what}: tar made no progress for {HELPER_TIMEOUT:.0f} s")
                for stream, payload in frames:
                    (err if stream == STDERR else out).extend(payload)
        finally:
            channel.close()
        code = channel.exit_code
        if code is None:
            self._ensure_running()
            raise SandboxError(f"cannot {what}: Docker did not report how tar ended")
        if code > 1:
            self._ensure_running()
            _raise_tar_error(what, err.decode(errors="replace").strip(), code)
        return bytes(out), code

    # -- state -------------------------------------------------------------------------------------
    def _session_state(self) -> SessionState:
        with self._session_lock:
            if self._session is None or not self._session.alive:
                if self._replay is not None:  # restored but not used yet: start it to read its state
                    return self._live_session().state()
                return SessionState(cwd=self._cwd)
            return self._session.state()

    def _capture(self) -> dict[str, bytes]:
        """A tar of each writable area's contents (tmpfs volumes: this is the whole file state).

        Each archive call has a fixed cost of tens of ms in the daemon, so the areas go in parallel.
        """
        with ThreadPoolExecutor(len(self.areas)) as pool:
            return dict(zip(self.areas, pool.map(self._archive_area, self.areas), strict=True))

    def _archive_area(self, area: str) -> bytes:
        return self._archive(area, True, f"archive {area}")

    def restore(self, tars: dict[str, bytes]) -> None:
        """Extract area tars taken by `_capture` (of a sandbox with the same spec) into this one."""

        def put(area: str) -> None:
            self._untar(area, tars[area], f"restore {area}")

        with ThreadPoolExecutor(len(tars) or 1) as pool:
            list(pool.map(put, tars))

    def snapshot(self) -> Snapshot:
        """A tar of each writable area (the whole file state on tmpfs volumes), with the session's state."""
        self._check_open()
        state = self._session_state()
        return Snapshot("docker", self.spec, state, self._capture())

    def fork(self) -> DockerSandbox:
        """A new container restored from a snapshot of this one."""
        return self._backend.create(snapshot=self.snapshot())

    def _close(self) -> None:
        for shell in (self._session, self._helper):
            if shell is not None:
                shell.close()
        remove_container(self._api, self.container_id)


def kill_orphans_since(init_pid: int, since: float, rounds: int = 3) -> None:
    """SIGKILL processes adopted by the container's init (double-forked, or whose parent died) that
    started at or after `since` (CLOCK_BOOTTIME seconds), sparing the TTL keeper: the init's oldest
    child, whose death would end the sandbox. Start times have clock-tick resolution, so the keeper
    of a just-created container may look as new as the command; hence it is spared by identity.
    """
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    for _ in range(rounds):
        table = procs.process_table()
        children = [pid for pid, (ppid, _) in table.items() if ppid == init_pid]
        keeper = min(children, key=lambda pid: (table[pid][1], pid), default=None)
        victims = [
            pid for pid in procs.descendants(init_pid, table)
            if pid != keeper and table[pid][1] >= since - tick
        ]
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _raise_tar_error(what: str, complaint: str, code: int) -> None:
    """The SandboxError for a failed tar, by what it said (GNU tar's words)."""
    lowered = complaint.lower()
    lines = [line for line in complaint.splitlines() if "exiting with failure status" not in line.lower()]
    detail = "; ".join(lines[:3]) or f"tar exited with {code}"
    if "no such file" in lowered and "cannot open" not in lowered and "cannot mkdir" not in lowered:
        raise SandboxFileNotFound(f"cannot {what}: no such file or directory")
    if "read-only" in lowered:
        raise PathEscapeError(f"cannot {what}: the path is on the read-only part of the sandbox")
    if "no space left" in lowered or "wrote only" in lowered:  # GNU tar reports ENOSPC as a short write
        raise SandboxError(f"cannot {what}: No space left in the sandbox's area (see SandboxSpec.disk)")
    raise SandboxError(f"cannot {what}: {detail}")


def _area_of(path: str, areas: tuple[str, ...]) -> str | None:
    for area in areas:
        if path == area or path.startswith(area.rstrip("/") + "/"):
            return area
    return None


def _file_tar(name: str, payload: bytes, mode: int, uid: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(payload), mode, int(time.time())
        tar.addfile(_owned_member(info, uid), io.BytesIO(payload))
    return buf.getvalue()


def _owned_member(member: tarfile.TarInfo, uid: int) -> tarfile.TarInfo | None:
    """`member` owned by uid:uid (the daemon extracts as root and keeps a tar's owners); device
    nodes are dropped (an unprivileged `tar -x`, as on local, can't make them either)."""
    if member.ischr() or member.isblk():
        return None
    member.uid = member.gid = uid
    member.uname = member.gname = ""
    for key in ("uid", "gid", "uname", "gname"):  # a pax record would override the fields above
        member.pax_headers.pop(key, None)
    return member


def owned_tar(data: bytes, uid: int) -> bytes:
    """`data` (a tar, compressed or not) with every member owned by uid:uid: the sandbox user can change
    whatever the host uploads, and an upload can't plant a root-owned (setuid) file. Parent folders the
    tar only implies get entries of their own, or the daemon would make them root's.

    An uncompressed tar whose owners are in its header blocks only (what `tarfile` and GNU tar write
    for ordinary ids) is patched in place, at about half the cost of writing it anew."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as source:
            members = source.getmembers()
    except tarfile.ReadError:  # compressed, or not a tar at all (the rewrite says so)
        members = []
    if members and not any(_needs_rewrite(member) for member in members):
        patched = _patched_tar(data, members, uid)
        if patched is not None:
            return patched
    return _rewritten_tar(data, uid)


def _needs_rewrite(member: tarfile.TarInfo) -> bool:
    """Members a header patch can't fix: devices (dropped), owners in pax records, sparse layouts."""
    owner_records = any(key in member.pax_headers for key in ("uid", "gid", "uname", "gname"))
    return member.ischr() or member.isblk() or member.issparse() or owner_records


def _patched_tar(data: bytes, members: list[tarfile.TarInfo], uid: int) -> bytes | None:
    """The tar with each member's own header block rewritten, after entries for implied folders;
    None if a block is not where a plain header would be (then the caller rewrites the tar)."""
    buf = bytearray(data)
    folders = {posixpath.normpath(member.name.lstrip("/")) for member in members if member.isdir()}
    implied: list[str] = []
    for member in members:
        implied += _implied_folders(member.name, folders)
        if not _own_header(buf, member.offset_data - tarfile.BLOCKSIZE, uid):
            return None
    prefix = b"".join(_folder_member(folder, uid).tobuf(tarfile.PAX_FORMAT) for folder in implied)
    return prefix + bytes(buf)


def _own_header(buf: bytearray, at: int, uid: int) -> bool:
    """Set one ustar/GNU header block's owner ids (and clear its owner names) in place, with a new
    checksum; False if the block's checksum shows it is not a header."""
    block = bytes(buf[at : at + tarfile.BLOCKSIZE]) if at >= 0 else b""
    if len(block) < tarfile.BLOCKSIZE or _stored_checksum(block) != _checksum(block):
        return False
    ids = b"%07o\0" % uid
    buf[at + 108 : at + 124] = ids + ids
    buf[at + 265 : at + 329] = bytes(64)
    buf[at + 148 : at + 156] = b"%06o\0 " % _checksum(bytes(buf[at : at + tarfile.BLOCKSIZE]))
    return True


def _checksum(block: bytes) -> int:
    """A header's unsigned checksum: its bytes summed with the checksum field read as spaces."""
    return sum(block[:148]) + 8 * 32 + sum(block[156:])


def _stored_checksum(block: bytes) -> int:
    digits = block[148:156].split(b"\0", 1)[0].strip()
    try:
        return int(digits, 8)
    except ValueError:
        return -1


def _rewritten_tar(data: bytes, uid: int) -> bytes:
    """owned_tar's general case: every member written anew by `tarfile`."""
    out = io.BytesIO()
    folders: set[str] = set()
    with (
        tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as source,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_CHUNK) as target,
    ):
        for member in source:
            owned = _owned_member(member, uid)
            if owned is None:
                continue
            for folder in _implied_folders(owned.name, folders):
                target.addfile(_folder_member(folder, uid))
            if owned.isdir():
                folders.add(posixpath.normpath(owned.name.lstrip("/")))
            target.addfile(owned, source.extractfile(member) if member.isreg() else None)
    return out.getvalue()


def _implied_folders(name: str, seen: set[str]) -> list[str]:
    """The folders above `name` that no earlier member created, outermost first (and now `seen`)."""
    parts = posixpath.normpath(name.lstrip("/")).split("/")[:-1]
    missing = []
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if folder not in (".", "..") and folder not in seen:
            seen.add(folder)
            missing.append(folder)
    return missing


def _folder_member(name: str, uid: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
    info.uid = info.gid = uid
    return info


def sandbox_uid(spec: SandboxSpec) -> int:
    """The uid (and gid) the sandbox's processes and files have: 0 only when the spec asks for root."""
    return 0 if spec.root else SANDBOX_UID


def writable_areas(spec: SandboxSpec) -> tuple[str, ...]:
    """The sandbox paths the files API may touch (each one a tmpfs volume)."""
    workdir = posixpath.normpath(spec.workdir)
    if workdir == "/":
        raise ConfigError("the docker backend needs a workdir below / (e.g. /workspace), not / itself")
    return tuple(dict.fromkeys((workdir, TMP, HOME)))


def remove_container(api: Any, container_id: str) -> None:
    """Kill and remove a container with its anonymous volumes; a container already gone is fine."""
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError, requests.RequestException):
        api.remove_container(container_id, force=True, v=True)


def reap_expired(client: Any, now: float | None = None) -> int:
    """Remove orchard containers whose deadline label has passed; returns how many were removed."""
    api = getattr(client, "api", client)
    now = time.time() if now is None else now
    removed = 0
    for info in api.containers(all=True, filters={"label": f"{SANDBOX_LABEL}=1"}):
        try:
            deadline = float((info.get("Labels") or {}).get(DEADLINE_LABEL, "inf"))
        except ValueError:
            continue
        if deadline < now:
            remove_container(api, info["Id"])
            removed += 1
    return removed


# -- the backend -----------------------------------------------------------------------------------
def area_size(spec: SandboxSpec) -> int | None:
    """Each writable area's tmpfs size: `spec.disk`, but never so much of `spec.memory` (which its
    pages count against) that one full area leaves too little memory to run a command in."""
    if spec.memory is None:
        return spec.disk
    headroom = max(MIN_HEADROOM, spec.memory // 4)
    room = max(spec.memory - headroom, spec.memory // 2)
    return room if spec.disk is None else min(spec.disk, room)


def _tmpfs_volume(target: str, size: int | None, mode: str, uid: int) -> Mount:
    options = f"mode={mode},uid={uid},gid={uid},nosuid,nodev" + (f",size={size}" if size else "")
    driver = DriverConfig("local", {"type": "tmpfs", "device": "tmpfs", "o": options})
    return Mount(target, None, type="volume", driver_config=driver)


class DockerBackend(Backend):
    """Creates DockerSandboxes. `image_aliases` maps spec image names to local images."""

    name = "docker"

    def __init__(self, client: Any = None, image_aliases: dict[str, str] | None = None) -> None:
        self._client = client
        self._own_client = client is None
        self.image_aliases = {"default": BASE_IMAGE, **(image_aliases or {})}
        self._last_reap = -REAP_INTERVAL
        self._base_checked = False
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The Docker client, made on first use (so constructing the backend needs no daemon)."""
        with self._lock:
            if self._client is None:
                self._client = docker_client()
            return self._client

    @property
    def api(self) -> Any:
        """The low-level API client, whether we hold a high-level client or already the API one."""
        return getattr(self.client, "api", self.client)

    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> DockerSandbox:
        """As Backend.create; only snapshots taken by the docker backend can be restored."""
        if snapshot is not None:
            if snapshot.backend != "docker" or not isinstance(snapshot.payload, dict):
                raise SandboxError(f"{snapshot} was not taken by the docker backend (or was dropped)")
            spec = snapshot.spec
        spec = spec or SandboxSpec()
        self._maybe_reap()
        sandbox = self._launch(spec, snapshot.session if snapshot else None)
        try:
            if snapshot is not None:
                sandbox.restore(snapshot.payload)
            elif spec.base_dir is not None:
                if not spec.base_dir.is_dir():
                    raise ConfigError(f"base_dir {str(spec.base_dir)!r} is not a directory on this host")
                sandbox.upload_dir(spec.base_dir, spec.workdir)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def drop_snapshot(self, snapshot: Snapshot) -> None:
        """Free a snapshot's archives (they live in this process's memory)."""
        snapshot.payload = None

    def close(self) -> None:
        """Close the Docker client if this backend made it; a client passed in is the caller's."""
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def _maybe_reap(self) -> None:
        if time.monotonic() - self._last_reap > REAP_INTERVAL:
            self._last_reap = time.monotonic()
            with contextlib.suppress(*DOCKER_ERRORS):
                reap_expired(self.api)

    def _launch(self, spec: SandboxSpec, session: SessionState | None) -> DockerSandbox:
        sandbox_id = new_sandbox_id()
        image = self.image_aliases.get(spec.image, spec.image)
        api = self.api
        if image == BASE_IMAGE:
            self._check_base_image(sandbox_id)
        uid = sandbox_uid(spec)
        try:
            created = api.create_container(
                image,
                entrypoint=["sleep", f"{spec.ttl:.3f}"],
                working_dir=spec.workdir,
                user=f"{uid}:{uid}",
                environment={"HOME": HOME, **spec.env},  # an image without the user would say HOME=/
                labels={
                    SANDBOX_LABEL: "1",
                    ID_LABEL: sandbox_id,
                    DEADLINE_LABEL: str(math.ceil(time.time() + spec.ttl)),
                },
                host_config=api.create_host_config(**self._host_options(spec)),
                name=f"orchard-{sandbox_id}",
            )
        except docker.errors.ImageNotFound as exc:
            raise self._missing_image(image) from exc
        except DOCKER_ERRORS as exc:
            raise translate(exc, sandbox_id, "create the container") from exc
        container_id = created["Id"]
        try:
            api.start(container_id)
            init_pid = int(api.inspect_container(container_id)["State"]["Pid"])
        except DOCKER_ERRORS as exc:
            remove_container(api, container_id)
            raise translate(exc, sandbox_id, "start the container") from exc
        return DockerSandbox(self, sandbox_id, spec, container_id, init_pid, session)

    def _check_base_image(self, sandbox_id: str) -> None:
        """Refuse a default image built before the sandbox user existed (once per backend)."""
        if self._base_checked:
            return
        try:
            labels = self.api.inspect_image(BASE_IMAGE)["Config"].get("Labels") or {}
        except docker.errors.ImageNotFound as exc:
            raise self._missing_image(BASE_IMAGE) from exc
        except DOCKER_ERRORS as exc:
            raise translate(exc, sandbox_id, f"inspect {BASE_IMAGE}") from exc
        if labels.get(VERSION_LABEL) != BASE_VERSION:
            found = labels.get(VERSION_LABEL)
            raise BackendUnavailable(
                f"{BASE_IMAGE} on this Docker host is an older build (version {found!r}, this code needs "
                f"{BASE_VERSION!r}); rebuild it with `python -m orchard_envs.sandbox.docker_image`"
            )
        self._base_checked = True

    @staticmethod
    def _host_options(spec: SandboxSpec) -> dict[str, Any]:
        areas, uid = writable_areas(spec), sandbox_uid(spec)
        options: dict[str, Any] = {
            "init": True,
            "auto_remove": True,
            "read_only": True,
            "mounts": [
                _tmpfs_volume(area, area_size(spec), AREA_MODES.get(area, "755"), uid) for area in areas
            ],
            "log_config": LogConfig(type="none"),
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "cap_add": list(ROOT_CAPS) if spec.root else None,
        }
        if not spec.network:
            options["network_mode"] = "none"
        if spec.cpu is not None:
            options["nano_cpus"] = int(spec.cpu * 1e9)
        if spec.memory is not None:
            options["mem_limit"] = spec.memory
            options["memswap_limit"] = spec.memory
        if spec.pids is not None:
            options["pids_limit"] = spec.pids
        if spec.disk is not None:
            limit = spec.disk + FSIZE_SLACK
            options["ulimits"] = [Ulimit(name="fsize", soft=limit, hard=limit)]
        return options

    def _missing_image(self, image: str) -> SandboxError | ConfigError:
        if image == BASE_IMAGE:
            return BackendUnavailable(
                f"the base image {BASE_IMAGE} is not built on this Docker host; build it once with "
                "`python -m orchard_envs.sandbox.docker_image` (about a minute, needs debootstrap)"
            )
        return ConfigError(
            f"Docker image {image!r} is not on this host; build or pull it first (the backend never pulls)"
        )
