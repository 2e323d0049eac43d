"""abort-linger0.pcapng: a client reads part of an HTTP response, then aborts with SO_LINGER 0 (RST).

    python captures/corpus/_gen_abort-linger0.py [--out DIR]

The client is a small python program (_linger0_client.py: no Debian client aborts like this on
cue); the server is python's http.server (HTTP/1.0) sending a 1 MiB file. The client's small
receive window keeps the server mid-response, so the conversation ends with the client's RST and
no FIN from either side.
Capture: dumpcap on lo, filter "tcp port P", start and end proven.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (CORPUS, analysis_counts, arguments, by_stream, captured, check_handshake,  # noqa: E402
                     describe_close, expect, http_server, main_wrapper, make_site, payload, publish,
                     require, run, tcp_segments)
from harness.run.settle import wait_tcp_settled  # noqa: E402

NAME = "abort-linger0.pcapng"
ABORT_AFTER = 32768


def check(pcap: Path, port: int) -> str:
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
    segs = streams[0]
    check_handshake(segs, port)
    expect(not any(s.fin for s in segs), "a FIN was sent: the abort came too late")
    resets = [s for s in segs if s.rst]
    expect(resets and all(s.dport == port for s in resets), "no RST, or a RST from the server")
    expect(segs[-1].rst, f"the last segment (frame {segs[-1].frame}) is not the client's RST")
    sent = payload(segs, port)
    expect(ABORT_AFTER <= sent < 1 << 20, f"the server sent {sent} bytes before the abort")
    counts = analysis_counts(pcap)
    notes = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
    return (f"{len(segs)} segments, {sent} bytes from the server before {describe_close(segs, port)}"
            + (f"; tshark: {notes}" if notes else ""))


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("dumpcap", "tshark")
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site", bulk_bytes=1 << 20)
        with http_server(site, "127.0.0.1", "HTTP/1.0") as (_server, port):
            with captured(NAME, work, f"tcp port {port}") as pcap:
                done = run([sys.executable, str(CORPUS / "_linger0_client.py"), "127.0.0.1", str(port),
                            "/bulk.bin", str(ABORT_AFTER)], 30, "the SO_LINGER 0 client")
                wait_tcp_settled(port, 5)
        print(done.stdout.strip())
        print(f"{NAME}: {check(pcap, port)}")
        publish(pcap, args.out)
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
