"""The lab programs (harness.lab) as processes: request/reply, --count, signals, one-line errors.

No capture here: these tests check what the programs print and how they exit. Every server is
started on port 0 and found through its `listening on HOST:PORT` line; every wait is bounded and
says what it was waiting for.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Optional, Tuple

import pytest
from support import REPO

REPO_ROOT = REPO
READY_PREFIX = "listening on "
STARTUP_TIMEOUT = 10.0
EXIT_TIMEOUT = 10.0
CLIENT_TIMEOUT = 10.0


def lab_command(program: str, *args: str) -> List[str]:
    return [sys.executable, "-m", f"harness.lab.{program}", *args]


def lab_environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LabProcess:
    """A lab program running in the background whose stdout lines can be awaited with a timeout."""

    def __init__(self, program: str, *args: str) -> None:
        self.program = program
        self.process = subprocess.Popen(lab_command(program, *args), cwd=REPO_ROOT,
                                        env=lab_environment(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.stdout_lines: List[str] = []
        self._unread_lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            self._unread_lines.put(line.rstrip("\n"))
        self._unread_lines.put(None)  # end of output: the process is exiting

    def wait_for_line(self, prefix: str, timeout: float = STARTUP_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._unread_lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(
                    f"{self.program} printed no line starting with {prefix!r} within "
                    f"{timeout:g} s; stdout so far: {self.stdout_lines!r}") from None
            if line is None:
                status = self.process.wait(timeout=EXIT_TIMEOUT)
                raise AssertionError(
                    f"{self.program} exited with status {status} before printing a line "
                    f"starting with {prefix!r}; stderr: {self.process.stderr.read()!r}")
            if line.startswith(prefix):
                return line

    def wait_until_listening(self) -> Tuple[str, int]:
        address = self.wait_for_line(READY_PREFIX)[len(READY_PREFIX):]
        host, _, port = address.rpartition(":")
        return host, int(port)

    def finish(self, timeout: float = EXIT_TIMEOUT) -> Tuple[int, str, str]:
        """Wait for the process to exit; returns (status, stdout, stderr)."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.program} did not exit within {timeout:g} s; "
                                 f"stdout: {self.stdout_lines!r}") from None
        self._stdout_reader.join(timeout=timeout)
        return status, "\n".join(self.stdout_lines), self.process.stderr.read()

    def stop_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def start_lab_program() -> Iterator:
    started: List[LabProcess] = []

    def start(program: str, *args: str) -> LabProcess:
        program_process = LabProcess(program, *args)
        started.append(program_process)
        return program_process

    yield start
    for program_process in started:
        program_process.stop_if_running()


def run_client(program: str, *args: str, stdin_text: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(lab_command(program, *args), cwd=REPO_ROOT, env=lab_environment(),
                          input=stdin_text, capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT)


def assert_one_line_mentioning(stderr: str, *expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    for text in expected:
        assert text in lines[0], f"{text!r} missing from stderr line {lines[0]!r}"


def test_udp_exchange_from_stdin_lines_as_in_the_report(start_lab_program) -> None:
    server = start_lab_program("udp_server", "--port", "0", "--count", "2")
    host, port = server.wait_until_listening()

    client = run_client("udp_client", "--host", host, "--port", str(port),
                        stdin_text="YP\nnihao\n")

    assert client.returncode == 0, client.stderr
    replies = client.stdout.splitlines()
    assert replies == [f"client received 'thank you !' from {host}:{port}"] * 2
    status, stdout, stderr = server.finish()
    assert status == 0, stderr
    assert "server received 'YP' (2 bytes) from 127.0.0.1:" in stdout
    assert "server received 'nihao' (5 bytes) from 127.0.0.1:" in stdout


@pytest.mark.parametrize("close_mode", ["four-way", "immediate", "abort"])
def test_tcp_exchange_one_connection_per_message(start_lab_program, close_mode) -> None:
    server = start_lab_program("tcp_server", "--port", "0", "--count", "2")
    host, port = server.wait_until_listening()

    client = run_client("tcp_client", "--host", host, "--port", str(port),
                        "--close", close_mode, "yp", "nihao")

    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == ["client received 'thank you !'"] * 2
    status, stdout, stderr = server.finish()
    assert status == 0, stderr
    assert stdout.startswith("This server is ready to receive\n")
    assert stdout.count("client connected from 127.0.0.1:") == 2
    assert "server received 'yp' (2 bytes)" in stdout
    assert "server received 'nihao' (5 bytes)" in stdout


@pytest.mark.parametrize("program", ["udp_server", "tcp_server", "broken_tcp_server"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_stops_cleanly_on_signal(start_lab_program, program, stop_signal) -> None:
    server = start_lab_program(program, "--port", "0")
    server.wait_until_listening()

    server.process.send_signal(stop_signal)

    status, _, stderr = server.finish()
    assert status == 0
    assert stderr == "", f"expected a silent exit, got: {stderr!r}"


@pytest.mark.parametrize("program, socket_type", [
    ("udp_server", socket.SOCK_DGRAM),
    ("tcp_server", socket.SOCK_STREAM),
    ("broken_tcp_server", socket.SOCK_STREAM),
])
def test_server_on_a_busy_port_says_so_in_one_line(start_lab_program, program,
                                                   socket_type) -> None:
    with socket.socket(socket.AF_INET, socket_type) as port_holder:
        port_holder.bind(("127.0.0.1", 0))
        if socket_type == socket.SOCK_STREAM:
            port_holder.listen(1)
        busy_port = port_holder.getsockname()[1]

        server = start_lab_program(program, "--host", "127.0.0.1", "--port", str(busy_port))
        status, stdout, stderr = server.finish()

    assert status == 2
    assert READY_PREFIX not in stdout
    assert_one_line_mentioning(stderr, f"{program}:", f"port {busy_port}", "already in use",
                               "--port 0")


def test_tcp_client_without_server_says_so_in_one_line() -> None:
    # Bound but not listening: connections to it are refused, and nobody else can take the port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as port_holder:
        port_holder.bind(("127.0.0.1", 0))
        unserved_port = port_holder.getsockname()[1]

        client = run_client("tcp_client", "--host", "127.0.0.1", "--port", str(unserved_port),
                            "yp")

    assert client.returncode == 2
    assert client.stdout == ""
    assert_one_line_mentioning(client.stderr, "tcp_client:", f"127.0.0.1:{unserved_port}",
                               "tcp_server")


def test_udp_client_without_server_says_so_in_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        unserved_port = probe.getsockname()[1]

    # The refusal must come from the ICMP port-unreachable, long before the receive timeout.
    client = run_client("udp_client", "--host", "127.0.0.1", "--port", str(unserved_port),
                        "--timeout", "5", "YP")

    assert client.returncode == 2
    assert client.stdout == ""
    assert_one_line_mentioning(client.stderr, "udp_client:", "no server is listening",
                               f"127.0.0.1:{unserved_port}", "udp_server")


def test_broken_server_dies_with_attribute_error_and_client_gets_no_reply(
        start_lab_program) -> None:
    server = start_lab_program("broken_tcp_server", "--port", "0")
    host, port = server.wait_until_listening()

    client = run_client("tcp_client", "--host", host, "--port", str(port), "yp")

    status, _, server_stderr = server.finish()
    assert status == 1
    assert server_stderr.rstrip().endswith(
        "AttributeError: 'tuple' object has no attribute 'recvfrom'"), server_stderr
    assert "thank you !" not in client.stdout
    assert client.returncode == 2
    assert_one_line_mentioning(client.stderr, "tcp_client:", "reset the connection")
