"""Shared pieces of the corpus generators (captures/corpus/_gen_*.py); not a generator itself.

Every generator runs real programs (curl, nc, socat, python's http.server) on loopback or in network
namespaces it creates, captures them with the harness's own capture API (start and end proven), checks
the result's shape with tshark, and only then moves the pcap into place. Every wait is bounded and
says what it waited for; nothing sleeps to synchronise.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

CORPUS = Path(__file__).resolve().parent
REPO = CORPUS.parents[1]
if str(REPO) not in sys.path:  # `python captures/corpus/_gen_x.py` from anywhere, installed or not
    sys.path.insert(0, str(REPO))

from harness import tools  # noqa: E402
from harness.run.capture import make_capture  # noqa: E402
from harness.run.process import Subject  # noqa: E402
from harness.run.settle import QUIET_STATES, sockets_on_port  # noqa: E402

SERVER_READY_SECONDS = 15.0


class GenerationError(RuntimeError):
    """The programs or the capture did not do what this corpus file is meant to show."""


# --- command line ---------------------------------------------------------------------------
def arguments(doc: str, argv=None, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS,
                        help="directory for the pcap (default: captures/corpus)")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def require(*names: str) -> None:
    missing = tools.missing(names)
    if missing:
        raise GenerationError(tools.missing_message(missing))


def run(argv: Sequence[str], timeout: float, what: str, ok: Iterable[int] = (0,),
        stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run a program to completion within `timeout`; fail naming it unless its status is in `ok`."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GenerationError(f"{what} did not finish within {timeout:g} s") from None
    if done.returncode not in tuple(ok):
        tail = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
        raise GenerationError(f"{what} exited with status {done.returncode}: {tail}")
    return done


# --- content served -------------------------------------------------------------------------
def make_site(directory: Path, bulk_bytes: int = 0) -> Path:
    """Deterministic files to serve: small.txt, a.txt, b.txt and (if asked) bulk.bin."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "small.txt").write_text("".join(f"harness corpus small file, line {i:02d}\n" for i in range(8)))
    (directory / "a.txt").write_text("first resource on a keep-alive connection\n" * 4)
    (directory / "b.txt").write_text("second resource on the same connection\n" * 6)
    if bulk_bytes:
        line = b"harness corpus bulk payload, line %08d ................................\n"
        lines = (line % i for i in range(bulk_bytes // len(line % 0) + 1))
        (directory / "bulk.bin").write_bytes(b"".join(lines)[:bulk_bytes])
    return directory


@contextmanager
def http_server(directory: Path, bind: str, protocol: str = "HTTP/1.0",
                netns: Optional[str] = None) -> Iterator[Tuple[Subject, int]]:
    """python's http.server on a port the kernel picks (port 0), read back from its banner line."""
    argv = [sys.executable, "-u", "-m", "http.server", "-b", bind, "-d", str(directory),
            "-p", protocol, "0"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    server = Subject(f"http.server ({protocol}) on {bind}", argv)
    with server:
        match = server.wait_for_line(r"Serving HTTP on .* port (\d+)", SERVER_READY_SECONDS)
        yield server, int(match.group(1))


def closed_tcp_port() -> Tuple[int, List[socket.socket]]:
    """A kernel-picked TCP port held by sockets bound on 127.0.0.1 and ::1 that never listen: SYNs to
    it get RST-ACK on both families, and nobody else can take the port while the sockets are held."""
    for _ in range(50):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("127.0.0.1", 0))
        port = v4.getsockname()[1]
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            v6.bind(("::1", port))
        except OSError:
            v4.close()
            v6.close()
            continue
        return port, [v4, v6]
    raise GenerationError("found no TCP port free on both 127.0.0.1 and ::1 in 50 tries")


def unused_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the kernel just handed out and that nobody holds any more (so datagrams to it
    draw ICMP port unreachable)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- capture --------------------------------------------------------------------------------
@contextmanager
def captured(name: str, work: Path, bpf: str, interface: str = "lo",
             probe_host: str = "127.0.0.1", probe_from_netns: Optional[str] = None) -> Iterator[Path]:
    """Capture into WORK/NAME (a scratch directory); the caller checks it and then calls publish()."""
    scratch = Path(work) / name
    with make_capture("dumpcap", scratch, interface=interface, bpf=bpf, probe_host=probe_host,
                      start_timeout=15.0, stop_timeout=15.0, probe_from_netns=probe_from_netns) as capture:
        yield scratch
    print(capture.result.describe())


def publish(scratch: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / scratch.name
    shutil.move(str(scratch), str(final))
    os.chmod(final, 0o644)
    print(f"wrote {final} ({final.stat().st_size} bytes)")
    return final


def wait_sockets_quiet(port: int, timeout: float, tables: Sequence[str], where: str) -> None:
    """Every socket on the port out of the busy states, in other namespaces' tables (/proc/PID/net/tcp)."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [(s, st) for s, st in sockets_on_port(port, tables) if st not in QUIET_STATES]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise GenerationError(f"TCP sockets on port {port} in {where} did not settle within "
                                  f"{timeout:g} s: {busy}")
        time.sleep(0.002)  # ok: polling a kernel table that offers no notification


# --- looking at the result with tshark ------------------------------------------------------
@dataclass
class Segment:
    frame: int
    stream: int
    sport: int
    dport: int
    syn: bool
    ack: bool
    fin: bool
    rst: bool
    length: int

    @property
    def flags(self) -> str:
        names = [n for n, on in (("SYN", self.syn), ("FIN", self.fin), ("RST", self.rst), ("ACK", self.ack)) if on]
        return ",".join(names)


def tshark_fields(path: Path, display_filter: str, fields: Sequence[str]) -> List[List[str]]:
    argv = ["tshark", "-r", str(path), "-n", "-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    for field in fields:
        argv += ["-e", field]
    done = run(argv, 120, f"tshark reading {path.name}")
    return [line.split("|") for line in done.stdout.splitlines() if line]


def tshark_count(path: Path, display_filter: str) -> int:
    return len(tshark_fields(path, display_filter, ["frame.number"]))


def tcp_segments(path: Path) -> List[Segment]:
    rows = tshark_fields(path, "tcp", ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport",
                                       "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin",
                                       "tcp.flags.reset", "tcp.len"])
    on = lambda v: v in ("1", "True", "true")  # noqa: E731
    return [Segment(int(r[0]), int(r[1]), int(r[2]), int(r[3]), on(r[4]), on(r[5]), on(r[6]), on(r[7]),
                    int(r[8] or 0)) for r in rows]


def by_stream(segments: List[Segment]) -> Dict[int, List[Segment]]:
    streams: Dict[int, List[Segment]] = {}
    for seg in segments:
        streams.setdefault(seg.stream, []).append(seg)
    return streams


def describe_close(segs: List[Segment], server_port: int) -> str:
    """'server-first 4-segment close', 'client-first 3-segment close', 'client RST', ..."""
    side = lambda s: "server" if s.sport == server_port else "client"  # noqa: E731
    resets = [s for s in segs if s.rst]
    fins = [s for s in segs if s.fin]
    if resets:
        first = resets[0]
        before = "after its FIN " if any(f.frame < first.frame and side(f) == side(first) for f in fins) else ""
        return f"{side(first)} RST {before}({len(resets)} RST segment{'s' * (len(resets) != 1)})"
    if len(fins) < 2:
        return f"incomplete close ({len(fins)} FIN)"
    first, second = fins[0], fins[1]
    tail = [s for s in segs if s.frame > first.frame]
    # 3-segment: the second FIN also acknowledges the first, with no bare ACK in between from that side.
    bare_acks = [s for s in tail if s.frame < second.frame and side(s) == side(second) and not s.fin
                 and s.length == 0]
    count = 3 if not bare_acks else 4
    return f"{side(first)}-first {count}-segment close"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise GenerationError(message)


def check_handshake(segs: List[Segment], server_port: int) -> None:
    expect(len(segs) >= 3, f"conversation has only {len(segs)} segments")
    a, b, c = segs[:3]
    expect(a.syn and not a.ack and a.dport == server_port, f"frame {a.frame} is not the client's SYN")
    expect(b.syn and b.ack and b.sport == server_port, f"frame {b.frame} is not the server's SYN-ACK")
    expect(c.ack and not c.syn and c.dport == server_port, f"frame {c.frame} is not the client's ACK")


def payload(segs: List[Segment], src_port: int) -> int:
    return sum(s.length for s in segs if s.sport == src_port)


def analysis_counts(path: Path) -> Dict[str, int]:
    """tshark's expert counts that matter for judging a conversation analysis."""
    names = ["retransmission", "fast_retransmission", "spurious_retransmission", "lost_segment",
             "ack_lost_segment", "duplicate_ack", "out_of_order", "zero_window", "window_full"]
    return {n: tshark_count(path, f"tcp.analysis.{n}") for n in names}


def main_wrapper(generate) -> None:
    """Run a generator; its own failures and the harness's end in one line on stderr and status 1."""
    from harness.run.capture import CaptureError
    from harness.run.process import SubjectError
    try:
        sys.exit(generate())
    except (GenerationError, CaptureError, SubjectError, TimeoutError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)



# --- the keep-alive scenario shared by http11-keepalive-client-close and ipv6-http -------------
def keepalive_two_urls(name: str, out_dir: Path, host: str) -> str:
    """curl --http1.1 fetches a.txt and b.txt over one connection from http.server -p HTTP/1.1 on
    HOST (127.0.0.1 or ::1); curl closes first when it exits. Returns the summary line."""
    from harness.run.settle import wait_tcp_settled
    import tempfile

    require("curl", "dumpcap", "tshark")
    url_host = f"[{host}]" if ":" in host else host
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site")
        with http_server(site, host, "HTTP/1.1") as (_server, port):
            with captured(name, work, f"tcp port {port}", probe_host=host) as pcap:
                done = run(["curl", "--http1.1", "-g", "-sS", "--max-time", "20",
                            "-w", "%{num_connects}\\n",
                            "-o", "/dev/null", f"http://{url_host}:{port}/a.txt",
                            "-o", "/dev/null", f"http://{url_host}:{port}/b.txt"], 30, "curl --http1.1")
                wait_tcp_settled(port, 5)
        expect(done.stdout.split() == ["1", "0"],
               f"curl did not reuse its connection (new connections per transfer: {done.stdout.split()})")
        streams = by_stream(tcp_segments(pcap))
        expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
        segs = streams[0]
        check_handshake(segs, port)
        requests = tshark_fields(pcap, "http.request", ["http.request.uri", "http.request.version"])
        expect(requests == [["/a.txt", "HTTP/1.1"], ["/b.txt", "HTTP/1.1"]], f"unexpected requests {requests}")
        responses = tshark_fields(pcap, "http.response", ["http.response.version", "http.response.code"])
        expect(responses == [["HTTP/1.1", "200"]] * 2, f"unexpected responses {responses}")
        close = describe_close(segs, port)
        expect(close.startswith("client-first"), f"expected the client to close first, got {close}")
        summary = (f"{len(segs)} segments, 2 requests on one connection, "
                   f"{payload(segs, port)} bytes from the server, {close}")
        publish(pcap, out_dir)
    return summary
