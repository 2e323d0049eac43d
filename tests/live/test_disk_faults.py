"""Issue 15 item 3: a disk that will not take what a command writes (full, nearly full, read-only, a
file where its directory should be) is an environment error, never a verdict: exit 2, one line on
stderr naming the path and what to do, no traceback, nothing the user had replaced by something
broken, no .partial left behind, nothing left running.

The disks are real: tiny tmpfs mounts, filled or remounted read-only, so this needs root and mount;
it skips without them, and fails instead under HARNESS_REQUIRE_CAPTURE=1."""
from __future__ import annotations

import errno
import os
import re
import shlex
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.procfs import wait_until

from harness.lab.scenarios import LAB_SCENARIOS
from harness.pytest_plugin import REQUIRE_ENV, capture_required
from support import REPO

pytestmark = pytest.mark.capture

LAB = REPO / "captures" / "lab"
PAGE = 4096
DISKS = ("full", "nearly-full", "read-only", "a-file")
# A command that writes one small file has no "nearly full" case: what fits in the page left is written.
WRITES_ONE = ("full", "read-only", "a-file")
OLD = b"the user's own file, which no failed command may replace\n"
REASONS = {"full": "No space left on device", "nearly-full": "No space left on device",
           "read-only": "Read-only file system", "a-file": "(Not a directory|File exists)"}


def _mount_unavailable_reason(scratch: Path) -> str:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    scratch.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(scratch)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}"
    subprocess.run(["umount", str(scratch)], check=True)
    return ""


@pytest.fixture(scope="module")
def mounts(tmp_path_factory):
    reason = _mount_unavailable_reason(tmp_path_factory.mktemp("probe") / "mnt")
    if reason:
        if capture_required():
            pytest.fail(f"{REQUIRE_ENV} is set but disks cannot be staged: {reason}", pytrace=False)
        pytest.skip(f"cannot stage full or read-only disks: {reason}")


def _fill(directory: Path, leave: int) -> None:
    """Fill the file system until it refuses, then give back `leave` bytes."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * PAGE)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)


@contextmanager
def disk(tmp_path: Path, kind: str, keep=()):
    """A directory of the kind, holding the user's files `keep` (names, each with OLD in it)."""
    where = tmp_path / "disk"
    if kind == "a-file":
        where.write_bytes(OLD)
        yield where
        assert where.read_bytes() == OLD
        return
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True)
    try:
        for name in keep:
            (where / name).write_bytes(OLD)
        if kind == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        else:
            # nearly full: room for a small capture (one page), not for its annotated copy as well
            _fill(where, PAGE if kind == "nearly-full" else 0)
        yield where
        for name in keep:
            assert (where / name).read_bytes() == OLD, f"{name} was replaced"
        left = sorted(p.name for p in where.iterdir() if p.name not in (*keep, "filler"))
        assert left == [], f"left behind: {left}"
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def harness(*arguments, cwd=None) -> subprocess.CompletedProcess:
    """The command in a process of its own, tagged so that anything it leaves running can be found."""
    tag = f"harness-disk-fault-{os.getpid()}-{os.urandom(4).hex()}"
    env = {**os.environ, "HARNESS_DISK_FAULT_TAG": tag}
    done = subprocess.run([sys.executable, "-m", *arguments], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)
    # The session guard (harness.run.process) outlives the command by a few milliseconds, by design.
    try:
        wait_until(lambda: not _tagged(tag), 5, "the command's processes to be gone")
    except AssertionError:
        assert _tagged(tag) == [], "processes left running"
    return done


def _tagged(tag: str) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and tag.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def assert_one_line(done: subprocess.CompletedProcess, command: str, kind: str, path: Path) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"harness {command}: "), done.stderr
    line = done.stderr.strip()
    assert str(path) in line, line
    assert re.search(REASONS[kind], line), line
    assert re.search(r"; .*(choose another|elsewhere)", line), f"no advice in: {line}"


