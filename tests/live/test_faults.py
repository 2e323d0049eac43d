"""bench/faults.py, the fault-injection suite, runs a few faults of its own in the suite so it cannot rot;
the 200-fault trial is run by hand (bench/README.md)."""
import subprocess
import sys

import pytest

from support import REPO


@pytest.mark.capture
def test_a_few_faults_end_with_no_wrong_verdict_exit_leftover_or_traceback(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "faults.py"), "--faults", "6", "--seed", "3",
                           "--kinds", "concurrent,kill-dumpcap,sigterm,sigint,read-only,full-disk",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("6 faults, seed 3, ")
    assert lines[1].split() == ["fault", "runs", "exit", "statuses", "wrong", "verdicts", "wrong", "exits",
                                "leftovers", "tracebacks"]
    assert lines[-1] == "no wrong verdict, wrong exit, leftover or traceback"
