"""A conversation and its segments: who opened, who is who, relative sequence numbers. Pure code.

Rules (the same ones Wireshark's "relative sequence numbers" and Zeek's conn.log follow):

1. The originator is the sender of the first packet, unless Zeek's rules flip the roles
   (harness.analysis.zeek, rule 3: at the first packet by likely server ports; a capture that begins
   with the SYN-ACK, at the first ACK or payload that follows). When the roles flip, every segment
   kept so far is turned round with them. If the capture began mid-stream (a TCP conversation whose
   first packet is no SYN), `began_mid_stream` says so.
2. Relative sequence numbers are taken per direction from the ISN when the SYN was captured (the
   SYN is seq 0, the first data byte 1); without it, the first sequence number seen is taken as 1.
   A relative ACK is the raw ACK minus the base of the other direction; it is None on segments
   without the ACK flag, or when the other direction has not been seen yet.
3. UDP: the originator is the sender of the first datagram. Datagrams carry no sequence numbers.
4. Which packets belong to a conversation, and when it ends, is the tracker's business
   (harness.analysis.tracker); what each packet does to its state, the two analyzers': Zeek's
   states, history and bytes (harness.analysis.zeek), tshark's counters (harness.analysis.tshark).

Nothing here opens files, sockets or processes: the input is `Packet`s, one at a time.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

from harness.analysis.tshark import TsharkState
from harness.analysis.zeek import ZeekState
from harness.wire.packet import ACK, SEQ_MODULO, SYN, TCP, UDP, Packet, flag_names



PROTO_NAMES = {TCP: "tcp", UDP: "udp"}


class Endpoint(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Segment(NamedTuple):
    """One packet as seen inside its conversation."""

    packet: Packet
    is_orig: bool                # sent by the originator (Zeek's is_orig)
    rel_seq: Optional[int]       # None for UDP
    rel_ack: Optional[int]       # None without ACK flag, or for UDP
    retransmitted: bool = False  # payload that did not advance its side's sequence space

    @property
    def flags(self) -> int:
        return self.packet.flags

    @property
    def length(self) -> int:
        return self.packet.payload_len

    @property
    def payload(self) -> bytes:
        return self.packet.payload


class Conversation:
    """One conversation: its endpoints, Zeek's and tshark's view of it (`zeek`, `tshark`, the latter
    for TCP only), and (with keep_segments) its Segments."""

    # Slots: a long capture makes one of these per conversation, and every packet touches one.
    __slots__ = ("index", "proto", "orig", "resp", "began_mid_stream", "keep_segments", "segments", "zeek", "tshark",
                 "unreachable", "first_time_ns", "last_time_ns", "first_frame", "last_frame", "end_frame", "key", "_seq_base",
                 "_ended")

    def __init__(self, index: int, proto: int, orig: Endpoint, resp: Endpoint, began_mid_stream: bool = False,
                 keep_segments: bool = True, zeek: Optional[ZeekState] = None) -> None:
        self.index = index                  # 1-based, in order of first packet
        self.proto = proto                  # TCP or UDP
        self.orig = orig
        self.resp = resp
        self.began_mid_stream = began_mid_stream
        self.keep_segments = keep_segments
        self.segments: List[Segment] = []
        self.zeek = zeek if zeek is not None else ZeekState(proto)
        self.tshark = TsharkState() if proto == TCP else None
        self.unreachable: List[Tuple[int, int]] = []    # (frame, time_ns) of ICMP errors
        self.first_time_ns = 0
        self.last_time_ns = 0               # the last packet's time (conn.log's duration is Zeek's: zeek.last_time)
        self.key: Tuple = ()                # the tracker's
        self.first_frame = 0                # the tracker's: its first packet's frame
        self.last_frame = 0                 # the tracker's: its last frame (a packet, or an ICMP error)
        self.end_frame: Optional[int] = None    # the tracker's: the frame that ended it (None: the capture's end)
        # Per direction (True: from the originator) base for relative numbers.
        self._seq_base: Dict[bool, int] = {}
        self._ended = False

    def __repr__(self) -> str:
        return (f"Conversation(index={self.index}, {self.describe()}, packets={self.packet_count}, "
                f"first_time_ns={self.first_time_ns}, last_time_ns={self.last_time_ns})")

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))

    def describe(self) -> str:
        opener = "first seen" if self.began_mid_stream else "originator"
        return f"{self.proto_name} {self.orig} ({opener}) <-> {self.resp}"

    @property
    def packet_count(self) -> int:
        return self.zeek.orig.packets + self.zeek.resp.packets

    def _add(self, packet: Packet) -> None:
        """Take the next packet; the tracker has set first_time_ns from the first one."""
        is_orig = packet.sport == self.orig.port and packet.src == self.orig.host
        self.last_time_ns = packet.time_ns
        flips = self.zeek.flips
        retransmitted = self.zeek.feed(packet, is_orig)
        if self.zeek.flips != flips:
            self._flip()
            is_orig = packet.sport == self.orig.port and packet.src == self.orig.host
        if self.tshark is not None:
            self.tshark.feed(packet, is_orig)
        if self.keep_segments:
            self._keep(packet, is_orig, retransmitted)

    def _add_corrupt(self, packet: Packet) -> None:
        """A packet discarded for its bad checksum: Zeek's history C, and nothing else."""
        self.zeek.checksum_error(packet.sport == self.orig.port and packet.src == self.orig.host)

    def _flip(self) -> None:
        """Zeek flipped the roles: the originator is the other side, for everything kept so far too."""
        self.orig, self.resp = self.resp, self.orig
        if self.tshark is not None:
            self.tshark.orig, self.tshark.resp = self.tshark.resp, self.tshark.orig
        self._seq_base = {not is_orig: base for is_orig, base in self._seq_base.items()}
        self.segments = [segment._replace(is_orig=not segment.is_orig) for segment in self.segments]

    def _keep(self, packet: Packet, is_orig: bool, retransmitted: bool) -> None:
        if self.proto != TCP:
            self.segments.append(Segment(packet, is_orig, None, None))
            return
        # Without its SYN, a side is numbered as if the SYN had come just before (tshark and Zeek agree).
        base = self._seq_base.setdefault(is_orig, packet.seq if packet.flags & SYN else (packet.seq - 1) % SEQ_MODULO)
        rel_seq = (packet.seq - base) % SEQ_MODULO
        rel_ack = None
        peer_base = self._seq_base.get(not is_orig)
        if packet.flags & ACK:
            if peer_base is None and packet.flags & SYN:
                # A SYN-ACK acknowledges ISN+1 of a SYN we may not have captured.
                peer_base = self._seq_base.setdefault(not is_orig, (packet.ack - 1) % SEQ_MODULO)
            if peer_base is not None:
                rel_ack = (packet.ack - peer_base) % SEQ_MODULO
        self.segments.append(Segment(packet, is_orig, rel_seq, rel_ack, retransmitted))


SECOND = 10**9        # capture times are integer nanoseconds


def describe_segment(segment: Segment, proto: int, padded: bool = False, direction: bool = False) -> str:
    """A segment in words, as the ladder and the expectations' problems show it: "SYN, ACK seq=0 ack=1
    len=0", or "UDP len=11"; `padded` aligns the fields in columns, as a ladder's rows need, and
    `direction` puts C>S or S>C (client to server, or back) in front, as an expectation's steps do."""
    prefix = ("C>S " if segment.is_orig else "S>C ") if direction else ""
    if proto != TCP:
        return f"{prefix}UDP len={segment.length}"
    if padded:
        ack = "-" if segment.rel_ack is None else segment.rel_ack
        return f"{prefix}{flag_names(segment.flags):<13} seq={segment.rel_seq:<4} ack={ack:<4} len={segment.length}"
    return f"{prefix}{flag_names(segment.flags)} seq={segment.rel_seq} ack={segment.rel_ack} len={segment.length}"
