"""One command over many capture files, on every core: `-j N` worker processes, output in the files' order.

Each file's work is a function of (args, path, position) that prints what it has to say of that file
and returns its exit status; the command's status is the worst of them (0 < 1 < 2, as the CLI defines
them). With one worker, or one file, it runs here and prints as it goes. With more, each file runs in
a forked worker (_Workers) with its stdout and stderr spooled to files, and the parent prints each
file's output, stderr first, in the order the files were given, as soon as it and every file before
it are done, so the output is the same whatever finishes first.
"""
from __future__ import annotations

import argparse
import os
import signal
import struct
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Sequence

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
    with tempfile.TemporaryDirectory(prefix="harness-jobs-") as spool:
        return _Workers(work, args, list(paths), jobs, Path(spool)).run()


class _Workers:
    """Forked workers (no interpreter to start, the analysis already imported: a fork costs about a
    millisecond) that take file numbers from a pipe as they come free, write each file's stdout and
    stderr to files of their own, and report "number status" on another pipe; the parent hands out
    the next number for each report and prints the files' outputs in order."""

    def __init__(self, work: FileWork, args: argparse.Namespace, paths: List[Path], jobs: int, spool: Path) -> None:
        self.work, self.args, self.paths, self.jobs, self.spool = work, args, paths, jobs, spool
        self.pids: List[int] = []

    def run(self) -> int:
        tasks_read, self._tasks = os.pipe()
        self._results, results_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Imported here: the subject machinery costs 28 ms to import, which a single file never needs.
        from harness.run.process import signals_held
        try:
            # A Ctrl-C in a fork's at-fork hooks would be dropped there: held, it is raised here, after.
            with signals_held():
                for _ in range(self.jobs):
                    pid = os.fork()
                    if pid == 0:
                        os.close(self._tasks)
                        os.close(self._results)
                        self._serve(tasks_read, results_write)      # never returns
                    self.pids.append(pid)
            os.close(tasks_read)
            os.close(results_write)
            return self._collect()
        except BaseException:
            for pid in self.pids:      # interrupted (Ctrl-C, SIGTERM): no worker goes on reading
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise
        finally:
            for pid in self.pids:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def _hand_out(self, number: int) -> None:
        os.write(self._tasks, struct.pack("i", number))

    def _collect(self) -> int:
        handed = 0

        def hand_out_next() -> None:
            nonlocal handed
            if handed < len(self.paths):
                self._hand_out(handed)
                handed += 1
                if handed == len(self.paths):
                    # Behind the last file, an end for every worker: once the files are all taken, the
                    # workers end, and the results pipe with them, even if one died holding a file.
                    for _ in self.pids:
                        self._hand_out(-1)

        for _ in range(min(2 * self.jobs, len(self.paths))):
            hand_out_next()
        done: Dict[int, int] = {}
        printed, status = 0, OK
        with os.fdopen(self._results, "rb") as results:
            for line in results:
                number, code = map(int, line.split())
                done[number] = code
                hand_out_next()
                while printed in done:
                    status = max(status, self._print(printed, done[printed]))
                    printed += 1
        os.close(self._tasks)
        while printed < len(self.paths):
            if printed not in done:      # its worker died without a word (killed)
                print(f"harness {self.args.command}: {self.paths[printed]}: its worker process ended before the "
                      f"file was read", file=sys.stderr)
                done[printed] = UNUSABLE
            status = max(status, self._print(printed, done[printed]))
            printed += 1
        return status

    def _print(self, number: int, code: int) -> int:
        for suffix, stream in ((".err", sys.stderr), (".out", sys.stdout)):
            spooled = self.spool / f"{number}{suffix}"
            if spooled.exists():
                stream.write(spooled.read_text(encoding="utf-8", errors="replace"))
                stream.flush()
                spooled.unlink()
        return code

    def _serve(self, tasks: int, results: int) -> None:
        """A worker: file numbers in, each file's output to the spool, "number status" out; then exit
        without running anything of the parent's at exit."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops the workers itself
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = 0
        try:
            while True:
                message = os.read(tasks, 4)
                if len(message) < 4:
                    break
                (number,) = struct.unpack("i", message)
                if number < 0:
                    break
                with open(self.spool / f"{number}.out", "w", encoding="utf-8") as out, \
                        open(self.spool / f"{number}.err", "w", encoding="utf-8") as err:
                    sys.stdout, sys.stderr = out, err
                    try:
                        status = _guarded(self.work, self.args, self.paths[number], number)
                    except BaseException:       # a bug: its traceback goes where the file's output goes
                        traceback.print_exc()
                        status = 1
                    finally:
                        out.flush()
                        err.flush()
                os.write(results, f"{number} {status}\n".encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)


def _guarded(work: FileWork, args: argparse.Namespace, path: Path, position: int) -> int:
    """One file's work, its one-line error said as the command says it, and the next file goes on."""
    try:
        return work(args, path, position)
    except HarnessError as error:
        print(f"harness {args.command}: {error}", file=sys.stderr)
        return UNUSABLE
