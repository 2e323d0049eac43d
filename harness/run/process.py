"""Subject processes: start one, know when it is ready, collect its output, never leave it behind.

Rules:
* Each subject starts a session of its own (setsid), so everything it starts (a shell's children, a
  server's workers, a wrapper's grandchildren) shares its session id, and stopping a subject stops
  the whole session: SIGTERM to every member, SIGKILL to whatever is left after the grace period,
  then a check that none remains (members are found by session in /proc, so a grandchild that
  outlived its parent is found too). A program that starts a session of its own (a daemon that
  double-forks and calls setsid) leaves it, and is out of reach: the port check after the run
  then names it.
* Ready means, by default, that a socket of the subject's session is listening (TCP) or bound (UDP)
  on the port, as the kernel's socket table shows (harness.run.sockets): no readiness line needed.
  A readiness line can still be waited for (wait_for_line).
* If harness dies, however it dies, the kernel kills the subject it started (PR_SET_PDEATHSIG,
  SIGKILL: a subject that ignores SIGTERM would otherwise outlive it), and the session guard kills
  whatever else is left in the subject's session (what the subject forked, which the kernel's
  signal does not reach): see guard_session.
* A stop interrupted (Ctrl-C, SIGTERM) still kills what is left of the session, then raises.
* A Ctrl-C or SIGTERM never lands inside a fork's at-fork hooks, where Python would print it and
  drop it: it is held across every fork here and raised just after, in the parent (signals_held).
* harness's own lab programs (`python -u -m harness.lab.X`, as harness.lab.scenarios writes them)
  are forked from this process instead of started in a new interpreter (ForkedLabProgram,
  program_subject): the same code making the same system calls, 30-40 ms sooner. Any other command
  is executed as it is written.
* Every wait here is bounded and its timeout says what it waited for. Output is read by a thread
  per stream, so a chatty process can never block on a full pipe.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import inspect
import os
import importlib
import re
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence

from harness.errors import RunFailed
from harness.run import sockets, tools
from harness.run.netns import in_netns

STOP_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 5.0          # after SIGKILL, how long the members of a session may take to go
POLL_SECONDS = 0.002
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: Optional[int] = None) -> None:
    """In a child before exec: be killed if the process that started us dies, however it dies.

    Linux ties this to the thread that forked, so the thread that starts a subject or a capture
    must outlive it (the harness starts them from the thread that runs the scenario). With `parent`
    (the starting process's pid, read before the fork), a parent that died before the request was
    made is noticed too: the kernel would never send the signal for a death that came first.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return  # not Linux: cleanup then rests on the harness's own finally blocks
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held(hold_in_child: bool = False) -> Iterator[List[int]]:
    """Ctrl-C and SIGTERM held while the block runs, then delivered, in order, to their own handlers.

    A fork runs Python's at-fork hooks (logging's lock, for one), and an exception raised by a signal
    handler inside a hook is printed as 'Exception ignored' and dropped: a Ctrl-C there was lost and
    the child it interrupted left running behind the caller's back. Held, it is raised after the
    fork, in the parent, where the caller's cleanup sees it. The same holds a stop's last steps
    together (SIGKILL, reaping), so that a second Ctrl-C cannot leave a session half killed.

    A child forked in the block gets, by default, the handlers it would have had (a multiprocessing
    worker, say, must still end on SIGTERM before its initializer runs). With `hold_in_child`, the
    child holds them too, until it execs (which drops them) or, once in a session of its own, calls
    fresh_signals_in_child with the list this yields. Python runs handlers in the main thread only,
    so in any other thread nothing can raise inside a hook and nothing is changed.
    """
    held: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    parent = os.getpid()
    previous = {}

    def hold(signum, frame):
        if hold_in_child or os.getpid() == parent:
            held.append(signum)
        else:
            previous[signum](signum, frame)

    for signum in HELD_SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):   # SIG_DFL and SIG_IGN raise nothing in Python code
            previous[signum] = handler
            signal.signal(signum, hold)
    try:
        yield held
    finally:
        if os.getpid() == parent:
            _restore_handlers(previous)
            _deliver(list(dict.fromkeys(held)))


def _deliver(signums: List[int]) -> None:
    # Each handler runs here, as if its signal had just arrived; when one raises, the next still run
    # as the exception unwinds, as they would have for signals arriving together.
    if signums:
        try:
            signal.raise_signal(signums[0])
        finally:
            _deliver(signums[1:])


