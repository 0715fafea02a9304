"""Attacks on how a sandbox is launched and reached: the control folder, what the sandbox's pid 1 leaks
from the host (environment, command line, mounts, fds), and limits that silently go unenforced.

Each test runs the attack from inside a real sandbox (or, for the host-side checks behind the
read-only control folder, plants what a sandbox would) and asserts that the host was not affected.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import textwrap
import warnings
from pathlib import Path

import pytest
from conftest import require

from orchard_envs.errors import BackendUnavailable, SandboxError
from orchard_envs.sandbox import SandboxSpec
from orchard_envs.sandbox.local import cgroups, fifo_channel
from orchard_envs.sandbox.local.storage import CAN_MOUNT, default_state_root

# The backends that run the bubblewrap broker: local itself, and remote (a service serving local).
BROKER_BACKENDS = pytest.mark.parametrize("backend", ["local", "remote"], indirect=True)


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    return victim


# -- the control folder ---------------------------------------------------------------------------
@BROKER_BACKENDS
def test_a_control_fifo_swapped_for_a_symlink_never_makes_the_host_write_a_host_file(make_sandbox, tmp_path):
    victim = _victim(tmp_path)
    sandbox = make_sandbox()
    sandbox.exec(f"rm -f /.orchard/control; ln -s {victim} /.orchard/control")
    with contextlib.suppress(SandboxError):  # a broken control channel is fine; a written host file is not
        sandbox.exec("true", session=False)
    assert victim.read_text() == "untouched\n"


RACER = """
import os, sys, time
folder, victim, secret = "/.orchard", sys.argv[1], sys.argv[2]
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    for name in os.listdir(folder):
        target = victim if name.endswith(".in") else secret if name.endswith(".out") else None
        path = folder + "/" + name
        if target and not os.path.islink(path):
            try:
                os.unlink(path)
                os.symlink(target, path)
            except OSError:
                pass
"""


@BROKER_BACKENDS
def test_racing_new_shell_fifos_never_makes_the_host_write_or_read_a_host_file(
    make_sandbox, tmp_path, monkeypatch
):
    """A loop swaps every new NAME.in for a link to a host file (the host would write its command
    script there) and every NAME.out for a link to a host secret (the host would read it back)."""
    monkeypatch.setattr(fifo_channel, "OPEN_TIMEOUT", 1.0)  # a shell the racer broke fails fast
    victim = _victim(tmp_path)
    secret_text = f"host-secret-{secrets.token_hex(8)}"
    (tmp_path / "secret.txt").write_text(secret_text)
    sandbox = make_sandbox()
    sandbox.write_file("/tmp/racer.py", RACER)
    sandbox.exec(f"python3 /tmp/racer.py {victim} {tmp_path / 'secret.txt'} 60 >/dev/null 2>&1 &")
    seen = []
    for _ in range(15):  # before the fix the racer won within the first few shells
        try:
            seen.append(sandbox.exec("echo shell-ok", session=False).output)
        except Exception as exc:  # any failure is fine; what it says must not leak
            seen.append(str(exc))
    assert victim.read_text() == "untouched\n"
    assert not any(secret_text in text for text in seen)
    assert any("shell-ok" in text for text in seen)


def test_the_control_folder_is_read_only_inside_the_sandbox(make_sandbox, backend):
    if backend.name == "docker":
        pytest.skip("docker has no control folder")
    sandbox = make_sandbox()
    result = sandbox.exec("touch /.orchard/x || mkfifo /.orchard/y || rm /.orchard/control; ls /.orchard")
    assert "Read-only file system" in result.stderr
    assert "control" in result.stdout


@pytest.mark.parametrize("planted", ["symlink", "regular file"])
def test_the_host_opens_only_fifos_in_the_control_folder(tmp_path, planted):
    """Behind the read-only bind: what the host opens there must be a FIFO it can trust, never a link
    or file someone put in its place (the sandbox could once do exactly that)."""
    victim = _victim(tmp_path)
    folder = tmp_path / "ctl"
    folder.mkdir()
    if planted == "symlink":
        (folder / "control").symlink_to(victim)
    else:
        (folder / "control").write_text("planted\n")
    with pytest.raises(SandboxError, match=r"not a FIFO|not running"):
        fifo_channel.FifoChannel(folder, os.getpid())
    assert victim.read_text() == "untouched\n"
    assert not any(stat.S_ISFIFO(p.lstat().st_mode) for p in folder.iterdir())  # its own FIFOs removed


# -- what pid 1 and the mount table show ----------------------------------------------------------
def test_no_process_in_the_sandbox_holds_the_hosts_environment(backend, make_sandbox, monkeypatch):
    canary = f"sk-canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    sandbox = make_sandbox()
    result = sandbox.exec("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; env")
    assert "PATH=" in result.stdout  # the reads worked
    assert canary not in result.stdout


def _host_strings(tmp_path: Path) -> list[str]:
    return [str(default_state_root()), "/var/lib/orchard", str(tmp_path)]


def test_no_host_storage_path_shows_in_command_lines_or_mounts(backend, make_sandbox, tmp_path):
    if backend.name != "docker" and not CAN_MOUNT:
        pytest.skip("without root the local backend binds plain host dirs; docs/sandboxes.md says so")
    base = tmp_path / "base"
    base.mkdir()
    (base / "seed.txt").write_text("seed\n")
    sandbox = make_sandbox(base_dir=str(base))
    script = "tr '\\0' ' ' < /proc/1/cmdline; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
    result = sandbox.exec(f"{script}; cat /proc/self/mountinfo /proc/1/mountinfo; cat seed.txt")
    assert "seed" in result.stdout
    for text in _host_strings(tmp_path):
        assert text not in result.output, f"{text} is visible inside the sandbox"


APPEND_TO_PID1_FDS = textwrap.dedent(
    """
    for f in /proc/1/fd/*; do
      echo "link $(readlink $f)"
      (echo {mark} >> $f) 2>/dev/null && echo "wrote $f"
    done
    true
    """
)


def test_pid_1_holds_no_host_file_the_sandbox_can_append_to(backend, make_sandbox):
    mark = f"appended-{secrets.token_hex(8)}"
    sandbox = make_sandbox()
    result = sandbox.exec(APPEND_TO_PID1_FDS.format(mark=mark))
    links = [line[5:] for line in result.stdout.splitlines() if line.startswith("link ")]
    assert links, result.output
    for link in links:  # /dev/null, pipes, sockets and anonymous inodes only: no file of the host
        assert link == "/dev/null" or link.split(":")[0] in {"pipe", "socket", "anon_inode"}, link
    if backend.name != "docker":
        assert not _files_containing(default_state_root() / "sandboxes", mark)


def _files_containing(root: Path, mark: str) -> list[Path]:
    """Regular files directly in each sandbox's state folder (never FIFOs: opening one would block)."""
    found = []
    for path in root.glob("*/*"):
        with contextlib.suppress(OSError):
            if stat.S_ISREG(path.lstat().st_mode) and mark.encode() in path.read_bytes():
                found.append(path)
    return found


