"""A networked sandbox (network=True) reaches outside addresses, never the host's loopback: there
live the env service, Claw's services, a Ray head and model servers. Before the fix `local` shared the
host's network namespace (`--share-net`), so one connect to 127.0.0.1 reached all of them.
"""

from __future__ import annotations

import socket
import threading

import pytest

PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    "sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)\n"
)
# Where the host's loopback could hide behind a gateway: slirp4netns's (local) and Docker's bridge.
GATEWAYS = ("127.0.0.1", "10.0.2.2", "172.17.0.1")


def _listen(address: str) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(16)

    def accept_forever() -> None:
        while True:
            try:
                server.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    return server, server.getsockname()[1]


def _host_address() -> str:
    """This host's address on its outward interface (where a server bound to 0.0.0.0 is reachable)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    finally:
        probe.close()


def _reaches(sandbox, host: str, port: int) -> bool:
    sandbox.write_file("/tmp/probe.py", PROBE)
    return sandbox.exec(f"python3 /tmp/probe.py {host} {port}", timeout=20).exit_code == 0


@pytest.fixture
def loopback_service():
    server, port = _listen("127.0.0.1")
    yield port
    server.close()


def test_a_networked_sandbox_never_reaches_the_hosts_loopback(make_sandbox, loopback_service):
    sandbox = make_sandbox(network=True)
    for gateway in GATEWAYS:
        assert not _reaches(sandbox, gateway, loopback_service), f"reached the host's 127.0.0.1 via {gateway}"


def test_a_networked_sandbox_reaches_outward_addresses(make_sandbox):
    """Outbound works: a server on the host's outward address (as any outside machine's would be)."""
    server, port = _listen("0.0.0.0")
    try:
        sandbox = make_sandbox(network=True)
        assert _reaches(sandbox, _host_address(), port)
    finally:
        server.close()


def test_a_networked_sandbox_has_its_own_loopback(make_sandbox):
    sandbox = make_sandbox(network=True)
    result = sandbox.exec(
        "python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
        " c=socket.create_connection(s.getsockname()); print('own loopback ok')\"",
        timeout=20,
    )
    assert "own loopback ok" in result.stdout, result.output