def _restore_handlers(previous: dict) -> None:
    # signal.signal() first runs the handlers of signals already pending, and one may raise: the
    # handler is put back all the same, and the first such exception raised once all are.
    raised: Optional[BaseException] = None
    for signum, handler in previous.items():
        while True:
            try:
                signal.signal(signum, handler)
                break
            except BaseException as error:   # a pending signal's own handler: it ran, and is done
                raised = raised or error
    if raised is not None:
        raise raised


def fresh_signals_in_child(held: Sequence[int]) -> None:
    """In a child forked inside signals_held, once in its own session: the handlers a new
    interpreter has (Ctrl-C raises KeyboardInterrupt, SIGTERM ends it), then any signal that came
    while held, so that a SIGTERM sent to the child as it started still ends it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _deliver(list(dict.fromkeys(held)))


# The session guard: the kernel's parent-death signal reaches a subject only, never what it forked
# (a shell's server, a wrapper's grandchild), and those that ignore SIGTERM would outlive a harness
# killed by SIGKILL. So the first subject started launches a small process, outside this one's
# session and not its child, that reads the subjects' session ids from a pipe; when the pipe ends
# (this process is gone, however it went) it kills every process still in a session it was told of.
# A session is forgotten once a stop has left nothing in it.
GUARD_MARKER = "harness-session-guard"
GUARD_PROGRAM = r"""
import os, signal, sys, time
fd, sessions, pending = int(sys.argv[1]), set(), b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        (sessions.add if line[:1] == b"+" else sessions.discard)(int(line[1:]))

def members():
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) in sessions:
                found.append(int(name))
    return found