# -- limits that cannot be enforced ---------------------------------------------------------------
@pytest.fixture
def unwritable_cgroups(tmp_path, monkeypatch) -> None:
    """A cgroup root where nothing can be created (a regular file: even root cannot mkdir under it)."""
    root = tmp_path / "cgroup"
    root.write_text("")
    monkeypatch.setattr(cgroups, "ROOT", root)
    monkeypatch.delenv(cgroups.OPT_OUT, raising=False)


def test_limits_that_cannot_be_enforced_refuse_the_sandbox(unwritable_cgroups):
    with pytest.raises(BackendUnavailable, match=cgroups.OPT_OUT):
        cgroups.CgroupSet.create("sb-test", SandboxSpec())


def test_no_limits_requested_needs_no_cgroups(unwritable_cgroups):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cgroups.CgroupSet.create("sb-test", SandboxSpec(cpu=None, memory=None, pids=None)).dirs == []


def test_the_opt_out_runs_without_limits_and_warns(unwritable_cgroups, monkeypatch):
    monkeypatch.setenv(cgroups.OPT_OUT, "1")
    with pytest.warns(RuntimeWarning, match="not enforced"):
        assert cgroups.CgroupSet.create("sb-test", SandboxSpec()).dirs == []


def test_a_local_sandbox_is_refused_when_its_limits_cannot_be_enforced(
    local_backend, unwritable_cgroups, monkeypatch
):
    # The sandbox gets a known id: other xdist workers make sandboxes in the same folder meanwhile.
    sandbox_id = f"sb-refused-{secrets.token_hex(4)}"
    monkeypatch.setattr("orchard_envs.sandbox.local.sandbox.new_sandbox_id", lambda: sandbox_id)
    with pytest.raises(BackendUnavailable, match="limits"):
        local_backend.create(SandboxSpec())
    assert not (local_backend.sandbox_root / sandbox_id).exists()  # nothing left behind


def test_an_existing_cgroup_is_never_reused(tmp_path, monkeypatch):
    """The host only writes limits into a cgroup it just created itself."""
    require(os.geteuid() == 0 or os.access(cgroups.ROOT, os.W_OK), "cgroups are not writable here")
    name = f"sb-{secrets.token_hex(6)}"
    first = cgroups.CgroupSet.create(name, SandboxSpec())
    try:
        assert first.dirs
        with pytest.raises(SandboxError, match="already exists"):
            cgroups.CgroupSet.create(name, SandboxSpec())
    finally:
        first.remove()
