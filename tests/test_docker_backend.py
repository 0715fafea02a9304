"""The docker backend against a real Docker Engine: behaviour, containment and cleanup.

The base image is built (once per host, about a minute) by a session fixture. Without a Docker Engine
(or the rights to build the image) the tests that need one skip with the reason on a developer machine
and fail in CI (`require`).
"""

from __future__ import annotations

import gzip
import io
import socket
import statistics
import struct
import tarfile
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import require

from orchard_envs.errors import (
    BackendUnavailable,
    ConfigError,
    PathEscapeError,
    SandboxClosed,
    SandboxError,
    SandboxFileNotFound,
    SandboxNotFound,
)
from orchard_envs.sandbox import docker_backend, docker_channel, docker_image
from orchard_envs.sandbox.shell import STDERR, STDOUT, ChannelClosed
from orchard_envs.sandbox.spec import SandboxSpec

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker_image.docker_client()
        docker_image.build_base_image()
    except BackendUnavailable as exc:
        require(False, f"no Docker Engine with the base image: {exc}")
        raise
    return client


@pytest.fixture(scope="session")
def dbackend(docker_client) -> Iterator[docker_backend.DockerBackend]:
    backend = docker_backend.DockerBackend(client=docker_client)
    yield backend
    backend.close()


@pytest.fixture
def backend(dbackend) -> docker_backend.DockerBackend:
    """Points conftest's `make_sandbox` at this module's backend."""
    return dbackend


@pytest.fixture
def make(make_sandbox) -> Callable[..., docker_backend.DockerSandbox]:
    return make_sandbox


@pytest.fixture
def box(make) -> docker_backend.DockerSandbox:
    return make()


def _container_exists(client, container_id: str) -> bool:
    import docker.errors

    try:
        client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    return True


# -- the base image and the engine ---------------------------------------------------------------------
def test_mirror_is_read_from_this_machines_apt_sources():
    try:
        mirror = docker_image.find_mirror()
    except BackendUnavailable as exc:
        pytest.skip(f"this machine has no Debian apt source: {exc}")
    sources = [docker_image.APT_SOURCES_LIST, *sorted(docker_image.APT_SOURCES_DIR.glob("*"))]
    assert any(mirror in path.read_text(errors="replace") for path in sources if path.is_file())
    one_line = f"# deb {mirror} bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] {mirror} bookworm main\n"
    assert docker_image._one_line_mirrors(one_line, "bookworm") == [mirror]
    stanzas = (
        f"Types: deb\nURIs: {mirror}-security\nSuites: bookworm-security\n\n"
        f"Types: deb\nURIs: {mirror}-off\nSuites: bookworm\nEnabled: no\n\n"
        f"Types: deb-src deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\n"
    )
    assert docker_image._deb822_mirrors(stanzas, "bookworm") == [mirror]


def test_base_image_is_cached(docker_client):
    before = docker_client.images.get(docker_image.BASE_IMAGE).id
    assert docker_image.build_base_image() == docker_image.BASE_IMAGE
    assert docker_client.images.get(docker_image.BASE_IMAGE).id == before  # found, not built again
    assert docker_image.image_version(docker_client) == docker_image.BASE_VERSION


def test_unreachable_engine_is_backend_unavailable(monkeypatch, tmp_path):
    import docker

    nowhere = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", nowhere)
    with pytest.raises(BackendUnavailable, match="start it"):
        docker_image.docker_client()
    backend = docker_backend.DockerBackend(client=docker.DockerClient(base_url=nowhere, version="1.41"))
    with pytest.raises(BackendUnavailable, match="Docker Engine"):
        backend.create(SandboxSpec())


def test_a_base_image_of_an_older_version_is_refused(docker_client, monkeypatch):
    """An image from before the sandbox user would run commands as a uid without a name or home."""
    monkeypatch.setattr(docker_backend, "BASE_VERSION", "0")
    backend = docker_backend.DockerBackend(client=docker_client)
    with pytest.raises(BackendUnavailable, match="older build"):
        backend.create(SandboxSpec())


# -- uploads belong to the sandbox user -----------------------------------------------------------------
def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.uid, info.gid, info.uname = kind, size, 0, 0, "root"
    info.pax_headers = {"uid": "0", "uname": "root"}
    return info