deadline = time.monotonic() + 10
while sessions and time.monotonic() < deadline:
    found = members()
    if not found:
        break
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.01)  # ok: exits of processes not ours to wait() for offer no notification
"""


class _Guard:
    lock = threading.Lock()
    owner: Optional[int] = None           # the process whose guard this is (a fork has its own)
    write_end: Optional[int] = None


def _forget_guard_in_child() -> None:
    # A forked child holding the write end would keep the pipe from ending when the harness dies.
    if _Guard.write_end is not None and _Guard.owner != os.getpid():
        try:
            os.close(_Guard.write_end)
        except OSError:
            pass
        _Guard.write_end = _Guard.owner = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_guard_in_child)


def _tell_guard(line: str) -> None:
    with _Guard.lock:
        if _Guard.owner != os.getpid():
            if not os.path.isdir("/proc"):
                return                    # not Linux: cleanup rests on the harness's own finally blocks
            read_end, write_end = os.pipe()
            try:
                _launch_guard(read_end)
            except BaseException as error:
                os.close(write_end)
                if not isinstance(error, OSError):
                    raise
                return                    # no guard: best effort, as the parent-death signal is
            finally:
                os.close(read_end)
            _Guard.owner, _Guard.write_end = os.getpid(), write_end
        try:
            os.write(_Guard.write_end, line.encode())   # shorter than PIPE_BUF: written whole
        except OSError:
            pass                          # the guard was killed: best effort, as without one


def _launch_guard(read_end: int) -> None:
    # Forked twice, the guard is no child of this process (its exit is no business of the harness's
    # and no test counts it as left behind); the first child exits at once and is reaped here.
    argv = [sys.executable, "-I", "-S", "-c", GUARD_PROGRAM, str(read_end), GUARD_MARKER, str(os.getpid())]
    with signals_held(hold_in_child=True):
        child = os.fork()
        if child == 0:
            try:
                if os.fork() == 0:
                    # Its own session, out of reach of a Ctrl-C to the terminal, and on no stream
                    # of the harness's, which a reader would otherwise wait on to end.
                    os.setsid()
                    devnull = os.open(os.devnull, os.O_RDWR)
                    for stream in (0, 1, 2):
                        os.dup2(devnull, stream)
                    os.set_inheritable(read_end, True)
                    os.execv(sys.executable, argv)
            finally:
                os._exit(0)
        os.waitpid(child, 0)   # within a millisecond; held, a Ctrl-C cannot leave it unreaped


def guard_session(session: int) -> None:
    """Have the session guard kill what is left of `session` should this process die."""
    _tell_guard(f"+{session}\n")


def release_session(session: int) -> None:
    """The session is empty: the guard need not (and, its id reusable, must not) act on it."""
    _tell_guard(f"-{session}\n")


def netns_exec_argv(netns: str, argv: Sequence[str]) -> List[str]:
    """`argv` run inside network namespace NETNS by `ip netns exec` (iproute2)."""
    return [tools.require("ip"), "netns", "exec", netns, *argv]


@contextmanager
def _here() -> Iterator[None]:
    yield


class SubjectError(RunFailed):
    """A subject process did not behave as the scenario needed; str() is one line."""


class Subject:
    """A program under test, started by harness and never left behind: output read line by line as
    it comes (`stdout_lines`, `stderr_lines`), readiness awaited with a timeout that names it,
    stopped with SIGTERM then SIGKILL. Use as a context manager, or start() then stop()."""

    def __init__(self, name: str, argv: Sequence[str], stdin_text: Optional[str] = None,
                 env: Optional[dict] = None, netns: Optional[str] = None, cwd: Optional[str] = None) -> None:
        """With `netns`, the command runs inside that network namespace (`ip netns exec NETNS ...`,
        which execs it in place: the subject's pid is the command's own)."""
        self.name = name
        self.netns = netns
        self.argv = netns_exec_argv(netns, argv) if netns else list(argv)
        self._stdin_text = stdin_text
        self._env = env
        self._cwd = cwd
        self.stopped_by_harness = False     # whether stop() had to end it (it had not exited by itself)
        self.survivors: List[str] = []      # members of its session still there after stop(), described
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
        try:
            # preexec_fn makes subprocess run the at-fork hooks; signals_held keeps a Ctrl-C out of them.
            with signals_held(hold_in_child=True):
                self._process = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE if self._stdin_text is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1,
                    cwd=self._cwd, errors="replace", start_new_session=True,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()))
            guard_session(self._process.pid)
            self._read_output()
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

    def _read_output(self) -> None:
        """A thread each for the started process's stdout and stderr, into stdout_lines and stderr_lines."""
        for stream, sink in ((self._process.stdout, self.stdout_lines), (self._process.stderr, self.stderr_lines)):
            reader = threading.Thread(target=self._pump, args=(stream, sink), daemon=True, name=f"{self.name}-output")
            reader.start()
            self._readers.append(reader)

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

    def wait_bound(self, proto: str, port: int, timeout: float) -> sockets.Socket:
        """The socket of this subject's session that listens (TCP) or is bound (UDP) on `port`, once
        the kernel's table shows one; fails if the subject exits first, if another process holds the
        port, or when time runs out."""
        deadline = time.monotonic() + timeout
        what = "listen" if proto == "tcp" else "bind a UDP socket"
        while True:
            with in_netns(self.netns) if self.netns else _here():
                found = sockets.bound(proto, port)
                if found:
                    members = sockets.session_members(self.pid) if self.pid else []
                    owners = sockets.holders([s.inode for s in found], members)
                    mine = [s for s in found if owners.get(s.inode)]
                    if mine:
                        return mine[0]
                    holders = sockets.holders([s.inode for s in found])
                    if any(holders.values()):
                        raise SubjectError(f"port {port} is held by {sockets.describe_holders(found)}, "
                                           f"not by {self.name}")
            if self._process.poll() is not None:
                raise SubjectError(f"{self.name} exited ({self.exit_description()}) before it would {what} "
                                   f"on port {port}{self._stderr_tail()}")
            if time.monotonic() > deadline:
                raise SubjectError(f"{self.name} did not {what} on port {port} within {timeout:g} s"
                                   f"{self._stderr_tail()}")
            time.sleep(POLL_SECONDS)  # ok: polling a kernel table that offers no notification

    def session_members(self) -> List[int]:
        """The processes of this subject's session that still run (itself included while it does)."""
        return sockets.session_members(self.pid) if self.pid else []

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> Optional[int]:
        """End the subject's whole session: SIGTERM to every member, SIGKILL to what is left after
        `grace`; `survivors` then names any member that could not be ended. Safe to call again.
        Interrupted (Ctrl-C, SIGTERM), it still kills what is left at once, then raises."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self.stopped_by_harness = True
        # Each look at the session scans /proc (some 1.5 ms), so the last one is reused: a session
        # whose leader is reaped and that has no member left can gain none (only members fork).
        members: List[int] = []
        interrupted: Optional[BaseException] = None
        try:
            members = self._signal_session(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while (self._process.poll() is None or members) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)  # ok: exits of processes not ours to wait() for offer no notification
                members = self.session_members()
        except BaseException as error:
            # A Ctrl-C (or SIGTERM) in the grace period cuts it short, never the stop: what is left
            # is killed below, and the interruption raised once it is.
            interrupted = error
        with signals_held():
            if interrupted is not None or self._process.poll() is None or members:
                deadline = time.monotonic() + KILL_WAIT_SECONDS
                members = self._signal_session(signal.SIGKILL)
                while (self._process.poll() is None or members) and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)  # ok: as above
                    # Killed again at each look: a member that forked after the last look had left
                    # its child unkilled.
                    members = self._signal_session(signal.SIGKILL)
            self.survivors = [sockets.describe_process(pid) for pid in members]
            if not members:
                release_session(self._process.pid)
            if self._process.poll() is None:
                self._process.wait(timeout=KILL_WAIT_SECONDS)
            for reader in self._readers:
                reader.join(timeout=STOP_GRACE_SECONDS)
        if interrupted is not None:
            raise interrupted
        return self._process.returncode

    def _signal_session(self, signum: int) -> List[int]:
        """Signal every member; returns the members found (the leader among them while it runs)."""
        members = self.session_members()
        targets = set(members)
        if self._process.poll() is None:
            targets.add(self._process.pid)
        for pid in targets:
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        return members

    def exit_description(self) -> str:
        """'exit 1', 'killed by SIGKILL', or 'still running'."""
        code = self.returncode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit {code}"

    def last_error_line(self) -> Optional[str]:
        """The last non-blank line the subject wrote to stderr, or None."""
        tail = [line for line in self.stderr_lines if line.strip()][-1:]
        return tail[0].strip() if tail else None

    def crashed(self) -> bool:
        """It exited by itself with a failure status (not stopped by harness)."""
        code = self.returncode
        return code is not None and code != 0 and not self.stopped_by_harness

    def _stderr_tail(self) -> str:
        line = self.last_error_line()
        return f"; its last error line: {line}" if line else ""

    def __enter__(self) -> "Subject":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Forked:
    """A forked child as Subject drives a subprocess.Popen: pid, poll, wait, returncode, streams."""

    def __init__(self, pid: int, stdout, stderr) -> None:
        self.pid, self.stdout, self.stderr, self.stdin = pid, stdout, stderr, None
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = _pidfd(self.pid)
        try:
            while self.poll() is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
                if pidfd is not None:
                    # Readable once the child has exited: a wait with a timeout, no polling interval.
                    select.select([pidfd], [], [], remaining)
                else:
                    time.sleep(POLL_SECONDS)  # ok: without pidfds waitpid offers no timeout
        finally:
            if pidfd is not None:
                os.close(pidfd)
        return self.returncode


def _pidfd(pid: int) -> Optional[int]:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):   # before Python 3.9 or Linux 5.3, or the child is already reaped
        return None


class CallableSubject(Subject):
    """A Python callable as a subject: `target()` runs in a child forked from this process, in a
    session of its own, its output read as a program's is; it ends when the callable returns (exit
    0) or raises (exit 1, the traceback on its stderr). A coroutine function is run with asyncio.run.
    Everything else is Subject's: readiness by the socket table, the whole session stopped."""

    def __init__(self, name: str, target, netns: Optional[str] = None) -> None:
        super().__init__(name, [f"<{getattr(target, '__qualname__', 'callable')}>"])
        self._target = target
        self.netns = netns

    def start(self) -> "Subject":
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        parent = os.getpid()
        try:
            with signals_held(hold_in_child=True) as held:
                pid = os.fork()
                if pid == 0:
                    self._run_in_child(parent, held, out_write, err_write)   # never returns
                os.close(out_write)
                os.close(err_write)
                self._process = _Forked(pid, os.fdopen(out_read, "r", errors="replace"),
                                        os.fdopen(err_read, "r", errors="replace"))
            guard_session(pid)
            self._read_output()
        except BaseException:
            self.stop()
            raise
        return self

    def _run_in_child(self, parent: int, held: List[int], out_write: int, err_write: int) -> None:
        code = 1
        try:
            os.setsid()
            die_with_parent(parent)
            fresh_signals_in_child(held)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            with in_netns(self.netns) if self.netns else _here():
                result = self._target()
                if inspect.iscoroutine(result):
                    import asyncio
                    asyncio.run(result)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


