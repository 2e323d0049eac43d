"""bulk-download.pcapng: curl downloads a 3 MiB file from python's http.server over loopback.

    python captures/corpus/_gen_bulk-download.py [--out DIR]

Loopback's MTU is 65536, so the data travels in frames of up to 64 KiB, with window scaling and
many ACKs. The server (HTTP/1.0) closes first after the last byte (curl runs with
--ignore-content-length, so it waits for that FIN rather than racing it). dumpcap's 64 MiB kernel buffer
keeps up; a capture with drops fails.
Capture: dumpcap on lo, filter "tcp port P", start and end proven.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (analysis_counts, arguments, by_stream, captured, check_handshake,  # noqa: E402
                     describe_close, expect, http_server, main_wrapper, make_site, payload, publish,
                     require, run, tcp_segments)
from harness.run.settle import wait_tcp_settled  # noqa: E402

NAME = "bulk-download.pcapng"
SIZE = 3 << 20


def check(pcap: Path, port: int, curl_bytes: int) -> str:
    expect(curl_bytes == SIZE, f"curl downloaded {curl_bytes} bytes, not {SIZE}")
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
    segs = streams[0]
    check_handshake(segs, port)
    sent = payload(segs, port)
    expect(sent > SIZE, f"the server sent only {sent} bytes")
    largest = max(s.length for s in segs)
    close = describe_close(segs, port)
    expect(close.startswith("server-first"), f"expected the server to close first, got {close}")
    counts = analysis_counts(pcap)
    notes = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
    return (f"{len(segs)} segments, {sent} bytes from the server (largest segment {largest}), {close}"
            + (f"; tshark: {notes}" if notes else "; tshark: no retransmissions"))


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("curl", "dumpcap", "tshark")
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site", bulk_bytes=SIZE)
        with http_server(site, "127.0.0.1", "HTTP/1.0") as (_server, port):
            with captured(NAME, work, f"tcp port {port}") as pcap:
                done = run(["curl", "--ignore-content-length", "-sS", "--max-time", "60", "-o", "/dev/null",
                            "-w", "%{size_download}",
                            f"http://127.0.0.1:{port}/bulk.bin"], 90, "curl downloading bulk.bin")
                wait_tcp_settled(port, 5)
        print(f"{NAME}: {check(pcap, port, int(done.stdout.strip()))}")
        publish(pcap, args.out)
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
