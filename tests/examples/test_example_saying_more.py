"""Example: saying more about the wire than the segments' flags and lengths.

A step can name the SYN's options and window and bound how long a reply took; a rule can read a
side's whole stream however it was segmented; `check filter` and `where` hand any field Wireshark
knows to tshark; and rules over the whole capture count and judge every conversation on a port.
"""
import socket
import sys

import pytest

SERVER = [sys.executable, "-m", "harness.lab.tcp_server", "--host", "{host}", "--port", "{port}"]

SAYS_MORE = """
C>S SYN        seq=0  mss=65495 sackOK TS wscale=*
S>C SYN,ACK    seq=0  ack=1  <mss 65495,sackOK,TS val * ecr *,nop,wscale *>
...
S>C ACK len=11 after<=1s  where "tcp.window_size_value > 0"
...
C>S stream equals "yp"
S>C stream equals "thank you !"
check filter "!tcp.analysis.retransmission && !tcp.analysis.zero_window"
check graceful-close
"""


def ask(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(message)
        reply = connection.recv(1024)
        while connection.recv(1024):
            pass
    return reply


@pytest.mark.capture
def test_options_timing_streams_and_wireshark_fields(serve, wire):
    server = serve(SERVER)
    with wire(server.port) as capture:
        assert ask(server.port, b"yp") == b"thank you !"
    capture.conversation().should_match(SAYS_MORE)


@pytest.mark.capture
def test_three_clients_each_closed_gracefully_and_nobody_reset(serve, wire):
    server = serve(SERVER)
    with wire(server.port) as capture:
        for _ in range(3):
            ask(server.port, b"yp")
    capture.should_match(f"conversations tcp to={server.port} count=3 each=tcp_graceful\ncapture no-rst")
