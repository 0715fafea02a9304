"""The docker backend against a real Docker Engine: behaviour, containment and cleanup.

The base image is built (once per host, about a minute) by a session fixture; everything is skipped,
with the reason, only when no Docker Engine answers.
"""

from __future__ import annotations

import io
import socket
import statistics
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from orchard_envs.errors import (
    BackendUnavailable,
    ConfigError,
    PatchError,
    PathEscapeError,
    SandboxClosed,
    SandboxFileNotFound,
    SandboxNotFound,
)
from orchard_envs.sandbox.shell import STDERR, STDOUT, ChannelClosed
from orchard_envs.sandbox.spec import SandboxSpec

pytestmark = pytest.mark.docker

docker_backend = pytest.importorskip("orchard_envs.sandbox.docker_backend")
docker_image = pytest.importorskip("orchard_envs.sandbox.docker_image")


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker_image.docker_client()
    except BackendUnavailable as exc:
        pytest.skip(f"no Docker Engine reachable: {exc}")
    docker_image.build_base_image()
    return client


@pytest.fixture(scope="session")
def dbackend(docker_client) -> Iterator[docker_backend.DockerBackend]:
    backend = docker_backend.DockerBackend(client=docker_client)
    yield backend
    backend.close()


@pytest.fixture
def make(dbackend) -> Iterator[Callable[..., docker_backend.DockerSandbox]]:
    made: list[docker_backend.DockerSandbox] = []

    def create(**spec: object) -> docker_backend.DockerSandbox:
        sandbox = dbackend.create(SandboxSpec(**spec))
        made.append(sandbox)
        return sandbox

    yield create
    for sandbox in made:
        sandbox.close()


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
    start = time.monotonic()
    assert docker_image.build_base_image() == docker_image.BASE_IMAGE
    assert time.monotonic() - start < 2.0
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


# -- the stream framing, on a real socket pair --------------------------------------------------------
def test_frames_split_across_reads_are_reassembled():
    ours, theirs = socket.socketpair()
    channel = docker_backend.ExecChannel(api=None, exec_id="none", sock_io=ours)
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
def test_session_keeps_cwd_exports_and_background_jobs(box):
    assert box.exec("mkdir -p sub && cd sub && export GREETING=hi; (sleep 0.3; echo late > /tmp/bg) &").ok
    result = box.exec("echo $GREETING; pwd; sleep 0.6; cat /tmp/bg")
    assert result.stdout.splitlines() == ["hi", "/workspace/sub", "late"]


def test_session_commands_cost_no_new_exec(box):
    box.exec("true")
    times = []
    for _ in range(200):
        start = time.perf_counter()
        assert box.exec("true").ok
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005


def test_one_shot_is_isolated_from_the_session(box):
    box.exec("cd /tmp && export SECRET=1")
    result = box.exec('pwd; echo "[$SECRET]"; echo err >&2; exit 3', session=False)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "/workspace\n[]\n", "err\n")
    assert box.exec("pwd; echo $SECRET").stdout == "/tmp\n1\n"


def test_per_call_cwd_and_env(box):
    for session in (True, False):
        result = box.exec('pwd; echo "$X"', cwd="/tmp", env={"X": "it's"}, session=session)
        assert result.stdout == "/tmp\nit's\n"
    missing = box.exec("true", cwd="/nowhere", session=False)
    assert missing.exit_code == 1 and "/nowhere" in missing.stderr


def test_spec_env_reaches_both_modes(make):
    box = make(env={"ORCHARD_X": "yes"})
    assert box.exec("echo $ORCHARD_X").stdout == "yes\n"
    assert box.exec("echo $ORCHARD_X", session=False).stdout == "yes\n"


def test_one_shot_returns_when_bash_exits_despite_a_background_job(box):
    result = box.exec("sleep 30 & echo started", session=False, timeout=20)
    assert result.ok and result.stdout == "started\n"
    assert result.duration < 1.5


