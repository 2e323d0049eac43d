"""`harness summary`, `show` and `check`: saved captures, reviewed from anywhere."""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

from harness.analysis.diagnose import diagnose, split_by_idle_timeout
from harness.analysis.expect import builtin_names, write_expectation
from harness.analysis.pipeline import conversation_facts, stream_summaries
from harness.analysis.summary import table
from harness.errors import cannot_write
from harness.cli._common import (MISMATCH, OK, UNUSABLE, Unusable, damaged, describe_filter, expectation,
                                 matches, no_such_conversation, note_slow_path_once, nothing_to_show, reading, streamed, unreadable, write_text)
from harness.cli._many import add_jobs_option, run_each
from harness.render import ladder
from harness.render.i18n import LANGUAGES, default_language
from harness.wire.reader import INFLATE_RATIO, MAX_BYTES_ENV, CaptureFormatError, parse_size


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _bounded(run):
    """The command, with --max-bytes made the reader's bound for every capture it reads (in this process
    and in its -j workers, which inherit the environment)."""
    def bounded(args) -> int:
        if args.max_bytes is None:
            return run(args)
        before = os.environ.get(MAX_BYTES_ENV)
        os.environ[MAX_BYTES_ENV] = str(args.max_bytes)
        try:
            return run(args)
        finally:
            if before is None:
                os.environ.pop(MAX_BYTES_ENV, None)
            else:
                os.environ[MAX_BYTES_ENV] = before
    return bounded


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, metavar="PORT", help="only conversations with PORT at either end")
    parser.add_argument("--proto", choices=("tcp", "udp"), help="only TCP or only UDP conversations")
    parser.add_argument("--max-bytes", type=_size, metavar="SIZE",
                        help=f"read at most SIZE bytes of the capture, decompressed (200M, 4G; 0: no bound; default: "
                             f"none, but a gzip'd file stops past {INFLATE_RATIO}x its size, a decompression bomb's sign)")
    parser.add_argument("--zeek-checksums", action="store_true",
                        help="verify IP, TCP and UDP checksums as Zeek does without -C (off: loopback captures "
                             "carry checksums the NIC never filled in)")


def add_parsers(commands) -> None:
    summary = commands.add_parser("summary", help="one conn.log-style row per conversation")
    summary.add_argument("files", nargs="+", type=Path, metavar="FILE")
    summary.add_argument("--json", action="store_true",
                         help="JSON with Zeek conn.log field names (an array for one file, an object by file for several)")
    _filters(summary)
    add_jobs_option(summary)
    summary.set_defaults(run=_bounded(run_summary))

    show = commands.add_parser("show", help="draw a saved capture's conversations as ladders")
    show.add_argument("file", type=Path)
    show.add_argument("--conversation", type=int, metavar="N", help="only conversation N (as summary numbers them)")
    _filters(show)
    show.add_argument("--svg", type=Path, metavar="OUT", help="also draw it as an SVG sequence diagram")
    show.add_argument("--expect", metavar="SPEC", help="mark each packet with its verdict against this expectation")
    show.set_defaults(run=_bounded(run_show))

    check = commands.add_parser("check", help="hold saved captures to an expectation: exit 0 all match, 1 not")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("--expect", required=True, metavar="SPEC",
                       help=f"an expectation file, or a built-in one: {', '.join(builtin_names())}")
    check.add_argument("--conversation", type=int, metavar="N",
                       help="which conversation (default: the first of the expectation's protocol)")
    _filters(check)
    check.add_argument("--annotate", type=Path, metavar="OUT",
                       help="write the capture to OUT (pcapng) with each packet's verdict as a packet comment")
    check.add_argument("--svg", type=Path, metavar="OUT", help="draw the checked conversation with verdicts as SVG")
    add_jobs_option(check)
    check.set_defaults(run=_bounded(run_check))

    explained = commands.add_parser("explain", help="walk through a conversation packet by packet, in words")
    explained.add_argument("file", type=Path)
    explained.add_argument("--conversation", type=int, metavar="N",
                           help="which conversation (default: every one, after --port and --proto)")
    _filters(explained)
    explained.add_argument("--lang", choices=LANGUAGES, default=None,
                           help="the language (default: the locale's, if harness has it, else en)")
    explained.set_defaults(run=_bounded(run_explain))

    written = commands.add_parser("expect-from", help="write an expectation from a conversation known to be good")
    written.add_argument("file", type=Path)
    written.add_argument("--conversation", type=int, metavar="N",
                         help="which conversation (default: the first, after --port and --proto)")
    _filters(written)
    written.add_argument("-o", "--output", type=Path, metavar="OUT", help="write it to OUT instead of stdout")
    written.set_defaults(run=_bounded(run_expect_from))


def run_summary(args) -> int:
    note_slow_path_once()
    several = len(args.files) > 1
    if args.json and several:
        print("{")
    status = run_each(args, args.files, _summary_of)
    if args.json and several:
        print("}")
    return status