SERVER = shlex.join(LAB_SCENARIOS["tcp-lab"].server)
CLIENT = shlex.join(LAB_SCENARIOS["tcp-lab"].client)


@pytest.mark.parametrize("kind", DISKS)
def test_lab(mounts, capture_backend, tmp_path, kind):
    with disk(tmp_path, kind, keep=["tcp-lab.pcapng"] if kind != "a-file" else ()) as where:
        done = harness("harness", "lab", "--backend", capture_backend, "--pcap-dir", str(where), "tcp-lab")
        assert_one_line(done, "lab", kind, where)


@pytest.mark.parametrize("kind", DISKS)
def test_run(mounts, capture_backend, tmp_path, kind):
    with disk(tmp_path, kind, keep=["mine.pcapng"] if kind != "a-file" else ()) as where:
        done = harness("harness", "run", "--backend", capture_backend, "--server", SERVER, "--client", CLIENT,
                       "--expect", "tcp_lab", "--pcap", str(where / "mine.pcapng"))
        assert_one_line(done, "run", kind, where)


@pytest.mark.parametrize("kind", WRITES_ONE)
def test_check_annotate(mounts, tmp_path, kind):
    with disk(tmp_path, kind, keep=["out.pcapng"] if kind != "a-file" else ()) as where:
        done = harness("harness", "check", str(LAB / "tcp-lab.pcapng"), "--expect", "tcp_lab",
                       "--annotate", str(where / "out.pcapng"))
        assert_one_line(done, "check", kind, where)


@pytest.mark.parametrize("kind", WRITES_ONE)
def test_show_svg(mounts, tmp_path, kind):
    with disk(tmp_path, kind, keep=["out.svg"] if kind != "a-file" else ()) as where:
        done = harness("harness", "show", str(LAB / "tcp-lab.pcapng"), "--svg", str(where / "out.svg"))
        assert_one_line(done, "show", kind, where)


@pytest.fixture
def submissions(tmp_path):
    folder = tmp_path / "class"
    (folder / "alice").mkdir(parents=True)
    (folder / "alice" / "TCPServer.py").write_text(
        "import runpy\nrunpy.run_module('harness.lab.tcp_server', "
        "run_name='__main__')\n")
    return folder


def _grade(folder: Path, backend: str, *options) -> subprocess.CompletedProcess:
    server = f"{sys.executable} -u {{file}} --host {{host}} --port {{port}} --count 1"
    return harness("harness", "grade", str(folder), "--backend", backend, "--server", server, "--client", CLIENT,
                   "--expect", "tcp_lab", "-j", "1", *options, cwd=folder.parent)


@pytest.mark.parametrize("kind", DISKS)
def test_grade_pcap_dir(mounts, capture_backend, submissions, tmp_path, kind):
    with disk(tmp_path, kind, keep=["alice.pcapng"] if kind != "a-file" else ()) as where:
        done = _grade(submissions, capture_backend, "--pcap-dir", str(where))
        assert_one_line(done, "grade", kind, where)


@pytest.mark.parametrize("option", ["--junit", "--html"])
@pytest.mark.parametrize("kind", WRITES_ONE)
def test_grade_reports(mounts, capture_backend, submissions, tmp_path, kind, option):
    with disk(tmp_path, kind, keep=["report"] if kind != "a-file" else ()) as where:
        done = _grade(submissions, capture_backend, "--pcap-dir", str(tmp_path / "pcaps"), option,
                      str(where / "report"))
        assert_one_line(done, "grade", kind, where)


PLUGIN_TEST = """
def test_lab(lab):
    lab.run("tcp-lab")
"""


