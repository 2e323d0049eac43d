"""Example: your own server under test, in five lines.

`serve` starts it (here the lab's TCP server, as any command: {host} and {port} are filled in, the
port a free one) and returns once it listens; `wire` captures its port; the conversation's
assertions fail with the cause first, then what differed, the ladder and the pcap.
"""
import socket
import sys

import pytest

SERVER = [sys.executable, "-m", "harness.lab.tcp_server", "--host", "{host}", "--port", "{port}"]


def my_client(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"yp")
        reply = connection.recv(1024)
        while connection.recv(1024):      # read to the server's FIN, then close
            pass
    return reply


@pytest.mark.capture
def test_my_server_closes_gracefully(serve, wire):
    server = serve(SERVER)
    with wire(server.port) as capture:
        assert my_client(server.port) == b"thank you !"
    capture.conversation().should_match("tcp_graceful").should_carry(client=[2], server=[11])


@pytest.mark.capture
def test_my_server_says_what_the_lab_report_saw(serve, wire):
    server = serve(SERVER)
    with wire(server.port) as capture:
        my_client(server.port)
    conversation = capture.conversation()
    conversation.should_handshake().should_have_no_rst().should_get_reply()
    assert (conversation.client_sent, conversation.server_sent, conversation.conn_state) == (2, 11, "SF")