def _summary_of(args, path: Path, position: int) -> int:
    """One file's summary: its JSON array (an entry of the object by file, for several files), or its table."""
    several = len(args.files) > 1
    records = []
    if args.json:
        # Records are printed as conversations end, so memory does not grow with the capture.
        printer = _JsonArrayPrinter(f"{json.dumps(str(path))}: " if several else "")
        emit = printer.print
    else:
        emit = records.append
    # Unfiltered JSON comes as text, written by the scanner itself: no dict per record.
    as_json = args.json and args.port is None and args.proto is None
    if as_json:
        emit = printer.print_text
    elif args.port is not None or args.proto is not None:
        emit = _filtered(emit, args.port, args.proto)
    status = OK
    try:
        analysis = reading(path, lambda: stream_summaries(path, emit, verify_checksums=args.zeek_checksums,
                                                          as_json=as_json))
    except Unusable as error:
        print(f"harness summary: {error}", file=sys.stderr)
        status = UNUSABLE
        analysis = None
    if args.json:
        printer.close("," if position < len(args.files) - 1 else "")
    elif analysis is not None and not unreadable(analysis):
        if several:
            print(f"== {path}")
        print(table(records) if records else nothing_to_show(analysis, describe_filter(args.port, args.proto)))
    if analysis is not None:
        status = max(status, damaged(analysis, "summary"))
    return status


def _filtered(emit, port: Optional[int], proto: Optional[str]):
    def keep(record) -> None:
        if (proto is None or record["proto"] == proto) and (
                port is None or port in (record["id.orig_p"], record["id.resp_p"])):
            emit(record)
    return keep


class _JsonArrayPrinter:
    """A JSON array printed one record per line as the records come (json's C encoder stays in use)."""

    def __init__(self, prefix: str = "") -> None:
        self._separator = prefix + "["

    def print(self, record) -> None:
        self.print_text(json.dumps(record))

    def print_text(self, text: str) -> None:
        sys.stdout.write(self._separator + text)
        self._separator = ",\n "

    def close(self, after: str = "") -> None:
        sys.stdout.write(("]" if self._separator.startswith(",") else self._separator + "]") + after + "\n")


def run_show(args) -> int:
    wanted = expectation(args.expect) if args.expect else None
    drawn, drawn_notes = [], {}
    shown = []

    def show(conversation) -> None:
        notes = wanted.frame_notes(conversation) if wanted else {}
        # Printed as each conversation ends, so memory does not grow with the capture (--svg aside).
        sys.stdout.write(("\n\n" if shown else "") + ladder.render(conversation, str(args.file), notes))
        shown.append(conversation.index)
        if args.svg:
            drawn.append(conversation)
            drawn_notes.update(notes)

    analysis = streamed(args.file, show, args.conversation, args.port, args.proto,
                        verify_checksums=args.zeek_checksums)
    if shown:
        sys.stdout.write("\n")
    elif not unreadable(analysis):
        print(nothing_to_show(analysis, describe_filter(args.port, args.proto)))
    if args.svg:
        from harness.render import svg   # drawing is rare: keep its imports off every other command's start
        write_text(args.svg, svg.render_svg_all(drawn, str(args.file), drawn_notes))
    return damaged(analysis, "show")


def run_check(args) -> int:
    if len(args.files) > 1 and (args.annotate or args.svg):
        raise Unusable(f"--{'annotate' if args.annotate else 'svg'} writes one file: check one capture with it, "
                       f"not {len(args.files)}")
    # Read once (a bad spec is one line, said once); the forked workers inherit it.
    wanted = expectation(args.expect)
    return run_each(args, args.files, functools.partial(_check_one, wanted))


def _check_one(wanted, args, path: Path, position: int) -> int:
    args = argparse.Namespace(**{**vars(args), "file": path})
    if not wanted.about_a_conversation:
        return _check_capture(args, wanted)
    proto = args.proto
    picked_by_protocol = args.conversation is None and proto is None and wanted.proto is not None
    if picked_by_protocol:
        proto = wanted.proto
    chosen = []
    tally = wanted.capture_tally() if wanted.capture else None
    if tally is None:
        # Only the conversation to check is rebuilt; the capture's others are skipped.
        analysis = streamed(args.file, chosen.append, args.conversation, args.port, proto, first=True,
                            verify_checksums=args.zeek_checksums)
    else:
        def judge(conversation) -> None:
            tally.take(conversation)
            if not chosen and matches(conversation, args.port, proto) and args.conversation in (None, conversation.index):
                chosen.append(conversation)
        analysis = streamed(args.file, judge, verify_checksums=args.zeek_checksums)
        if args.conversation is not None and not chosen:
            raise no_such_conversation(analysis, args.conversation, args.port, proto)
    if not analysis.conversation_count:
        if damaged(analysis, "check"):
            return UNUSABLE     # the damage is the one line to print, not its consequence
        raise Unusable(f"{nothing_to_show(analysis)}: nothing to check")
    if not chosen:
        if damaged(analysis, "check"):
            return UNUSABLE
        # Readable, but without the conversation the expectation is about: the wire does not match it.
        verdict = (f"FAIL {args.file}: no{describe_filter(args.port, proto)} conversation to hold to {wanted.source} "
                   f"(the capture has {analysis.contents()}; `harness summary` lists them)")
        _annotate(args, {}, verdict, [])
        print(verdict)
        return MISMATCH
    conversation = chosen[0]
    if picked_by_protocol and conversation.index != 1:
        print(f"harness check: note: checking conversation {conversation.index} ({conversation.describe()}), the first "
              f"{proto.upper()} one{describe_filter(args.port, None)}", file=sys.stderr)
    dissection = None
    if wanted.filter_expressions:
        from harness.run.dissect import dissect   # tshark runs only for an expectation with display filters
        dissection = dissect(args.file, conversation, wanted.filter_expressions)
    problems = wanted.problems(conversation, dissection) + (tally.problems() if tally is not None else [])
    notes = wanted.frame_notes(conversation, dissection)
    if problems:
        cause = _continued_after_idle(args, conversation) or diagnose(conversation, problems)
        verdict = f"FAIL {args.file}: {cause} (conversation {conversation.index} against {wanted.source})"
    else:
        verdict = f"PASS {args.file}: conversation {conversation.index} matches {wanted.source}"
    _annotate(args, notes, verdict, problems)
    if args.svg:
        from harness.render import svg
        write_text(args.svg, svg.render_svg(conversation, str(args.file), notes, title=verdict))
    if damaged(analysis, "check"):
        return UNUSABLE
    print(verdict)
    if problems:
        print("\n".join(f"  - {p}" for p in problems))
        print(ladder.render(conversation, str(args.file), notes))
        return MISMATCH
    return OK


