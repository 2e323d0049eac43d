"""Example: capture your own program's traffic and hold it to an expectation written inline.

`live_capture(bpf)` is a context manager: on entry the capture is proven live, on exit proven
complete, and `capture.result.path` is the saved pcap (named after the test).
"""
import socket
import threading

import pytest

import harness


def _echo_once(server: socket.socket) -> None:
    data, peer = server.recvfrom(1024)
    server.sendto(data.upper(), peer)


@pytest.mark.capture
def test_my_udp_echo_answers_what_it_was_sent(live_capture):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    answering = threading.Thread(target=_echo_once, args=(server,))
    answering.start()
    with live_capture(f"udp port {port}") as capture:
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.sendto(b"ping", ("127.0.0.1", port))
        assert client.recvfrom(1024)[0] == b"PING"
    answering.join(timeout=5)

    (conversation,) = harness.analyse(capture.result.path).conversations
    expectation = harness.Expectation.parse('C>S UDP len=4 data="ping"\nS>C UDP len=4 data="PING"\n')
    assert expectation.problems(conversation) == []
