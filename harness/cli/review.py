"""`harness summary`, `show` and `check`: saved captures, reviewed from anywhere."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from harness.analysis.diagnose import diagnose
from harness.analysis.expect import builtin_names, write_expectation
from harness.analysis.pipeline import analyse, stream_summaries
from harness.analysis.summary import table
from harness.cli._common import (MISMATCH, OK, UNUSABLE, Unusable, choose, damaged, describe_filter, expectation,
                                 matches, note_slow_path_once, nothing_to_show, reading, unreadable, write_text)
from harness.render import ladder
from harness.render.i18n import LANGUAGES, default_language
from harness.wire.reader import CaptureFormatError


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, metavar="PORT", help="only conversations with PORT at either end")
    parser.add_argument("--proto", choices=("tcp", "udp"), help="only TCP or only UDP conversations")
    parser.add_argument("--zeek-checksums", action="store_true",
                        help="verify IP, TCP and UDP checksums as Zeek does without -C (off: loopback captures "
                             "carry checksums the NIC never filled in)")


def add_parsers(commands) -> None:
    summary = commands.add_parser("summary", help="one conn.log-style row per conversation")
    summary.add_argument("files", nargs="+", type=Path, metavar="FILE")
    summary.add_argument("--json", action="store_true",
                         help="JSON with Zeek conn.log field names (an array for one file, an object by file for several)")
    _filters(summary)
    summary.set_defaults(run=run_summary)

    show = commands.add_parser("show", help="draw a saved capture's conversations as ladders")
    show.add_argument("file", type=Path)
    show.add_argument("--conversation", type=int, metavar="N", help="only conversation N (as summary numbers them)")
    _filters(show)
    show.add_argument("--svg", type=Path, metavar="OUT", help="also draw it as an SVG sequence diagram")
    show.add_argument("--expect", metavar="SPEC", help="mark each packet with its verdict against this expectation")
    show.set_defaults(run=run_show)

    check = commands.add_parser("check", help="hold a saved capture to an expectation: exit 0 match, 1 not")
    check.add_argument("file", type=Path)
    check.add_argument("--expect", required=True, metavar="SPEC",
                       help=f"an expectation file, or a built-in one: {', '.join(builtin_names())}")
    check.add_argument("--conversation", type=int, metavar="N",
                       help="which conversation (default: the first of the expectation's protocol)")
    _filters(check)
    check.add_argument("--annotate", type=Path, metavar="OUT",
                       help="write the capture to OUT (pcapng) with each packet's verdict as a packet comment")
    check.add_argument("--svg", type=Path, metavar="OUT", help="draw the checked conversation with verdicts as SVG")
    check.set_defaults(run=run_check)

    explained = commands.add_parser("explain", help="walk through a conversation packet by packet, in words")
    explained.add_argument("file", type=Path)
    explained.add_argument("--conversation", type=int, metavar="N",
                           help="which conversation (default: every one, after --port and --proto)")
    _filters(explained)
    explained.add_argument("--lang", choices=LANGUAGES, default=None,
                           help="the language (default: the locale's, if harness has it, else en)")
    explained.set_defaults(run=run_explain)

    written = commands.add_parser("expect-from", help="write an expectation from a conversation known to be good")
    written.add_argument("file", type=Path)
    written.add_argument("--conversation", type=int, metavar="N",
                         help="which conversation (default: the first, after --port and --proto)")
    _filters(written)
    written.add_argument("-o", "--output", type=Path, metavar="OUT", help="write it to OUT instead of stdout")
    written.set_defaults(run=run_expect_from)


def run_summary(args) -> int:
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
        # Unfiltered JSON comes as text, written by the scanner itself: no dict per record.
        as_json = args.json and args.port is None and args.proto is None
        if as_json:
            emit = printer.print_text
        elif args.port is not None or args.proto is not None:
            emit = _filtered(emit, args.port, args.proto)
        try:
            note_slow_path_once()
            analysis = reading(path, lambda: stream_summaries(path, emit, verify_checksums=args.zeek_checksums,
                                                              as_json=as_json))
        except Unusable as error:
            print(f"harness summary: {error}", file=sys.stderr)
            status = UNUSABLE
            analysis = None
        if args.json:
            printer.close("," if number < len(args.files) - 1 else "")
        elif analysis is not None and not unreadable(analysis):
            tables[str(path)] = (records, analysis)
        if analysis is not None:
            status = max(status, damaged(analysis, "summary"))
    if args.json and len(args.files) > 1:
        print("}")
    for path, (records, analysis) in tables.items():
        if len(args.files) > 1:
            print(f"== {path}")
        print(table(records) if records else nothing_to_show(analysis, describe_filter(args.port, args.proto)))
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
    analysis = reading(args.file, lambda: analyse(args.file, verify_checksums=args.zeek_checksums))
    chosen = choose(analysis, args.conversation, args.port, args.proto)
    notes = {}
    for conversation in chosen if wanted else ():
        notes.update(wanted.frame_notes(conversation))
    if chosen:
        print("\n\n".join(ladder.render(c, str(args.file), notes) for c in chosen))
    elif not unreadable(analysis):
        print(nothing_to_show(analysis, describe_filter(args.port, args.proto)))
    if args.svg:
        from harness.render import svg   # drawing is rare: keep its imports off every other command's start
        write_text(args.svg, svg.render_svg_all(chosen, str(args.file), notes))
    return damaged(analysis, "show")


def run_check(args) -> int:
    wanted = expectation(args.expect)
    analysis = reading(args.file, lambda: analyse(args.file, verify_checksums=args.zeek_checksums))
    if not analysis.conversations and wanted.about_a_conversation:
        if damaged(analysis, "check"):
            return UNUSABLE     # the damage is the one line to print, not its consequence
        raise Unusable(f"{nothing_to_show(analysis)}: nothing to check")
    if not wanted.about_a_conversation:
        return _check_capture(args, wanted, analysis)
    proto = args.proto
    picked_by_protocol = args.conversation is None and proto is None and wanted.proto is not None
    if picked_by_protocol:
        proto = wanted.proto
    candidates = choose(analysis, args.conversation, args.port, proto)
    if not candidates:
        if damaged(analysis, "check"):
            return UNUSABLE
        # Readable, but without the conversation the expectation is about: the wire does not match it.
        verdict = (f"FAIL {args.file}: no{describe_filter(args.port, proto)} conversation to hold to {wanted.source} "
                   f"(the capture has {analysis.contents()}; `harness summary` lists them)")
        _annotate(args, {}, verdict, [])
        print(verdict)
        return MISMATCH
    conversation = candidates[0]
    if picked_by_protocol and not matches(analysis.conversations[0], args.port, proto):
        print(f"harness check: note: checking conversation {conversation.index} ({conversation.describe()}), the first "
              f"{proto.upper()} one{describe_filter(args.port, None)}", file=sys.stderr)
    dissection = None
    if wanted.filter_expressions:
        from harness.run.dissect import dissect   # tshark runs only for an expectation with display filters
        dissection = dissect(args.file, conversation, wanted.filter_expressions)
    problems = wanted.problems(conversation, dissection) + wanted.capture_problems(analysis.conversations)
    notes = wanted.frame_notes(conversation, dissection)
    if problems:
        verdict = (f"FAIL {args.file}: {diagnose(conversation, problems)} "
                   f"(conversation {conversation.index} against {wanted.source})")
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


def _check_capture(args, wanted, analysis) -> int:
    """An expectation of capture rules only: the verdict is the whole capture's."""
    problems = wanted.capture_problems(analysis.conversations)
    if problems:
        verdict = f"FAIL {args.file}: {diagnose(None, problems)} (the capture against {wanted.source})"
    else:
        verdict = f"PASS {args.file}: the capture matches {wanted.source}"
    notes = {p.frame: f"FAIL: {p}" for p in reversed(problems) if p.frame is not None}
    _annotate(args, notes, verdict, problems)
    if args.svg:
        from harness.render import svg
        write_text(args.svg, svg.render_svg_all(analysis.conversations, str(args.file), notes))
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
    except (OSError, CaptureFormatError) as error:
        raise Unusable(f"cannot write {args.annotate}: {error}") from None


def run_expect_from(args) -> int:
    analysis = reading(args.file, lambda: analyse(args.file, verify_checksums=args.zeek_checksums))
    if analysis.damage is not None:
        raise Unusable(f"{analysis.damage}; a damaged capture is no known-good conversation to write from")
    chosen = choose(analysis, args.conversation, args.port, args.proto)
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
    analysis = reading(args.file, lambda: analyse(args.file, verify_checksums=args.zeek_checksums))
    chosen = choose(analysis, args.conversation, args.port, args.proto)
    if chosen:
        language = args.lang or default_language()
        print("\n".join(explain(conversation, language) for conversation in chosen), end="")
    elif not unreadable(analysis):
        print(nothing_to_show(analysis, describe_filter(args.port, args.proto)))
    return damaged(analysis, "explain")
