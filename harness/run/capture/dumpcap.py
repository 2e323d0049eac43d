"""The dumpcap backend: Wireshark's capture engine, writing pcapng to a pipe we read block by block."""
from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from typing import List, Optional

from harness.run.capture.session import Capture, CaptureError, CaptureUnavailable
from harness.wire import pcapng
from harness.run import tools
from harness.run.process import die_with_parent, signals_held

# 64 KiB loopback frames overflow dumpcap's default 2 MiB kernel buffer.
DEFAULT_BUFFER_MIB = 64
EXIT_TIMEOUT_SECONDS = 10.0
DUMPCAP_ENV = "HARNESS_DUMPCAP"
PERMISSION_HINT = ("run as root, or give dumpcap the capture capabilities: "
                   "`setcap cap_net_raw,cap_net_admin+eip $(command -v dumpcap)`")
_STATS_LINE = re.compile(r"received/dropped on interface '.*': (\d+)/(\d+) \((?P<detail>[^)]*)\)")


def dumpcap_path() -> str:
    """dumpcap from $HARNESS_DUMPCAP if set, else from PATH or the system directories (harness.run.tools)."""
    configured = os.environ.get(DUMPCAP_ENV)
    if configured:
        path = shutil.which(configured)
        if not path:
            raise CaptureUnavailable(f"{DUMPCAP_ENV}={configured} is not an executable dumpcap: "
                                     f"fix the variable or unset it")
        return path
    try:
        return tools.require("dumpcap")
    except tools.ToolMissing as missing:
        raise CaptureUnavailable(f"{missing}, or use the scapy backend") from None


def cannot_run(exe: str, error: OSError) -> str:
    """Why an executable that exists would not start (not a program, a missing interpreter), and what to do."""
    fix = (f"point {DUMPCAP_ENV} at Wireshark's dumpcap, or unset it" if os.environ.get(DUMPCAP_ENV)
           else "reinstall it: bash scripts/setup.sh")
    return f"{exe} cannot be run ({error.strerror or error}): {fix}"


def explain_dumpcap_error(stderr: str, returncode: Optional[int] = None) -> str:
    """dumpcap's own complaint, one line, with what to do about it; a dumpcap killed by a signal is
    said to be, by the signal's name. Its progress and counters ("Packets: 18", "Packets captured: 0",
    "Packets received/dropped ...") are no complaint."""
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and not line.startswith(("Capturing on", "File:", "Packets"))]
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        said = f" (its last words: {lines[-1]})" if lines else ""
        return f"dumpcap was killed by {name}{said}: something outside harness stopped it; run again"
    if not lines:
        status = f" with status {returncode}" if returncode else ""
        return f"dumpcap failed: it exited{status} without saying why"
    message = lines[0]
    if "permission" in stderr.lower() or "operation not permitted" in stderr.lower():
        return f"dumpcap may not capture here ({message}): {PERMISSION_HINT}"
    return f"dumpcap failed: {message}"


