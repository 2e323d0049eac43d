"""One command over many capture files, on every core: `-j N` worker processes, output in the files' order.

Each file's work is a function of (args, path, position) that prints what it has to say of that file
and returns its exit status; the command's status is the worst of them (0 < 1 < 2, as the CLI defines
them). With one worker, or one file, it runs here and prints as it goes. With more, each file runs in
a forked worker with its stdout and stderr captured, and the parent prints each file's output, stderr
first, in the order the files were given, as soon as it and every file before it are done, so the
output is the same whatever finishes first.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

from harness.cli._common import OK, UNUSABLE
from harness.errors import HarnessError

FileWork = Callable[[argparse.Namespace, Path, int], int]


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, which a container or `taskset` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs_argument(text: str) -> int:
    """argparse type for -j: a whole number, at least 1."""
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{jobs} jobs: give at least 1")
    return jobs


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=jobs_argument, default=None, metavar="N",
                        help="files read at once, each in a process of its own "
                             "(default: the number of CPUs; output stays in the files' order)")


def run_each(args: argparse.Namespace, paths: Sequence[Path], work: FileWork) -> int:
    """work(args, path, position) for every path; the worst status."""
    jobs = min(args.jobs or cpu_count(), len(paths))
    if jobs <= 1:
        return max((_guarded(work, args, path, position) for position, path in enumerate(paths)), default=OK)
    status = OK
    # Imported here: the subject machinery costs 28 ms to import, which a single file never needs.
    from harness.run.process import signals_held
    pool = None
    try:
        # fork: the workers inherit the parsed arguments and the imported analysis, and start at once.
        # A Ctrl-C in a fork's at-fork hooks would be dropped there: held, it is raised here, after.
        with signals_held():
            pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_signals)
        for out, err, code in pool.imap(partial(_captured, work, args), enumerate(paths)):
            sys.stdout.flush()
            sys.stderr.write(err)
            sys.stderr.flush()
            sys.stdout.write(out)
            status = max(status, code)
        pool.close()
    except BaseException:
        if pool is not None:
            pool.terminate()     # interrupted (Ctrl-C, SIGTERM): no worker goes on reading
        raise
    finally:
        if pool is not None:
            pool.join()
    return status


def _worker_signals() -> None:
    """A worker leaves Ctrl-C and SIGTERM to the parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _guarded(work: FileWork, args: argparse.Namespace, path: Path, position: int) -> int:
    """One file's work, its one-line error said as the command says it, and the next file goes on."""
    try:
        return work(args, path, position)
    except HarnessError as error:
        print(f"harness {args.command}: {error}", file=sys.stderr)
        return UNUSABLE


def _captured(work: FileWork, args: argparse.Namespace, numbered: Tuple[int, Path]) -> Tuple[str, str, int]:
    position, path = numbered
    out, err = io.StringIO(), io.StringIO()
    saved: List = [sys.stdout, sys.stderr]
    sys.stdout, sys.stderr = out, err
    try:
        code = _guarded(work, args, path, position)
    finally:
        sys.stdout, sys.stderr = saved
    return out.getvalue(), err.getvalue(), code
