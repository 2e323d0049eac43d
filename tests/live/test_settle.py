"""Settling: the kernel's socket table, asked by port, through sock_diag or /proc."""
import socket

import pytest

from harness.run.settle import _sock_diag_on_port, _sockets_on_port_from_proc, sockets_on_port, wait_tcp_settled


def states(found):
    return sorted(state for _, state in found)


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_sock_diag_and_proc_agree_and_only_the_port_is_listed(family, host):
    with socket.create_server((host, 0), family=family) as listener, \
            socket.create_server((host, 0), family=family):            # another port: must not be listed
        port = listener.getsockname()[1]
        client = socket.create_connection((host, port))
        accepted, _ = listener.accept()
        assert states(_sock_diag_on_port(port)) == states(_sockets_on_port_from_proc(port)) == \
            ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
        client.close()
        accepted.close()
        assert states(sockets_on_port(port)) == states(_sockets_on_port_from_proc(port)) == ["LISTEN", "TIME_WAIT"]


def test_settled_waits_for_last_ack_and_names_busy_sockets_on_timeout():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        with pytest.raises(TimeoutError, match=rf"TCP sockets on port {port} did not settle within 0.05 s "
                                               r"\(2 in ESTABLISHED\)"):
            wait_tcp_settled(port, 0.05)
        client.close()
        accepted.close()
        wait_tcp_settled(port, 5)
