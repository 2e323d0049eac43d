"""Capture as an unprivileged user when only dumpcap holds the capture capabilities.

The system's dumpcap is left alone: the tests grant the capabilities to a private copy, as
`setcap cap_net_raw,cap_net_admin+eip $(command -v dumpcap)` (or Debian's wireshark-common
question) would to the real one, and point HARNESS_DUMPCAP at it.
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import needs
from harness.run.capture.dumpcap import dumpcap_path
from harness.run.process import PACKAGE_ROOT
from harness.pytest_plugin import capture_required

pytestmark = [pytest.mark.capture,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to grant capabilities and switch user")]
UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def unavailable(reason):
    if capture_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def workdir():
    directory = Path(tempfile.mkdtemp(prefix="harness-least-privilege-"))
    directory.chmod(0o777)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def capable_dumpcap(workdir):
    setcap = needs.tool("setcap")
    copy = workdir / "dumpcap"
    shutil.copy2(dumpcap_path(), copy)
    copy.chmod(0o755)
    subprocess.run([setcap, "cap_net_raw,cap_net_admin+eip", str(copy)], check=True, capture_output=True)
    return copy


@pytest.fixture(scope="module")
def python_for_nobody(workdir):
    """An interpreter the unprivileged user may run (a venv under /root is out of its reach)."""
    # It must also be able to start itself again: the scenario runs the lab programs with it.
    itself = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"
    for candidate in (sys.executable, "/usr/bin/python3"):
        done = subprocess.run([*UNPRIVILEGED, candidate, "-c", itself], capture_output=True, cwd=workdir)
        if done.returncode == 0:
            return candidate
    unavailable("no Python interpreter is executable by the user nobody here")


def as_nobody(python, workdir, code, dumpcap):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": PACKAGE_ROOT, "HARNESS_DUMPCAP": str(dumpcap)}
    return subprocess.run([*UNPRIVILEGED, python, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=workdir, env=env)


def test_without_the_capabilities_the_reason_says_how_to_grant_them(python_for_nobody, workdir):
    done = as_nobody(python_for_nobody, workdir, "from harness.run.capture.dumpcap import probe_dumpcap; "
                     "print(probe_dumpcap())", dumpcap_path())
    assert done.stdout.startswith("dumpcap may not capture here ("), done.stderr
    assert "setcap cap_net_raw,cap_net_admin+eip" in done.stdout


def test_doctor_reports_what_may_capture(python_for_nobody, workdir, capable_dumpcap):
    doctor = "import sys; from harness.cli import main; sys.exit(main(['doctor']))"
    granted = as_nobody(python_for_nobody, workdir, doctor, capable_dumpcap)
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "OK   dumpcap capabilities: cap_net_admin,cap_net_raw=eip" in granted.stdout
    assert "ready: dumpcap can capture on lo" in granted.stdout
    refused = as_nobody(python_for_nobody, workdir, doctor, dumpcap_path())
    assert refused.returncode == 1
    assert "FAIL capture with dumpcap on lo: dumpcap may not capture here" in refused.stdout
    assert "fix: run as root, or give dumpcap the capture capabilities" in refused.stdout


def test_the_tcp_lab_runs_unprivileged_with_a_capable_dumpcap(python_for_nobody, workdir, capable_dumpcap):
    pcap = workdir / "unprivileged.pcapng"
    code = ("import sys; from harness.lab.scenarios import LAB_SCENARIOS; from harness.run.runner import run_scenario; "
            f"result = run_scenario(LAB_SCENARIOS['tcp-lab'], {str(pcap)!r}); print(result.verdict()); "
            "sys.exit(0 if result.ok else 1)")
    done = as_nobody(python_for_nobody, workdir, code, capable_dumpcap)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("PASS tcp-lab: tcp_lab against ")
    info = pcap.stat()
    assert info.st_uid == 65534 and stat.S_IMODE(info.st_mode) == 0o600, "the capture belongs to its user alone"
