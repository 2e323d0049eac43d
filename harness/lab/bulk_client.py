"""The bulk server's client: asks for --bytes N, reads to the server's FIN, checks every byte.

    python -m harness.lab.bulk_client [--host 127.0.0.1] [--port 8082] [--timeout S] [--bytes N]

It sends N in decimal ASCII with a newline (so N's digits plus one are the client's payload on the
wire), reads until the server closes, and exits 0 only when exactly N bytes of the expected
pattern arrived (`client received N bytes` on stdout). A missing or silent server, a reset, or a
short or wrong reply gives one line on stderr and exit status 2, as for the other lab clients.
--timeout bounds each wait for the server, not the whole transfer.

Like tcp_client's default close, it reads to EOF (the server's FIN has arrived) and sets
TCP_QUICKACK before closing, so the ACK of the server's FIN leaves on its own before the client's FIN.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Optional, Sequence

from harness.lab._common import (
    DEFAULT_CLIENT_TIMEOUT,
    EXIT_OK,
    LabError,
    describe_client_failure,
    port_number,
    positive_count,
    positive_seconds,
    reject_port_zero_for_client,
    run_program,
)
from harness.lab.bulk_server import DEFAULT_HOST, DEFAULT_PORT, MAX_REQUEST_BYTES, pattern

PROGRAM_NAME = "bulk_client"
DEFAULT_BYTES = 1 << 20
RECV_BYTES = 1 << 16


def request_bytes(text: str) -> int:
    count = positive_count(text)
    if count > MAX_REQUEST_BYTES:
        raise argparse.ArgumentTypeError(f"at most {MAX_REQUEST_BYTES} bytes: {count}")
    return count


def download(host: str, port: int, timeout: float, wanted: int) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.sendall(b"%d\n" % wanted)
            received = 0
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                if received + len(data) > wanted:
                    raise LabError(f"the server sent more than the {wanted} bytes asked for")
                if data != pattern(received, len(data)):
                    raise LabError(f"the reply differs from the expected pattern within bytes "
                                   f"{received}-{received + len(data) - 1}")
                received += len(data)
            quickack = getattr(socket, "TCP_QUICKACK", None)
            if quickack is not None:
                sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
    except OSError as problem:
        error = describe_client_failure(PROGRAM_NAME, problem, host, port, timeout)
        raise LabError(str(error).replace("harness.lab.tcp_server", "harness.lab.bulk_server")) from None
    if received != wanted:
        raise LabError(f"the server closed after {received} of the {wanted} bytes asked for")
    print(f"client received {received} bytes", flush=True)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m harness.lab.{PROGRAM_NAME}",
                                     description="Bulk TCP client: downloads N bytes from the bulk "
                                                 "server and checks them.")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"server address (default: {DEFAULT_HOST})")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"server port (default: {DEFAULT_PORT})")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_CLIENT_TIMEOUT, metavar="SECONDS",
                        help="how long to wait for the server each time (default: %(default)s)")
    parser.add_argument("--bytes", type=request_bytes, default=DEFAULT_BYTES, metavar="N",
                        help="how many bytes to ask for (default: %(default)s)")
    args = parser.parse_args(argv)
    reject_port_zero_for_client(parser, args.port)
    return run_program(PROGRAM_NAME, lambda: download(args.host, args.port, args.timeout, args.bytes))


if __name__ == "__main__":
    sys.exit(main())
