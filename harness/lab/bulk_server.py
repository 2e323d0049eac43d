"""A bulk-transfer server in the lab programs' style: the lab's request/reply, with a large reply.

Not in the seed report; it is there so a scenario can move enough data for losses, duplicate ACKs
and retransmissions to show, e.g. through a lossy router (harness.run.topology). The exchange:

    client -> server   the number of bytes wanted, in decimal ASCII, ending in "\\n" (e.g. b"3145728\\n")
    server -> client   exactly that many bytes of PATTERN, then the server closes first (FIN)

The reply is a deterministic pattern, 16-byte lines `harness 0000042\\n` (line numbers modulo
10**7), so the client can check every byte and a reader of the pcap sees where a segment lies.

Like the other lab servers: --host/--port (0 = any free port), the readiness line
`listening on HOST:PORT` printed after listen(), --count N to stop after N clients, exit 0 on
Ctrl-C or SIGTERM, a one-line message with exit status 2 when the port is taken; a client that
misbehaves (bad request, reset) is reported on stderr instead of killing the server.

    python -m harness.lab.bulk_server [--host 127.0.0.1] [--port 8082] [--count N]
"""

from __future__ import annotations

import socket
import sys
from typing import Optional, Sequence

from harness.lab import tcp_server
from harness.lab._common import add_count_option, format_address, run_program, server_argument_parser

PROGRAM_NAME = "bulk_server"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8082
LINE_BYTES = 16
MAX_REQUEST_BYTES = 1 << 30   # 1 GiB: a bound, so a typo cannot keep the server busy for hours
MAX_REQUEST_LINE = 32
CHUNK_BYTES = 1 << 16
REQUEST_TIMEOUT_SECONDS = 10.0


def pattern(offset: int, length: int) -> bytes:
    """Bytes [offset, offset + length) of the reply stream."""
    first, last = offset // LINE_BYTES, (offset + length + LINE_BYTES - 1) // LINE_BYTES
    lines = b"".join(b"harness %07d\n" % (n % 10_000_000) for n in range(first, last))
    start = offset - first * LINE_BYTES
    return lines[start:start + length]


def read_request(client_socket: socket.socket) -> Optional[int]:
    """The byte count the client asked for; None (after saying why on stderr) for a bad request."""
    request = b""
    while b"\n" not in request and len(request) <= MAX_REQUEST_LINE:
        data = client_socket.recv(MAX_REQUEST_LINE)
        if not data:
            break
        request += data
    line, newline, rest = request.partition(b"\n")
    text = line.decode("ascii", "replace").strip()
    if not newline or rest or not text.isdigit() or int(text) > MAX_REQUEST_BYTES:
        print(f"{PROGRAM_NAME}: bad request {request[:MAX_REQUEST_LINE]!r}: expected a byte count "
              f"up to {MAX_REQUEST_BYTES} and a newline", file=sys.stderr, flush=True)
        return None
    return int(text)


def serve_one_client(client_socket: socket.socket, clientAddr: tuple) -> None:
    print(f"client connected from {format_address(clientAddr)}", flush=True)
    client_socket.settimeout(REQUEST_TIMEOUT_SECONDS)
    wanted = read_request(client_socket)
    if wanted is None:
        return
    client_socket.settimeout(None)
    sent = 0
    while sent < wanted:
        chunk = pattern(sent, min(CHUNK_BYTES, wanted - sent))
        client_socket.sendall(chunk)
        sent += len(chunk)
    print(f"server sent {sent} bytes to {format_address(clientAddr)}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = server_argument_parser(PROGRAM_NAME, "Bulk TCP server: sends each client the number of "
                                    "bytes it asks for, then closes first.", DEFAULT_HOST, DEFAULT_PORT)
    add_count_option(parser, "clients")
    args = parser.parse_args(argv)
    # The lab TCP server's accept loop, with this server's client handling: it closes first too.
    return run_program(PROGRAM_NAME, lambda: tcp_server.serve(args.host, args.port, args.count,
                                                             serve_one_client, PROGRAM_NAME))


if __name__ == "__main__":
    sys.exit(main())
