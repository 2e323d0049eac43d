"""Subject processes: start one, wait for its readiness line, collect its output, never leave it behind.

Every wait here is bounded and its timeout says what it waited for. Output is read by a thread
per stream, so a chatty process can never block on a full pipe.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from typing import List, Optional, Sequence

from harness.errors import RunFailed
from harness.run import tools

STOP_GRACE_SECONDS = 5.0
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: be sent SIGTERM if the process that started us dies, however it dies.

    Linux ties this to the thread that forked, so the thread that starts a subject or a capture
    must outlive it (the harness starts them from the thread that runs the scenario).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: cleanup then rests on the harness's own finally blocks


def netns_exec_argv(netns: str, argv: Sequence[str]) -> List[str]:
    """`argv` run inside network namespace NETNS by `ip netns exec` (iproute2)."""
    return [tools.require("ip"), "netns", "exec", netns, *argv]


class SubjectError(RunFailed):
    """A subject process did not behave as the scenario needed; str() is one line."""


class Subject:
    """A program under test, started by harness and never left behind: output read line by line as
    it comes (`stdout_lines`, `stderr_lines`), readiness awaited with a timeout that names it,
    stopped with SIGTERM then SIGKILL. Use as a context manager, or start() then stop()."""

    def __init__(self, name: str, argv: Sequence[str], stdin_text: Optional[str] = None,
                 env: Optional[dict] = None, netns: Optional[str] = None) -> None:
        """With `netns`, the command runs inside that network namespace (`ip netns exec NETNS ...`,
        which execs it in place: the subject's pid is the command's own)."""
        self.name = name
        self.netns = netns
        self.argv = netns_exec_argv(netns, argv) if netns else list(argv)
        self._stdin_text = stdin_text
        self._env = env
        self._process: Optional[subprocess.Popen] = None
        self.stdout_lines: List[str] = []
        self.stderr_lines: List[str] = []
        self._new_line = threading.Condition()
        self._readers: List[threading.Thread] = []

    def start(self) -> "Subject":
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Subjects run as `python -m harness...` must import harness even from an uninstalled checkout.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE if self._stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1,
            preexec_fn=die_with_parent)
        try:
            for stream, sink in ((self._process.stdout, self.stdout_lines),
                                 (self._process.stderr, self.stderr_lines)):
                reader = threading.Thread(target=self._pump, args=(stream, sink), daemon=True,
                                          name=f"{self.name}-output")
                reader.start()
                self._readers.append(reader)
            if self._stdin_text is not None:
                try:
                    self._process.stdin.write(self._stdin_text)
                    self._process.stdin.close()
                except BrokenPipeError:
                    pass  # it exited before reading; its exit status will tell
        except BaseException:
            self.stop()   # half started (a Ctrl-C, say): not left running behind the caller's back
            raise
        return self

    def _pump(self, stream, sink: List[str]) -> None:
        for line in iter(stream.readline, ""):
            with self._new_line:
                sink.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> Optional[int]:
        return self._process.poll() if self._process else None

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """The first stdout line matching `pattern`; fails if the process exits or time runs out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._new_line:
            while True:
                for line in self.stdout_lines[checked:]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = len(self.stdout_lines)
                if self._process.poll() is not None and not any(r.is_alive() for r in self._readers[:1]):
                    raise SubjectError(f"{self.name} exited with status {self._process.returncode} before "
                                       f"printing a line matching {pattern!r}{self._stderr_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SubjectError(f"{self.name} did not print a line matching {pattern!r} "
                                       f"within {timeout:g} s{self._stderr_tail()}")
                self._new_line.wait(min(remaining, 0.1))

    def wait(self, timeout: float, what: str = "to finish") -> int:
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SubjectError(f"{self.name} did not {what.removeprefix('to ')} within {timeout:g} s") from None
        for reader in self._readers:
            reader.join(timeout=STOP_GRACE_SECONDS)
        return code

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL after a grace period; safe to call more than once."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for reader in self._readers:
            reader.join(timeout=STOP_GRACE_SECONDS)
        return self._process.returncode

    def _stderr_tail(self) -> str:
        tail = [line for line in self.stderr_lines if line.strip()][-1:]
        return f"; its last error line: {tail[0].strip()}" if tail else ""

    def __enter__(self) -> "Subject":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