def test_timeout_kills_the_tree_and_keeps_the_session(box):
    box.exec("export KEEP=1; cd /tmp")
    result = box.exec("(sleep 1; touch /tmp/late) & sleep 60", timeout=0.3)
    assert result.timed_out and result.exit_code == 124
    time.sleep(1.2)
    after = box.exec("ls /tmp/late; echo $KEEP; pwd")
    assert "No such file" in after.stderr and after.stdout.splitlines() == ["1", "/tmp"]
    assert "sleep 60" not in box.exec("ps -eo args", session=False).stdout


def test_builtin_loop_timeout_restarts_the_shell_in_its_directory(box):
    box.exec("cd /tmp")
    result = box.exec("while :; do :; done", timeout=0.3)
    assert result.timed_out
    assert box.exec("pwd").stdout == "/tmp\n"
    table = box.exec("ps -eo stat=,comm=", session=False).stdout.split("\n")
    assert not [row for row in table if row.startswith("R") and row.endswith("bash")]  # no spinning shell


def test_one_shot_timeout_kills_a_builtin_loop(box):
    result = box.exec("while :; do :; done", timeout=0.3, session=False)
    assert result.timed_out and result.exit_code == 124
    assert box.exec("echo ok", session=False).stdout == "ok\n"


def test_exit_ends_the_session_and_the_next_one_starts_in_its_cwd(box):
    box.exec("cd /root")
    assert box.exec("exit 7").exit_code == 7
    assert box.exec("pwd").stdout == "/root\n"


def test_output_is_capped_with_the_marker(make):
    box = make(max_output=4096)
    for session in (True, False):
        result = box.exec("head -c 100000 /dev/zero | tr '\\0' a; echo; echo END", session=session)
        assert result.truncated and "output truncated" in result.stdout
        assert len(result.stdout) < 4096 + 200 and result.stdout.endswith("END\n")


def test_non_utf8_output_is_replaced(box):
    for session in (True, False):
        assert box.exec("printf 'ok \\377\\376 done'", session=session).stdout == "ok \ufffd\ufffd done"


# -- files --------------------------------------------------------------------------------------------
def test_files_round_trip(box):
    box.write_file("dir/nested/a.txt", "hello\n")
    box.write_file("/tmp/b.bin", b"\x00\xff", mode=0o600)
    box.write_file("/root/.config/x", "home")
    assert box.read_file("dir/nested/a.txt") == b"hello\n"
    assert box.read_file("/tmp/b.bin") == b"\x00\xff"
    shown = box.exec("cat dir/nested/a.txt; stat -c %a /tmp/b.bin; cat ~/.config/x").stdout
    assert shown == "hello\n600\nhome"
    [entry] = box.list_dir("dir/nested")
    assert (entry.name, entry.type, entry.size) == ("a.txt", "file", 6)
    assert entry.path == "/workspace/dir/nested/a.txt"
    assert [(e.name, e.type) for e in box.list_dir("dir")] == [("nested", "dir")]
    box.exec("ln -s /tmp/b.bin link")
    assert box.read_file("link") == b"\x00\xff"
    assert ("link", "symlink") in {(e.name, e.type) for e in box.list_dir(".")}


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


def test_upload_and_download_directories(box, tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "mod.py").write_text("X = 1\n")
    (source / "README").write_text("hi\n")
    box.upload_dir(source, "project/deep")
    assert box.exec("cat project/deep/pkg/mod.py project/deep/README").stdout == "X = 1\nhi\n"
    box.exec("echo more >> project/deep/README")
    box.download_dir("project/deep", tmp_path / "back")
    assert (tmp_path / "back" / "README").read_text() == "hi\nmore\n"
    with tarfile.open(fileobj=io.BytesIO(box.download_tar("project/deep"))) as tar:
        assert "./pkg/mod.py" in tar.getnames()


def test_base_dir_seeds_the_workdir(make, tmp_path):
    (tmp_path / "seed.txt").write_text("seeded\n")
    box = make(base_dir=tmp_path)
    assert box.exec("cat seed.txt").stdout == "seeded\n"


