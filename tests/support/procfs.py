"""Watching processes through /proc in tests: which are alive, and waiting, bounded, for a condition."""
import time
from pathlib import Path


def alive(pid):
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # ok: polling /proc and /run/netns, which offer no notification


def running_with(marker):
    """The live processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace") and alive(entry.name):
                    found.append(int(entry.name))
            except OSError:
                continue    # gone meanwhile
    return found
