"""The `harness` command line: run the lab with capture, and review saved pcaps.

Exit status: 0 all good, 1 the wire did not match, 2 the input or the environment would not do
(one line on stderr saying what to do).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

from harness import __version__
from harness.analysis.expect import Expectation, builtin_names, load_expectation
from harness.analysis.pipeline import PURE_PYTHON_ENV, Analysis, analyse, speedups_status, stream_summaries
from harness.analysis.summary import table
from harness.errors import HarnessError, InputError
from harness.lab.scenarios import LAB_SCENARIOS
from harness.render import ladder
from harness.run import BACKENDS
from harness.wire.reader import CaptureFormatError

OK, MISMATCH, UNUSABLE = 0, 1, 2


class Unusable(InputError):
    """Arguments or input the command cannot work with; str() is the one line to print."""


def _parser() -> argparse.ArgumentParser:
    # Raw: the description and the version line are printed as written, not re-wrapped.
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)

    lab = commands.add_parser("lab", help="run the lab scenarios with capture; print verdicts and pcap paths")
    lab.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                     help=f"which to run (default: all): {', '.join(LAB_SCENARIOS)}")
    lab.add_argument("--backend", choices=BACKENDS, default="dumpcap", help="capture engine (default: dumpcap)")
    lab.add_argument("--pcap-dir", type=Path, default=Path("captures/runs"),
                     help="where to save the pcaps (default: captures/runs)")
    lab.add_argument("--quiet", action="store_true", help="verdict lines only, no ladders for passes")

    doctor = commands.add_parser("doctor", help="what is installed, what may capture, how to fix what is missing")
    doctor.add_argument("--backend", choices=BACKENDS, default="dumpcap")
    doctor.add_argument("--interface", default="lo")

    summary = commands.add_parser("summary", help="one conn.log-style row per conversation")
    summary.add_argument("files", nargs="+", type=Path, metavar="FILE")
    summary.add_argument("--json", action="store_true",
                         help="JSON with Zeek conn.log field names (an array for one file, an object by file for several)")

    show = commands.add_parser("show", help="draw a saved capture's conversations as ladders")
    show.add_argument("file", type=Path)
    show.add_argument("--conversation", type=int, metavar="N", help="only conversation N (1-based)")
    show.add_argument("--svg", type=Path, metavar="OUT", help="also draw it as an SVG sequence diagram")
    show.add_argument("--expect", metavar="SPEC", help="mark each packet with its verdict against this expectation")

    check = commands.add_parser("check", help="hold a saved capture to an expectation: exit 0 match, 1 not")
    check.add_argument("file", type=Path)
    check.add_argument("--expect", required=True, metavar="SPEC",
                       help=f"an expectation file, or a built-in one: {', '.join(builtin_names())}")
    check.add_argument("--conversation", type=int, metavar="N", help="which conversation (default: the first)")
    check.add_argument("--annotate", type=Path, metavar="OUT",
                       help="write the capture to OUT (pcapng) with each packet's verdict as a packet comment")
    check.add_argument("--svg", type=Path, metavar="OUT", help="draw the checked conversation with verdicts as SVG")
    return parser


def version_line() -> str:
    """`harness --version`: the version, the interpreter, and which summary path is in use."""
    return f"harness {__version__} (Python {sys.version.split()[0]}; summary: {speedups_status()[1]})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"lab": _lab, "doctor": _doctor, "summary": _summary, "show": _show,
                "check": _check}[args.command](args)
    except HarnessError as error:      # one tree: input, environment or run, each one line
        print(f"harness {args.command}: {error}", file=sys.stderr)
        return UNUSABLE
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (say, `head`) went away; that is not an error of ours.
        sys.stderr.close()
        return OK


def _lab(args) -> int:
    from harness.run.runner import run_scenario    # running programs: its imports are for this command only
    unknown = [name for name in args.scenarios if name not in LAB_SCENARIOS]
    if unknown:
        raise Unusable(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(LAB_SCENARIOS)}")
    _writable_directory(args.pcap_dir, "--pcap-dir")
    status = OK
    for name in args.scenarios or list(LAB_SCENARIOS):
        scenario = LAB_SCENARIOS[name]
        try:
            result = run_scenario(scenario, args.pcap_dir / f"{name}.pcapng", backend=args.backend)
        except HarnessError as error:
            raise Unusable(f"{name}: {error}") from None
        if result.ok and args.quiet:
            print(result.verdict())
        else:
            print(result.report())
            print()
        if not result.ok:
            status = MISMATCH
    return status


def _writable_directory(directory: Path, option: str) -> None:
    """Make the directory if need be, and prove a file can be made in it, before anything runs."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".harness-write-test-"):
            pass
    except OSError as error:
        raise Unusable(f"cannot write pcaps to {directory}: {error.strerror or error}; "
                       f"choose another {option}") from None


def _load(path: Path) -> Analysis:
    return _reading(path, lambda: analyse(path))


def _stream(path: Path, emit) -> Analysis:
    _note_slow_path_once()
    return _reading(path, lambda: stream_summaries(path, emit))


def _note_slow_path_once() -> None:
    """Say once per installation, on stderr, that summaries run without the compiled C scanner."""
    compiled, how = speedups_status()
    if compiled or os.environ.get(PURE_PYTHON_ENV):
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"
    key = hashlib.sha1(f"{Path(__file__).parent}|{sys.version}|{how}".encode()).hexdigest()[:16]
    marker = cache / f"pure-python-noted-{key}"
    if marker.exists():
        return
    print(f"harness: note: summary runs in {how} (said once; `harness --version` says it again)",
          file=sys.stderr)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass   # no cache to remember it in: it is said again next time, which is better than never


