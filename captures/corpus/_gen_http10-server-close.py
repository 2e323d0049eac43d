"""http10-server-close.pcapng: curl fetches one small file with HTTP/1.0 from python's http.server.

    python captures/corpus/_gen_http10-server-close.py [--out DIR]

HTTP/1.0 without keep-alive: the server sends the response and closes first; curl then closes.
curl runs with --ignore-content-length, so it reads until the server's FIN instead of closing as soon
as Content-Length bytes are in (which races the server's close); the wire is otherwise the same.
Capture: dumpcap on lo, filter "tcp port P" (P picked by the kernel), start and end proven.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (arguments, by_stream, captured, check_handshake, describe_close, expect,  # noqa: E402
                     http_server, main_wrapper, make_site, payload, publish, require, run,
                     tcp_segments, tshark_fields)
from harness.run.settle import wait_tcp_settled  # noqa: E402

NAME = "http10-server-close.pcapng"


def check(pcap: Path, port: int) -> str:
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
    segs = streams[0]
    check_handshake(segs, port)
    requests = tshark_fields(pcap, "http.request", ["http.request.method", "http.request.uri",
                                                     "http.request.version"])
    expect(requests == [["GET", "/small.txt", "HTTP/1.0"]], f"unexpected requests {requests}")
    close = describe_close(segs, port)
    expect(close.startswith("server-first"), f"expected the server to close first, got {close}")
    return f"{len(segs)} segments, {payload(segs, port)} bytes from the server, {close}"


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("curl", "dumpcap", "tshark")
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site")
        with http_server(site, "127.0.0.1", "HTTP/1.0") as (_server, port):
            with captured(NAME, work, f"tcp port {port}") as pcap:
                run(["curl", "--http1.0", "--ignore-content-length", "-sS", "--max-time", "20",
                     "-o", "/dev/null", f"http://127.0.0.1:{port}/small.txt"], 30, "curl --http1.0")
                wait_tcp_settled(port, 5)
        print(f"{NAME}: {check(pcap, port)}")
        publish(pcap, args.out)
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
