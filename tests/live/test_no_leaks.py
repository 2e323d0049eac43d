"""Whatever goes wrong, no capture or subject process is left behind, and no half-written pcap is
left under its final name."""
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.run.process import SubjectError
from harness.lab.scenarios import LAB_SCENARIOS
from harness.run.scenario import Timeouts
from harness.run.runner import run_scenario
from support.procfs import alive, wait_until

pytestmark = pytest.mark.capture
HANG = [sys.executable, "-c", "import signal; signal.pause()"]


def children_of(pid):
    """Pids whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found






def test_a_failing_assertion_leaves_a_complete_pcap_and_no_process(capture_backend, tmp_path):
    wrong = replace(LAB_SCENARIOS["tcp-lab"], expectation="udp_lab")
    result = run_scenario(wrong, tmp_path / "wrong.pcapng", backend=capture_backend)
    assert not result.ok
    assert result.capture.complete and (tmp_path / "wrong.pcapng").exists()
    assert children_of(os.getpid()) == []


def test_a_client_that_times_out_is_stopped_and_judged_and_nothing_is_left(capture_backend, tmp_path):
    # A client still waiting when its time is up is stopped, and the run judged on what the wire shows.
    hanging = replace(LAB_SCENARIOS["tcp-lab"], client=HANG)
    path = tmp_path / "hang.pcapng"
    result = run_scenario(hanging, path, backend=capture_backend, timeouts=Timeouts(client_done=0.5))
    assert not result.ok and result.capture.complete and path.exists()
    assert any(re.fullmatch(r"the client \(python.* -c .*\) did not finish its exchange within 0.5 s", str(p))
               for p in result.problems), result.problems
    assert result.diagnosis == f"nothing reached port {result.port}: the client never connected"
    assert children_of(os.getpid()) == []


def test_a_subject_that_crashes_before_it_is_ready_is_reported_and_cleaned_up(capture_backend, tmp_path):
    crashing = replace(LAB_SCENARIOS["tcp-lab"],
                       server=[sys.executable, "-c", "raise SystemExit('no config file')"])
    with pytest.raises(SubjectError, match=r"the server \(.*\) exited \(exit 1\) before it would listen on port "
                                           r"\d+; its last error line: no config file"):
        run_scenario(crashing, tmp_path / "crash.pcapng", backend=capture_backend)
    assert children_of(os.getpid()) == []
    assert not list(tmp_path.iterdir())


def test_a_subject_that_hangs_at_stop_is_killed(capture_backend, tmp_path):
    # A server that ignores SIGTERM and never serves: the client's exchange times out, and the
    # server must still be gone afterwards.
    stubborn = [sys.executable, "-u", "-c",
                "import signal, socket; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "s = socket.create_server(('{host}', {port}), backlog=0); signal.pause()"]
    scenario = replace(LAB_SCENARIOS["tcp-lab"], server=stubborn, client=HANG)
    result = run_scenario(scenario, tmp_path / "stubborn.pcapng", backend=capture_backend,
                          timeouts=Timeouts(client_done=1))
    assert not result.ok and result.server.stopped_by_harness and result.server.survivors == []
    assert children_of(os.getpid()) == []


def test_a_subject_interrupted_while_it_starts_is_not_left_running(monkeypatch):
    # Ctrl-C can land after the process exists but before start() returns, while its output
    # readers start: the caller never got the Subject to stop, so start() must stop it itself.
    from harness.run import process
    started = []
    real_start = process.threading.Thread.start

    def interrupted_start(thread):
        real_start(thread)
        started.append(thread)
        if len(started) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(process.threading.Thread, "start", interrupted_start)
    subject = process.Subject("hanging", HANG)
    with pytest.raises(KeyboardInterrupt):
        subject.start()
    monkeypatch.undo()
    assert subject.pid is not None
    wait_until(lambda: not alive(subject.pid), 5, "the half-started subject to be gone")
    assert subject.returncode is not None


CTRL_C_TEST = """
import sys
from dataclasses import replace
import pytest
from harness.lab.scenarios import LAB_SCENARIOS

@pytest.mark.capture
def test_interrupted(lab):
    hanging = replace(LAB_SCENARIOS["tcp-lab"], client=[sys.executable, "-c",
                      "import signal; signal.pause()", "ctrl-c-marker"])
    lab.run(hanging)
"""


def _cmdline(pid: int) -> str:
    """A process's command line, or '' once it is gone (short-lived probes come and go meanwhile)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:
        return ""