def _reading(path: Path, read) -> Analysis:
    try:
        trace = read()
    except FileNotFoundError:
        raise Unusable(f"{path}: no such file") from None
    except OSError as error:
        # strerror alone: str(OSError) repeats the path and adds "[Errno N]".
        raise Unusable(f"{path}: {error.strerror or error}") from None
    except InputError as error:
        raise Unusable(f"{path}: {error}") from None
    for warning in trace.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return trace


def _pick(trace: Analysis, number: Optional[int]) -> List:
    if number is None:
        return trace.conversations
    if not 1 <= number <= len(trace.conversations):
        raise Unusable(f"{trace.path} has {len(trace.conversations)} conversations; there is no number {number}")
    return [trace.conversations[number - 1]]


def _damaged(trace: Analysis, command: str) -> int:
    if trace.damage is not None:
        shown = "; what came before the damage is shown" if trace.packets else ""
        print(f"harness {command}: {trace.damage}{shown}", file=sys.stderr)
        return UNUSABLE
    return OK


def _unreadable(trace: Analysis) -> bool:
    """The file was not a capture at all: nothing was read before the damage."""
    return trace.damage is not None and trace.frames == 0


def _nothing_to_show(trace: Analysis) -> str:
    before = " before the damage" if trace.damage is not None else ""
    return f"{trace.path}: no TCP or UDP conversations{before} in its {trace.contents()}"


def _doctor(args) -> int:
    from harness.doctor import run
    return run(args.backend, args.interface)


def _summary(args) -> int:
    status = OK
    tables = {}
    if args.json and len(args.files) > 1:
        print("{")
    for number, path in enumerate(args.files):
        records = []
        if args.json:
            # Records are printed as conversations end, so memory does not grow with the capture.
            prefix = f"{json.dumps(str(path))}: " if len(args.files) > 1 else ""
            printer = _JsonArrayPrinter(prefix)
            emit = printer.print
        else:
            emit = records.append
        try:
            trace = _stream(path, emit)
        except Unusable as error:
            print(f"harness summary: {error}", file=sys.stderr)
            status = UNUSABLE
            trace = None
        if args.json:
            printer.close("," if number < len(args.files) - 1 else "")
        elif trace is not None and not _unreadable(trace):
            tables[str(path)] = (records, trace)
        if trace is not None:
            status = max(status, _damaged(trace, 'summary'))
    if args.json and len(args.files) > 1:
        print("}")
    for path, (records, trace) in tables.items():
        if len(args.files) > 1:
            print(f"== {path}")
        print(table(records) if records else _nothing_to_show(trace))
    return status


class _JsonArrayPrinter:
    """A JSON array printed one record per line as the records come (json's C encoder stays in use)."""

    def __init__(self, prefix: str = "") -> None:
        self._separator = prefix + "["

    def print(self, record) -> None:
        sys.stdout.write(self._separator + json.dumps(record))
        self._separator = ",\n "

    def close(self, after: str = "") -> None:
        sys.stdout.write(("]" if self._separator.startswith(",") else self._separator + "]") + after + "\n")


def _expectation(spec: str) -> Expectation:
    """A spec file's path, or the name of a shipped expectation (with or without .txt)."""
    try:
        return load_expectation(spec)
    except OSError as error:
        raise Unusable(f"{spec}: {error.strerror or error}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise Unusable(f"cannot write {path}: {error.strerror}") from None


def _show(args) -> int:
    expectation = _expectation(args.expect) if args.expect else None
    trace = _load(args.file)
    chosen = _pick(trace, args.conversation)
    notes = {}
    for conversation in chosen if expectation else ():
        notes.update(expectation.frame_notes(conversation))
    if chosen:
        print("\n\n".join(ladder.render(c, str(args.file), notes) for c in chosen))
    elif not _unreadable(trace):
        print(_nothing_to_show(trace))
    if args.svg:
        from harness.render import svg   # drawing is rare: keep its imports off every other command's start
        _write(args.svg, svg.render_svg_all(chosen, str(args.file), notes))
    return _damaged(trace, "show")


def _check(args) -> int:
    expectation = _expectation(args.expect)
    trace = _load(args.file)
    if not trace.conversations:
        if _damaged(trace, "check"):
            return UNUSABLE     # the damage is the one line to print, not its consequence
        raise Unusable(f"{_nothing_to_show(trace)}: nothing to check")
    conversation = _pick(trace, args.conversation or 1)[0]
    problems = expectation.problems(conversation)
    notes = expectation.frame_notes(conversation)
    verdict = (f"{'FAIL' if problems else 'PASS'} {args.file}: conversation {conversation.index} "
               f"{'does not match' if problems else 'matches'} {expectation.source}")
    if args.annotate:
        try:
            from harness.render.annotate import annotate
            annotate(args.file, args.annotate, notes, [f"harness check: {verdict}", *map(str, problems)])
        except (OSError, CaptureFormatError) as error:
            raise Unusable(f"cannot write {args.annotate}: {error}") from None
    if args.svg:
        from harness.render import svg
        _write(args.svg, svg.render_svg(conversation, str(args.file), notes, title=verdict))
    if _damaged(trace, "check"):
        return UNUSABLE
    print(verdict)
    if problems:
        print("\n".join(f"  - {p}" for p in problems))
        print(ladder.render(conversation, str(args.file), notes))
        return MISMATCH
    return OK
