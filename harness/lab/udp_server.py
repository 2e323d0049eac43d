"""The lab report's UDPServer, runnable interactively and under automation.

Seed (section 1.2.3): bind ('127.0.0.1', 8081) with a SOCK_DGRAM socket, loop on recvfrom(1024),
print what arrived, reply "thank you !" (11 bytes, UTF-8) to the sender's address.

Added for automation: --host/--port (0 = any free port), the readiness line
`listening on HOST:PORT` once bound, --count N to stop after N datagrams, exit 0 on Ctrl-C or
SIGTERM, and a one-line message with exit status 2 when the port is taken.

    python -m harness.lab.udp_server [--host 127.0.0.1] [--port 8081] [--count N]
"""

from __future__ import annotations

import socket
import sys
from typing import Optional, Sequence

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

PROGRAM_NAME = "udp_server"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


def serve(host: str, port: int, datagrams_to_serve: Optional[int]) -> int:
    # No SO_REUSEADDR: for UDP on Linux it would let a second server share the port silently.
    server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    with server:
        bind_or_explain(server, host, port)
        announce_listening(server)
        served = 0
        while datagrams_to_serve is None or served < datagrams_to_serve:
            wait_until_readable(server)
            data, client_addr = server.recvfrom(RECV_SIZE)
            print(f"server received {data.decode('utf-8', 'replace')!r} ({len(data)} bytes) "
                  f"from {format_address(client_addr)}", flush=True)
            server.sendto(REPLY_TEXT.encode("utf-8"), client_addr)
            served += 1
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = server_argument_parser(PROGRAM_NAME, "The lab's UDP server: replies "
                                    f"{REPLY_TEXT!r} to every datagram.", DEFAULT_HOST,
                                    DEFAULT_PORT)
    add_count_option(parser, "datagrams")
    args = parser.parse_args(argv)
    return run_program(PROGRAM_NAME, lambda: serve(args.host, args.port, args.count))


if __name__ == "__main__":
    sys.exit(main())
