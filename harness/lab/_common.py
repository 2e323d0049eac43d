"""Plumbing shared by the lab programs: command-line options, error reporting, clean shutdown.

The lab programs stay close to the seed report's code; everything that is only there so the
programs can also be driven by automation (port 0, the readiness line, messages from arguments or
stdin, one-line errors with exit status 2, SIGTERM handling) lives here.
"""

from __future__ import annotations

import argparse
import errno
import select
import signal
import socket
import sys
from typing import Callable, Iterator, Optional, Sequence

REPLY_TEXT = "thank you !"
RECV_SIZE = 1024  # the seed's BUFSIZE / recv(1024)

EXIT_OK = 0
EXIT_FAILURE = 2  # same status argparse uses for usage errors: "you need to change something"

DEFAULT_CLIENT_TIMEOUT = 5.0


class LabError(Exception):
    """A problem the user can fix; reported as one line on stderr, never as a traceback."""


class StopRequested(BaseException):
    """Raised from the SIGTERM handler so blocking calls unwind like they do for Ctrl-C.

    A BaseException, like KeyboardInterrupt, so `except Exception` in a serving loop does not
    swallow it.
    """


def _raise_stop_requested(signum: int, frame: object) -> None:
    raise StopRequested()


# Read end of the signal wake-up channel (see wait_until_readable), and its write end, kept
# referenced because the C signal handler writes to its file descriptor.
_stop_signal_wakeup: Optional[socket.socket] = None
_stop_signal_wakeup_writer: Optional[socket.socket] = None


def _install_stop_signal_handlers() -> None:
    global _stop_signal_wakeup, _stop_signal_wakeup_writer
    signal.signal(signal.SIGTERM, _raise_stop_requested)
    # A shell starts background jobs with SIGINT ignored, and Python keeps it ignored; restore it
    # so Ctrl-C (or a harness sending SIGINT) stops the program wherever it was started from.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _stop_signal_wakeup is None:
        wakeup_reader, wakeup_writer = socket.socketpair()
        wakeup_reader.setblocking(False)
        wakeup_writer.setblocking(False)
        signal.set_wakeup_fd(wakeup_writer.fileno(), warn_on_full_buffer=False)
        _stop_signal_wakeup, _stop_signal_wakeup_writer = wakeup_reader, wakeup_writer


def wait_until_readable(waiting_socket: socket.socket) -> None:
    """Block until `waiting_socket` has something to read; Ctrl-C or SIGTERM ends the wait.

    Python only notices a signal when a blocking call fails with EINTR, so a signal landing
    between its last check and the start of accept()/recvfrom() would leave the server blocked
    for good; a harness that sends SIGTERM right after the readiness line hits that window. The
    C-level handler also writes to the wake-up channel, so select() returns even then, and the
    Python handler runs (and raises) before the loop goes round again.
    """
    if _stop_signal_wakeup is None:
        return
    while True:
        readable, _, _ = select.select([waiting_socket, _stop_signal_wakeup], [], [])
        if waiting_socket in readable:
            return
        try:
            while _stop_signal_wakeup.recv(64):
                pass
        except BlockingIOError:
            pass


def run_program(program_name: str, main: Callable[[], int]) -> int:
    """Run `main`, turning LabError, Ctrl-C and SIGTERM into the programs' exit statuses.

    Any other exception is left alone: it prints its traceback and exits with status 1.
    """
    _install_stop_signal_handlers()
    try:
        return main()
    except LabError as problem:
        print(f"{program_name}: {problem}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except (KeyboardInterrupt, StopRequested):
        # Ending a server (or an interactive client) this way is the normal way to stop it.
        return EXIT_OK


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"timeout must be positive: {seconds}")
    return seconds


def positive_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"count must be at least 1: {count}")
    return count


def server_argument_parser(program_name: str, description: str, default_host: str,
                           default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m harness.lab.{program_name}",
                                     description=description)
    parser.add_argument("--host", default=default_host,
                        help=f"address to bind (default: {default_host}, as in the lab report)")
    parser.add_argument("--port", type=port_number, default=default_port,
                        help=f"port to bind; 0 picks any free port (default: {default_port})")
    return parser


def add_count_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--count", type=positive_count, default=None, metavar="N",
                        help=f"serve N {what}, then exit 0 (default: serve forever, as in the "
                             "lab report)")


