"""The lab report's UDPClient, runnable interactively and under automation.

Seed (section 1.2.2): loop on `input(">> ").strip()`, sendto the text to ('127.0.0.1', 8081),
recvfrom(1024), print the reply with the server's address.

Interactively it behaves like the seed (type lines at the `>> ` prompt; Ctrl-D or Ctrl-C ends it).
For automation the messages come from the arguments or, when stdin is not a terminal, from the
non-blank lines of stdin; the client exits 0 once every message got its reply.

Differences from the seed, both invisible on the wire: the socket is connect()ed to the server,
so that an ICMP port-unreachable (no server) surfaces as ConnectionRefusedError right away; and
recvfrom has a timeout (--timeout, default 5 s) so a lost datagram cannot hang the client.
Either failure is one line on stderr and exit status 2.

    python -m harness.lab.udp_client [--host 127.0.0.1] [--port 8081] [--timeout S] [MESSAGE...]
"""

from __future__ import annotations

import socket
import sys
from typing import Iterable, Optional, Sequence

from harness.lab._common import (
    EXIT_OK,
    RECV_SIZE,
    client_argument_parser,
    describe_client_failure,
    format_address,
    prompted_messages,
    reject_port_zero_for_client,
    run_program,
    scripted_messages,
    stdin_is_interactive,
)

PROGRAM_NAME = "udp_client"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
PROMPT = ">> "


def exchange_all(host: str, port: int, timeout: float, messages: Iterable[str]) -> int:
    client = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    with client:
        client.settimeout(timeout)
        try:
            client.connect((host, port))
            server_address = client.getpeername()
            for msg in messages:
                client.sendto(msg.encode("utf-8"), server_address)
                data, server_addr = client.recvfrom(RECV_SIZE)
                print(f"client received {data.decode('utf-8', 'replace')!r} "
                      f"from {format_address(server_addr)}", flush=True)
        except OSError as problem:
            raise describe_client_failure(PROGRAM_NAME, problem, host, port, timeout) from None
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = client_argument_parser(PROGRAM_NAME, "The lab's UDP client: sends each message "
                                    "as one datagram and prints the reply.", DEFAULT_HOST,
                                    DEFAULT_PORT)
    args = parser.parse_args(argv)
    reject_port_zero_for_client(parser, args.port)
    if args.messages or not stdin_is_interactive():
        messages = scripted_messages(args.messages)
    else:
        messages = prompted_messages(PROMPT)
    return run_program(PROGRAM_NAME,
                       lambda: exchange_all(args.host, args.port, args.timeout, messages))


if __name__ == "__main__":
    sys.exit(main())
