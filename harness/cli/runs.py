"""`harness lab` and `harness run`: programs run under capture, and judged."""
from __future__ import annotations

import dataclasses

import shlex
import time
from pathlib import Path
from typing import Optional, Tuple

from harness.analysis.expect import Expectation, builtin_names
from harness.cli._common import MISMATCH, OK, Unusable, expectation, write_text, writable_directory
from harness.errors import HarnessError
from harness.lab.scenarios import LAB_SCENARIOS
from harness.run import BACKENDS
from harness.render.i18n import LANGUAGES, default_language
from harness.run.scenario import LOOPBACK, Scenario, Timeouts

DEFAULT_PCAP_DIR = Path("captures/runs")


def add_parsers(commands) -> None:
    lab = commands.add_parser("lab", help="run the lab scenarios with capture; print verdicts and pcap paths")
    lab.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                     help=f"which to run (default: all): {', '.join(LAB_SCENARIOS)}")
    lab.add_argument("--backend", choices=BACKENDS, default="dumpcap", help="capture engine (default: dumpcap)")
    lab.add_argument("--pcap-dir", type=Path, default=DEFAULT_PCAP_DIR,
                     help="where to save the pcaps (default: captures/runs)")
    lab.add_argument("--quiet", action="store_true", help="verdict lines only, no ladders for passes")
    lab.add_argument("--html", type=Path, metavar="OUT",
                     help="also write one self-contained page: verdicts, SVG ladders, walk-throughs, pcap links")
    lab.add_argument("--lang", choices=LANGUAGES, help="the walk-through's language (default: the locale's)")
    lab.add_argument("--seed-ports", action="store_true",
                     help="run on the lab report's own ports (TCP 8080, UDP 8081, on 127.0.0.1), so that its "
                          "Wireshark filters tcp.port==8080 and udp.port==8081 work on the saved pcaps")
    lab.set_defaults(run=run_lab)

    run = commands.add_parser(
        "run", help="run your server and client under capture and judge the wire: exit 0 match, 1 not, 2 unusable",
        description="Run a server and a client of your own under capture and hold the wire to an expectation. "
                    "CMD is split as a shell splits words; {host} and {port} in it are replaced.")
    run.add_argument("--server", required=True, metavar="CMD", help="the server's command line")
    run.add_argument("--client", required=True, metavar="CMD", help="the client's command line")
    run.add_argument("--expect", required=True, metavar="SPEC",
                     help=f"an expectation file, or a built-in one: {', '.join(builtin_names())}")
    run.add_argument("--port", type=int, metavar="PORT",
                     help="the server's fixed port (the lab report's is 8080); default: a free one, given as {port}")
    run.add_argument("--proto", choices=("tcp", "udp"), help="default: the expectation's protocol")
    run.add_argument("--host", default=LOOPBACK, help=f"the server's address, given as {{host}} (default: {LOOPBACK})")
    run.add_argument("--stdin", metavar="TEXT", help="the client's standard input (a client that calls input())")
    run.add_argument("--ready-line", metavar="REGEX",
                     help="the server is ready when it prints a line matching REGEX "
                          "(default: when a socket of it listens, or is bound, on the port)")
    run.add_argument("--isolate", action="store_true",
                     help="run in a network namespace of its own (root): a fixed port is then surely free")
    run.add_argument("--pcap", type=Path, metavar="FILE", help="where to save the capture "
                     "(default: captures/runs/run-TIME.pcapng)")
    run.add_argument("--svg", type=Path, metavar="FILE", help="also draw the conversation as an SVG ladder")
    run.add_argument("--html", type=Path, metavar="OUT",
                     help="also write one self-contained page: the verdict, the SVG ladder, the walk-through")
    run.add_argument("--lang", choices=LANGUAGES, help="the walk-through's language (default: the locale's)")
    run.add_argument("--backend", choices=BACKENDS, default="dumpcap", help="capture engine (default: dumpcap)")
    run.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                     help="for the server to be ready, and for the client to finish (default: 10)")
    run.set_defaults(run=run_run)


