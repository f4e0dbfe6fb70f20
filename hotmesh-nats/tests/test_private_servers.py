"""The private-server helpers survive a port taken between picking it and binding it (seen in CI:
``Error listening on router port ... address already in use`` failed a cluster test at start)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from nats_servers import SERVER, PrivateCluster, PrivateServer

pytestmark = pytest.mark.anyio


def _occupy(port: int) -> socket.socket:
    """Bound, not listening: the server cannot bind the port, and nothing answers on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture(autouse=True)
def _binary() -> None:
    if not Path(SERVER).exists():
        pytest.fail(f"nats-server is not installed at {SERVER} (Debian: apt-get install nats-server)")


async def test_a_server_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    server = PrivateServer(tmp_path / "js")
    taken = server.port
    with _occupy(taken):
        server.start()
        try:
            await server.wait_ready()
            assert server.port != taken and server.ever_ready
        finally:
            server.stop()


async def test_a_cluster_whose_route_port_was_taken_starts_again_on_fresh_ports(tmp_path: Path) -> None:
    cluster = PrivateCluster(tmp_path / "cluster")
    route = int(re.search(r'listen: "127\.0\.0\.1:(\d+)"', cluster.nodes[1].config).group(1))  # type: ignore[union-attr]
    with _occupy(route):
        cluster.start()
        try:
            await cluster.wait_ready()
            assert cluster.ever_ready
            assert f"127.0.0.1:{route}" not in " ".join(node.config for node in cluster.nodes)
        finally:
            cluster.stop()
