"""Terminals (`exec(..., pty=True)`, Orchard Env's `WS /sandboxes/{id}/exec/pty`): a real uvicorn service
over the real `local` backend, driven by our clients, by raw Orchard frames, and `open_pty` on every
backend. Waits are for output the command prints, never for time passing."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import time
from collections.abc import Iterator

import pytest
from conftest import require
from helpers import serving

from orchard_envs.env_service.app import create_app
from orchard_envs.env_service.client import AsyncEnvClient, EnvClient
from orchard_envs.errors import ConfigError, SandboxNotFound
from orchard_envs.sandbox import Backend

pytestmark = pytest.mark.bwrap

KEY = "pty-key"
TIMEOUT = 30  # generous: an upper bound on a loaded 2-core machine, not a measured latency


@pytest.fixture(autouse=True)
def websockets_installed() -> None:
    """uvicorn serves websockets, and our clients speak them, only with this package (a dependency)."""
    require(importlib.util.find_spec("websockets") is not None, "the websockets package is not installed")


@pytest.fixture(scope="module")
def url(local_backend: Backend) -> Iterator[str]:
    with serving(create_app(local_backend, KEY)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[EnvClient]:
    with EnvClient(url, KEY) as env_client:
        yield env_client


@pytest.fixture(scope="module")
def sandbox_id(client: EnvClient) -> Iterator[str]:
    sandbox = client.create_sandbox()
    yield sandbox.sandbox_id
    client.delete_sandbox(sandbox.sandbox_id)


def read_until(proc, needle: bytes) -> bytes:
    """Output up to and including `needle` (a TimeoutError if it never comes)."""
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    while needle not in seen:
        chunk = proc.read(timeout=max(0.1, deadline - time.monotonic()))
        assert chunk, f"the process ended before printing {needle!r}; it printed {seen!r}"
        seen += chunk
    return seen


def test_the_command_runs_on_a_terminal_and_its_exit_status_comes_back(client, sandbox_id):
    with client.exec(sandbox_id, ["bash", "-c", "tty; test -t 0 && echo HAS_TTY; exit 7"], pty=True) as proc:
        out = proc.read_all(timeout=TIMEOUT)
        assert proc.wait(timeout=TIMEOUT) == 7
    assert b"/dev/pts/" in out and b"HAS_TTY" in out
    assert isinstance(proc.pid, int)


def test_input_is_echoed_by_the_terminal_and_read_by_the_command(client, sandbox_id):
    with client.exec(sandbox_id, ["cat"], pty=True) as proc:
        proc.write_stdin(b"ping\n")
        # the line discipline echoes the line, then cat writes it back: CRLF both times
        assert b"ping\r\nping\r\n" in read_until(proc, b"ping\r\nping\r\n")
        proc.kill("TERM")
        assert proc.wait(timeout=TIMEOUT) == -15


def test_resize_changes_what_stty_size_reports(client, sandbox_id):
    script = "stty size; read line; stty size"
    with client.exec(sandbox_id, ["bash", "-c", script], pty=True, rows=24, cols=80) as proc:
        read_until(proc, b"24 80\r\n")
        proc.resize(50, 200)
        proc.write_stdin(b"\n")  # resize, then let the script go on: no sleeping on either side
        assert b"50 200" in proc.read_all(timeout=TIMEOUT)
        assert proc.wait(timeout=TIMEOUT) == 0


def test_ctrl_c_interrupts_the_foreground_program(client, sandbox_id):
    script = 'trap "echo INTERRUPTED; exit 3" INT; echo READY; while :; do sleep 1; done'
    with client.exec(sandbox_id, ["bash", "-c", script], pty=True) as proc:
        read_until(proc, b"READY")
        proc.write_stdin(b"\x03")  # the key, not a signal frame: the terminal turns it into SIGINT
        assert b"INTERRUPTED" in proc.read_all(timeout=TIMEOUT)
        assert proc.wait(timeout=TIMEOUT) == 3


def test_ctrl_c_kills_a_plain_command_although_the_sandbox_shell_ignores_sigint(client, sandbox_id):
    """The sandbox's shells are background jobs (SIGINT ignored); the command must get it back."""
    script = "echo READY; exec sleep 600"
    with client.exec(sandbox_id, ["bash", "-c", script], pty=True) as proc:
        read_until(proc, b"READY")
        proc.write_stdin(b"\x03")
        assert proc.wait(timeout=TIMEOUT) == -2


def test_signals_by_name_reach_the_process(client, sandbox_id):
    with client.exec(sandbox_id, ["sleep", "600"], pty=True) as proc:
        proc.kill("KILL")
        assert proc.wait(timeout=TIMEOUT) == -9


def test_cwd_env_and_login_shell_follow_orchards_init_frame(client, sandbox_id):
    client.exec(sandbox_id, "mkdir -p /workspace/sub")
    with client.exec(
        sandbox_id, "pwd; echo $GREETING", pty=True, cwd="/workspace/sub", env={"GREETING": "hi"}
    ) as p:
        out = p.read_all(timeout=TIMEOUT)
    assert out.split() == [b"/workspace/sub", b"hi"]
    client.upload_file(sandbox_id, "/root/.bashrc", "export FROM_RC=read\n")
    with client.exec(sandbox_id, "echo rc=$FROM_RC", pty=True, login_shell=True) as p:
        assert b"rc=read" in p.read_all(timeout=TIMEOUT)  # as Orchard: a login shell that reads ~/.bashrc


