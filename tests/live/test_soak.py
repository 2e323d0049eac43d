"""The soak script at a small size, so it cannot rot; the full size is run by hand (bench/soak.py)."""
import subprocess
import sys

import pytest
from support import REPO

SOAK = REPO / "bench" / "soak.py"
pytestmark = pytest.mark.capture


@pytest.mark.parametrize("busy_core", [False, True])
def test_soak_reports_no_incomplete_capture_and_no_wrong_verdict(capture_backend, busy_core):
    command = [sys.executable, str(SOAK), "--runs", "3", "--scenario", "tcp-lab", "--scenario", "udp-lab",
               "--scenario", "tcp-broken-server", "--backend", capture_backend, "--max-seconds", "60"]
    done = subprocess.run(command + (["--busy-core"] if busy_core else []), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "runs 3, incomplete captures 0, wrong verdicts 0" in line]
    assert len(lines) == 3, done.stdout
    assert all("p50 " in line and "p99 " in line for line in lines)
