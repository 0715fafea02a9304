"""Bad input and hostile commands: each gets a clear error or stays contained, on every backend."""

from __future__ import annotations

import pytest
from helpers import host_address, listen

from orchard_envs.errors import ConfigError, PathEscapeError, SandboxError, SandboxFileNotFound
from orchard_envs.sandbox import get_backend


def test_unknown_backend_suggests_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean 'docker'"):
        get_backend("dokcer")


def test_lexical_escape_is_refused(sandbox):
    with pytest.raises(PathEscapeError, match="outside"):
        sandbox.read_file("../../../etc/passwd")
    with pytest.raises(PathEscapeError):
        sandbox.write_file("/usr/bin/evil", "x")


def test_symlink_cannot_reach_host_files(sandbox, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    sandbox.exec(f"ln -s {secret} link && ln -s /etc etc-link && ln -s .. up")
    for path in ("link", "etc-link/hostname", "up/up/up" + str(secret)):
        with pytest.raises((PathEscapeError, SandboxFileNotFound)):
            sandbox.read_file(path)
    with pytest.raises((PathEscapeError, SandboxFileNotFound)):
        sandbox.write_file("etc-link/evil", "x")


def test_symlink_inside_the_sandbox_is_followed(sandbox):
    sandbox.write_file("/tmp/real.txt", "real")
    sandbox.exec("ln -s /tmp/real.txt alias")
    assert sandbox.read_file("alias") == b"real"


def test_hundred_megabytes_of_output_is_capped(sandbox):
    result = sandbox.exec("head -c 100000000 /dev/zero | tr '\\0' x", timeout=120)
    assert result.ok and result.truncated
    assert len(result.stdout) <= sandbox.spec.max_output + 200
    assert "bytes omitted of 100000000" in result.stdout
    assert sandbox.exec("echo fine").stdout == "fine\n"


def test_network_is_off_even_to_host_loopback_services(sandbox):
    server, port = listen("0.0.0.0")
    try:
        for host in ("127.0.0.1", host_address()):
            code = (
                "import socket,sys\n"
                f"s=socket.socket(); s.settimeout(2)\n"
                f"sys.exit(0 if s.connect_ex(({host!r}, {port})) == 0 else 1)"
            )
            result = sandbox.exec(f"python3 -c {code!r}", timeout=10)
            assert result.exit_code == 1, f"sandbox reached {host}:{port}"
    finally:
        server.close()


def test_memory_hog_is_contained(make_sandbox):
    sandbox = make_sandbox(memory="128m")
    result = sandbox.exec("python3 -c 'x = bytearray(1 << 30); print(len(x))'", timeout=60)
    assert result.exit_code != 0
    assert sandbox.exec("echo alive", timeout=10).stdout == "alive\n"


def test_fork_bomb_is_contained(make_sandbox):
    bombed = make_sandbox(pids=64)
    bystander = make_sandbox()
    bombed.exec("bomb() { bomb | bomb & }; bomb", timeout=3, session=False)
    assert bystander.exec("echo unaffected", timeout=10).stdout == "unaffected\n"
    bombed.close()  # closing reaps every process of the bomb
    assert bystander.exec("echo still", session=False, timeout=10).stdout == "still\n"


def test_disk_filler_is_contained(make_sandbox):
    sandbox = make_sandbox(disk="64m", memory="512m")
    for target in (f"{sandbox.spec.workdir}/big", "/tmp/big"):
        result = sandbox.exec(f"dd if=/dev/zero of={target} bs=1M count=200", timeout=60)
        assert result.exit_code != 0
        assert "No space left" in result.stderr or "File too large" in result.stderr
        sandbox.exec(f"rm -f {target}")
    assert sandbox.exec("echo ok > small && cat small").stdout == "ok\n"


def test_reading_a_directory_is_a_clear_error(sandbox):
    sandbox.exec("mkdir -p adir")
    with pytest.raises(SandboxError, match="directory"):
        sandbox.read_file("adir")


def test_invalid_env_names_are_refused(sandbox):
    with pytest.raises((ConfigError, SandboxError), match="invalid environment variable"):
        sandbox.exec("true", env={"A=1; touch /tmp/pwned; B": "x"})
    assert "pwned" not in sandbox.exec("ls /tmp").stdout