def test_refusals_raise_the_matching_error(url, client, sandbox_id):
    with pytest.raises(ConfigError, match="API key"), EnvClient(url, "wrong") as stranger:
        stranger.exec(sandbox_id, ["true"], pty=True)
    with pytest.raises(SandboxNotFound):
        client.exec("no-such-sandbox", ["true"], pty=True)
    with pytest.raises(ConfigError, match="cmd"):
        client.exec(sandbox_id, [], pty=True)
    with pytest.raises(Exception, match="working directory"):
        client.exec(sandbox_id, ["true"], pty=True, cwd="/no/such/dir")


def test_the_wire_frames_are_orchards(url, sandbox_id):
    """Raw frames as Orchard's SDK sends them, the key in `?api_key=` and as a subprotocol."""
    from websockets.sync.client import connect

    ws_url = url.replace("http://", "ws://") + f"/sandboxes/{sandbox_id}/exec/pty"
    for target, options in [
        (f"{ws_url}?api_key={KEY}", {}),
        (ws_url, {"subprotocols": [f"api_key.{KEY}"]}),
    ]:
        with connect(target, **options) as ws:
            init = {"type": "init", "cmd": ["cat"], "env": {}, "cwd": None, "rows": 24, "cols": 80}
            ws.send(json.dumps({**init, "login_shell": False}))
            frame = json.loads(ws.recv(timeout=TIMEOUT))
            assert frame["type"] == "ready" and isinstance(frame["pid"], int)
            ws.send(json.dumps({"type": "stdin", "data": base64.b64encode(b"abc\n\x04").decode()}))
            ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 90}))
            output = b""
            while (frame := json.loads(ws.recv(timeout=TIMEOUT)))["type"] == "stdout":
                output += base64.b64decode(frame["data"])
            assert frame == {"type": "exit", "code": 0}
            assert output.count(b"abc") == 2  # echo, then cat's copy (ctrl-D ends its input)


def test_orchards_getting_started_pty_example_runs_against_us(client, sandbox_id):
    """The four steps of Orchard Env's examples/getting_started.py `example_pty`, in its shapes."""
    proc = client.exec(
        sandbox_id, ["bash", "-c", "tty -s && echo HAS_TTY; echo done; exit 7"], pty=True, rows=24, cols=80
    )
    try:
        out = proc.read_all(timeout=10)
        rc = proc.wait(timeout=5)
        assert (rc, out.decode(errors="replace").strip()) == (7, "HAS_TTY\r\ndone")
        assert proc.pid is not None
    finally:
        proc.close()

    proc = client.exec(sandbox_id, ["cat"], pty=True)
    try:
        proc.write_stdin(b"ping\n")
        assert read_until(proc, b"ping\r\n").startswith(b"ping")  # it reads one chunk; the echo
        proc.kill("TERM")
        proc.wait(timeout=3)
    finally:
        proc.close()

    proc = client.exec(sandbox_id, ["sleep", "60"], pty=True)
    try:
        proc.kill("KILL")
        assert proc.wait(timeout=5) == -9
    finally:
        proc.close()

    proc = client.exec(
        sandbox_id, ["bash", "-c", "stty size; sleep 0.4; stty size"], pty=True, rows=24, cols=80
    )
    try:
        proc.resize(50, 200)  # the example sleeps 0.1 s first; which size each line shows is timing
        out = proc.read_all(timeout=5)
        assert proc.wait(timeout=5) == 0
        assert len(out.split(b"\r\n")) == 3 and set(out.split(b"\r\n")[:2]) <= {b"24 80", b"50 200"}
    finally:
        proc.close()


def test_orchards_async_pty_example_runs_against_us(url, sandbox_id):
    async def example() -> tuple[int | None, bytes, int]:
        async with AsyncEnvClient(url, KEY) as client:
            proc = await client.exec(
                sandbox_id,
                ["bash", "-c", "echo $$; for i in 1 2 3; do echo line $i; sleep 0.1; done"],
                pty=True,
            )
            try:
                out = await proc.read_all(timeout=10)
                rc = await proc.wait(timeout=5)
                return proc.pid, out, rc
            finally:
                await proc.close()

    pid, out, rc = asyncio.run(example())
    assert rc == 0
    assert out.split(b"\r\n") == [str(pid).encode(), b"line 1", b"line 2", b"line 3", b""]


def test_a_pty_cannot_see_the_host(client, sandbox_id, tmp_path):
    """Attack: the terminal's process is inside the sandbox (its namespaces), not a host process."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-ONLY-CONTENT")
    script = f"cat {secret}; hostname"
    with client.exec(sandbox_id, ["bash", "-c", script], pty=True, cwd="/") as proc:  # a cwd both have
        out = proc.read_all(timeout=TIMEOUT).decode(errors="replace")
    assert "HOST-ONLY-CONTENT" not in out and "No such file" in out
    assert out.strip().endswith("sandbox")  # the sandbox's own UTS namespace


def test_open_pty_on_every_backend(make_sandbox):
    sandbox = make_sandbox()
    with sandbox.open_pty(["bash", "-c", "tty; read x; echo got=$x; exit 5"], rows=10, cols=40) as proc:
        read_until(proc, b"/dev/pts/")
        proc.write_stdin("yes\n")
        assert b"got=yes" in proc.read_all(timeout=TIMEOUT)
        assert proc.wait(timeout=TIMEOUT) == 5


def test_a_signal_right_after_the_start_hits_the_command_and_never_the_sandbox(client, sandbox_id):
    """Before the relay waited for the command's exec, a signal could find no terminal group yet and
    land on the relay's own group, which is the sandbox's (killing it). Repeated: the race was short."""
    for _ in range(10):
        with client.exec(sandbox_id, ["sleep", "600"], pty=True) as proc:
            proc.kill("KILL")
            assert proc.wait(timeout=TIMEOUT) == -9
    assert client.exec(sandbox_id, "echo alive").stdout == "alive\n"
