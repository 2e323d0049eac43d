"""udp-unreachable.pcapng: UDP datagrams to a closed port draw ICMP port unreachable; one UDP echo.

    python captures/corpus/_gen_udp-unreachable.py [--out DIR]

In order:
  1. nc -u (OpenBSD netcat) sends "knock nc" to a closed port on 127.0.0.1: ICMP port unreachable;
  2. socat sends "knock socat" to the same closed port: ICMP port unreachable;
  3. nc -6 -u sends "knock nc6" to the same port number on ::1: ICMPv6 port unreachable;
  4. nc -u sends "hello echo" to socat running as a UDP echo server (UDP4-LISTEN ... PIPE) and gets
     the same datagram back (nc quits after 1 s without more data).
The closed port is one the kernel just handed out and nobody holds. The echo server's port is
picked by the kernel (port 0) and read from socat's "listening on" line.
Capture: dumpcap on lo, filter "udp port C or udp port E or icmp/icmp6 quoting a datagram to port C",
start and end proven.
"""
from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (SERVER_READY_SECONDS, arguments, captured, expect, main_wrapper,  # noqa: E402
                     publish, require, run, tshark_fields, unused_udp_port)
from harness.run.process import Subject  # noqa: E402

NAME = "udp-unreachable.pcapng"


def check(pcap: Path, closed: int, echo: int) -> str:
    rows = tshark_fields(pcap, "udp or icmp or icmpv6",
                         ["frame.number", "_ws.col.Protocol", "udp.srcport", "udp.dstport", "icmp.type",
                          "icmp.code", "icmpv6.type", "icmpv6.code", "udp.length"])
    shape = []
    for frame, proto, sport, dport, itype, icode, i6type, i6code, _length in rows:
        if itype:
            shape.append(f"ICMP {itype}/{icode} re {dport.split(',')[-1]}")
        elif i6type:
            shape.append(f"ICMPv6 {i6type}/{i6code} re {dport.split(',')[-1]}")
        else:
            shape.append(f"UDP {sport}>{dport}")
    # ICMP errors quote the datagram, so their udp.dstport is the quoted datagram's.
    c, e = str(closed), str(echo)
    expected = [f"UDP >{c}", f"ICMP 3/3 re {c}", f"UDP >{c}", f"ICMP 3/3 re {c}", f"UDP >{c}",
                f"ICMPv6 1/4 re {c}", f"UDP >{e}", f"UDP {e}>"]
    got = [re.sub(r"UDP (\d+)>(\d+)", lambda m: f"UDP >{m[2]}" if m[2] in (c, e) else f"UDP {m[1]}>", s)
           for s in shape]
    expect(got == expected, f"unexpected datagrams: {shape}")
    return ("3 datagrams to a closed port, each answered by port unreachable (ICMP 3/3 twice, "
            "ICMPv6 1/4 once), then one UDP request and its echo")


def generate(argv=None) -> int:
    args = arguments(__doc__, argv)
    require("nc", "socat", "dumpcap", "tshark")
    closed = unused_udp_port("127.0.0.1")
    echo_server = Subject("socat UDP echo server",
                          ["sh", "-c", "exec socat -d -d UDP4-LISTEN:0,bind=127.0.0.1 PIPE 2>&1"])
    with tempfile.TemporaryDirectory(prefix="corpus-") as work, echo_server:
        echo = int(echo_server.wait_for_line(r"listening on .*:(\d+)\s*$", SERVER_READY_SECONDS).group(1))
        # ICMP errors only if they quote a datagram to the closed port (quoted UDP destination port:
        # ICMP 8 + IPv4 20 + 2 bytes in; IPv6 40 + ICMPv6 8 + IPv6 40 + 2 bytes in).
        bpf = (f"udp port {closed} or udp port {echo} or (icmp and icmp[30:2] = {closed}) "
               f"or (icmp6 and ip6[90:2] = {closed})")
        with captured(NAME, Path(work), bpf) as pcap:
            run(["nc", "-u", "-w", "1", "127.0.0.1", str(closed)], 20, "nc -u to the closed port",
                stdin="knock nc\n", ok=(0, 1))
            run(["socat", "-", f"UDP4:127.0.0.1:{closed}"], 20, "socat to the closed port",
                stdin="knock socat\n", ok=(1,))
            run(["nc", "-6", "-u", "-w", "1", "::1", str(closed)], 20, "nc -6 -u to the closed port",
                stdin="knock nc6\n", ok=(0, 1))
            reply = run(["nc", "-u", "-w", "1", "127.0.0.1", str(echo)], 20, "nc -u to the echo server",
                        stdin="hello echo\n")
        expect(reply.stdout == "hello echo\n", f"the echo server answered {reply.stdout!r}")
        print(f"{NAME}: {check(pcap, closed, echo)}")
        publish(pcap, args.out)
    return 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
