"""Attacks on the docker backend's privileges, run inside real containers.

A sandbox's processes run as an unprivileged user with no capabilities and `no-new-privileges`, so a
kernel or daemon bug that needs root or a capability inside the container is out of reach, and files
the host uploads cannot carry a setuid-root bit. `SandboxSpec(root=True)` gives uid 0 with only the
file-administration capabilities (`ROOT_CAPS`): never raw sockets, mounts or device nodes.
"""

from __future__ import annotations

import io
import shlex
import tarfile

import pytest

from orchard_envs.sandbox import docker_backend
from orchard_envs.sandbox.spec import SandboxSpec

pytestmark = pytest.mark.docker

# Linux capability numbers (linux/capability.h) of what root=True keeps.
CAP_NUMBERS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7}
RAW_SOCKET = (
    "import socket\n"
    "for family, kind, proto in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),\n"
    "                            (socket.AF_PACKET, socket.SOCK_RAW, 0)):\n"
    "    try:\n"
    "        socket.socket(family, kind, proto).close()\n"
    "    except PermissionError:\n"
    "        print('refused')\n"
    "    else:\n"
    "        print('opened')\n"
)


@pytest.fixture
def backend(docker_backend):
    """Points conftest's `make_sandbox` at the docker backend only (these attacks are Docker's)."""
    return docker_backend


def _status(box, field: str) -> str:
    """A field of /proc/self/status of a process in the sandbox (grep itself is that process)."""
    result = box.exec(f"grep '^{field}:' /proc/self/status")
    assert result.ok, result
    return result.stdout.split(":", 1)[1].strip()


def _mask(names: list[str]) -> int:
    return sum(1 << CAP_NUMBERS[name] for name in names)


# -- the default: an unprivileged user ---------------------------------------------------------------
def test_commands_run_as_an_unprivileged_user(make_sandbox):
    box = make_sandbox()
    for session in (True, False):
        assert box.exec("id -u", session=session).stdout.strip() != "0"
        assert box.exec("id -g", session=session).stdout.strip() != "0"
    assert box.exec("whoami").stdout.strip() == "orchard"


def test_no_capability_is_held_or_can_be_regained(make_sandbox):
    box = make_sandbox()
    for field in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert int(_status(box, field), 16) == 0, field
    assert _status(box, "NoNewPrivs") == "1"


def test_mount_and_new_namespaces_are_refused(make_sandbox):
    box = make_sandbox()
    box.exec("mkdir -p /tmp/m")
    assert not box.exec("mount -t tmpfs none /tmp/m").ok
    assert not box.exec("unshare -Urm true").ok  # a user namespace would hand out fresh capabilities
    assert box.exec("grep -c ' /tmp/m ' /proc/self/mountinfo").stdout.strip() == "0"


def test_root_files_cannot_be_taken_over(make_sandbox):
    box = make_sandbox()
    assert not box.exec('chown "$(id -u)" /etc/hosts').ok  # a root file on a writable bind mount
    assert not box.exec("echo '1.2.3.4 evil' >> /etc/hosts").ok
    assert "evil" not in box.exec("cat /etc/hosts").stdout
    assert not box.exec("chown 0 /tmp").ok


def test_raw_sockets_are_refused(make_sandbox):
    box = make_sandbox(network=True)
    result = box.exec(f"python3 -c {shlex.quote(RAW_SOCKET)}")
    assert result.ok, result
    assert result.stdout.split() == ["refused", "refused"]


@pytest.mark.parametrize("owner_records", [False, True], ids=["header", "pax-records"])
def test_setuid_root_binaries_give_no_privileges(make_sandbox, owner_records):
    """An existing setuid binary runs without its bit (no-new-privileges), and one the host uploads in a
    tar owned by root with mode 4755 arrives owned by the sandbox user, on a nosuid area."""
    box = make_sandbox()
    assert not box.exec("su -c 'id -u' root </dev/null").ok
    assert box.exec("cp /usr/bin/id /tmp/id-copy").ok
    payload = box.read_file("/tmp/id-copy")
    box.upload_tar(_setuid_root_tar("id-suid", payload, owner_records=owner_records), "/tmp/up")
    owner = box.exec("stat -c %u /tmp/up/id-suid").stdout.strip()
    assert owner == box.exec("id -u").stdout.strip()
    ran = box.exec("/tmp/up/id-suid")
    assert ran.ok, ran
    assert "uid=0" not in ran.stdout and "euid=" not in ran.stdout
    box.write_file("/tmp/w-suid", payload, mode=0o4755)
    assert "euid=" not in box.exec("/tmp/w-suid").stdout


def test_files_api_and_snapshots_work_for_the_user(make_sandbox):
    """Everything the host writes belongs to the sandbox user, so the agent can change and remove it."""
    box = make_sandbox()
    box.write_file("a/b/file.txt", "x")
    box.upload_tar(_setuid_root_tar("dir/f", b"y", mode=0o644), "up")
    assert box.exec("echo more >> a/b/file.txt && echo z > up/dir/f && rm -r up && touch ~/h /tmp/t").ok
    assert box.exec('test -w /workspace && test -w "$HOME" && test -w /tmp').ok
    fork = box.fork()
    try:
        assert fork.exec("id -u").stdout == box.exec("id -u").stdout
        assert fork.exec("echo again >> a/b/file.txt && cat a/b/file.txt").stdout == "xmore\nagain\n"
        assert fork.exec("test -e ~/h && rm ~/h").ok
    finally:
        fork.close()


# -- root=True: uid 0, file administration only -----------------------------------------------------------
def test_root_flag_gives_uid_0_with_only_the_documented_capabilities(make_sandbox):
    box = make_sandbox(root=True)
    assert box.exec("id -u").stdout.strip() == "0"
    assert int(_status(box, "CapEff"), 16) == _mask(list(docker_backend.ROOT_CAPS))
    assert int(_status(box, "CapBnd"), 16) == _mask(list(docker_backend.ROOT_CAPS))
    assert _status(box, "NoNewPrivs") == "1"
    box.write_file("owned", "x")
    assert box.exec("stat -c %u owned").stdout.strip() == "0"
    assert box.exec("chown 12345 owned && stat -c %u owned").stdout.strip() == "12345"
    assert not box.exec("mount -t tmpfs none /tmp").ok
    assert box.exec(f"python3 -c {shlex.quote(RAW_SOCKET)}").stdout.split() == ["refused", "refused"]
    assert not box.exec("mknod /tmp/null c 1 3").ok


def test_root_is_part_of_the_spec():
    assert SandboxSpec().root is False
    assert SandboxSpec(root=True) != SandboxSpec()


def _setuid_root_tar(name: str, payload: bytes, mode: int = 0o4755, owner_records: bool = False) -> bytes:
    """A tar with one file owned by root:root, with `mode` (setuid root by default); the owner is
    also in pax records with `owner_records` (the backend rewrites such a tar instead of patching it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(payload), mode
        info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
        info.pax_headers = {"uid": "0", "gid": "0"} if owner_records else {}
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()
