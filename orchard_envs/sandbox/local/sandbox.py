"""The `local` backend: bubblewrap namespaces, cgroup limits, a tmpfs+overlay work tree per sandbox."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

from orchard_envs.errors import BackendUnavailable, SandboxError, SandboxFileNotFound
from orchard_envs.sandbox import procs
from orchard_envs.sandbox.base import Backend, Sandbox, Snapshot, new_sandbox_id, session_replay_script
from orchard_envs.sandbox.local.bwrap import (
    BROKER_SHELL,
    NetworkSetup,
    args_memfd,
    bwrap_options,
    system_root,
)
from orchard_envs.sandbox.local.cgroups import CgroupSet, sweep_orphans
from orchard_envs.sandbox.local.fifo_channel import BROKER, FifoChannel, make_control
from orchard_envs.sandbox.local.network import SlirpNetwork, read_child_pid, require_slirp, write_resolv_conf
from orchard_envs.sandbox.local.paths import Area, Location, describe, parent_dir, resolve
from orchard_envs.sandbox.local.storage import Storage, copy_state, default_state_root, expired
from orchard_envs.sandbox.shell import ChannelClosed, ShellSession
from orchard_envs.sandbox.spec import ExecResult, FileInfo, SandboxSpec, SessionState

START_TIMEOUT = 10.0
REAP_INTERVAL = 30.0


class LocalSandbox(Sandbox):
    """A bubblewrap sandbox on this host; files are reached through its state directory, not a shell."""

    backend_name = "local"

    def __init__(
        self,
        backend: LocalBackend,
        sandbox_id: str,
        spec: SandboxSpec,
        storage: Storage,
        process: subprocess.Popen,
        cgroups: CgroupSet,
        replay: str | None = None,
        network: SlirpNetwork | None = None,
    ) -> None:
        super().__init__(sandbox_id, spec)
        self._backend = backend
        self.storage = storage
        self.process = process
        self.cgroups = cgroups
        self.network = network
        self._session: ShellSession | None = None
        self._session_lock = threading.Lock()
        self._replay = replay
        self._cwd = spec.workdir
        self.areas = [
            Area(spec.workdir, storage.workspace(spec.base_dir)),
            Area("/tmp", storage.tmp),
            Area("/root", storage.home),
        ]

    # -- shells ------------------------------------------------------------------------------------
    def shell_channel(self) -> FifoChannel:
        """A fresh bash in the sandbox on its own FIFOs (sessions, one-shot execs, the pty relay)."""
        self._check_open()
        if self.process.poll() is not None:
            raise SandboxError(f"sandbox {self.id} is no longer running (TTL passed or it was killed)")
        return FifoChannel(self.storage.ctl, self.process.pid)

    def _shell(self) -> ShellSession:
        channel = self.shell_channel()
        session = ShellSession(channel, self.spec.max_output, cwd=self.spec.workdir)
        hello = session.run("echo $$", timeout=START_TIMEOUT)
        channel.nspid = int(hello.stdout.strip())
        session.kill_command = lambda since: self._kill_since(channel, since)
        return session

    @staticmethod
    def _kill_since(channel: FifoChannel, since: float) -> None:
        pid = channel.host_pid()
        if pid is not None:
            procs.kill_started_since(pid, since)

    def warm(self) -> None:
        """Start the persistent shell now, so the first command does not pay for it."""
        with self._session_lock:
            self._live_session()

    def _live_session(self) -> ShellSession:
        if self._session is None or not self._session.alive:
            self._session = self._shell()
            restore = self._replay or f"cd {shlex.quote(self._cwd)} 2>/dev/null || true"
            self._replay = None
            self._session.run(restore, timeout=START_TIMEOUT)
        return self._session

    def exec(
        self,
        command: str,
        timeout: float | None = 60.0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        session: bool = True,
    ) -> ExecResult:
        """As Sandbox.exec; a one-shot command (session=False) gets its own shell."""
        self._check_open()
        if not session:
            shell = self._shell()
            try:
                return shell.run(command, timeout, cwd, env)
            finally:
                shell.close()
        with self._session_lock:
            try:
                result = self._live_session().run(command, timeout, cwd, env)
            except ChannelClosed:  # the shell died between commands (e.g. OOM-killed): retry once
                result = self._live_session().run(command, timeout, cwd, env)
            self._cwd = self._session.cwd
            return result

    # -- files -------------------------------------------------------------------------------------
    # Every call walks from an area's root fd without following links (see paths.py), because the
    # sandbox can swap any directory for a link while the host is in the middle of a call.
    def _locate(self, path: str, follow_last: bool = True) -> Location:
        self._check_open()
        return resolve(self.abspath(path), self.areas, follow_last)

    def read_file(self, path: str) -> bytes:
        """Read from the host side without following links; a FIFO or device is refused, not read."""
        shown = self.abspath(path)
        try:
            with parent_dir(self._locate(path)) as (parent, name):
                # O_NONBLOCK: a FIFO planted here must not hang the host; it is refused below.
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            raise SandboxFileNotFound(f"no such file in sandbox {self.id}: {shown}") from None
        except OSError as exc:
            raise SandboxError(f"cannot read {shown}: {describe(exc)}") from None
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            os.close(fd)
            if stat.S_ISDIR(kind):
                raise SandboxError(f"{shown} is a directory; use list_dir")
            raise SandboxError(f"{shown} is not a regular file; use exec to read it")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write from the host side without following links, only in the sandbox's writable area."""
        shown = self.abspath(path)
        payload = data.encode() if isinstance(data, str) else data
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            with parent_dir(self._locate(path), create=True) as (parent, name):
                fd = os.open(name, flags, 0o600, dir_fd=parent)
        except OSError as exc:
            raise SandboxError(f"cannot write {shown}: {describe(exc)}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SandboxError(f"cannot write {shown}: it is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as handle:
            os.ftruncate(fd, 0)
            handle.write(payload)
            os.fchmod(fd, mode)

    def list_dir(self, path: str = ".") -> list[FileInfo]:
        """List from the host side without following links."""
        base = self.abspath(path)
        try:
            with parent_dir(self._locate(path)) as (parent, name):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            raise SandboxFileNotFound(f"no such directory in sandbox {self.id}: {base}") from None
        except NotADirectoryError:
            raise SandboxError(f"{base} is not a directory") from None
        except OSError as exc:
            raise SandboxError(f"cannot list {base}: {describe(exc)}") from None
        try:
            with os.scandir(fd) as entries:
                return [_file_info(entry, base) for entry in sorted(entries, key=lambda e: e.name)]
        finally:
            os.close(fd)

    def upload_tar(self, data: bytes, dest: str = ".") -> None:
        """As Sandbox.upload_tar, after checking `dest` is in the writable area; tar runs inside."""
        self._locate(dest)  # the same writable-area rule as every other file call; tar runs inside
        super().upload_tar(data, dest)

    def download_tar(self, path: str = ".") -> bytes:
        """As Sandbox.download_tar, after checking `path` is in the sandbox's area."""
        self._locate(path)
        return super().download_tar(path)

    # -- state -------------------------------------------------------------------------------------
    def _session_state(self) -> SessionState:
        with self._session_lock:
            return self._live_session().state()

    def snapshot(self) -> Snapshot:
        """Copy the writable state to the backend's snapshot folder, with the session's state."""
        self._check_open()
        state = self._session_state()
        snap = Snapshot("local", self.spec, state, None)
        directory = self._backend.snapshot_root / snap.id
        copy_state(self.storage.rw, directory)
        snap.payload = str(directory)
        return snap

    def fork(self) -> LocalSandbox:
        """A new sandbox launched from a copy of this one's writable state and session."""
        self._check_open()
        state = self._session_state()
        return self._backend.launch(self.spec, copy_from=self.storage.rw, session=state)

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
        _stop(self.process, self.cgroups)
        if self.network is not None:
            self.network.close()
        self.storage.destroy()


class LocalBackend(Backend):
    """Sandboxes as bubblewrap namespaces on this host. Needs the `bwrap` binary (Debian: bubblewrap)."""

    name = "local"

    def __init__(self, state_root: str | Path | None = None) -> None:
        if shutil.which("bwrap") is None:
            raise BackendUnavailable(
                "the local backend needs bubblewrap: apt-get install bubblewrap (or use --backend docker)"
            )
        self.root = Path(state_root) if state_root else default_state_root()
        self.sandbox_root = self.root / "sandboxes"
        self.snapshot_root = self.root / "snapshots"
        self.sandbox_root.mkdir(parents=True, exist_ok=True)
        self.snapshot_root.mkdir(parents=True, exist_ok=True)
        self._last_reap = 0.0
        self.reap_expired()

    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> LocalSandbox:
        """As Backend.create; only snapshots taken by the local backend can be restored."""
        if snapshot is not None:
            if snapshot.backend != "local" or not snapshot.payload:
                raise SandboxError(f"{snapshot} was not taken by the local backend")
            return self.launch(snapshot.spec, copy_from=Path(snapshot.payload), session=snapshot.session)
        return self.launch(spec or SandboxSpec())

    def launch(
        self, spec: SandboxSpec, copy_from: Path | None = None, session: SessionState | None = None
    ) -> LocalSandbox:
        """Start a sandbox, optionally seeded from a state copy and a session; reaps expired ones at times."""
        system_root(spec.image)  # validate early, before anything is mounted
        if time.monotonic() - self._last_reap > REAP_INTERVAL:
            self.reap_expired()
        if spec.network:
            require_slirp()  # before anything is made
        sandbox_id = new_sandbox_id()
        storage = Storage(self.sandbox_root / sandbox_id)
        cgroups = CgroupSet([])
        network: SlirpNetwork | None = None
        info_read = info_write = -1
        try:
            base = spec.base_dir.resolve() if spec.base_dir else None
            storage.create(spec, base, copy_from)
            make_control(storage.ctl)
            cgroups = CgroupSet.create(sandbox_id, spec)
            setup = None
            if spec.network:
                info_read, info_write = os.pipe()
                setup = NetworkSetup(info_write, write_resolv_conf(storage.ctl))
            workspace = storage.workspace(base)
            options = bwrap_options(spec, workspace, storage.tmp, storage.home, storage.ctl, setup)
            process = _spawn(options, [*BROKER_SHELL, BROKER], spec, cgroups, info_write)
            storage.write_meta(
                pid=process.pid, deadline=time.time() + spec.ttl, cgroups=[str(d) for d in cgroups.dirs]
            )
            if setup is not None:
                os.close(info_write)
                info_write = -1
                sandbox_pid = read_child_pid(info_read, process)
            _wait_ready(process, storage)
            if setup is not None:  # only once bwrap has set up the namespace's loopback: both use netlink
                network = SlirpNetwork(sandbox_pid, storage.root / "slirp.log")
        except BaseException:
            if network is not None:
                network.close()
            with contextlib.suppress(NameError):
                _stop(process, cgroups)
            cgroups.remove()
            storage.destroy()
            raise
        finally:
            for fd in (info_read, info_write):
                if fd >= 0:
                    os.close(fd)
        replay = session_replay_script(session) if session else None
        return LocalSandbox(self, sandbox_id, spec, storage, process, cgroups, replay, network)

    def reap_expired(self) -> int:
        """Remove every sandbox past its TTL, including those whose creating process died."""
        self._last_reap = time.monotonic()
        reaped = 0
        entries = list(self.sandbox_root.iterdir())
        sweep_orphans({entry.name for entry in entries})
        for entry in entries:
            storage = Storage(entry)
            meta = storage.read_meta()
            if expired(meta):
                cgroups = CgroupSet([Path(d) for d in meta.get("cgroups", [])])
                cgroups.kill_all()
                cgroups.remove()
                storage.destroy()
                reaped += 1
        return reaped

    def drop_snapshot(self, snapshot: Snapshot) -> None:
        """Delete the snapshot's copy of the state."""
        if snapshot.payload:
            shutil.rmtree(snapshot.payload, ignore_errors=True)


# The whole environment of the processes that start a sandbox: bwrap stays the sandbox's pid 1, and
# anything in its environment (API keys of the host process) would be readable in /proc/1/environ.
SPAWN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _spawn(
    options: list[str], command: list[str], spec: SandboxSpec, cgroups: CgroupSet, info_fd: int = -1
) -> subprocess.Popen:
    """Start bwrap with `options` handed over in a memfd (`--args`), so neither its command line nor its
    environment, seen from inside as /proc/1, holds a host path or a host secret, and with no host fd:
    stdin and stdout are /dev/null and stderr a pipe the host reads only while the sandbox starts."""
    # sh joins the cgroups, then becomes `timeout`, which kills bwrap (and so the whole pid
    # namespace) at the TTL even if the creating process is long gone.
    script = cgroups.enter_script() + 'exec timeout -s KILL "$@"'
    args = args_memfd(options)
    try:
        return subprocess.Popen(
            ["sh", "-c", script, "sh", f"{spec.ttl:.3f}", "bwrap", "--args", str(args), *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(args,) if info_fd < 0 else (args, info_fd),
            env=SPAWN_ENV,
            start_new_session=True,
        )
    finally:
        os.close(args)


def _wait_ready(process: subprocess.Popen, storage: Storage) -> None:
    """Block until the broker reads its control FIFO (a writer can then open it without blocking).

    Then the host closes its end of bwrap's stderr: what the sandbox writes there later reaches no one.
    """
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = process.stderr.read().decode(errors="replace").strip()
            raise SandboxError(f"sandbox failed to start: {log or 'bwrap exited ' + str(process.returncode)}")
        try:
            os.close(os.open(storage.ctl / "control", os.O_WRONLY | os.O_NONBLOCK))
            process.stderr.close()
            return
        except OSError:
            time.sleep(0.0005)
    raise SandboxError(f"sandbox did not start within {START_TIMEOUT:.0f}s")


def _stop(process: subprocess.Popen, cgroups: CgroupSet) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    cgroups.kill_all()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    cgroups.remove()


def _file_info(entry: os.DirEntry, base: str) -> FileInfo:
    stat = entry.stat(follow_symlinks=False)
    if entry.is_symlink():
        kind = "symlink"
    elif entry.is_dir(follow_symlinks=False):
        kind = "dir"
    elif entry.is_file(follow_symlinks=False):
        kind = "file"
    else:
        kind = "other"
    path = base.rstrip("/") + "/" + entry.name
    return FileInfo(name=entry.name, path=path, type=kind, size=stat.st_size, mode=stat.st_mode & 0o7777)
