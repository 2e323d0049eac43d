"""The `harness` command line: run programs with capture, and review saved pcaps.

Exit status: 0 all good, 1 the wire did not match, 2 the input or the environment would not do
(one line on stderr saying what to do).

Each command is a module of this package: review (summary, show, check), runs (lab, run), grade;
`doctor` is harness.doctor. What only a command needs (running programs, capturing, drawing) is
imported inside it, so `harness summary` starts without any of it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from harness import __version__
from harness.analysis.pipeline import speedups_status
from harness.cli._common import UNUSABLE, Unusable
from harness.errors import HarnessError
from harness.run import BACKENDS

__all__ = ["main", "version_line", "Unusable"]

def version_line() -> str:
    """`harness --version`: the version, the interpreter, and which summary path is in use."""
    return f"harness {__version__} (Python {sys.version.split()[0]}; summary: {speedups_status()[1]})"


def _parser() -> argparse.ArgumentParser:
    # Raw: the description and the version line are printed as written, not re-wrapped.
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)
    for module in ("runs", "grade", "review"):
        importlib.import_module(f"harness.cli.{module}").add_parsers(commands)
    doctor = commands.add_parser("doctor", help="what is installed, what may capture, how to fix what is missing")
    doctor.add_argument("--backend", choices=BACKENDS, default="dumpcap")
    doctor.add_argument("--interface", default="lo")
    doctor.set_defaults(run=_doctor)
    return parser


def _doctor(args) -> int:
    from harness.doctor import run
    return run(args.backend, args.interface)


class _ReaderMayLeave:
    """stdout for a reader that may go away (`| head -1`): from then on what is printed is dropped, and
    the command goes on to the end, so its exit status still says whether everything matched."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.reader_left = False

    def write(self, text: str) -> int:
        if not self.reader_left:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop_the_rest()
        return len(text)

    def flush(self) -> None:
        if not self.reader_left:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop_the_rest()

    def _drop_the_rest(self) -> None:
        self.reader_left = True
        try:
            # What the stream still buffers, and its flush at exit, go nowhere instead of failing again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _Terminated(BaseException):
    """SIGTERM (what `timeout`, CI runners and containers send), raised where the command is, so that
    everything it started is stopped and cleaned up on the way out, as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    stdout = sys.stdout
    sys.stdout = _ReaderMayLeave(stdout)
    on_sigterm = None
    if threading.current_thread() is threading.main_thread():
        on_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.run(args)
    except _Terminated:
        print(f"harness {args.command}: terminated (SIGTERM); what it had started is stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    except HarnessError as error:      # one tree: input, environment or run, each one line
        print(f"harness {args.command}: {error}", file=sys.stderr)
        return UNUSABLE
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Written past sys.stdout (a child's output, say) after the reader went away: the work did not
        # finish, so nothing can be said to have matched.
        print(f"harness {args.command}: the output pipe closed before the command finished", file=sys.stderr)
        return UNUSABLE
    finally:
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
        sys.stdout.flush()
        sys.stdout = stdout