# The lab report's ports: its TCP server binds ('localhost', 8080), its UDP server ('127.0.0.1', 8081).
SEED_PORTS = {"tcp": 8080, "udp": 8081}


def run_lab(args) -> int:
    from harness.run.runner import run_scenario    # running programs: its imports are for this command only
    unknown = [name for name in args.scenarios if name not in LAB_SCENARIOS]
    if unknown:
        raise Unusable(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(LAB_SCENARIOS)}")
    writable_directory(args.pcap_dir, "--pcap-dir")
    status = OK
    names = args.scenarios or list(LAB_SCENARIOS)
    if args.seed_ports and not args.scenarios:
        # On a fixed port the TCP lab leaves its server's side in TIME_WAIT for a minute, which the next
        # run on that port waits out: the broken server, which resets and leaves none, goes first.
        names = sorted(names, key=lambda name: name != "tcp-broken-server")
    results = []
    for name in names:
        scenario = LAB_SCENARIOS[name]
        if args.seed_ports:
            scenario = dataclasses.replace(scenario, port=SEED_PORTS[scenario.proto])
        try:
            result = run_scenario(scenario, args.pcap_dir / f"{name}.pcapng", backend=args.backend)
        except HarnessError as error:
            raise Unusable(f"{name}: {error}") from None
        results.append(result)
        if result.ok and args.quiet:
            print(result.verdict())
        else:
            print(result.report())
            print()
        if not result.ok:
            status = MISMATCH
    if args.html:
        _write_page(args.html, "harness lab", results, args.lang)
    return status


def _write_page(path: Path, title: str, results, language: Optional[str]) -> None:
    from harness.render.page import run_page    # drawing is for this option only
    writable_directory(path.parent, "--html")
    write_text(path, run_page(title, results, language or default_language(), base=str(path.parent)))
    print(f"html: {path}")


def words(command: str, option: str) -> list:
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise Unusable(f"{option} {command!r}: {error}") from None
    if not words:
        raise Unusable(f"{option} is empty")
    return words


def scenario_from(args, name: str = "run", server: Optional[list] = None,
                  cwd: Optional[str] = None) -> Tuple[Scenario, Expectation]:
    """The scenario `harness run`'s (or `grade`'s) options describe, and its expectation."""
    wanted = expectation(args.expect)
    proto = args.proto or wanted.proto
    if proto is None:
        raise Unusable(f"{wanted.source} does not say TCP or UDP: give --proto")
    scenario = Scenario(name, proto, server or words(args.server, "--server"), words(args.client, "--client"),
                        wanted.source, port=args.port, ready_line=args.ready_line, client_stdin=args.stdin, cwd=cwd)
    return scenario, wanted


def timeouts_from(args) -> Timeouts:
    return Timeouts(server_ready=args.timeout, client_done=args.timeout)


def run_run(args) -> int:
    from harness.run.runner import run_scenario
    scenario, wanted = scenario_from(args)
    pcap = args.pcap or DEFAULT_PCAP_DIR / f"run-{time.strftime('%Y%m%d-%H%M%S')}.pcapng"
    writable_directory(pcap.parent, "--pcap")
    if args.isolate:
        from harness.run.scenario import Placement
        from harness.run.topology import Topology
        with Topology.loopback() as net:
            result = run_scenario(scenario, pcap, backend=args.backend, timeouts=timeouts_from(args),
                                  placement=Placement.within(net.namespace, args.host), expectation=wanted)
    else:
        result = run_scenario(scenario, pcap, backend=args.backend, timeouts=timeouts_from(args), host=args.host,
                              expectation=wanted)
    print(result.report())
    if args.svg:
        from harness.render import svg
        notes = result.expectation.frame_notes(result.conversation) if result.conversation else {}
        write_text(args.svg, svg.render_svg_all(result.analysis.conversations, str(result.capture.path), notes,
                                                title=result.verdict()))
        print(f"svg: {args.svg}")
    if args.html:
        _write_page(args.html, "harness run", [result], args.lang)
    return OK if result.ok else MISMATCH
