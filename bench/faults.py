"""Fault injection: `harness lab` run as a hostile user would, and what came of it. Prints a table; judges.

    .venv/bin/python bench/faults.py [--faults 200] [--seed N] [--out DIR]      # as root

Each fault is drawn at random from KINDS and done to a real `harness lab tcp-lab` (or several at once):

  concurrent      4 runs at once into one pcap directory
  kill-dumpcap    SIGKILL to dumpcap once it runs          sigstop-dumpcap   SIGSTOP, then SIGCONT
  kill-server     SIGKILL to the server once it runs       kill-client       SIGKILL to the client
  sigint          SIGINT to harness at a random moment     sigterm           SIGTERM likewise
                  (once its own code runs: dumpcap has started)
  full-disk       the pcap directory a full 64 KiB tmpfs   read-only         a read-only tmpfs

and each run is held to what it must never do:

  wrong verdict   it printed PASS or FAIL, and `harness check` of the very pcap it names says otherwise,
                  or it printed PASS and exited 1 or 2 (FAIL and 0 or 2), or a fault that breaks the
                  capture (dumpcap killed, the disk) ended in PASS; a verdict and then an interrupt's
                  exit (130, 143) is no wrong verdict: the run was stopped
  wrong exit      an exit status the CLI does not define for it (0 PASS, 1 FAIL, 2 could not run,
                  130 SIGINT, 143 SIGTERM; or death by the signal sent), or 0/1 without a verdict line
  leftover        a process of its session still alive once it has exited
  traceback       "Traceback" on its stderr

Exit status 1 when any run did any of these, else 0. Every wait is bounded; a run that does not end
within RUN_TIMEOUT is killed and counted as leftover.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
KINDS = ("concurrent", "kill-dumpcap", "sigstop-dumpcap", "kill-server", "kill-client", "sigint", "sigterm",
         "full-disk", "read-only")
RUN_TIMEOUT = 60.0
EXPECTED_EXITS = {0, 1, 2, 130, 143}
VERDICT = re.compile(r"^(PASS|FAIL) tcp-lab: .* against (?P<pcap>\S+)", re.M)


TAG = "HARNESS_FAULT_TAG"


def harness(pcap_dir: Path) -> subprocess.Popen:
    """A run whose every process (dumpcap, the subjects in their own sessions, whatever they fork) carries
    a tag in its environment, by which it is found whoever its parent is by then."""
    tag = os.urandom(8).hex()
    run = subprocess.Popen([sys.executable, "-m", "harness", "lab", "tcp-lab", "--quiet", "--pcap-dir", str(pcap_dir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                           start_new_session=True, cwd=REPO, env={**os.environ, TAG: tag})
    run.tag = tag
    return run


def tagged(tag: str) -> List[int]:
    """The live processes whose environment carries `tag`."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def command_of(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode(errors="replace")
    except OSError:
        return ""


