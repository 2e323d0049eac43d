"""socat-fin-then-rst.pcapng: socat (linger=0) reads part of an HTTP response, then sends FIN and RST.

    python captures/corpus/_gen_socat-fin-then-rst.py [--out DIR]

socat sends "GET /bulk.bin HTTP/1.0" to python's http.server (1 MiB file) with the options
linger=0 (SO_LINGER 0), rcvbuf=8192 (keeps the server mid-response) and readbytes=32768. At that
count socat treats the socket as at EOF and closes it as it always does: shutdown(SHUT_RDWR),
which sends a FIN, then close(), which with SO_LINGER 0 (and unread data) sends a RST. So the
client's FIN is acknowledged by the server and followed by the client's RST; the server never
sends its FIN.
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

NAME = "socat-fin-then-rst.pcapng"
READ_BYTES = 32768


def check(pcap: Path, port: int) -> str:
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
    segs = streams[0]
    check_handshake(segs, port)
    fins = [s for s in segs if s.fin]
    expect(len(fins) == 1 and fins[0].dport == port, f"expected one FIN, from the client: {fins}")
    expect(segs[-1].rst and segs[-1].dport == port, f"the last segment (frame {segs[-1].frame}) is not "
                                                    f"the client's RST")
    expect(all(s.dport == port for s in segs if s.rst), "a RST from the server")
    sent = payload(segs, port)
    expect(READ_BYTES <= sent < 1 << 20, f"the server sent {sent} bytes")
    counts = analysis_counts(pcap)
    notes = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
    return (f"{len(segs)} segments, {sent} bytes from the server, {describe_close(segs, port)}"
            + (f"; tshark: {notes}" if notes else ""))


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("socat", "dumpcap", "tshark")
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site", bulk_bytes=1 << 20)
        with http_server(site, "127.0.0.1", "HTTP/1.0") as (_server, port):
            with captured(NAME, work, f"tcp port {port}") as pcap:
                done = run(["socat", "-t", "0", "STDIO,ignoreeof",
                            f"TCP:127.0.0.1:{port},linger=0,rcvbuf=8192,readbytes={READ_BYTES}"],
                           30, "socat", stdin="GET /bulk.bin HTTP/1.0\r\n\r\n")
                wait_tcp_settled(port, 5)
        expect(len(done.stdout.encode("latin-1", "replace")) > 0, "socat printed nothing")
        print(f"{NAME}: {check(pcap, port)}")
        publish(pcap, args.out)
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