LAB_PACKAGE = "harness.lab."


def lab_module_of(argv: Sequence[str]) -> Optional[str]:
    """The module of a lab program's command line as harness.lab.scenarios.lab_program writes it
    (`<this interpreter> -u -m harness.lab.MODULE ...`), or None for any other command."""
    if len(argv) >= 4 and argv[0] == sys.executable and argv[1:3] == ["-u", "-m"] \
            and argv[3].startswith(LAB_PACKAGE) and "." not in argv[3][len(LAB_PACKAGE):]:
        return argv[3]
    return None


class ForkedLabProgram(Subject):
    """A lab program (harness.lab.*) run in a child forked from this process instead of a new
    interpreter: the same code making the same system calls, so the same wire, without the 30-40 ms
    an interpreter takes to start and import it (measured in bench/README.md). The child is what
    `python -u -m MODULE ARGS` would be: its own session, stdin/stdout/stderr on pipes, `main(ARGS)`'s
    return (or SystemExit's code) as its exit status, a traceback and status 1 for anything else.
    Everything else is Subject's: readiness by the socket table, the whole session stopped."""

    def __init__(self, name: str, argv: Sequence[str], stdin_text: Optional[str] = None,
                 cwd: Optional[str] = None) -> None:
        module = lab_module_of(argv)
        if module is None:
            raise ValueError(f"not a lab program's command line: {' '.join(argv)}")
        super().__init__(name, argv, stdin_text=stdin_text, cwd=cwd)
        # Imported here, in the parent, once: the child then only forks, never imports.
        self._main = importlib.import_module(module).main
        self._arguments = list(argv[4:])

    def start(self) -> "Subject":
        in_read, in_write = os.pipe() if self._stdin_text is not None else (None, None)
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        parent = os.getpid()
        try:
            with signals_held(hold_in_child=True) as held:
                pid = os.fork()
                if pid == 0:
                    self._run_in_child((in_read, out_write, err_write), (in_write, out_read, err_read),
                                       parent, held)   # never returns
                for end in (in_read, out_write, err_write):
                    if end is not None:
                        os.close(end)
                self._process = _Forked(pid, os.fdopen(out_read, "r", errors="replace"),
                                        os.fdopen(err_read, "r", errors="replace"))
            guard_session(pid)
            self._read_output()
            if in_write is not None:
                with os.fdopen(in_write, "w") as stdin:
                    try:
                        stdin.write(self._stdin_text)
                    except BrokenPipeError:
                        pass  # it exited before reading; its exit status will tell
        except BaseException:
            self.stop()
            raise
        return self

    def _run_in_child(self, own_ends: Sequence[Optional[int]], parents_ends: Sequence[Optional[int]],
                      parent: int, held: List[int]) -> None:
        in_read, out_write, err_write = own_ends
        code = 1
        try:
            # The parent's objects are never finalized here (a garbage file object flushing its
            # buffer into a shared descriptor, say): only what the program itself makes is collected.
            gc.freeze()
            # Closed, or the child would hold its own stdin's write end open and never see its end.
            for end in parents_ends:
                if end is not None:
                    os.close(end)
            os.setsid()
            die_with_parent(parent)
            fresh_signals_in_child(held)
            if self._cwd:
                os.chdir(self._cwd)
            os.dup2(in_read if in_read is not None else os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out_write, 1)
            os.dup2(err_write, 2)
            sys.stdin = os.fdopen(0, "r")
            # Line-buffered and flushed at exit: what -u gives a program that writes lines.
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            try:
                code = self._main(self._arguments)
            except SystemExit as exiting:
                code = exiting.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code & 0xFF)


def program_subject(name: str, argv: Sequence[str], stdin_text: Optional[str] = None,
                    netns: Optional[str] = None, cwd: Optional[str] = None) -> Subject:
    """The subject for a command: a lab program run by this interpreter in this namespace is forked
    (ForkedLabProgram), anything else is executed as it is written."""
    if netns is None and lab_module_of(argv) is not None:
        return ForkedLabProgram(name, argv, stdin_text=stdin_text, cwd=cwd)
    return Subject(name, argv, stdin_text=stdin_text, netns=netns, cwd=cwd)
