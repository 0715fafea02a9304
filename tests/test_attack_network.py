"""A networked sandbox (network=True) reaches outside addresses, never the host's loopback: there
live the env service, Claw's services, a Ray head and model servers. Before the fix `local` shared the
host's network namespace (`--share-net`), so one connect to 127.0.0.1 reached all of them.
"""

from __future__ import annotations

import pytest
from helpers import host_address, listen

PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    "sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)\n"
)
# Where the host's loopback could hide behind a gateway: slirp4netns's (local) and Docker's bridge.
GATEWAYS = ("127.0.0.1", "10.0.2.2", "172.17.0.1")


def _reaches(sandbox, host: str, port: int) -> bool:
    sandbox.write_file("/tmp/probe.py", PROBE)
    return sandbox.exec(f"python3 /tmp/probe.py {host} {port}", timeout=20).exit_code == 0


@pytest.fixture
def loopback_service():
    server, port = listen("127.0.0.1")
    yield port
    server.close()


def test_a_networked_sandbox_never_reaches_the_hosts_loopback(make_sandbox, loopback_service):
    sandbox = make_sandbox(network=True)
    for gateway in GATEWAYS:
        assert not _reaches(sandbox, gateway, loopback_service), f"reached the host's 127.0.0.1 via {gateway}"


def test_a_networked_sandbox_reaches_outward_addresses(make_sandbox):
    """Outbound works: a server on the host's outward address (as any outside machine's would be)."""
    server, port = listen("0.0.0.0")
    try:
        sandbox = make_sandbox(network=True)
        assert _reaches(sandbox, host_address(), port)
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