@pytest.mark.parametrize("kind", DISKS)
def test_plugin_pcap_dir(mounts, capture_backend, tmp_path, kind):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_it.py").write_text(PLUGIN_TEST)
    with disk(tmp_path, kind, keep=["test_it__test_lab.pcapng"] if kind != "a-file" else ()) as where:
        done = harness("pytest", "-q", "-p", "no:cacheprovider", "--capture-backend", capture_backend,
                       "--pcap-dir", str(where), cwd=project)
        assert done.returncode != 0, done.stdout
        # pytest shows a traceback's source lines marked "> ": the reason must come as the one line alone
        lines = done.stdout.splitlines()
        assert "Traceback" not in done.stdout + done.stderr and not any(l.startswith("> ") for l in lines), done.stdout
        said = [line for line in lines if str(where) in line and re.search(REASONS[kind], line)]
        assert said, done.stdout


# --- the capture itself ----------------------------------------------------------------------

def test_a_write_error_in_dumpcaps_pump_fails_the_capture_in_its_own_words(mounts, tmp_path):
    """More than the disk holds, so the pump thread's writes fail mid-capture: the capture fails
    naming the file and the reason, and abort()'s close, failing again, does not hide it."""
    import socket
    from harness.pytest_plugin import require_capture
    from harness.run.capture import CaptureError, make_capture, partial_paths
    require_capture("dumpcap")
    with disk(tmp_path, "full") as where, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        os.unlink(where / "filler")
        _fill(where, 16 * PAGE)
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        capture = make_capture("dumpcap", where / "big.pcapng", bpf=f"udp port {port}").start()
        for _ in range(200):
            sender.sendto(b"x" * 1400, ("127.0.0.1", port))
        with pytest.raises(CaptureError, match=rf"cannot write {re.escape(str(where))}/big\.pcapng\.\S+\.partial: "
                                               r"No space left on device; .*elsewhere"):
            capture.stop()
        receiver.close()
        assert capture._process.poll() is not None
        assert partial_paths(where / "big.pcapng") == [] and not (where / "big.pcapng").exists()


def test_abort_on_a_full_disk_raises_nothing_and_leaves_nothing(mounts, tmp_path):
    """abort() runs while another error is on its way out: its own close failing must not replace it."""
    from harness.pytest_plugin import require_capture
    from harness.run.capture import make_capture, partial_paths
    require_capture("dumpcap")
    with disk(tmp_path, "full") as where:
        capture = make_capture("dumpcap", where / "x.pcapng", bpf="udp port 9").start()
        capture.abort()
        assert capture._process.poll() is not None
        assert partial_paths(where / "x.pcapng") == []


def test_the_first_error_is_the_one_reported_on_a_full_disk(mounts, capture_backend, tmp_path):
    """A server that cannot start, on a disk that is full: the server's failure is what is said."""
    from dataclasses import replace
    from harness.run.process import SubjectError
    from harness.run.runner import run_scenario
    broken = replace(LAB_SCENARIOS["tcp-lab"], server=[sys.executable, "-c", "raise SystemExit(3)"])
    with disk(tmp_path, "full") as where:
        with pytest.raises(SubjectError, match="the server"):
            run_scenario(broken, where / "broken.pcapng", backend=capture_backend)


@pytest.mark.parametrize("kind", ["read-only", "a-file"])
def test_a_capture_whose_file_cannot_be_made_says_so_and_starts_nothing(mounts, tmp_path, kind):
    """The library used directly (no CLI to check the directory first): CaptureUnwritable in one line,
    not the bare OSError, and no probe socket or dumpcap started for it."""
    from harness.pytest_plugin import require_capture
    from harness.run.capture import CaptureUnwritable, make_capture
    require_capture("dumpcap")
    with disk(tmp_path, kind) as where:
        capture = make_capture("dumpcap", where / "sub" / "x.pcapng", bpf="udp port 9")
        with pytest.raises(CaptureUnwritable, match=rf"cannot write {re.escape(str(where))}\S*: "
                                                    rf"{REASONS[kind]}; .*elsewhere"):
            capture.begin()
        assert capture.prober is None and getattr(capture, "_process", None) is None
