"""How ``lrsearch serve`` takes its port (service/serving.py)."""

from __future__ import annotations

import socket

import pytest

from lrsearch.service.serving import PortInUse, bind


def test_the_served_connections_do_not_wait_for_delayed_acks() -> None:
    """Nagle's algorithm off on every connection: with it on, each answer of the API waited some
    40 ms for the client's delayed ACK (measured: 44 ms per GET against 1 ms)."""
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio turns Nagle off only on such sockets' connections
        with socket.create_connection(sock.getsockname()[:2]) as client:
            conn, _ = sock.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            client.close()
    finally:
        sock.close()


def test_a_taken_port_is_refused_with_what_to_do() -> None:
    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use.*--port {port + 1}"):
            bind("127.0.0.1", port)
    finally:
        first.close()