def _continued_after_idle(args, conversation) -> Optional[str]:
    """diagnose.split_by_idle_timeout's cause, if a later conversation between the same endpoints goes on
    after the inactivity timeout (one more pass of the scanner, for a failure only)."""
    ends = {(conversation.orig.host, conversation.orig.port), (conversation.resp.host, conversation.resp.port)}
    later = []

    def same_endpoints(found) -> None:
        if (found["index"] > conversation.index and found["proto"] == conversation.proto
                and {(found["orig_h"], found["orig_p"]), (found["resp_h"], found["resp_p"])} == ends):
            later.append(found)

    conversation_facts(args.file, same_endpoints, verify_checksums=args.zeek_checksums)
    if not later:
        return None
    following = min(later, key=lambda found: found["index"])
    return split_by_idle_timeout(conversation, following["index"], following["first_time_ns"],
                                 following["first_frame"])


def _check_capture(args, wanted) -> int:
    """An expectation of capture rules only: the verdict is the whole capture's."""
    tally = wanted.capture_tally()
    drawn = []

    def judge(conversation) -> None:
        tally.take(conversation)
        if args.svg:
            drawn.append(conversation)

    analysis = streamed(args.file, judge, verify_checksums=args.zeek_checksums)
    problems = tally.problems()
    if problems:
        verdict = f"FAIL {args.file}: {diagnose(None, problems)} (the capture against {wanted.source})"
    else:
        verdict = f"PASS {args.file}: the capture matches {wanted.source}"
    notes = {p.frame: f"FAIL: {p}" for p in reversed(problems) if p.frame is not None}
    _annotate(args, notes, verdict, problems)
    if args.svg:
        from harness.render import svg
        write_text(args.svg, svg.render_svg_all(drawn, str(args.file), notes))
    if damaged(analysis, "check"):
        return UNUSABLE
    print(verdict)
    if problems:
        print("\n".join(f"  - {p}" for p in problems))
        return MISMATCH
    return OK


def _annotate(args, notes, verdict: str, problems) -> None:
    if not args.annotate:
        return
    try:
        from harness.render.annotate import annotate
        annotate(args.file, args.annotate, notes, [f"harness check: {verdict}", *map(str, problems)])
    except OSError as error:
        raise Unusable(cannot_write(args.annotate, error, "the annotated capture")) from None
    except CaptureFormatError as error:
        raise Unusable(f"cannot write {args.annotate}: {error}") from None


def run_expect_from(args) -> int:
    chosen = []
    analysis = streamed(args.file, chosen.append, args.conversation, args.port, args.proto, first=True,
                        verify_checksums=args.zeek_checksums)
    if analysis.damage is not None:
        raise Unusable(f"{analysis.damage}; a damaged capture is no known-good conversation to write from")
    if not chosen:
        raise Unusable(f"{nothing_to_show(analysis, describe_filter(args.port, args.proto))}: nothing to write from")
    text = write_expectation(chosen[0], str(args.file))
    if args.output:
        write_text(args.output, text)
        print(f"wrote {args.output} from conversation {chosen[0].index} ({chosen[0].describe()})")
    else:
        sys.stdout.write(text)
    return OK


def run_explain(args) -> int:
    from harness.render.explain import explain
    language = args.lang or default_language()
    told = []

    def tell(conversation) -> None:
        sys.stdout.write(("\n" if told else "") + explain(conversation, language))
        told.append(conversation.index)

    analysis = streamed(args.file, tell, args.conversation, args.port, args.proto,
                        verify_checksums=args.zeek_checksums)
    if not told and not unreadable(analysis):
        print(nothing_to_show(analysis, describe_filter(args.port, args.proto)))
    return damaged(analysis, "explain")
