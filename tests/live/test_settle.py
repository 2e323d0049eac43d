"""The kernel's socket table asked by port (sock_diag, or /proc as the fallback), and settling on it."""
import os
import socket

import pytest

from harness.run import sockets
from harness.run.settle import busy, wait_settled, wait_tcp_settled


def states(found):
    return sorted(s.state for s in found)


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_sock_diag_and_proc_agree_and_only_the_port_is_listed(family, host):
    with socket.create_server((host, 0), family=family) as listener, \
            socket.create_server((host, 0), family=family):            # another port: must not be listed
        port = listener.getsockname()[1]
        client = socket.create_connection((host, port))
        accepted, _ = listener.accept()
        assert sorted(sockets._sock_diag("tcp", port)) == sorted(sockets._proc_tables("tcp", port))
        assert states(sockets.table("tcp", port)) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
        assert {s.local for s in sockets.table("tcp", port)} == {
            sockets.Endpoint(host, port), sockets.Endpoint(host, client.getsockname()[1])}
        client.close()
        accepted.close()
        assert states(sockets.table("tcp", port)) == states(sockets._proc_tables("tcp", port)) == ["LISTEN", "TIME_WAIT"]


def test_the_table_says_who_holds_a_socket():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        (bound,) = sockets.bound("tcp", port)
        assert sockets.holders([bound.inode]) == {bound.inode: [os.getpid()]}
        assert sockets.describe_holders([bound]).startswith(f"pid {os.getpid()} (")


def test_udp_is_busy_until_every_datagram_is_read():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert [s.local.port for s in sockets.bound("udp", port)] == [port]
        client.sendto(b"unread", ("127.0.0.1", port))
        with pytest.raises(TimeoutError, match=rf"UDP sockets on port {port} did not settle within 0.05 s"):
            wait_settled(port, 0.05, "udp")
        server.recv(100)
        wait_settled(port, 5, "udp")


def test_an_idle_connection_is_settled_and_one_with_unacknowledged_data_is_not():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        wait_tcp_settled(port, 5)          # both ends ESTABLISHED, nothing queued: quiet
        # A receiver that does not read: its window fills and the sender keeps bytes unacknowledged.
        client.setblocking(False)
        sent = 0
        try:
            while sent < 64 << 20:
                sent += client.send(b"x" * 65536)
        except BlockingIOError:
            pass
        assert states(busy("tcp", port)) == ["ESTABLISHED", "ESTABLISHED"], "sender and unreading receiver"
        with pytest.raises(TimeoutError, match=rf"TCP sockets on port {port} did not settle within 0.05 s "
                                               r"\(2 in ESTABLISHED\)"):
            wait_tcp_settled(port, 0.05)
        received = 0
        accepted.settimeout(5)
        while received < sent:
            received += len(accepted.recv(1 << 20))
        wait_tcp_settled(port, 5)
        client.close()
        accepted.close()
        wait_tcp_settled(port, 5)
