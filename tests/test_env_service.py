"""The env service end to end: a real uvicorn server over the real `local` backend, driven by raw HTTP
(Orchard Env's wire shapes), by both clients, by RemoteSandbox and by the CLI."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import serving

from orchard_envs.env_service.app import ServiceSettings, create_app
from orchard_envs.env_service.client import (
    AsyncEnvClient,
    EnvClient,
    RetryPolicy,
    WaitTimeout,
    error_from_response,
)
from orchard_envs.errors import (
    BackendUnavailable,
    ConfigError,
    PatchError,
    SandboxError,
    SandboxFileNotFound,
    SandboxNotFound,
)
from orchard_envs.sandbox import Backend, Sandbox, SandboxSpec, Snapshot, get_backend
from orchard_envs.sandbox.remote import RemoteBackend, RemoteSandbox

pytestmark = pytest.mark.bwrap

KEY = "test-key"
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)
PATCH = "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1,2 @@\n line1\n+line2\n"


class SlowBackend(Backend):
    """The real local backend, but creating sandboxes takes `delay` seconds (to observe 'pending')."""

    name = "local"

    def __init__(self, inner: Backend, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> Sandbox:
        time.sleep(self.delay)
        return self.inner.create(spec, snapshot)


@pytest.fixture(scope="module")
def url(local_backend: Backend) -> Iterator[str]:
    settings = ServiceSettings(reap_interval=0.05, ready_wait=5)
    with serving(create_app(local_backend, KEY, settings)) as base:
        yield base


@pytest.fixture(scope="module")
def small_url(local_backend: Backend) -> Iterator[str]:
    """A tiny service: two sandboxes, two jobs, one worker, slow creation."""
    settings = ServiceSettings(max_sandboxes=2, max_jobs=2, max_workers=1, reap_interval=0.05)
    with serving(create_app(SlowBackend(local_backend, 0.4), KEY, settings)) as base:
        yield base


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
        yield client


@pytest.fixture
def client(url: str) -> Iterator[EnvClient]:
    with EnvClient(url, KEY, retry=FAST_RETRY) as env:
        yield env


@pytest.fixture
def remote(url: str) -> Iterator[RemoteBackend]:
    backend = get_backend("remote", url=url, api_key=KEY)
    assert isinstance(backend, RemoteBackend)
    yield backend
    backend.close()


@pytest.fixture
def rsandbox(remote: RemoteBackend) -> Iterator[RemoteSandbox]:
    with remote.create(SandboxSpec(ttl=120)) as sandbox:
        yield sandbox


def ready_id(http: httpx.Client, **payload: Any) -> str:
    created = http.post("/sandboxes", json=payload)
    assert created.status_code == 200, created.text
    sandbox_id = created.json()["sandbox_id"]
    assert http.get(f"/sandboxes/{sandbox_id}/wait", params={"timeout": 30}).json()["ready"] is True
    return sandbox_id


# -- Orchard Env's wire API ----------------------------------------------------------------------------
def test_health_needs_no_key_and_advertises_extensions(url: str) -> None:
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "healthy"
    assert {"session", "snapshot", "fork"} <= set(health["extensions"])
    assert httpx.get(f"{url}/").json()["status"] == "running"


def test_missing_key_is_401_and_wrong_key_403(url: str) -> None:
    missing = httpx.post(f"{url}/sandboxes", json={"image": "default"})
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert missing.headers["x-request-id"]
    wrong = httpx.get(f"{url}/sandboxes/x", headers={"X-API-Key": "nope"})
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "Invalid API key")
    with EnvClient(url, "nope", retry=FAST_RETRY) as bad, pytest.raises(ConfigError, match="Invalid API key"):
        bad.get_sandbox("x")


def test_orchard_sandbox_lifecycle(http: httpx.Client) -> None:
    payload = {"image": "default", "block_network": True, "cpu": "2", "memory": "1Gi", "timeout": 60, "x": 1}
    created = http.post("/sandboxes", json=payload).json()
    for key in ("sandbox_id", "namespace", "image", "block_network", "cpu", "memory", "timeout", "status"):
        assert key in created
    assert (created["cpu"], created["memory"], created["timeout"], created["status"]) == (
        "2",
        "1Gi",
        60,
        "pending",
    )
    sandbox_id = created["sandbox_id"]
    ready = http.get(f"/sandboxes/{sandbox_id}/wait", params={"timeout": 30}).json()
    assert (ready["ready"], ready["status"]) == (True, "ready") and ready["pod_name"]
    info = http.get(f"/sandboxes/{sandbox_id}").json()
    assert {"created_at", "status_message", "namespace"} <= set(info)
    assert http.post(f"/sandboxes/{sandbox_id}/heartbeat").json()["status"] == "ok"

    deleted = http.delete(f"/sandboxes/{sandbox_id}")
    assert deleted.json() == {"status": "deleted", "sandbox_id": sandbox_id}
    assert http.get(f"/sandboxes/{sandbox_id}").status_code == 404
    assert http.post(f"/sandboxes/{sandbox_id}/exec", json={"command": "true"}).status_code == 404
    assert http.post(f"/sandboxes/{sandbox_id}/heartbeat").status_code == 404
    assert http.delete(f"/sandboxes/{sandbox_id}").status_code == 200  # idempotent, as Orchard


def test_bad_create_requests(http: httpx.Client) -> None:
    assert http.post("/sandboxes", json={"memory": "lots"}).status_code == 422
    assert http.post("/sandboxes", json={"sandbox_id": "no spaces"}).status_code == 422
    sandbox_id = ready_id(http, sandbox_id="dup-1")
    conflict = http.post("/sandboxes", json={"sandbox_id": sandbox_id})
    assert conflict.status_code == 409 and "already exists" in conflict.json()["detail"]
    http.delete(f"/sandboxes/{sandbox_id}")
    assert http.post("/sandboxes", json={"snapshot_id": "snap-missing"}).status_code == 404


def test_failed_creation_is_reported_not_raised(http: httpx.Client, client: EnvClient) -> None:
    sandbox_id = http.post("/sandboxes", json={"image": "no-such-image"}).json()["sandbox_id"]
    info = http.get(f"/sandboxes/{sandbox_id}/wait", params={"timeout": 30}).json()
    assert (info["ready"], info["status"]) == (False, "failed")
    assert "no-such-image" in info["status_message"]
    with pytest.raises(ConfigError, match="no-such-image"):
        client.create_sandbox("no-such-image")


def test_exec_jobs(http: httpx.Client) -> None:
    sandbox_id = ready_id(http)
    queued = http.post(f"/sandboxes/{sandbox_id}/exec", json={"command": "sleep 0.3; echo done"}).json()
    assert queued["status"] in ("queued", "running") and queued["job_id"]
    early = http.get(f"/jobs/{queued['job_id']}/wait", params={"timeout": 0}).json()
    assert early["status"] in ("queued", "running")  # Orchard: a wait that runs out answers 200 'running'
    job = http.get(f"/jobs/{queued['job_id']}/wait", params={"timeout": 30}).json()
    assert (job["status"], job["stdout"], job["exit_code"]) == ("succeeded", "done\n", 0)
    assert job["started_at"] >= job["created_at"] and job["completed_at"] >= job["started_at"]
    assert http.get(f"/jobs/{job['job_id']}").json()["status"] == "succeeded"

    request = {"command": ["echo", "$HOME", ";", "exit", "3"], "wait": True, "env": {"A": "b"}, "cwd": "/tmp"}
    failed = http.post(f"/sandboxes/{sandbox_id}/exec", json=request).json()
    assert (failed["status"], failed["exit_code"], failed["stdout"]) == ("failed", 3, "/root\n")

    raw = http.post(
        f"/sandboxes/{sandbox_id}/exec", json={"command": "printf 'a\\377b'; echo err >&2", "wait": True}
    ).json()
    assert (raw["stdout"], raw["stderr"]) == ("a\ufffdb", "err\n")

    slow = {"command": "sleep 5", "timeout_seconds": 0.5, "wait": True}
    timed = http.post(f"/sandboxes/{sandbox_id}/exec", json=slow).json()
    assert (timed["status"], timed["exit_code"], timed["timed_out"]) == ("failed", 124, True)
    assert "timed out" in timed["error"]

    assert http.get("/jobs/nope").status_code == 404
    assert http.get("/jobs/nope/wait").status_code == 404
    http.delete(f"/sandboxes/{sandbox_id}")


def test_files_and_patch(http: httpx.Client) -> None:
    sandbox_id = ready_id(http)
    files = f"/sandboxes/{sandbox_id}/files"
    blob = bytes(range(256))
    up = http.post(files, json={"path": "/workspace/bin/blob", "content": base64.b64encode(blob).decode()})
    assert up.json() == {"success": True, "path": "/workspace/bin/blob", "size": 256}
    down = http.get(files, params={"path": "/workspace/bin/blob"}).json()
    assert base64.b64decode(down["content"]) == blob and down["size"] == 256
    script = {"path": "run.sh", "content": base64.b64encode(b"echo hi").decode(), "mode": "0755"}
    assert http.post(files, json=script).status_code == 200
    http.post(f"/sandboxes/{sandbox_id}/exec", json={"command": "touch $'bad\\xffname'", "wait": True})

    listing = http.get(f"{files}/list", params={"path": "/workspace"}).json()
    assert listing["path"] == "/workspace"
    entries = {e["name"]: e for e in listing["files"]}
    assert entries["bin"]["type"] == "directory" and entries["run.sh"]["type"] == "file"
    assert entries["run.sh"]["mode"] == 0o755 and isinstance(entries["run.sh"]["size"], int)
    assert "bad\ufffdname" in entries and "modified" in entries["run.sh"]

    missing = http.get(files, params={"path": "nope.txt"})
    assert missing.status_code == 404 and missing.json()["detail"].startswith("File not found")
    assert http.get(f"{files}/list", params={"path": "/workspace/nope"}).status_code == 404
    assert http.get(files, params={"path": "/workspace/bin"}).status_code == 400
    escape = http.get(files, params={"path": "/etc/passwd"})
    assert escape.status_code == 400 and escape.json()["error_type"] == "PathEscapeError"
    assert http.post(files, json={"path": "x", "content": "not base64!"}).status_code == 400

    http.post(files, json={"path": "hello.txt", "content": base64.b64encode(b"line1\n").decode()})
    applied = http.post(f"/sandboxes/{sandbox_id}/apply_patch", json={"patch": PATCH}).json()
    assert (applied["success"], applied["exit_code"]) == (True, 0)
    assert (
        base64.b64decode(http.get(files, params={"path": "hello.txt"}).json()["content"]) == b"line1\nline2\n"
    )
    rejected = http.post(f"/sandboxes/{sandbox_id}/apply_patch", json={"patch": PATCH})
    assert rejected.status_code == 200 and rejected.json()["success"] is False
    assert rejected.json()["stderr"]
    http.delete(f"/sandboxes/{sandbox_id}")


def test_ttl_reaps_and_heartbeat_extends(client: EnvClient) -> None:
    # Polls with generous deadlines instead of fixed sleeps: on a loaded CI machine a fixed 0.5 s TTL
    # lapsed between two heartbeats (flaky). The TTL is 10x the heartbeat interval here.
    kept = client.create_sandbox(ttl=2.0)
    dropped = client.create_sandbox(ttl=2.0)
    expiry = kept.expires_at
    deadline = time.monotonic() + 30
    while True:
        time.sleep(0.2)
        beat = client.heartbeat(kept.sandbox_id)
        try:
            client.get_sandbox(dropped.sandbox_id)
        except SandboxNotFound:
            break  # reaped: it had no heartbeat
        assert time.monotonic() < deadline, "the sandbox without heartbeats was never reaped"
    assert beat.expires_at is not None and expiry is not None and beat.expires_at > expiry
    assert client.exec(kept.sandbox_id, "echo alive").stdout == "alive\n"
    deadline = time.monotonic() + 30
    with pytest.raises(SandboxNotFound):
        while time.monotonic() < deadline:
            client.exec(kept.sandbox_id, "true")
            time.sleep(0.2)


# -- limits: 408 and 503 -------------------------------------------------------------------------------
def test_sandbox_wait_times_out_with_408(small_url: str) -> None:
    with httpx.Client(base_url=small_url, headers={"X-API-Key": KEY}, timeout=120) as http:
        sandbox_id = http.post("/sandboxes", json={}).json()["sandbox_id"]
        late = http.get(f"/sandboxes/{sandbox_id}/wait", params={"timeout": 0.05})
        assert late.status_code == 408 and "did not become ready" in late.json()["detail"]
        with EnvClient(small_url, KEY) as env:
            with pytest.raises(WaitTimeout):
                env.wait_sandbox(sandbox_id, timeout=0)
            assert env.wait_sandbox(sandbox_id, timeout=10).ready
        http.delete(f"/sandboxes/{sandbox_id}")


def test_overload_is_503_and_clients_retry(small_url: str) -> None:
    # a generous timeout: on a loaded machine a sandbox exec can take seconds, which is not what this tests
    with httpx.Client(base_url=small_url, headers={"X-API-Key": KEY}, timeout=120) as http:
        first = ready_id(http)
        second = http.post("/sandboxes", json={}).json()["sandbox_id"]  # pending still counts
        full = http.post("/sandboxes", json={})
        assert full.status_code == 503 and full.headers["retry-after"] and "limit" in full.json()["detail"]
        with EnvClient(small_url, KEY, retry=FAST_RETRY) as env, pytest.raises(BackendUnavailable):
            env.create_sandbox()
        http.delete(f"/sandboxes/{second}")

        for _ in range(2):  # one running, one queued: the job limit
            assert http.post(f"/sandboxes/{first}/exec", json={"command": "sleep 0.5"}).status_code == 200
        busy = http.post(f"/sandboxes/{first}/exec", json={"command": "true"})
        assert busy.status_code == 503
        patient = RetryPolicy(attempts=8, base_delay=0.2, max_delay=0.5)
        with EnvClient(small_url, KEY, retry=patient) as env:
            assert env.exec(first, "echo finally").stdout == "finally\n"
        running = http.post(f"/sandboxes/{first}/exec", json={"command": "sleep 0.3"}).json()
        queued = http.post(f"/sandboxes/{first}/exec", json={"command": "true"}).json()
        http.delete(f"/sandboxes/{first}")  # cancels the queued job and frees its slot
        cancelled = http.get(f"/jobs/{queued['job_id']}").json()
        assert (cancelled["status"], cancelled["exit_code"]) == ("failed", None) and "deleted" in cancelled[
            "error"
        ]
        assert http.get(f"/jobs/{running['job_id']}/wait").json()["status"] == "failed"
        assert http.get("/resources").json()["jobs_pending"] == 0


class BrokenSandbox(Sandbox):
    """A sandbox whose every call fails: only for checking how the service maps backend errors."""

    def _close(self) -> None:
        pass

    def exec(
        self,
        command: str,
        timeout: float | None = 60.0,
        cwd: Any = None,
        env: Any = None,
        session: bool = True,
    ):
        raise BackendUnavailable("the runtime went away")

    def read_file(self, path: str) -> bytes:
        raise RuntimeError("disk on fire")

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        raise PermissionError("read-only file system")

    def list_dir(self, path: str = ".") -> list:
        raise SandboxError(f"{path} is not a directory")

    def upload_tar(self, data: bytes, dest: str = ".") -> None:
        raise NotImplementedError

    def download_tar(self, path: str = ".") -> bytes:
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        raise RuntimeError("boom")

    def fork(self) -> Sandbox:
        raise RuntimeError("boom")


class BrokenBackend(Backend):
    name = "broken"

    def create(self, spec: SandboxSpec | None = None, snapshot: Snapshot | None = None) -> Sandbox:
        return BrokenSandbox("sb-broken", spec or SandboxSpec())


def test_backend_errors_become_clear_json_answers() -> None:
    with serving(create_app(BrokenBackend())) as base, httpx.Client(base_url=base) as http:
        sandbox_id = ready_id(http)
        job = http.post(f"/sandboxes/{sandbox_id}/exec", json={"command": "true", "wait": True}).json()
        assert (job["status"], job["exit_code"], job["error"]) == ("failed", None, "the runtime went away")
        files = f"/sandboxes/{sandbox_id}/files"
        crash = http.get(files, params={"path": "x"})
        assert (crash.status_code, crash.json()["detail"]) == (500, "disk on fire")
        assert http.post(files, json={"path": "x", "content": ""}).status_code == 400
        assert http.get(f"{files}/list", params={"path": "x"}).json()["detail"] == "x is not a directory"
        bug = http.post(f"/sandboxes/{sandbox_id}/snapshot")
        assert bug.status_code == 500 and bug.json()["detail"] == "boom" and bug.json()["request_id"]
        remote = RemoteBackend(base)
        with pytest.raises(SandboxError, match="did not run"):
            RemoteSandbox(remote, sandbox_id, SandboxSpec()).exec("true")
        remote.close()


# -- clients -------------------------------------------------------------------------------------------
def test_sync_client_maps_errors(client: EnvClient) -> None:
    with pytest.raises(SandboxNotFound, match="Sandbox ghost not found"):
        client.get_sandbox("ghost")
    with pytest.raises(SandboxNotFound, match="Job"):
        client.get_job("ghost")
    info = client.create_sandbox()
    with pytest.raises(SandboxFileNotFound, match="nope"):
        client.download_file(info.sandbox_id, "nope")
    with pytest.raises(ConfigError, match="invalid request"):
        client.exec(info.sandbox_id, "true", timeout_seconds=-1, env={"A": 1})  # type: ignore[dict-item]
    job = client.exec(info.sandbox_id, "sleep 0.2; echo x", wait=False)
    assert client.wait_job(job.job_id, timeout=10).stdout == "x\n"
    client.delete_sandbox(info.sandbox_id)


def test_unreachable_server_is_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with EnvClient(f"http://127.0.0.1:{port}", retry=FAST_RETRY) as env, pytest.raises(BackendUnavailable):
        env.health()


def test_client_reads_url_and_key_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHARD_ENV_URL", url)
    monkeypatch.setenv("ORCHARD_ENV_API_KEY", KEY)
    with EnvClient() as env:
        assert env.url == url and env.resources()["status"] == "ok"


def test_error_mapping_of_plain_orchard_answers() -> None:
    def answer(status: int, body: Any) -> Exception:
        request = httpx.Request("GET", "http://x/sandboxes/s/files")
        return error_from_response(httpx.Response(status, json=body, request=request), "http://x")

    assert isinstance(answer(404, {"detail": "File not found: /a"}), SandboxFileNotFound)
    assert isinstance(answer(404, {"detail": "Sandbox s not found"}), SandboxNotFound)
    assert isinstance(answer(400, {"detail": "x", "error_type": "PathEscapeError"}), SandboxError)
    assert isinstance(answer(500, {"error": "Internal server error", "detail": "boom"}), SandboxError)
    assert "boom" in str(answer(500, {"detail": "boom"}))
    assert isinstance(answer(408, {"detail": "late"}), TimeoutError)


def test_async_client(url: str) -> None:
    async def scenario() -> None:
        async with AsyncEnvClient(url, KEY, retry=FAST_RETRY) as env:
            assert "fork" in (await env.health()).extensions
            info = await env.create_sandbox(ttl=60)
            sid = info.sandbox_id
            await env.exec(sid, "cd /tmp && export V=7", session=True)
            same = await env.exec(sid, 'pwd; echo "$V"', session=True)
            fresh = await env.exec(sid, 'pwd; echo "[$V]"')
            assert (same.stdout, fresh.stdout) == ("/tmp\n7\n", "/workspace\n[]\n")
            await env.upload_file(sid, "a/b.txt", "hi", mode=0o600)
            assert await env.download_file(sid, "/workspace/a/b.txt") == b"hi"
            assert [e.name for e in await env.list_files(sid, "/workspace/a")] == ["b.txt"]
            snap = await env.snapshot(sid)
            child = await env.fork(sid)
            restored = await env.create_sandbox(snapshot_id=snap.snapshot_id)
            for other in (child.sandbox_id, restored.sandbox_id):
                assert await env.download_file(other, "a/b.txt") == b"hi"
                await env.delete_sandbox(other)
            await env.delete_snapshot(snap.snapshot_id)
            patched = await env.apply_patch(sid, PATCH)
            assert not patched.success
            await env.delete_sandbox(sid)
            with pytest.raises(SandboxNotFound):
                await env.get_sandbox(sid)

    asyncio.run(scenario())


# -- RemoteSandbox -------------------------------------------------------------------------------------
def test_remote_session_and_timeout(rsandbox: RemoteSandbox) -> None:
    assert rsandbox.exec("mkdir -p sub && cd sub && export G=hello").ok
    result = rsandbox.exec('echo "$G"; pwd')
    assert result.stdout.splitlines() == ["hello", "/workspace/sub"]
    assert rsandbox.exec("pwd", session=False).stdout == "/workspace\n"
    timed = rsandbox.exec("sleep 5", timeout=0.5)
    assert timed.timed_out and timed.exit_code == 124 and not timed.ok
    assert rsandbox.exec("echo out; echo err >&2; exit 3").exit_code == 3
    assert isinstance(rsandbox.heartbeat(), float)


def test_remote_files(rsandbox: RemoteSandbox, tmp_path: Any) -> None:
    rsandbox.write_file("d/x.sh", "echo hi\n", mode=0o755)
    assert rsandbox.read_file("/workspace/d/x.sh") == b"echo hi\n"
    (info,) = rsandbox.list_dir("d")
    assert (info.name, info.path, info.type, info.mode) == ("x.sh", "/workspace/d/x.sh", "file", 0o755)
    assert [e.type for e in rsandbox.list_dir(".") if e.name == "d"] == ["dir"]
    with pytest.raises(SandboxFileNotFound):
        rsandbox.read_file("missing")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "deep" / "f.txt").write_text("tar me")
    rsandbox.upload_dir(tmp_path / "src", "up")
    assert rsandbox.exec("cat up/deep/f.txt").stdout == "tar me"
    rsandbox.download_dir("up", tmp_path / "back")
    assert (tmp_path / "back" / "deep" / "f.txt").read_text() == "tar me"


def test_remote_patch(rsandbox: RemoteSandbox) -> None:
    rsandbox.write_file("hello.txt", "line1\n")
    rsandbox.apply_patch(PATCH)
    assert rsandbox.read_file("hello.txt") == b"line1\nline2\n"
    with pytest.raises(PatchError, match="patch does not apply"):
        rsandbox.apply_patch(PATCH)


def test_remote_fork_snapshot_and_close(remote: RemoteBackend, rsandbox: RemoteSandbox) -> None:
    rsandbox.write_file("state.txt", "parent")
    rsandbox.exec("cd /tmp && export K=v")
    with rsandbox.fork() as child:
        assert child.exec('pwd; echo "$K"; cat /workspace/state.txt').stdout == "/tmp\nv\nparent"
        child.write_file("state.txt", "child")
        assert rsandbox.read_file("state.txt") == b"parent"
    snap = rsandbox.snapshot()
    with remote.create(snapshot=snap) as restored:
        assert restored.read_file("state.txt") == b"parent"
    remote.drop_snapshot(snap)
    rsandbox.close()
    rsandbox.close()
    with pytest.raises(SandboxNotFound):
        remote.client.get_sandbox(rsandbox.id)


def test_remote_without_extensions(remote: RemoteBackend, rsandbox: RemoteSandbox) -> None:
    remote._extensions = frozenset()  # as against a plain Orchard Env server
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rsandbox.exec("cd /tmp")
        assert rsandbox.exec("pwd").stdout == "/workspace\n"
    assert len([w for w in caught if "session" in str(w.message)]) == 1
    with pytest.raises(SandboxError, match="lacks the 'snapshot' extension"):
        rsandbox.snapshot()
    with pytest.raises(SandboxError, match="lacks the 'fork' extension"):
        rsandbox.fork()


# -- CLI -----------------------------------------------------------------------------------------------
def cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCHARD_ENV_API_KEY"}
    code = "from orchard_envs.env_service.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to serve on non-loopback host '0.0.0.0' without an API key"),
        (["--backend", "lokal"], "unknown sandbox backend 'lokal'; did you mean 'local'?"),
    ],
)
def test_cli_refuses_with_one_line(args: list[str], message: str) -> None:
    proc = cli("serve", *args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert err.strip().count("\n") == 0 and message in err and "Traceback" not in err


def test_cli_serves_and_cleans_up_on_sigterm(local_backend: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = cli("serve", "--port", str(port), "--api-key", "k", "--log-level", "warning")
    try:
        with EnvClient(
            f"http://127.0.0.1:{port}", "k", retry=RetryPolicy(attempts=40, base_delay=0.1, max_delay=0.3)
        ) as env:
            assert env.health().backend == "local"
            info = env.create_sandbox()
            assert env.exec(info.sandbox_id, "echo served").stdout == "served\n"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode in (0, -15)  # uvicorn re-raises the signal after a graceful shutdown
    assert info.pod_name and not (local_backend.sandbox_root / info.pod_name).exists()