def test_apply_patch(box):
    box.exec("git init -q repo && cd repo && printf 'a\\nb\\n' > f.txt")
    patch = "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    box.apply_patch(patch, cwd="/workspace/repo")
    assert box.read_file("repo/f.txt") == b"a\nc\n"
    with pytest.raises(PatchError, match="does not apply"):
        box.apply_patch(patch, cwd="/workspace/repo")


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


def test_fork_carries_files_cwd_and_exports_then_diverges(box):
    box.exec("mkdir -p /tmp/w && cd /tmp/w && echo parent > f && export TAG=forked")
    box.write_file("ws.txt", "workspace\n")
    child = box.fork()
    try:
        assert child.exec("pwd; cat f; echo $TAG").stdout.splitlines() == ["/tmp/w", "parent", "forked"]
        assert child.read_file("ws.txt") == b"workspace\n"
        child.exec("echo child > f; export TAG=child")
        box.exec("echo parent2 > f")
        assert child.exec("cat f; echo $TAG").stdout == "child\nchild\n"
        assert box.exec("cat f; echo $TAG").stdout == "parent2\nforked\n"
    finally:
        child.close()


def test_snapshot_restores_into_new_sandboxes(dbackend, box):
    box.write_file("state.txt", "v1")
    snap = box.snapshot()
    box.write_file("state.txt", "v2")
    restored = [dbackend.create(snapshot=snap) for _ in range(2)]
    try:
        assert [s.read_file("state.txt") for s in restored] == [b"v1", b"v1"]
    finally:
        for sandbox in restored:
            sandbox.close()


def _host_address() -> str:
    """This host's address on its default route (what a sandbox with network would reach it by)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


# -- containment --------------------------------------------------------------------------------------
def test_network_is_off(box):
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    threading.Thread(target=lambda: server.accept()[0].close(), daemon=True).start()
    port = server.getsockname()[1]
    try:
        for host in ("127.0.0.1", "172.17.0.1", _host_address(), "1.1.1.1"):
            probe = f"s = socket.socket(); s.settimeout(2); print(s.connect_ex(('{host}', {port})))"
            result = box.exec(f'python3 -c "import socket; {probe}"', timeout=10)
            assert result.ok and result.stdout.strip() != "0", f"reached {host}:{port}"
    finally:
        server.close()


def test_memory_hog_is_contained(make):
    box = make(memory="128m")
    result = box.exec("python3 -c 'x = bytearray(1 << 30); print(len(x))'", timeout=60)
    assert result.exit_code != 0
    assert box.exec("echo alive", timeout=10).stdout == "alive\n"


def test_fork_bomb_is_contained(make, docker_client):
    bombed, bystander = make(pids=64), make()
    bombed.exec("bomb() { bomb | bomb & }; bomb", timeout=3, session=False)  # returns; the bomb goes on
    assert bystander.exec("echo unaffected", timeout=10).stdout == "unaffected\n"
    bombed.close()
    assert not _container_exists(docker_client, bombed.container_id)
    assert bystander.exec("echo still", session=False, timeout=10).stdout == "still\n"


def test_disk_filler_is_contained(make):
    box = make(disk="64m", memory="512m")
    for target in ("/workspace/big", "/tmp/big", "/root/big"):
        result = box.exec(f"dd if=/dev/zero of={target} bs=1M count=200", timeout=60)
        assert result.exit_code != 0 and "No space left" in result.stderr, result
        box.exec(f"rm -f {target}")
    for target in ("/big", "/var/tmp/big", "/etc/hosts"):  # everything else is read-only
        result = box.exec(f"dd if=/dev/zero of={target} bs=1M count=1", timeout=60)
        assert result.exit_code != 0 and "Read-only file system" in result.stderr, result
    assert box.exec("echo ok > small && cat small").stdout == "ok\n"


def test_disk_filler_cannot_use_up_the_memory_that_tmpfs_shares(make):
    box = make(disk="1g", memory="128m")
    result = box.exec("dd if=/dev/zero of=/workspace/big bs=1M count=300", timeout=60)
    assert result.exit_code != 0 and "No space left" in result.stderr, result
    assert box.exec("echo alive").stdout == "alive\n"
    assert box.exec("rm big && echo freed", session=False).stdout == "freed\n"