def wait_for_member(tag: str, marker: str, timeout: float) -> Optional[int]:
    """The pid of the run's process whose command line holds `marker`, once it runs (None: never)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in tagged(tag):
            if marker in command_of(pid):
                return pid
        time.sleep(0.002)  # ok: polling /proc, which offers no notification of a new process
    return None


def subject(tag: str, harness_pid: int, which: int, timeout: float) -> Optional[int]:
    """The run's server (which=0) or client (1): the children of harness that are not dumpcap, by start
    time (the lab's programs are forked from harness, so their command line is harness's own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = []
        for pid in tagged(tag):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == harness_pid and "dumpcap" not in command_of(pid):
                children.append((int(fields[19]), pid))     # starttime, in clock ticks since boot
        if len(children) > which:
            return sorted(children)[which][1]
        time.sleep(0.002)  # ok: polling /proc, which offers no notification of a new process
    return None


def check_again(pcap: Path) -> Optional[str]:
    done = subprocess.run([sys.executable, "-m", "harness", "check", str(pcap), "--expect", "tcp_lab"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO)
    return {0: "PASS", 1: "FAIL"}.get(done.returncode)


class Outcome:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.exits: List[int] = []
        self.problems: List[str] = []


def finish(run: subprocess.Popen, outcome: Outcome, breaks_capture: bool) -> None:
    try:
        out, err = run.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        for pid in tagged(run.tag):
            os.kill(pid, signal.SIGKILL)
        out, err = run.communicate()
        outcome.problems.append(f"leftover: did not exit within {RUN_TIMEOUT:g} s")
    outcome.exits.append(run.returncode)
    deadline = time.monotonic() + 5
    while tagged(run.tag) and time.monotonic() < deadline:
        time.sleep(0.01)  # ok: waiting, bounded, for the run's last processes to be reaped
    left = tagged(run.tag)
    if left:
        outcome.problems.append(f"leftover: {', '.join(command_of(pid)[:60] for pid in left)}")
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    if "Traceback" in err:
        outcome.problems.append(f"traceback: {err.strip().splitlines()[-1][:120]}")
    # Dying of the signal it was sent is right too, for one that lands as harness is exiting.
    died_of_it = {"sigint": -signal.SIGINT, "sigterm": -signal.SIGTERM}.get(outcome.kind)
    if run.returncode not in EXPECTED_EXITS and run.returncode != died_of_it:
        outcome.problems.append(f"wrong exit: {run.returncode}")
    found = VERDICT.search(out)
    if run.returncode in (0, 1) and not found:
        outcome.problems.append(f"wrong exit: {run.returncode} without a verdict")
    if found:
        said = found.group(1)
        if (said, run.returncode) not in (("PASS", 0), ("FAIL", 1)) and run.returncode in (0, 1, 2):
            outcome.problems.append(f"wrong verdict: {said} with exit {run.returncode}")
        if said == "PASS" and breaks_capture:
            outcome.problems.append("wrong verdict: PASS on a capture that was broken")
        pcap = Path(found.group("pcap"))
        if pcap.exists():
            again = check_again(pcap)
            if again != said:
                outcome.problems.append(f"wrong verdict: said {said}, its own pcap checks {again}")


def fill(path: Path) -> None:
    """Write until the file system is full: not a byte is left for the run."""
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


def one_fault(kind: str, work: Path, rng: random.Random) -> Outcome:
    outcome = Outcome(kind)
    pcap_dir = Path(tempfile.mkdtemp(dir=work))
    mounted = kind in ("full-disk", "read-only")
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k" if kind == "full-disk" else "size=1m,ro", "tmpfs",
                        str(pcap_dir)], check=True, timeout=15)
        if kind == "full-disk":
            fill(pcap_dir / ".filler")
    try:
        if kind == "concurrent":
            runs = [harness(pcap_dir) for _ in range(4)]
            for run in runs:
                finish(run, outcome, breaks_capture=False)
            return outcome
        run = harness(pcap_dir)
        if kind in ("kill-dumpcap", "sigstop-dumpcap", "kill-server", "kill-client"):
            pid = (wait_for_member(run.tag, "dumpcap", 10) if "dumpcap" in kind
                   else subject(run.tag, run.pid, 0 if kind == "kill-server" else 1, 10))
            if pid is not None:
                try:
                    if kind == "sigstop-dumpcap":
                        os.kill(pid, signal.SIGSTOP)
                        time.sleep(rng.uniform(0.01, 0.3))  # ok: the fault is a pause of this length
                        os.kill(pid, signal.SIGCONT)
                    else:
                        time.sleep(rng.uniform(0, 0.02))  # ok: the fault lands at a random moment
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass     # it had ended first: the fault came too late, the run is judged all the same
        elif kind in ("sigint", "sigterm"):
            # From the moment harness's own code runs (dumpcap started: the interpreter's start, before
            # any of it, ends a signal as Python does), at a random moment of the run.
            wait_for_member(run.tag, "dumpcap", 10)
            time.sleep(rng.uniform(0.0, 0.15))  # ok: the fault lands at a random moment of the run
            os.kill(run.pid, signal.SIGINT if kind == "sigint" else signal.SIGTERM)
        finish(run, outcome, breaks_capture=kind in ("kill-dumpcap", "full-disk", "read-only"))
        return outcome
    finally:
        if mounted:
            subprocess.run(["umount", str(pcap_dir)], check=False, timeout=15)
        shutil.rmtree(pcap_dir, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(KINDS), help="a comma-separated subset of the kinds")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "harness-faults")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    kinds = args.kinds.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes: Dict[str, List[Outcome]] = collections.defaultdict(list)
    began = time.monotonic()
    for number in range(1, args.faults + 1):
        kind = rng.choice(kinds)
        outcome = one_fault(kind, args.out, rng)
        outcomes[kind].append(outcome)
        for problem in outcome.problems:
            print(f"  fault {number} ({kind}): {problem}", file=sys.stderr)
    rows = [["fault", "runs", "exit statuses", "wrong verdicts", "wrong exits", "leftovers", "tracebacks"]]
    bad = 0
    for kind in KINDS:
        if kind not in outcomes:
            continue
        done = outcomes[kind]
        exits = collections.Counter(code for outcome in done for code in outcome.exits)
        counts = [sum(1 for o in done for p in o.problems if p.startswith(what))
                  for what in ("wrong verdict", "wrong exit", "leftover", "traceback")]
        bad += sum(counts)
        rows.append([kind, str(len(done)), " ".join(f"{code}:{n}" for code, n in sorted(exits.items())),
                     *map(str, counts)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"{args.faults} faults, seed {seed}, {time.monotonic() - began:.0f} s")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print("no wrong verdict, wrong exit, leftover or traceback" if not bad else f"{bad} problems (listed above)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
