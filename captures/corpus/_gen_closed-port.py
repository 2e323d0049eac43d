"""closed-port.pcapng: TCP connects to a port nobody listens on, each refused with RST-ACK.

    python captures/corpus/_gen_closed-port.py [--out DIR]

Three refused connects to one kernel-picked port that a socket of ours holds bound but never
listening (so nobody else can take it): curl over IPv4, nc -z (OpenBSD netcat) over IPv4, nc -z
over IPv6. Each shows SYN, then RST-ACK from the port, and nothing else.
Capture: dumpcap on lo, filter "tcp port P", start and end proven.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (arguments, by_stream, captured, closed_tcp_port, expect, main_wrapper,  # noqa: E402
                     publish, require, run, tcp_segments)
from harness.run.settle import wait_tcp_settled  # noqa: E402

NAME = "closed-port.pcapng"
CURL_COULDNT_CONNECT = 7


def check(pcap: Path, port: int) -> str:
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 3, f"expected three refused connects, found {len(streams)} conversations")
    for number, segs in streams.items():
        shape = [(s.dport == port, s.flags, s.length) for s in segs]
        expect(shape == [(True, "SYN", 0), (False, "RST,ACK", 0)],
               f"conversation {number} is not SYN then RST-ACK: {[(s.frame, s.flags) for s in segs]}")
    return "3 conversations (curl IPv4, nc IPv4, nc IPv6), each SYN then RST-ACK from the closed port"


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("curl", "nc", "dumpcap", "tshark")
    port, held = closed_tcp_port()
    try:
        with tempfile.TemporaryDirectory(prefix="corpus-") as work:
            with captured(NAME, Path(work), f"tcp port {port}") as pcap:
                run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/"], 20,
                    "curl to the closed port", ok=(CURL_COULDNT_CONNECT,))
                run(["nc", "-z", "-w", "5", "127.0.0.1", str(port)], 20, "nc -z to the closed port", ok=(1,))
                run(["nc", "-6", "-z", "-w", "5", "::1", str(port)], 20, "nc -6 -z to the closed port", ok=(1,))
                wait_tcp_settled(port, 5)
            print(f"{NAME}: {check(pcap, port)}")
            publish(pcap, args.out)
    finally:
        for sock in held:
            sock.close()
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
