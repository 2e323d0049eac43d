"""Run lab scenarios back to back and count what went wrong: incomplete captures, wrong verdicts.

    python bench/soak.py --runs 200 --scenario tcp-lab [--scenario udp-lab] [--busy-core]

Bounded in count (--runs) and time (--max-seconds). Every run's pcap goes to a temporary directory;
the pcaps of runs that went wrong are kept and listed, the others deleted. The figures printed are
those the closing notes quote: runs, incomplete captures, wrong verdicts, latency from capture start
(the capture is launched first, the server beside it) to verdict (p50/p99/max), and the median of each phase.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.run.capture import BACKENDS, CaptureIncomplete
from harness.lab.scenarios import LAB_SCENARIOS
from harness.run.process import Subject
from harness.run.runner import run_scenario

EXPECTED_TO_PASS = {"tcp-lab", "udp-lab", "tcp-broken-server"}


# A harness subject: its own session, stopped whole, and killed by the kernel should soak die any
# other way (SIGKILL included), so it never spins on at 100% CPU behind a killed soak.
SPIN = "import sys, time\nstop_at = float(sys.argv[1])\nwhile time.time() < stop_at:\n    pass"


class _Terminated(BaseException):
    """SIGTERM, raised where soak is, so that the run under way and the spinner are stopped."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per scenario (default 1000)")
    parser.add_argument("--scenario", action="append", choices=sorted(LAB_SCENARIOS),
                        help="scenario to run (repeatable; default tcp-lab and udp-lab)")
    parser.add_argument("--backend", choices=BACKENDS, default="dumpcap")
    parser.add_argument("--busy-core", action="store_true", help="keep another CPU core busy meanwhile")
    parser.add_argument("--max-seconds", type=float, default=3600, help="stop starting runs after this long")
    parser.add_argument("--keep-dir", type=Path, help="where to keep the pcaps of runs that went wrong")
    args = parser.parse_args(argv)
    scenarios = args.scenario or ["tcp-lab", "udp-lab"]

    workdir = Path(tempfile.mkdtemp(prefix="harness-soak-"))
    keep_dir = args.keep_dir or workdir
    began = time.monotonic()
    spinner = None
    status = 0
    on_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if args.busy_core:
            spinner = Subject("busy core", [sys.executable, "-c", SPIN, str(time.time() + args.max_seconds)])
            spinner.start()
        for name in scenarios:
            latencies, phases, incomplete, wrong, errors, kept = [], {}, 0, 0, 0, []
            runs = 0
            for run in range(args.runs):
                if time.monotonic() - began > args.max_seconds:
                    print(f"soak: --max-seconds {args.max_seconds:g} reached after {runs} runs of {name}")
                    break
                runs += 1
                path = workdir / f"{name}-{run}.pcapng"
                try:
                    result = run_scenario(LAB_SCENARIOS[name], path, backend=args.backend)
                except CaptureIncomplete as error:
                    incomplete += 1
                    print(f"  run {run}: incomplete capture: {error}")
                    continue
                except Exception as error:  # a soak counts every way a run can go wrong
                    errors += 1
                    print(f"  run {run}: error: {type(error).__name__}: {error}")
                    continue
                if result.ok != (name in EXPECTED_TO_PASS):
                    wrong += 1
                    kept_path = keep_dir / path.name
                    if kept_path != path:
                        shutil.copy(path, kept_path)
                    kept.append(kept_path)
                    print(f"  run {run}: wrong verdict:\n{result.report()}")
                else:
                    path.unlink()
                for phase, seconds in result.phases.items():
                    phases.setdefault(phase, []).append(seconds)
                # The capture is launched first and the server beside it, so every phase counts.
                latencies.append(sum(result.phases.values()))
            if not latencies:
                print(f"{name}: no run completed")
                status = 1
                continue
            ms = [1000 * s for s in latencies]
            print(f"{name} ({args.backend}{', busy core' if args.busy_core else ''}): runs {runs}, "
                  f"incomplete captures {incomplete}, wrong verdicts {wrong}, other errors {errors}; "
                  f"capture start to verdict p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
                  f"max {max(ms):.1f} ms")
            print("  phase medians: " + ", ".join(f"{phase} {1000 * statistics.median(values):.1f} ms"
                                                  for phase, values in phases.items()))
            if kept:
                print("  pcaps of wrong verdicts: " + " ".join(str(p) for p in kept))
            if incomplete or wrong or errors:
                status = 1
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        status = 130
    except _Terminated:
        print("soak: terminated (SIGTERM)", file=sys.stderr)
        status = 128 + signal.SIGTERM
    finally:
        if spinner is not None:
            spinner.stop(grace=0)
        signal.signal(signal.SIGTERM, on_sigterm)
        if not any(workdir.iterdir()):
            workdir.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main())
