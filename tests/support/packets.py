"""Build Packet sequences for the pure-analysis tests, with seq/ack numbers as a real TCP stack sets them."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from harness.wire.packet import ACK, FIN, PSH, RST, SYN, TCP, UDP, Packet

from support import pcapbuild as pb

FLAGS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "A": ACK}
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 8080)
START_NS = 1_700_000_000 * 10**9   # capture times are integer nanoseconds since the epoch
MILLISECOND = 10**6


def tcp(steps: Sequence[Tuple], client=CLIENT, server=SERVER, isn=(1000, 900000),
        first_frame: int = 1) -> List[Packet]:
    """steps: (direction 'C' or 'S', flag letters like 'PA', payload bytes[, overrides dict]).

    Each side's seq advances by payload, SYN and FIN; ACK numbers acknowledge all the peer sent.
    Overrides (seq=, ack=, mss=, wscale=, window=, options=, time_ns=) replace the computed values
    for one segment; by default segment n is sent at START_NS + n ms, and a SYN carries the options
    Linux sends (syn_options()).
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
        wscale = overrides.get("wscale", 7 if flags & SYN else None)
        time_ns = overrides.get("time_ns", START_NS + number * MILLISECOND)
        options = overrides.get("options", syn_options(mss, wscale, ts_val=number + 1, ts_ecr=0 if not flags & ACK else 1)
                                if flags & SYN else b"")
        packets.append(Packet(first_frame + number, time_ns, src[0], dst[0], TCP,
                              src[1], dst[1], len(payload), payload, seq, ack, flags,
                              overrides.get("window", 65483), mss, wscale,
                              overrides.get("ip_len", 40 + len(payload) + (12 if flags & SYN else 0)), options))
        consumed = len(payload) + bool(flags & SYN) + bool(flags & FIN)
        if "seq" not in overrides or seq + consumed > next_seq[direction]:
            next_seq[direction] = seq + consumed
    return packets


def syn_options(mss: Optional[int] = 65495, wscale: Optional[int] = 7, sack_permitted: bool = True,
                ts_val: Optional[int] = 1, ts_ecr: int = 0) -> bytes:
    """TCP option bytes in the order Linux sends them on a SYN: mss, sackOK, TS, nop, wscale."""
    raw = b""
    if mss is not None:
        raw += bytes([2, 4]) + mss.to_bytes(2, "big")
    if sack_permitted:
        raw += bytes([4, 2])
    if ts_val is not None:
        raw += bytes([8, 10]) + ts_val.to_bytes(4, "big") + ts_ecr.to_bytes(4, "big")
    if wscale is not None:
        raw += bytes([1, 3, 3, wscale])
    return raw


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
        packets.append(Packet(first_frame + number, START_NS + number * MILLISECOND, src[0], dst[0], UDP,
                              src[1], dst[1], len(payload), payload, ip_len=28 + len(payload)))
    return packets


def renumber(packets: Sequence[Packet], first_frame: int = 1) -> List[Packet]:
    return [p._replace(frame=first_frame + i) for i, p in enumerate(packets)]


def only(packets: Sequence[Packet], frame: int) -> Optional[Packet]:
    return next((p for p in packets if p.frame == frame), None)


def hole_filled_after(delay_ns: int, initial_rtt_ns: int = 68_665,
                      acked_by_server: Optional[int] = None) -> List[Packet]:
    """Client segments 1 and 3 (100 bytes each), then segment 2 `delay_ns` after segment 3 advanced
    the client's next sequence number, at today's epoch; the handshake's initial RTT is
    `initial_rtt_ns`. With `acked_by_server`, the server ACKs that number just after segment 3."""
    at = START_NS
    handshake = [("C", "S", b"", {"time_ns": at}), ("S", "SA", b"", {"time_ns": at + 20_000}),
                 ("C", "A", b"", {"time_ns": at + initial_rtt_ns})]
    third = at + initial_rtt_ns + 30_000
    steps = [("C", "PA", b"a" * 100, {"time_ns": third - 10_000}),
             ("C", "PA", b"c" * 100, {"seq": 1201, "time_ns": third})]
    if acked_by_server:
        steps.append(("S", "A", b"", {"ack": acked_by_server, "time_ns": third + 1}))
    steps.append(("C", "PA", b"b" * 100, {"seq": 1101, "time_ns": third + delay_ns}))
    return renumber(tcp(handshake + steps))


def to_pcap(packets: Sequence[Packet]) -> bytes:
    """The packets as a nanosecond pcap of Ethernet/IPv4 frames (TCP options aside), for tshark to judge."""
    records = []
    for p in packets:
        if p.proto == TCP:
            transport = pb.tcp(p.sport, p.dport, p.seq, p.ack, p.flags, p.window, payload=p.payload)
        else:
            transport = pb.udp(p.sport, p.dport, p.payload)
        frame = pb.ether(pb.ipv4(p.src, p.dst, p.proto, transport))
        records.append((p.time_ns // 10**9, p.time_ns % 10**9, frame))
    return pb.pcap(records, nano=True)