def test_owned_tar_gives_every_member_and_implied_folder_to_the_user():
    device = _member("dev/sda", tarfile.BLKTYPE)
    data = _tar((_member("./a/b/f", size=2), b"hi"), (_member("a/b/g"), b""), (device, None))
    for source in (data, gzip.compress(data)):
        with tarfile.open(fileobj=io.BytesIO(docker_backend.owned_tar(source, 4242))) as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == ["a", "a/b", "./a/b/f", "a/b/g"]  # no device, parents first
            assert {(m.uid, m.gid, m.uname) for m in members} == {(4242, 4242, "")}
            assert tar.extractfile("./a/b/f").read() == b"hi"
    with pytest.raises(tarfile.TarError):
        docker_backend.owned_tar(b"not a tar", 1)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_owned_tar_patches_plain_headers_in_place(tar_format, monkeypatch):
    """The fast path (owners only in header blocks) gives what the rewrite gives, long names included."""
    long_name = "deep/" + "n" * 150 + "/file"  # a GNU long-name block or a pax path record before it
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tar_format) as tar:
        for name, data in (("./top", b"t"), (long_name, b"long"), ("d/", None)):
            info = _member(name, tarfile.DIRTYPE if data is None else tarfile.REGTYPE, len(data or b""))
            info.pax_headers = {}
            if tar_format == tarfile.USTAR_FORMAT and len(name) > 100:
                continue  # ustar can't hold it
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    monkeypatch.setattr(docker_backend, "_rewritten_tar", None)  # the fast path must not need it
    owned = docker_backend.owned_tar(buf.getvalue(), 4242)
    with tarfile.open(fileobj=io.BytesIO(owned)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(4242, 4242, "", "")}
        if tar_format != tarfile.USTAR_FORMAT:
            assert tar.extractfile(long_name).read() == b"long"
            assert members["deep/" + "n" * 150].isdir()  # the implied folders come first


# -- the stream framing, on a real socket pair --------------------------------------------------------
def test_frames_split_across_reads_are_reassembled():
    ours, theirs = socket.socketpair()
    channel = docker_channel.ExecChannel(api=None, exec_id="none", sock_io=ours)
    wire = b"".join(
        struct.pack(">BxxxL", kind, len(data)) + data
        for kind, data in [(STDOUT, b"hello "), (STDOUT, b"world"), (STDERR, b"oops"), (STDOUT, b"!")]
    )
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):  # one byte at a time: every header and payload is split
        theirs.sendall(wire[i : i + 1])
        got += channel.recv(0.01)
    theirs.close()
    with pytest.raises(ChannelClosed):
        channel.recv(1.0)
    out = b"".join(data for kind, data in got if kind == STDOUT)
    err = b"".join(data for kind, data in got if kind == STDERR)
    assert (out, err) == (b"hello world!", b"oops")
    channel.close()


# -- commands -----------------------------------------------------------------------------------------
def test_session_commands_cost_no_new_exec(box):
    box.exec("true")
    times = []
    for _ in range(200):
        start = time.perf_counter()
        assert box.exec("true").ok
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005


def test_one_shot_returns_when_bash_exits_despite_a_background_job(box):
    result = box.exec("sleep 30 & echo started", session=False, timeout=20)
    assert result.ok and result.stdout == "started\n"
    assert result.duration < 1.5


def test_one_shot_timeout_kills_a_builtin_loop(box):
    result = box.exec("while :; do :; done", timeout=0.3, session=False)
    assert result.timed_out and result.exit_code == 124
    assert box.exec("echo ok", session=False).stdout == "ok\n"


def test_file_errors_are_clear(box):
    with pytest.raises(SandboxFileNotFound, match="no-such-file"):
        box.read_file("no-such-file")
    with pytest.raises(FileNotFoundError):
        box.list_dir("no-such-dir")
    box.exec("mkdir d")
    with pytest.raises(Exception, match="is a directory"):
        box.read_file("d")
    with pytest.raises(Exception, match="is a directory"):
        box.write_file("d", "x")
    assert box.exec("test -d d").ok  # the directory was not replaced


