"""loopserver's free_port and wait_for_port, the helpers the simulator's CLI and bench use."""

from __future__ import annotations

import socket

import pytest

from loopserver import free_port, wait_for_port


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert sock.getsockname()[1] == port


def test_wait_for_port_returns_once_something_listens():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        wait_for_port(port, timeout=5)

        # Its probe connection is the one waiting in the backlog.
        listener.settimeout(5)
        connection, peer = listener.accept()
        connection.close()
    assert peer[0] == "127.0.0.1"


def test_wait_for_port_gives_up_at_once_when_the_server_is_gone():
    port = free_port()
    with pytest.raises(RuntimeError, match="stopped before it listened"):
        wait_for_port(port, timeout=30, alive=lambda: False)


def test_wait_for_port_times_out_when_nothing_listens():
    port = free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port(port, timeout=0.2)
