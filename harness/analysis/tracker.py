"""Packets to conversations: which conversation a packet belongs to, and when a conversation ends. Pure code.

Rules (Zeek's, with its default timers):

1. A conversation is identified by its two endpoints, regardless of direction (`_key`).
2. TCP: a SYN without ACK on a pair that already has a conversation starts a NEW conversation when
   its sequence number differs from that conversation's initial one (port reuse); a SYN with the
   same sequence number is a retransmission and stays in the old one.
3. A conversation ends, and a later packet between the same endpoints starts a new one, once it has
   been closed (both FINs, or a RST) for CLOSE_DELAY of capture time, or has been idle for
   TCP_IDLE_TIMEOUT / UDP_IDLE_TIMEOUT.
4. A tracker given `on_finished` hands each ended conversation over and forgets it, so its memory
   follows the open conversations, not the packets; the rest are handed over, in order of first
   packet, by `finish()`.
5. An ICMP port unreachable belongs to the conversation of the UDP datagram it quotes.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Tuple

from harness.analysis.conversation import SECOND, Conversation, Endpoint
from harness.wire.packet import ACK, SYN, TCP, Packet

CLOSE_DELAY = 5 * SECOND
TCP_IDLE_TIMEOUT = 300 * SECOND
UDP_IDLE_TIMEOUT = 60 * SECOND
SWEEP_INTERVAL = SECOND   # capture time between looks for ended conversations


# No conversation ends before it has been idle this long: most packets are let through on one comparison.
SHORTEST_TIMEOUT = min(CLOSE_DELAY, TCP_IDLE_TIMEOUT, UDP_IDLE_TIMEOUT)


def ended(conversation: Conversation, now: int) -> bool:
    """Rule 3: has this conversation ended by capture time `now` (nanoseconds)?"""
    idle = now - conversation.last_time_ns
    if conversation.proto != TCP:
        return idle > UDP_IDLE_TIMEOUT
    return idle > TCP_IDLE_TIMEOUT or (idle > CLOSE_DELAY and conversation.zeek.closed)


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
            self._end(key, conv)  # rules 3 and 2: it ended, or the port is reused
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
            conv.zeek.mark_flipped()
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
