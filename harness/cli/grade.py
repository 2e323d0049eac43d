"""`harness grade`: one scenario over many submissions (a class's TCPServer.py), in parallel.

    harness grade submissions/ --match '*/TCPServer.py' --server 'python3 {file}' \\
        --client 'python3 -m harness.lab.tcp_client --host {host} --port {port} yp' \\
        --expect tcp_lab --port 8080 -j 2 --html report.html --junit junit.xml

Each file that `--match` finds under the folder is a submission; its first folder under the
folder names the student. `{file}` (the submission), `{dir}` (its folder, where both programs
run) and `{student}` are replaced in the commands, as `{host}` and `{port}` are.

Fixed-port programs (all on 8080) can run at once only apart: where network namespaces can be
made (root), each submission runs in one of its own (harness.run.topology.Topology.loopback), -j
at a time; elsewhere they run one after another in this namespace, and the command says so.
Output: a table (student, verdict, cause, pcap), and on request a JUnit XML file for CI and one
self-contained HTML page with each submission's ladder. Exit 0 when every submission passes, 1
when any fails, 2 when the grading itself cannot run.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

from harness.analysis.expect import builtin_names
from harness.cli._common import MISMATCH, OK, Unusable, write_text, writable_directory
from harness.cli.runs import scenario_from, timeouts_from, words
from harness.errors import HarnessError
from harness.run import BACKENDS
from harness.run.scenario import LOOPBACK, fill


def add_parsers(commands) -> None:
    grade = commands.add_parser("grade", help="run one scenario over many submissions; a table, JUnit XML, HTML",
                                description=__doc__.split("\n\n")[0])
    grade.add_argument("folder", type=Path, help="the folder of submissions")
    grade.add_argument("--match", default="*/TCPServer.py", metavar="GLOB",
                       help="which files under the folder are submissions (default: */TCPServer.py)")
    grade.add_argument("--server", default="python3 {file}", metavar="CMD",
                       help="the server's command line (default: python3 {file})")
    grade.add_argument("--client", required=True, metavar="CMD", help="the client's command line")
    grade.add_argument("--expect", required=True, metavar="SPEC",
                       help=f"an expectation file, or a built-in one: {', '.join(builtin_names())}")
    grade.add_argument("--port", type=int, metavar="PORT", help="the programs' fixed port (the lab report's 8080)")
    grade.add_argument("--proto", choices=("tcp", "udp"), help="default: the expectation's protocol")
    grade.add_argument("--stdin", metavar="TEXT", help="the client's standard input")
    grade.add_argument("--ready-line", metavar="REGEX", help="a line the server prints once ready")
    grade.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="submissions at once (default: the number of CPUs); needs network namespaces")
    grade.add_argument("--pcap-dir", type=Path, default=Path("captures/grade"),
                       help="where each submission's pcap goes (default: captures/grade)")
    grade.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML report")
    grade.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML, one testcase per submission")
    grade.add_argument("--backend", choices=BACKENDS, default="dumpcap")
    grade.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="for each server to be ready, and each client to finish (default: 10)")
    grade.set_defaults(run=run_grade)


@dataclass
class Graded:
    student: str
    file: Path
    verdict: str = "ERROR"          # PASS, FAIL, or ERROR (it could not be run or judged)
    cause: Optional[str] = None
    details: str = ""
    output: str = ""
    pcap: Optional[Path] = None
    svg: Optional[str] = None
    seconds: float = 0.0


def submissions(folder: Path, pattern: str) -> List[Path]:
    if not folder.is_dir():
        raise Unusable(f"{folder} is not a folder of submissions")
    found = sorted(path for path in folder.glob(pattern) if path.is_file())
    if not found:
        raise Unusable(f"no submission under {folder} matches {pattern!r}")
    return found


def student_of(folder: Path, path: Path) -> str:
    relative = path.relative_to(folder)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _isolation_unavailable() -> Optional[str]:
    from harness.run.topology import topology_unavailable_reason
    return topology_unavailable_reason(loopback_only=True)


def run_grade(args) -> int:
    if args.jobs < 1:
        raise Unusable("-j takes a whole number of 1 or more")
    files = submissions(args.folder, args.match)
    server_template = words(args.server, "--server")
    base_scenario, wanted = scenario_from(args, name="grade", server=server_template)
    writable_directory(args.pcap_dir, "--pcap-dir")
    # Proven before the first submission runs, not found out once they all have.
    for option, report in (("--junit", args.junit), ("--html", args.html)):
        if report is not None:
            writable_directory(report.parent, option, "the report")
    why_not = _isolation_unavailable()
    jobs = args.jobs
    if why_not is not None:
        print(f"harness grade: running the {len(files)} submissions one at a time in this network namespace "
              f"({why_not})", file=sys.stderr)
        jobs = 1
    # Here, not at the top: every command builds its parser from this module, and these cost
    # `harness summary` some 8 ms of start-up.
    import threading
    from concurrent.futures import ThreadPoolExecutor
    graded: List[Optional[Graded]] = [None] * len(files)
    lock = threading.Lock()
    began = time.monotonic()

    def grade_one(index: int) -> None:
        path = files[index].resolve()
        student = student_of(args.folder, files[index])
        values = {"file": path, "dir": path.parent, "student": student}
        scenario = replace(base_scenario, name=student, server=fill(server_template, **values),
                           client=fill(base_scenario.client, **values), cwd=str(path.parent))
        result = _grade(scenario, wanted, args, student, path, isolate=why_not is None)
        with lock:
            graded[index] = result
            print(f"{result.verdict} {student}: {result.cause or 'matches ' + wanted.name}", flush=True)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade") as pool:
        futures = [pool.submit(grade_one, index) for index in range(len(files))]
        try:
            for failure in futures:
                failure.result()
        except BaseException:
            # A disk that takes no capture takes none of the others' either: stop at the first.
            for future in futures:
                future.cancel()
            raise
    elapsed = time.monotonic() - began
    done = [g for g in graded if g is not None]
    passed = sum(g.verdict == "PASS" for g in done)
    summary = (f"{passed} of {len(done)} submissions pass {wanted.name}; {elapsed:.1f} s with "
               f"{jobs} at a time{' (each in a network namespace of its own)' if why_not is None else ''}")
    print()
    print(_table(done))
    print(summary)
    if args.junit:
        from harness.render.junit import Case, junit_xml
        write_text(args.junit, junit_xml(f"harness grade {wanted.name}", [
            Case(g.student, g.verdict, g.seconds, g.cause, g.details, g.output) for g in done], "harness.grade"))
        print(f"junit: {args.junit}")
    if args.html:
        from harness.render.html import Entry, html_page
        write_text(args.html, html_page(f"harness grade: {wanted.name} over {args.folder}", [
            Entry(g.student, g.verdict, g.cause, g.details, g.output, str(g.pcap) if g.pcap else None, g.svg,
                  g.seconds) for g in done], summary, base=str(args.html.resolve().parent)))
        print(f"html: {args.html}")
    return OK if passed == len(done) else MISMATCH


def _grade(scenario, wanted, args, student: str, path: Path, isolate: bool) -> Graded:
    from harness.run.runner import run_scenario
    from harness.run.scenario import Placement
    graded = Graded(student, path)
    pcap = args.pcap_dir / f"{student}.pcapng"
    began = time.monotonic()
    try:
        if isolate:
            from harness.run.topology import Topology
            with Topology.loopback() as net:
                result = run_scenario(scenario, pcap, backend=args.backend, timeouts=timeouts_from(args),
                                      placement=Placement.within(net.namespace, LOOPBACK), expectation=wanted)
        else:
            result = run_scenario(scenario, pcap, backend=args.backend, timeouts=timeouts_from(args),
                                  expectation=wanted)
    except HarnessError as error:
        from harness.run.capture import CaptureUnwritable
        from harness.run.process import SubjectError
        if isinstance(error, CaptureUnwritable):
            raise       # the machine's fault, not the submission's: the whole grade is unusable
        # A program that would not start or finish is the submission's failure; anything else is harness's.
        graded.verdict = "FAIL" if isinstance(error, SubjectError) else "ERROR"
        graded.cause = str(error)
        graded.seconds = time.monotonic() - began
        return graded
    graded.seconds = time.monotonic() - began
    graded.verdict = "PASS" if result.ok else "FAIL"
    graded.cause = result.diagnosis
    graded.details = "\n".join(f"- {problem}" for problem in result.problems)
    graded.output = _output(result)
    graded.pcap = result.capture.path
    from harness.render import svg
    notes = wanted.frame_notes(result.conversation) if result.conversation else {}
    graded.svg = svg.render_svg_all(result.analysis.conversations, str(result.capture.path), notes,
                                    title=result.verdict())
    return graded


def _output(result) -> str:
    lines = []
    for name, subject in (("server", result.server), ("client", result.client)):
        if subject is not None and (subject.stdout_lines or subject.stderr_lines):
            lines.append(f"{name} ({subject.exit_description()}):")
            lines += [f"  {line}" for line in subject.stdout_lines[-10:] + subject.stderr_lines[-10:]]
    return "\n".join(lines)


def _table(graded: List[Graded]) -> str:
    rows = [("student", "verdict", "cause", "pcap")]
    rows += [(g.student, g.verdict, g.cause or "", str(g.pcap or "")) for g in graded]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3]
                     for row in rows)
