"""Signals never lost and never leaving a process behind (issue 15, items 5 and 6): a Ctrl-C landing
inside a fork's at-fork hooks reaches the caller, a stop interrupted in its grace period still kills
what is left, a subject that ignores SIGTERM dies with the harness, and soak's busy-core spinner
dies with soak."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.procfs import alive, running_with, wait_until

from harness.run import process

TIMEOUT = 10.0
STUBBORN = [sys.executable, "-u", "-c",
            "import os, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.fork() or signal.pause(); print('ready', flush=True); signal.pause()"]

# Run in a fresh interpreter: a hook registered with os.register_at_fork cannot be removed again.
# The hook raises a real SIGINT at the named stage of the first fork after it is armed: Python runs
# the handler at once, inside the hook, which is where a Ctrl-C used to be printed and dropped.
FORK_HOOK_PROGRAM = r"""
import json, os, signal, sys
from pathlib import Path

armed = []

def interrupt():
    if armed:
        armed.clear()
        signal.raise_signal(signal.SIGINT)

os.register_at_fork(**{sys.argv[2]: interrupt})

def live_children():
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found

kind = sys.argv[1]
from harness.run import process
from harness.lab.scenarios import lab_program
from harness.run.scenario import fill
if kind == "subject":
    started = process.Subject("hanging", [sys.executable, "-c", "import signal; signal.pause()"])
elif kind == "forked-lab-program":
    started = process.ForkedLabProgram("server", fill(lab_program("harness.lab.tcp_server"),
                                                      host="127.0.0.1", port=0))
elif kind == "callable":
    started = process.CallableSubject("pause", signal.pause)
elif kind == "many":
    # summary -j 2 forks its workers: the Ctrl-C is one to the command, which says so with 130.
    from harness.cli import main
    corpus = sorted(str(path) for path in Path("captures/corpus").glob("*.pcapng"))[:2]
    armed.append(True)
    code = main(["summary", "-j", "2", *corpus])
    print(json.dumps({"interrupted": code == 130, "children": live_children()}))
    sys.exit(0)
else:
    from harness.run.capture import make_capture
    started = make_capture("dumpcap", Path(sys.argv[3]) / "hook.pcapng", bpf="udp port 9")
armed.append(True)
try:
    (started.begin if kind == "dumpcap" else started.start)()
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True, "children": live_children()}))
else:
    print(json.dumps({"interrupted": False, "children": live_children()}))
    (started.abort if kind == "dumpcap" else started.stop)()
