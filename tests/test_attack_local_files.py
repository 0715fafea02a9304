"""Attacks on the host-side file API: a process in the sandbox swaps a directory for a symlink to a
host folder (`renameat2(RENAME_EXCHANGE)` in a tight loop) while the host reads, writes, creates
folders, chmods and lists files under it. Before the fix the host followed the swapped-in link within
a fraction of a second: it created, chmodded and read files anywhere on the host.

Run on every backend (docker and remote must hold too); the host-side folder is the attack's target.
"""

from __future__ import annotations

import os
import secrets
import stat

import pytest

from orchard_envs.errors import SandboxError
from orchard_envs.sandbox.local.paths import Area, Location, parent_dir

SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
os.chdir(sys.argv[1])
os.makedirs("d/sub", exist_ok=True)
open("d/secret.txt", "w").write("sandbox file\n")
if not os.path.islink("l"):
    os.symlink(sys.argv[2], "l")
deadline = time.time() + float(sys.argv[3])
open("/tmp/swapper-ready", "w").close()
while time.time() < deadline:
    libc.renameat2(-100, b"d", -100, b"l", RENAME_EXCHANGE)
"""

# Before the fix the host followed the link within the first few dozen calls; remote and docker calls
# cost a round trip each, so they get fewer rounds (the race is on the host side of local, in any case).
ROUNDS = {"local": 300, "remote": 60, "docker": 60}


@pytest.fixture
def host_target(tmp_path):
    """A host folder the sandbox must never reach, with a secret in it."""
    target = tmp_path / "host-target"
    target.mkdir()
    secret = f"host-secret-{secrets.token_hex(8)}"
    (target / "secret.txt").write_text(secret)
    (target / "sub").mkdir()
    (target / "host-only-marker").write_text("")
    return target, secret


def test_swapping_a_folder_for_a_link_never_lets_the_host_touch_a_host(backend, make_sandbox, host_target):
    target, secret = host_target
    sandbox = make_sandbox()
    sandbox.write_file("/tmp/swapper.py", SWAPPER)
    sandbox.exec(f"python3 /tmp/swapper.py /workspace {target} 120 >/dev/null 2>&1 &")
    sandbox.exec("for i in $(seq 100); do [ -e /tmp/swapper-ready ] && break; sleep 0.05; done")
    read_back, ok = [], 0
    for i in range(ROUNDS[backend.name]):
        for call in (
            lambda i=i: sandbox.write_file(f"/workspace/d/new-{i}.txt", "planted\n", 0o777),
            lambda i=i: sandbox.write_file(f"/workspace/d/fresh-{i}/deep/x.txt", "planted\n"),
            lambda: sandbox.write_file("/workspace/d/secret.txt", "overwritten\n", 0o777),
            lambda: read_back.append(sandbox.read_file("/workspace/d/secret.txt").decode()),
            lambda: read_back.extend(info.name for info in sandbox.list_dir("/workspace/d")),
        ):
            try:
                call()
                ok += 1
            except SandboxError:  # the swap was caught mid-walk: refused, which is the point
                pass
    sandbox.exec("pkill -f swapper.py || true", session=False)
    assert sorted(p.name for p in target.iterdir()) == ["host-only-marker", "secret.txt", "sub"]
    assert (target / "secret.txt").read_text() == secret
    assert stat.S_IMODE((target / "secret.txt").stat().st_mode) != 0o777
    assert list((target / "sub").iterdir()) == []
    assert not any(secret in text for text in read_back)
    assert "host-only-marker" not in read_back
    assert ok > 0  # the API kept working between swaps


def test_a_fifo_in_the_sandbox_is_refused_not_waited_on(make_sandbox):
    sandbox = make_sandbox()
    sandbox.exec("mkfifo /workspace/pipe")
    with pytest.raises(SandboxError, match="regular file"):
        sandbox.read_file("/workspace/pipe")
    assert sandbox.exec("echo alive").stdout == "alive\n"


# -- the walk itself, without a sandbox: every component is opened without following links ----------
def test_the_walk_refuses_a_link_at_every_depth(tmp_path):
    area = tmp_path / "area"
    outside = tmp_path / "outside"
    (area / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    for depth in (("a",), ("a", "b")):
        link_at = area.joinpath(*depth)
        moved = link_at.with_name(link_at.name + ".real")
        link_at.rename(moved)
        link_at.symlink_to(outside)
        location = Location(Area("/workspace", area), (*depth, "c", "x.txt"))
        with pytest.raises(OSError), parent_dir(location, create=True) as (parent, name):
            os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, dir_fd=parent)
        link_at.unlink()
        moved.rename(link_at)
    assert list(outside.iterdir()) == []


def test_the_walk_creates_missing_folders_inside_the_area(tmp_path):
    location = Location(Area("/workspace", tmp_path), ("x", "y", "z.txt"))
    with parent_dir(location, create=True) as (parent, name):
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=parent))
    assert (tmp_path / "x" / "y" / "z.txt").is_file()