def test_ctrl_c_in_the_middle_of_a_capture_leaves_nothing_behind(capture_backend, tmp_path):
    (tmp_path / "test_interrupted.py").write_text(CTRL_C_TEST)
    pcaps = tmp_path / "pcaps"
    # -X faulthandler: should the interrupted run hang, SIGABRT makes it print every thread's stack.
    inner = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "--pcap-dir", str(pcaps), "--capture-backend", capture_backend, "test_interrupted.py"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The client is the last thing started: once it runs, the capture is live and the server up.
        wait_until(lambda: any("ctrl-c-marker" in _cmdline(pid) for pid in children_of(inner.pid)),
                   30, "the inner test's client to start")
        started = children_of(inner.pid)
        assert len(started) == 3, f"expected dumpcap, server and client under pytest, found {started}"
        inner.send_signal(signal.SIGINT)
        try:
            output, _ = inner.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            inner.send_signal(signal.SIGABRT)
            stacks, _ = inner.communicate(timeout=10)
            pytest.fail(f"the interrupted run did not exit within 30 s of SIGINT; its output and stacks:\n{stacks}")
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    assert "KeyboardInterrupt" in output
    wait_until(lambda: not any(alive(pid) for pid in started), 10, "the interrupted run's processes to go")
    finals = [p.name for p in pcaps.iterdir() if not p.name.endswith(".partial")]
    left = [p.name for p in pcaps.iterdir()]
    assert finals == [] and len(left) == 1 and re.fullmatch(r"test_interrupted__test_interrupted\.pcapng\.\d+-[0-9a-f]{8}"
                                                            r"\.partial", left[0]), left


def test_sigterm_mid_capture_stops_everything_and_says_so(capture_backend, tmp_path):
    """Issue 15 item 4: SIGTERM (timeout, a CI runner, a container) exited -15 without a word and could
    leave a 0-byte .partial. Now: exit 143, one line, every process gone, no final pcap."""
    pcap = tmp_path / "run.pcapng"
    client = (f"{sys.executable} -c \"import socket, time, sys; sys.argv.append('sigterm-marker'); "
              f"s = socket.create_connection(('{{host}}', {{port}})); time.sleep(120)\"")
    harness = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backend", capture_backend,
                                "--server", f"{sys.executable} -m harness.lab.tcp_server --host {{host}} --port {{port}}",
                                "--client", client, "--expect", "tcp_lab", "--pcap", str(pcap), "--timeout", "100"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: any("sigterm-marker" in _cmdline(pid) or "create_connection" in _cmdline(pid)
                               for pid in children_of(harness.pid)), 30, "the client to start under capture")
        started = children_of(harness.pid)
        harness.send_signal(signal.SIGTERM)
        out, err = harness.communicate(timeout=30)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
    assert harness.returncode == 143, (out, err)
    assert err.strip().splitlines() == ["harness run: terminated (SIGTERM); what it had started is stopped"]
    wait_until(lambda: not any(alive(pid) for pid in started), 10, "the terminated run's processes to go")
    assert not pcap.exists(), "a capture cut short is never given the final name"
    assert all(p.stat().st_size > 0 for p in tmp_path.glob("*.partial")), "an empty .partial was left behind"


def test_a_stop_interrupted_in_the_runner_still_stops_the_other_subjects(capture_backend, tmp_path, monkeypatch):
    """Issue 15 item 6: a Ctrl-C landing in the client's stop() (which finishes that stop, then raises)
    skipped the server's stop, so a server that serves forever was left running in a long-lived
    process (the pytest plugin's)."""
    from harness.run import process
    forever = [sys.executable, "-u", "-c",
               "import signal, socket; s = socket.create_server(('{host}', {port})); signal.pause()"]
    scenario = replace(LAB_SCENARIOS["tcp-lab"], server=forever, client=[sys.executable, "-c", "pass"])
    real_stop = process.Subject.stop
    interrupted = []

    def stop_then_ctrl_c(subject, *args, **kwargs):
        code = real_stop(subject, *args, **kwargs)
        if subject.name.startswith("the client") and not interrupted:
            interrupted.append(subject.name)
            raise KeyboardInterrupt     # as stop() raises a Ctrl-C that landed in it, once it is done
        return code

    monkeypatch.setattr(process.Subject, "stop", stop_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, tmp_path / "interrupted.pcapng", backend=capture_backend)
    monkeypatch.undo()
    assert interrupted
    assert children_of(os.getpid()) == []