"""


@pytest.mark.parametrize("stage", ["before", "after_in_parent"])
@pytest.mark.parametrize("kind", ["subject", "forked-lab-program", "callable", "dumpcap", "many"])
def test_ctrl_c_inside_a_fork_hook_reaches_the_caller_and_leaves_nothing_running(kind, stage, tmp_path):
    if kind == "dumpcap":
        from harness.run.capture import capture_unavailable_reason
        reason = capture_unavailable_reason("dumpcap")
        if reason and not os.environ.get("HARNESS_REQUIRE_CAPTURE"):
            pytest.skip(reason)
    done = subprocess.run([sys.executable, "-c", FORK_HOOK_PROGRAM, kind, stage, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome == {"interrupted": True, "children": []}, done.stderr


def test_signals_held_delivers_them_in_order_at_its_end_and_puts_the_handlers_back():
    class Terminated(BaseException):
        pass

    def terminated(signum, frame):
        raise Terminated()

    on_sigterm = signal.signal(signal.SIGTERM, terminated)
    try:
        with pytest.raises(Terminated) as raised:
            with process.signals_held() as held:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)
                assert held == [signal.SIGINT, signal.SIGTERM]    # nothing raised inside the block
        # Both delivered, in order, as two signals arriving together are: the second's exception
        # raised while the first's unwound.
        assert isinstance(raised.value.__context__, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is terminated
    finally:
        signal.signal(signal.SIGTERM, on_sigterm)


def _kill_session_of(pid):
    try:
        os.killpg(pid, signal.SIGKILL)   # the subject leads its own session and process group
    except ProcessLookupError:
        pass


def test_a_stop_interrupted_in_its_grace_period_still_kills_the_whole_session(monkeypatch):
    subject = process.Subject("stubborn", STUBBORN).start()
    try:
        subject.wait_for_line("ready", TIMEOUT)
        members = subject.session_members()
        assert len(members) == 2, members
        real_sleep = process.time.sleep
        interrupted = []

        def sleep_after_a_ctrl_c(seconds):
            # The first wait of the grace period is where the Ctrl-C lands: a real SIGINT, at once.
            if not interrupted:
                interrupted.append(True)
                signal.raise_signal(signal.SIGINT)
            real_sleep(seconds)

        monkeypatch.setattr(process.time, "sleep", sleep_after_a_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            subject.stop(grace=30)
        monkeypatch.undo()
        assert interrupted
        # stop() has returned: everything is already gone, nothing left to wait for.
        assert [pid for pid in members if alive(pid)] == []
        assert subject.returncode == -signal.SIGKILL and subject.survivors == []
    finally:
        monkeypatch.undo()
        _kill_session_of(subject.pid)
        subject.stop(grace=0)


DYING_PARENT_PROGRAM = r"""
import signal, sys
from harness.run import process
from harness.lab.scenarios import lab_program
from harness.run.scenario import fill
stubborn = process.Subject("stubborn", sys.argv[1:]).start()
stubborn.wait_for_line("ready", 10)
lab = process.ForkedLabProgram("server", fill(lab_program("harness.lab.tcp_server"), host="127.0.0.1", port=0)).start()
lab.wait_for_line("listening", 10)
print(" ".join(str(pid) for pid in stubborn.session_members() + lab.session_members()), flush=True)
signal.pause()
"""


def test_subjects_that_ignore_sigterm_die_with_a_harness_killed_by_sigkill():
    parent = subprocess.Popen([sys.executable, "-c", DYING_PARENT_PROGRAM, *STUBBORN], cwd=REPO,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    members = []
    try:
        members = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(members) == 3, members    # the stubborn subject, its child, the forked lab server
        parent.kill()
        parent.wait(timeout=TIMEOUT)
        wait_until(lambda: not any(alive(pid) for pid in members), TIMEOUT,
                   "the subjects of a harness killed by SIGKILL, and what they forked, to die with it")
        wait_until(lambda: not running_with(f"{process.GUARD_MARKER}\0{parent.pid}"), TIMEOUT,
                   "the session guard of the killed harness to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in members:
            _kill_session_of(pid)


def _cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid):
    """Every live process under `pid`, from /proc (a spinner may sit under a helper process)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@pytest.mark.capture
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_soaks_busy_core_spinner_dies_with_soak(capture_backend, signum):
    soak = subprocess.Popen([sys.executable, str(REPO / "bench" / "soak.py"), "--runs", "1000", "--scenario",
                             "tcp-lab", "--backend", capture_backend, "--busy-core", "--max-seconds", "120"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    spinners = []
    try:
        # The spinner is the one process under soak that burns CPU time by the second.
        def spinning():
            spinners[:] = [pid for pid in _descendants(soak.pid) if _cpu_seconds(pid) > 0.3]
            return spinners
        wait_until(spinning, 30, "soak's busy-core spinner to spin")
        started = _descendants(soak.pid)
        soak.send_signal(signum)
        _, err = soak.communicate(timeout=30)
        said = {signal.SIGTERM: (143, "soak: terminated (SIGTERM)"), signal.SIGINT: (130, "soak: interrupted"),
                signal.SIGKILL: (-signal.SIGKILL, "")}[signum]
        assert (soak.returncode, err.strip()) == said
        wait_until(lambda: not any(alive(pid) for pid in spinners), TIMEOUT,
                   f"soak's spinner to die with soak ({signum.name})")
        wait_until(lambda: not any(alive(pid) for pid in started), TIMEOUT,
                   f"everything soak started to go ({signum.name})")
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait()
        for pid in spinners:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