def client_argument_parser(program_name: str, description: str, default_host: str,
                           default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m harness.lab.{program_name}",
                                     description=description)
    parser.add_argument("messages", nargs="*", metavar="MESSAGE",
                        help="messages to send; without them, lines are read from stdin when it "
                             "is not a terminal, otherwise you are prompted as in the lab report")
    parser.add_argument("--host", default=default_host,
                        help=f"server address (default: {default_host})")
    parser.add_argument("--port", type=port_number, default=default_port,
                        help=f"server port (default: {default_port})")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_CLIENT_TIMEOUT,
                        metavar="SECONDS",
                        help="how long to wait for the server (default: %(default)s)")
    return parser


def reject_port_zero_for_client(parser: argparse.ArgumentParser, port: int) -> None:
    if port == 0:
        parser.error("--port 0 only makes sense for a server; pass the port the server printed "
                     "in its 'listening on HOST:PORT' line")


def stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def scripted_messages(positional: Sequence[str]) -> Iterator[str]:
    """Messages for a non-interactive run: the arguments, else the non-blank lines of stdin."""
    if positional:
        yield from positional
        return
    for line in sys.stdin:
        message = line.strip()
        if message:
            yield message


def prompted_messages(prompt: str) -> Iterator[str]:
    """The seed's `input(prompt).strip()` loop; ends at end of input (Ctrl-D)."""
    while True:
        try:
            yield input(prompt).strip()
        except EOFError:
            return


def format_address(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def announce_listening(bound_socket: socket.socket) -> None:
    """Print the readiness line automation waits for; only call once the socket can be reached."""
    print(f"listening on {format_address(bound_socket.getsockname())}", flush=True)


def bind_or_explain(server_socket: socket.socket, host: str, port: int) -> None:
    try:
        server_socket.bind((host, port))
    except socket.gaierror:
        raise LabError(f"cannot resolve host {host!r}; pass an address such as --host 127.0.0.1")
    except OSError as problem:
        if problem.errno == errno.EADDRINUSE:
            raise LabError(f"port {port} on {host} is already in use; stop the other server "
                           f"or pass --port 0")
        if problem.errno == errno.EADDRNOTAVAIL:
            if host in ("127.0.0.1", "::1"):
                # The loopback address itself: what is missing is lo's address, not a better address to pass.
                prefix = "127.0.0.1/8" if host == "127.0.0.1" else "::1/128"
                raise LabError(f"{host} is not on the loopback interface here (lo has lost it, in this network "
                               f"namespace at least): give it back with `ip addr add {prefix} dev lo`")
            raise LabError(f"{host} is not an address of this machine; pass --host 127.0.0.1")
        if problem.errno == errno.EACCES:
            raise LabError(f"not allowed to bind port {port} on {host}; use a port above 1023 "
                           f"or --port 0")
        raise LabError(f"cannot bind {host}:{port}: {problem.strerror or problem}")


def describe_client_failure(program_name: str, problem: OSError, host: str, port: int,
                            timeout: float) -> LabError:
    """Turn a socket error seen by a client into a message saying what to do about it."""
    server_module = "udp_server" if program_name.startswith("udp") else "tcp_server"
    start_hint = f"start it first (python -m harness.lab.{server_module} --port {port})"
    if isinstance(problem, socket.gaierror):
        return LabError(f"cannot resolve host {host!r}; pass an address such as --host 127.0.0.1")
    if isinstance(problem, ConnectionRefusedError):
        return LabError(f"no server is listening on {host}:{port}; {start_hint} "
                        f"or check --host/--port")
    if isinstance(problem, socket.timeout):
        return LabError(f"no reply from {host}:{port} within {timeout:g} s; is the server "
                        f"running there? {start_hint} or raise --timeout")
    if isinstance(problem, ConnectionResetError):
        return LabError(f"the server at {host}:{port} reset the connection without replying "
                        f"(a server that crashed, like the lab's broken first TCP server?)")
    if isinstance(problem, (ConnectionAbortedError, BrokenPipeError)):
        return LabError(f"the connection to {host}:{port} was aborted before the reply came; "
                        f"check the server's output")
    return LabError(f"talking to {host}:{port} failed: {problem.strerror or problem}")