def test_paths_outside_the_writable_areas_are_refused(box):
    with pytest.raises(PathEscapeError, match="/workspace, /tmp, /root"):
        box.read_file("../../etc/passwd")
    with pytest.raises(PathEscapeError):
        box.write_file("/usr/bin/evil", "x")
    box.exec("ln -s /etc etc-link && ln -s /etc/hostname host-link")
    for path in ("etc-link/hostname", "host-link"):
        with pytest.raises(PathEscapeError, match="resolves to '/etc"):
            box.read_file(path)
    with pytest.raises(PathEscapeError):
        box.write_file("etc-link/evil", "x")
    with pytest.raises(PathEscapeError):
        box.list_dir("etc-link")


# -- lifecycle ----------------------------------------------------------------------------------------
def test_close_is_idempotent_and_later_calls_are_refused(dbackend, docker_client):
    box = dbackend.create(SandboxSpec())
    box.close()
    box.close()
    assert not _container_exists(docker_client, box.container_id)
    with pytest.raises(SandboxClosed, match="closed"):
        box.exec("true")
    with pytest.raises(SandboxClosed):
        box.read_file("x")


def test_ttl_removes_the_container_by_itself(make, docker_client):
    box = make(ttl=3)
    assert box.exec("true").ok
    deadline = time.monotonic() + 10
    while _container_exists(docker_client, box.container_id) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not _container_exists(docker_client, box.container_id)
    with pytest.raises(SandboxNotFound):
        box.exec("true")
    with pytest.raises(SandboxNotFound):
        box.exec("true", session=False)


def test_reap_expired_removes_only_containers_past_their_deadline(box, docker_client):
    # A container whose own TTL enforcement failed (here: none at all), labelled as expired.
    labels = {docker_backend.SANDBOX_LABEL: "1", docker_backend.DEADLINE_LABEL: str(int(time.time()) - 1)}
    stale = docker_client.containers.run(
        docker_image.BASE_IMAGE, ["sleep", "120"], detach=True, labels=labels, network_mode="none"
    )
    try:
        assert docker_backend.reap_expired(docker_client) >= 1
        assert not _container_exists(docker_client, stale.id)
        assert _container_exists(docker_client, box.container_id)  # deadline in the future: kept
    finally:
        docker_backend.remove_container(docker_client.api, stale.id)


def test_a_missing_image_is_a_clear_error(dbackend):
    with pytest.raises(ConfigError, match="not on this host"):
        dbackend.create(SandboxSpec(image="orchard-no-such-image:1"))


def test_disk_filler_cannot_use_up_the_memory_that_tmpfs_shares(make):
    box = make(disk="1g", memory="128m")
    result = box.exec("dd if=/dev/zero of=/workspace/big bs=1M count=300", timeout=60)
    assert result.exit_code != 0 and "No space left" in result.stderr, result
    assert box.exec("echo alive").stdout == "alive\n"
    assert box.exec("rm big && echo freed", session=False).stdout == "freed\n"


# -- files go through the container's own view ------------------------------------------------------------
def test_files_never_use_dockers_archive_api(box, monkeypatch):
    """Every files call and a fork work with get_archive/put_archive gone (see DockerSandbox._tar)."""

    def refused(*_args, **_kwargs):
        raise AssertionError("Docker's archive API was called")

    monkeypatch.setattr(box._api, "get_archive", refused)
    monkeypatch.setattr(box._api, "put_archive", refused)
    box.write_file("dir/a.txt", "alpha", mode=0o755)
    box.upload_tar(_tar_of({"b.txt": b"beta"}), "up")
    assert box.read_file("dir/a.txt") == b"alpha"
    assert box.exec("stat -c %a dir/a.txt && cat up/b.txt").stdout == "755\nbeta"
    with tarfile.open(fileobj=io.BytesIO(box.download_tar("dir"))) as tar:
        assert [m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()] == ["a.txt"]
    fork = box.fork()
    try:
        assert fork.read_file("up/b.txt") == b"beta"
    finally:
        fork.close()


def test_tar_failures_are_clear_errors(make):
    box = make(disk="8m")
    with pytest.raises(SandboxError, match="No space left"):
        box.write_file("big.bin", b"\0" * (16 * 1024 * 1024))
    box.exec("rm -f big.bin")
    box.write_file("small.txt", "fits")  # the sandbox is still usable
    assert box.read_file("small.txt") == b"fits"


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()