def probe_dumpcap(interface: str = "lo", timeout: float = 10.0) -> Optional[str]:
    """None when dumpcap can capture on the interface, else the one-line reason it cannot."""
    try:
        exe = dumpcap_path()
    except CaptureUnavailable as error:
        return str(error)
    try:
        done = subprocess.run([exe, "-L", "-i", interface], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"dumpcap -L -i {interface} did not answer within {timeout:g} s"
    except OSError as error:
        return cannot_run(exe, error)
    return None if done.returncode == 0 else explain_dumpcap_error(done.stderr)


class DumpcapCapture(Capture):
    backend = "dumpcap"

    def __init__(self, *args, buffer_mib: int = DEFAULT_BUFFER_MIB, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer_mib = buffer_mib
        self._process: Optional[subprocess.Popen] = None
        self._stderr: List[str] = []
        self._threads: List[threading.Thread] = []
        self._described = False

    def _launch(self, full_filter: str) -> None:
        command = [dumpcap_path(), "-i", self.interface, "-w", "-", "-B", str(self.buffer_mib)]
        if full_filter:
            command += ["-f", full_filter]
        try:
            # preexec_fn makes subprocess run the at-fork hooks; signals_held keeps a Ctrl-C out of them
            # (raised after the fork instead, once _process is set, so that begin()'s abort kills it).
            with signals_held(hold_in_child=True):
                self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, bufsize=0,
                                                 preexec_fn=functools.partial(die_with_parent, os.getpid()))
        except OSError as error:
            raise CaptureUnavailable(cannot_run(command[0], error)) from None
        for target in (self._pump_stdout, self._pump_stderr):
            thread = threading.Thread(target=target, name=f"dumpcap-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump_stdout(self) -> None:
        splitter = pcapng.BlockSplitter()
        stream = self._process.stdout
        try:
            while True:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                for block_type, block in splitter.feed(chunk):
                    self._take_block(block_type, block, splitter.endian)
            if splitter.pending:
                self._fail(f"dumpcap's output ended inside a block ({splitter.pending} bytes left over)")
        except (pcapng.StreamError, OSError, ValueError) as error:
            self._fail(f"reading dumpcap's output: {error}")

    def _take_block(self, block_type: int, block: bytes, endian: str) -> None:
        if block_type in (pcapng.ENHANCED_PACKET, pcapng.SIMPLE_PACKET):
            self._deliver(block, block)
            return
        if block_type == pcapng.INTERFACE_DESCRIPTION:
            # dumpcap writes its interface block once the interface is open, bound and filtered.
            with self._changed:
                self._described = True
                self._changed.notify_all()
        if block_type == pcapng.SECTION_HEADER:
            block = pcapng.with_options(block, endian, [pcapng.text_option(pcapng.OPT_COMMENT, comment)
                                                        for comment in self._comments()])
        elif block_type == pcapng.INTERFACE_STATISTICS:
            stats = pcapng.statistics(block, endian)
            self.result.received = stats.get("received", self.result.received)
            self.result.dropped = stats.get("dropped", 0) + stats.get("os_dropped", 0)
        self._write(block)

    def _pump_stderr(self) -> None:
        for line in iter(self._process.stderr.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace"))

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _wait_until_live(self, deadline: float) -> None:
        with self._changed:
            while not (self._described or self._failure or not self._alive()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                # Bounded so that a dumpcap dying without a word is noticed within 50 ms.
                self._changed.wait(min(remaining, 0.05))

    def _why_dead(self) -> str:
        self._join_threads()
        return explain_dumpcap_error("".join(self._stderr), self._process.poll() if self._process else None)

    def _halt(self) -> None:
        # dumpcap writes its statistics block and ends its output within a millisecond of SIGTERM,
        # then spends some 25 ms in the kernel releasing its ring; that exit is _reap's to wait for.
        self._process.send_signal(signal.SIGTERM)
        output = self._threads[0]
        output.join(timeout=EXIT_TIMEOUT_SECONDS)
        if output.is_alive():
            self._kill()
            raise CaptureError(f"dumpcap's output did not end within {EXIT_TIMEOUT_SECONDS:g} s of SIGTERM")

    def _reap(self) -> None:
        try:
            self._process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill()
            raise CaptureError(f"dumpcap did not exit within {EXIT_TIMEOUT_SECONDS:g} s of SIGTERM")
        self._join_threads()
        stats = _STATS_LINE.search("".join(self._stderr))
        if stats:
            # e.g. "pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0": which of the kernel ring, dumpcap itself,
            # the flush at exit or the interface lost them.
            self.result.drop_detail = stats.group("detail")
            if self.result.dropped is None:
                self.result.received, self.result.dropped = int(stats.group(1)), int(stats.group(2))
        if self._process.returncode not in (0, -signal.SIGTERM):
            self._fail(explain_dumpcap_error("".join(self._stderr), self._process.returncode))

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._join_threads()

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=EXIT_TIMEOUT_SECONDS)
