"""Packets to conversations: who opened, who is who, relative sequence numbers. Pure code.

Rules (the same ones Wireshark's "relative sequence numbers" and Zeek's conn.log follow):

1. A conversation is identified by its two endpoints, regardless of direction.
2. TCP: the originator is the sender of a SYN without ACK. If the capture began mid-stream
   (no SYN seen), the sender of the first packet seen is taken as the originator, and
   `Conversation.began_mid_stream` says so.
3. TCP: a SYN without ACK on a pair that already has a conversation starts a NEW conversation
   when its sequence number differs from that conversation's initial one (port reuse); a SYN with
   the same sequence number is a retransmission and stays in the old one.
4. Relative sequence numbers are taken per direction from the ISN when the SYN was captured (the
   SYN is seq 0, the first data byte 1); without it, the first sequence number seen is taken as 1.
   A relative ACK is the raw ACK minus the base of the other direction; it is None on segments
   without the ACK flag, or when the other direction has not been seen yet.
5. UDP: the originator is the sender of the first datagram. Datagrams carry no sequence numbers.
   An ICMP port unreachable belongs to the conversation of the UDP datagram it quotes.
6. Anything that is neither TCP nor UDP never reaches here (the decoder drops it).
7. A conversation ends, and a later packet between the same endpoints starts a new one, once it
   has been closed (both FINs, or a RST) for CLOSE_DELAY seconds of capture time, or has been idle
   for TCP_IDLE_TIMEOUT / UDP_IDLE_TIMEOUT: Zeek's defaults. A tracker given `on_finished` hands
   each ended conversation over and forgets it, so its memory follows the open conversations,
   not the packets; the rest are handed over, in order, by `finish()`.

Nothing here opens files, sockets or processes: the input is any iterable of `Packet`.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from harness.connstate import ConnectionState
from harness.packet import ACK, SYN, TCP, UDP, Packet

SEQ_MODULO = 1 << 32


class Endpoint(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Segment(NamedTuple):
    """One packet as seen inside its conversation."""

    packet: Packet
    outbound: bool               # originator -> responder
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
    """One conversation: its endpoints, its ConnectionState, and (with keep_segments) its Segments."""

    # Slots: a long capture makes one of these per conversation, and every packet touches one.
    __slots__ = ("index", "proto", "orig", "resp", "began_mid_stream", "keep_segments", "segments", "state",
                 "unreachable", "first_time_ns", "last_time_ns", "_seq_base", "_orig_isn")

    def __init__(self, index: int, proto: int, orig: Endpoint, resp: Endpoint, began_mid_stream: bool = False,
                 keep_segments: bool = True) -> None:
        self.index = index                  # 1-based, in order of first packet
        self.proto = proto                  # TCP or UDP
        self.orig = orig
        self.resp = resp
        self.began_mid_stream = began_mid_stream
        self.keep_segments = keep_segments
        self.segments: List[Segment] = []
        self.state = ConnectionState(proto)
        self.unreachable: List[Tuple[int, int]] = []    # (frame, time_ns) of ICMP errors
        self.first_time_ns = 0
        self.last_time_ns = 0
        # Per direction (True = outbound) base for relative numbers, and the originator's ISN.
        self._seq_base: Dict[bool, int] = {}
        self._orig_isn: Optional[int] = None

    def __repr__(self) -> str:
        return (f"Conversation(index={self.index}, {self.describe()}, packets={self.packet_count}, "
                f"first_time_ns={self.first_time_ns}, last_time_ns={self.last_time_ns})")

    @property
    def proto_name(self) -> str:
        return {TCP: "tcp", UDP: "udp"}.get(self.proto, str(self.proto))

    def describe(self) -> str:
        opener = "first seen" if self.began_mid_stream else "originator"
        return f"{self.proto_name} {self.orig} ({opener}) <-> {self.resp}"

    @property
    def packet_count(self) -> int:
        return self.state.orig.packets + self.state.resp.packets

    def _add(self, packet: Packet) -> None:
        """Take the next packet; the tracker has set first_time_ns from the first one."""
        outbound = packet.sport == self.orig.port and packet.src == self.orig.host
        self.last_time_ns = packet.time_ns
        retransmitted = self.state.feed(packet, outbound)
        if self.keep_segments:
            self._keep(packet, outbound, retransmitted)

    def _keep(self, packet: Packet, outbound: bool, retransmitted: bool) -> None:
        if self.proto != TCP:
            self.segments.append(Segment(packet, outbound, None, None))
            return
        # Without its SYN, a side is numbered as if the SYN had come just before (tshark and Zeek agree).
        base = self._seq_base.setdefault(outbound, packet.seq if packet.flags & SYN else (packet.seq - 1) % SEQ_MODULO)
        rel_seq = (packet.seq - base) % SEQ_MODULO
        rel_ack = None
        peer_base = self._seq_base.get(not outbound)
        if packet.flags & ACK:
            if peer_base is None and packet.flags & SYN:
                # A SYN-ACK acknowledges ISN+1 of a SYN we may not have captured.
                peer_base = self._seq_base.setdefault(not outbound, (packet.ack - 1) % SEQ_MODULO)
            if peer_base is not None:
                rel_ack = (packet.ack - peer_base) % SEQ_MODULO
        self.segments.append(Segment(packet, outbound, rel_seq, rel_ack, retransmitted))


SECOND = 10**9        # capture times are integer nanoseconds
CLOSE_DELAY = 5 * SECOND
TCP_IDLE_TIMEOUT = 300 * SECOND
UDP_IDLE_TIMEOUT = 60 * SECOND
SWEEP_INTERVAL = SECOND   # capture time between looks for ended conversations


# No conversation ends before it has been idle this long: most packets are let through on one comparison.
SHORTEST_TIMEOUT = min(CLOSE_DELAY, TCP_IDLE_TIMEOUT, UDP_IDLE_TIMEOUT)


def ended(conversation: Conversation, now: int) -> bool:
    """Rule 7: has this conversation ended by capture time `now` (nanoseconds)?"""
    idle = now - conversation.last_time_ns
    if conversation.proto != TCP:
        return idle > UDP_IDLE_TIMEOUT
    return idle > TCP_IDLE_TIMEOUT or (idle > CLOSE_DELAY and conversation.state.closed)


Key = Tuple[str, int, str, int, int]


def _key(packet) -> Key:
    """Rule 1: the same key both ways (the lower endpoint first); `packet` is a Packet or UnreachableQuote."""
    src, sport, dst, dport = packet.src, packet.sport, packet.dst, packet.dport
    if src < dst or (src == dst and sport <= dport):
        return (src, sport, dst, dport, packet.proto)
    return (dst, dport, src, sport, packet.proto)


class ConversationTracker:
    """Feed packets in capture order; read `conversations` at any time (unless `on_finished` is given,
    in which case ended conversations are handed to it and not kept; call `finish()` at the end)."""

    def __init__(self, keep_segments: bool = True,
                 on_finished: Optional[Callable[[Conversation], None]] = None) -> None:
        self.keep_segments = keep_segments
        self.on_finished = on_finished
        self.conversations: List[Conversation] = []
        self.started = 0
        self._current: Dict[Key, Conversation] = {}
        self._next_sweep = -1 << 63

    def feed(self, packet: Packet) -> Conversation:
        src, sport, dst, dport, proto = packet.src, packet.sport, packet.dst, packet.dport, packet.proto
        # _key(packet), written out: this runs for every packet.
        if src < dst or (src == dst and sport <= dport):
            key = (src, sport, dst, dport, proto)
        else:
            key = (dst, dport, src, sport, proto)
        now = packet.time_ns
        conv = self._current.get(key)
        is_open = proto == TCP and packet.flags & (SYN | ACK) == SYN
        if conv is not None and (
                (now - conv.last_time_ns > SHORTEST_TIMEOUT and ended(conv, now))
                or (is_open and conv._orig_isn is not None and conv._orig_isn != packet.seq)):
            self._end(key, conv)  # rules 7 and 3: it ended, or the port is reused
            conv = None
        if conv is None:
            conv = self._start(packet, is_open)
            self._current[key] = conv
        conv._add(packet)
        if now >= self._next_sweep:
            self._sweep(now)
        return conv

    def finish(self) -> None:
        """The capture is over: hand over every conversation still open, in order of first packet."""
        for key, conv in list(self._current.items()):
            self._end(key, conv)

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        finished = [(key, conv) for key, conv in self._current.items()
                    if now - conv.last_time_ns > SHORTEST_TIMEOUT and ended(conv, now)]
        for key, conv in finished:
            self._end(key, conv)

    def _end(self, key: Key, conv: Conversation) -> None:
        if self._current.get(key) is conv:
            del self._current[key]
        if self.on_finished is not None:
            self.on_finished(conv)

    def feed_unreachable(self, quote, frame: int, time_ns: int) -> Optional[Conversation]:
        """An ICMP port unreachable quoting a UDP datagram: tie it to that datagram's conversation."""
        conv = self._current.get(_key(quote))
        if conv is not None:
            conv.unreachable.append((frame, time_ns))
        return conv

    def _start(self, packet: Packet, is_open: bool) -> Conversation:
        src, dst = Endpoint(packet.src, packet.sport), Endpoint(packet.dst, packet.dport)
        began_mid_stream = flipped = False
        if packet.proto == TCP and not is_open:
            if packet.flags & SYN:      # SYN-ACK first: its receiver opened
                src, dst = dst, src
                flipped = True
            else:
                began_mid_stream = True
        self.started += 1
        conv = Conversation(self.started, packet.proto, src, dst, began_mid_stream, self.keep_segments)
        conv.first_time_ns = packet.time_ns
        if flipped:
            conv.state.mark_flipped()
        if is_open:
            conv._orig_isn = packet.seq
        if self.on_finished is None:
            self.conversations.append(conv)
        return conv


def conversations(packets: Iterable[Packet], keep_segments: bool = True) -> List[Conversation]:
    tracker = ConversationTracker(keep_segments)
    for packet in packets:
        tracker.feed(packet)
    return tracker.conversations
