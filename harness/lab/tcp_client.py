"""The lab report's TCPClient, runnable interactively and under automation.

Seed (section 2.3, "正确代码" (2)): connect to ('localhost', 8080), prompt for a line, send it,
recv(1024), print the reply, close.

Interactively it behaves like the seed: it connects, prompts once, sends, prints the reply and
closes. For automation the messages come from the arguments or, when stdin is not a terminal,
from the non-blank lines of stdin; each message gets its own connection, as if the seed were run
once per message. Exit 0 when every message got its reply; a server that is not there, does not
answer within --timeout (default 5 s) or resets the connection gives one line on stderr and
exit status 2.

How the client closes (--close) decides what the teardown looks like on the wire:

four-way (default)
    The report's teardown, made deterministic: server FIN, client ACK, client FIN, server ACK.
    After the reply the client reads until EOF, so the server's FIN has arrived, then sets
    TCP_QUICKACK before closing. Why: when a FIN arrives Linux puts the connection in delayed-ACK
    ("pingpong") mode, so the ACK for that FIN is only scheduled; a client that closes right away
    lets its FIN carry that ACK and the close takes three segments. Setting TCP_QUICKACK=1 sends a
    scheduled ACK immediately, so the ACK goes out on its own before close() sends the FIN.
    Measured with tcp_server --count 1, 100 runs under dumpcap: 100/100 eleven-segment exchanges
    (200/200 with the CPUs kept busy); reading to EOF without TCP_QUICKACK gave 0/100 (always
    server FIN, client FIN-ACK, server ACK).
immediate
    Close right after reading the reply, as the seed does, and get whatever the kernel does. On
    Linux that is three segments, and who goes first is a race between the two close() calls:
    either client FIN, server FIN-ACK, client ACK or server FIN, client FIN-ACK, server ACK (two
    batches of 100 runs split 74/26 and 94/6).
abort
    SO_LINGER with a zero timeout, so close() sends a RST instead of a FIN; whether it comes
    before or after the server's FIN is again a race (70/30 and 90/10 in two batches of 100).

The full four-way exchange, as in the report: SYN, SYN-ACK, ACK, C->S "yp" (PSH-ACK),
S->C ACK=3, S->C "thank you !" (11 bytes), C->S ACK=12, S->C FIN, C->S ACK, C->S FIN, S->C ACK.
Its two other stand-alone ACKs (ACK=3 for the request, ACK=12 for the reply) need nothing from
the programs: Linux acknowledges the first data segments of a connection at once ("quick-ack"
mode), from the receive path, before the application has even read them; so the server needs no
TCP_QUICKACK option.

    python -m harness.lab.tcp_client [--host localhost] [--port 8080] [--timeout S]
                                     [--close {four-way,immediate,abort}] [MESSAGE...]
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Callable, Optional, Sequence

from harness.lab._common import (
    EXIT_OK,
    LabError,
    RECV_SIZE,
    client_argument_parser,
    describe_client_failure,
    reject_port_zero_for_client,
    run_program,
    scripted_messages,
    stdin_is_interactive,
)

PROGRAM_NAME = "tcp_client"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
PROMPT = "Enter the data for the client to send: "  # the seed's "请输入client要发送的数据:"

CLOSE_FOUR_WAY = "four-way"
CLOSE_IMMEDIATE = "immediate"
CLOSE_ABORT = "abort"
CLOSE_MODES = (CLOSE_FOUR_WAY, CLOSE_IMMEDIATE, CLOSE_ABORT)


def wait_for_server_fin(tcp_client_socket: socket.socket) -> None:
    try:
        while tcp_client_socket.recv(RECV_SIZE):
            pass  # anything after the one reply the seed reads is not part of the exchange
    except socket.timeout:
        raise LabError("the server replied but did not close the connection within "
                       f"{tcp_client_socket.gettimeout():g} s; the lab's server closes first, "
                       "for other servers pass --close immediate") from None


def acknowledge_pending_data_now(tcp_client_socket: socket.socket) -> None:
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:  # Linux only; elsewhere the close may take three segments
        tcp_client_socket.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def reset_on_close(tcp_client_socket: socket.socket) -> None:
    linger_on_zero_seconds = struct.pack("ii", 1, 0)
    tcp_client_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_on_zero_seconds)


def exchange(host: str, port: int, timeout: float, close_mode: str,
             read_message: Callable[[], str]) -> None:
    tcp_client_socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    with tcp_client_socket:
        tcp_client_socket.settimeout(timeout)
        tcp_client_socket.connect((host, port))
        # Like the seed, the message is read only once connected: interactively the prompt
        # appears with the handshake already done.
        send_data = read_message()
        if not send_data:
            raise LabError("nothing to send: an empty message would leave client and server "
                           "both waiting; type some text")
        tcp_client_socket.send(send_data.encode("utf-8"))
        recvData = tcp_client_socket.recv(RECV_SIZE)
        if not recvData:
            raise ConnectionAbortedError("server closed the connection without replying")
        print(f"client received {recvData.decode('utf-8', 'replace')!r}", flush=True)
        if close_mode == CLOSE_FOUR_WAY:
            wait_for_server_fin(tcp_client_socket)
            acknowledge_pending_data_now(tcp_client_socket)
        elif close_mode == CLOSE_ABORT:
            reset_on_close(tcp_client_socket)


def exchange_each(host: str, port: int, timeout: float, close_mode: str,
                  message_readers: Sequence[Callable[[], str]]) -> int:
    try:
        for read_message in message_readers:
            exchange(host, port, timeout, close_mode, read_message)
    except OSError as problem:
        raise describe_client_failure(PROGRAM_NAME, problem, host, port, timeout) from None
    return EXIT_OK


def read_one_line_at_the_prompt() -> str:
    try:
        return input(PROMPT).strip()
    except EOFError:
        return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = client_argument_parser(PROGRAM_NAME, "The lab's TCP client: one connection per "
                                    "message, prints the server's reply.", DEFAULT_HOST,
                                    DEFAULT_PORT)
    parser.add_argument("--close", choices=CLOSE_MODES, default=CLOSE_FOUR_WAY,
                        help="how to end each connection (default: %(default)s, the report's "
                             "4-segment close)")
    args = parser.parse_args(argv)
    reject_port_zero_for_client(parser, args.port)
    if args.messages or not stdin_is_interactive():
        readers = [lambda message=message: message
                   for message in scripted_messages(args.messages)]
    else:
        readers = [read_one_line_at_the_prompt]
    return run_program(PROGRAM_NAME, lambda: exchange_each(args.host, args.port, args.timeout,
                                                           args.close, readers))


if __name__ == "__main__":
    sys.exit(main())
