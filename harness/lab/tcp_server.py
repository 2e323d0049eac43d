"""The lab report's corrected TCPServer, runnable interactively and under automation.

Seed (section 2.3, "正确代码" (1)): bind ('localhost', 8080), listen(5), print
"This server is ready to receive", then loop: accept() -> (client_socket, clientAddr), print the
client address, recv(1024), print the text, send "thank you !", close the client socket. The
server closes first, which is what gives the report's teardown: server FIN, client ACK, client
FIN, server ACK.

Added for automation: --host/--port (0 = any free port), the readiness line
`listening on HOST:PORT` printed after listen(), --count N to stop after N clients, exit 0 on
Ctrl-C or SIGTERM, a one-line message with exit status 2 when the port is taken, and a client
that misbehaves (resets, sends nothing) is reported on stderr instead of killing the server.

SO_REUSEADDR is set so the server can be restarted on the same port while earlier connections
sit in TIME_WAIT (the server closes first, so TIME_WAIT is on this side); on Linux it still
refuses a port another socket is listening on, so "port in use" is still detected.

    python -m harness.lab.tcp_server [--host localhost] [--port 8080] [--count N]
"""

from __future__ import annotations

import socket
import sys
from typing import Callable, Optional, Sequence

from harness.lab._common import (
    EXIT_OK,
    RECV_SIZE,
    REPLY_TEXT,
    add_count_option,
    announce_listening,
    bind_or_explain,
    format_address,
    run_program,
    server_argument_parser,
    wait_until_readable,
)

PROGRAM_NAME = "tcp_server"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
LISTEN_BACKLOG = 5


def serve_one_client(client_socket: socket.socket, clientAddr: tuple) -> None:
    print(f"client connected from {format_address(clientAddr)}", flush=True)
    recv_data = client_socket.recv(RECV_SIZE)
    if not recv_data:
        print(f"client {format_address(clientAddr)} closed without sending anything",
              flush=True)
        return
    print(f"server received {recv_data.decode('utf-8', 'replace')!r} ({len(recv_data)} bytes)",
          flush=True)
    client_socket.send(REPLY_TEXT.encode("utf-8"))


def serve(host: str, port: int, clients_to_serve: Optional[int],
          serve_client: Callable[[socket.socket, tuple], None] = serve_one_client,
          program_name: str = PROGRAM_NAME) -> int:
    """The seed's accept loop; other TCP lab servers (bulk_server) bring their own `serve_client`."""
    tcp_server_socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    with tcp_server_socket:
        tcp_server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_or_explain(tcp_server_socket, host, port)
        tcp_server_socket.listen(LISTEN_BACKLOG)
        print("This server is ready to receive", flush=True)
        announce_listening(tcp_server_socket)
        served = 0
        while clients_to_serve is None or served < clients_to_serve:
            wait_until_readable(tcp_server_socket)
            client_socket, clientAddr = tcp_server_socket.accept()
            served += 1
            # Closing here, right after the reply, is what makes the server send the first FIN.
            with client_socket:
                try:
                    serve_client(client_socket, clientAddr)
                except OSError as problem:
                    print(f"{program_name}: client {format_address(clientAddr)}: "
                          f"{problem.strerror or problem}", file=sys.stderr, flush=True)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = server_argument_parser(PROGRAM_NAME, "The lab's corrected TCP server: one "
                                    f"request per connection, replies {REPLY_TEXT!r}, then "
                                    "closes first.", DEFAULT_HOST, DEFAULT_PORT)
    add_count_option(parser, "clients")
    args = parser.parse_args(argv)
    return run_program(PROGRAM_NAME, lambda: serve(args.host, args.port, args.count))


if __name__ == "__main__":
    sys.exit(main())
