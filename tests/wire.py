"""Build Packet sequences for the pure-analysis tests, with seq/ack numbers as a real TCP stack sets them."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from harness.packet import ACK, FIN, PSH, RST, SYN, TCP, UDP, Packet

FLAGS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "A": ACK}
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 8080)


def tcp(steps: Sequence[Tuple], client=CLIENT, server=SERVER, isn=(1000, 900000),
        first_frame: int = 1) -> List[Packet]:
    """steps: (direction 'C' or 'S', flag letters like 'PA', payload bytes[, overrides dict]).

    Each side's seq advances by payload, SYN and FIN; ACK numbers acknowledge all the peer sent.
    Overrides (seq=, ack=, mss=, window=) replace the computed values for one segment.
    """
    next_seq = {"C": isn[0], "S": isn[1]}
    packets = []
    for number, step in enumerate(steps):
        direction, letters, payload = step[:3]
        overrides = step[3] if len(step) > 3 else {}
        flags = 0
        for letter in letters:
            flags |= FLAGS[letter]
        peer = "S" if direction == "C" else "C"
        src, dst = (client, server) if direction == "C" else (server, client)
        seq = overrides.get("seq", next_seq[direction])
        ack = overrides.get("ack", next_seq[peer] if flags & ACK else 0)
        mss = overrides.get("mss", 65495 if flags & SYN else None)
        packets.append(Packet(first_frame + number, 1700000000.0 + number * 0.001, src[0], dst[0], TCP,
                              src[1], dst[1], len(payload), payload, seq, ack, flags,
                              overrides.get("window", 65483), mss, 7 if flags & SYN else None))
        consumed = len(payload) + bool(flags & SYN) + bool(flags & FIN)
        if "seq" not in overrides or seq + consumed > next_seq[direction]:
            next_seq[direction] = seq + consumed
    return packets


HANDSHAKE = [("C", "S", b""), ("S", "SA", b""), ("C", "A", b"")]
LAB_DATA = [("C", "PA", b"yp"), ("S", "A", b""), ("S", "PA", b"thank you !"), ("C", "A", b"")]
FOUR_WAY_SERVER_FIRST = [("S", "FA", b""), ("C", "A", b""), ("C", "FA", b""), ("S", "A", b"")]
THREE_WAY_SERVER_FIRST = [("S", "FA", b""), ("C", "FA", b""), ("S", "A", b"")]
CLIENT_FIRST = [("C", "FA", b""), ("S", "A", b""), ("S", "FA", b""), ("C", "A", b"")]


def udp(datagrams: Sequence[Tuple[str, bytes]], client=CLIENT, server=SERVER,
        first_frame: int = 1) -> List[Packet]:
    packets = []
    for number, (direction, payload) in enumerate(datagrams):
        src, dst = (client, server) if direction == "C" else (server, client)
        packets.append(Packet(first_frame + number, 1700000000.0 + number * 0.001, src[0], dst[0], UDP,
                              src[1], dst[1], len(payload), payload))
    return packets


def renumber(packets: Sequence[Packet], first_frame: int = 1) -> List[Packet]:
    return [p._replace(frame=first_frame + i) for i, p in enumerate(packets)]


def only(packets: Sequence[Packet], frame: int) -> Optional[Packet]:
    return next((p for p in packets if p.frame == frame), None)
