"""Packets to conversations: which conversation a packet belongs to, and when a conversation ends. Pure code.

Rules (Zeek's session manager and timer manager, src/session/Manager.cc, src/Timer.cc, src/RunState.cc,
src/packet_analysis/protocol/ip/IPBasedAnalyzer.cc):

1. A conversation is identified by its two endpoints, regardless of direction (`_key`).
2. Capture time is the highest packet time seen so far (Zeek's network_time never goes back).
   Before each packet, every timer due by then fires, in order of its time (harness.analysis.zeek
   says which timers a connection sets and what each does); a timer that ends a connection hands
   it over, and a later packet between the same endpoints starts a new one.
3. TCP: a SYN on a pair that already has a conversation starts a NEW conversation when Zeek's
   IsReuse says so (either side has closed or reset, or the sequence number is not the initial one);
   otherwise it belongs to the old one.
4. A new conversation's originator is its first packet's sender, unless Zeek's likely-server-port
   rule flips the roles (`_flips_at_start`; a broadcast destination is never made the originator).
5. A packet whose TCP or UDP checksum is bad (`feed_corrupt`, only when checksums are verified) is
   looked up, and starts a conversation, like any other, but Zeek then discards it: it counts only
   as history C.
6. A tracker given `on_finished` hands each ended conversation over and forgets it, so its memory
   follows the open conversations, not the packets; the rest are handed over, in order of first
   packet, by `finish()`. A conversation's packets are those of its key from its `first_frame` to its
   `last_frame` (its last packet, or the last ICMP error tied to it); `end_frame` is the frame whose
   packet ended it (None: the capture's end). That is how a second pass finds them again (Replay).
7. An ICMP port unreachable belongs to the conversation of the UDP datagram it quotes.
"""
from __future__ import annotations

import heapq
from array import array
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from harness.analysis.conversation import Conversation, Endpoint
from harness.errors import InputError
from harness.analysis.zeek import ZeekSettings, ZeekState
from harness.wire.packet import ACK, SYN, TCP, UDP, Packet

Key = Tuple[str, int, str, int, int]
_BROADCAST = "255.255.255.255"
# Queued timers beyond 8 per open conversation that may pile up before those of ended ones are dropped.
TIMER_QUEUE_SLACK = 4096


def _key(packet) -> Key:
    """Rule 1: the same key both ways (the lower endpoint first); `packet` is a Packet or UnreachableQuote."""
    src, sport, dst, dport = packet.src, packet.sport, packet.dst, packet.dport
    if src < dst or (src == dst and sport <= dport):
        return (src, sport, dst, dport, packet.proto)
    return (dst, dport, src, sport, packet.proto)


def _flips_at_start(packet: Packet, likely_server_ports) -> bool:
    """Rule 4, as Zeek's TCPAnalyzer/UDPAnalyzer::WantConnection decide it."""
    sport, dport = packet.sport, packet.dport
    if packet.proto == TCP:
        flags = packet.flags
        if flags & SYN and not flags & ACK:
            return False
        flip = False
        if (sport, TCP) in likely_server_ports:
            # Both plausible: flip only if this is not a SYN-ACK (stealth scans) and the source port is lower.
            flip = (not flags & SYN and sport < dport) if (dport, TCP) in likely_server_ports else True
    else:
        flip = (sport, UDP) in likely_server_ports and (dport, UDP) not in likely_server_ports
    return flip and packet.dst != _BROADCAST


class ConversationTracker:
    """Feed packets in capture order; read `conversations` at any time (unless `on_finished` is given,
    in which case ended conversations are handed to it and not kept; call `finish()` at the end).
    With `keeps`, only the conversations it returns True for (asked as each begins) keep segments."""

    def __init__(self, keep_segments: bool = True,
                 on_finished: Optional[Callable[[Conversation], None]] = None,
                 settings: ZeekSettings = ZeekSettings(),
                 keeps: Optional[Callable[[Conversation], bool]] = None) -> None:
        self.keep_segments = keep_segments
        self.keeps = keeps              # which conversations keep their segments (default: all, if keep_segments)
        self.on_finished = on_finished
        self.settings = settings
        self.conversations: List[Conversation] = []
        self.started = 0
        self.network_time: Optional[int] = None
        self._current: Dict[Key, Conversation] = {}
        # (time, order, conversation's number, kind, generation): by number, not by reference, so a
        # conversation handed over is not kept alive by its timers still in the queue.
        self._timers: List[Tuple[int, int, int, str, int]] = []
        self._open_by_index: Dict[int, Conversation] = {}
        self._timer_order = 0
        self._frame: Optional[int] = None    # the frame being fed: what ends now ends at it

    def feed(self, packet: Packet) -> Conversation:
        conv = self._lookup(packet)
        conv._add(packet)
        conv.last_frame = packet.frame
        self._schedule(conv)
        return conv

    def feed_corrupt(self, packet: Packet) -> Conversation:
        """Rule 5: a packet with a bad TCP/UDP checksum."""
        conv = self._lookup(packet)
        conv._add_corrupt(packet)
        conv.last_frame = packet.frame
        self._schedule(conv)
        return conv

    def _lookup(self, packet: Packet) -> Conversation:
        now = packet.time_ns
        self._frame = packet.frame
        if self.network_time is None or now > self.network_time:
            self.network_time = now
        if self._timers and self._timers[0][0] <= self.network_time:
            self._advance(self.network_time)
        src, sport, dst, dport, proto = packet.src, packet.sport, packet.dst, packet.dport, packet.proto
        # _key(packet), written out: this runs for every packet.
        if src < dst or (src == dst and sport <= dport):
            key = (src, sport, dst, dport, proto)
        else:
            key = (dst, dport, src, sport, proto)
        conv = self._current.get(key)
        if conv is not None and proto == TCP and packet.flags & SYN and conv.zeek.is_reuse(packet):
            self._end(key, conv)   # rule 3
            conv = None
        if conv is None:
            conv = self._start(packet)
            conv.key = key
            self._current[key] = conv
            self._open_by_index[conv.index] = conv
        return conv

    def _schedule(self, conv: Conversation) -> None:
        timers = conv.zeek.timers
        if timers:
            for when, kind, generation in timers:
                self._timer_order += 1
                heapq.heappush(self._timers, (when, self._timer_order, conv.index, kind, generation))
            timers.clear()

    def _advance(self, now: int) -> None:
        """Rule 2: fire every timer due by `now`."""
        heap = self._timers
        while heap and heap[0][0] <= now:
            _when, _order, index, kind, generation = heapq.heappop(heap)
            conv = self._open_by_index.get(index)
            if conv is None:
                continue
            if conv.zeek.on_timer(kind, generation, now):
                self._end(conv.key, conv)
            else:
                self._schedule(conv)

    def finish(self) -> None:
        """The capture is over: hand over every conversation still open, in order of first packet."""
        self._frame = None
        for key, conv in list(self._current.items()):
            self._end(key, conv)
        self._timers.clear()

    def _end(self, key: Key, conv: Conversation) -> None:
        if self._current.get(key) is conv:
            del self._current[key]
        self._open_by_index.pop(conv.index, None)
        if len(self._timers) > 8 * len(self._open_by_index) + TIMER_QUEUE_SLACK:
            # An ended conversation's timers stay queued until due (an idle timer, minutes on): left
            # alone they would grow with the capture, not with what is open.
            # In place: _advance may be walking this very list.
            self._timers[:] = [timer for timer in self._timers if timer[2] in self._open_by_index]
            heapq.heapify(self._timers)
        conv._ended = True
        conv.end_frame = self._frame
        if self.on_finished is not None:
            self.on_finished(conv)

    def feed_unreachable(self, quote, frame: int, time_ns: int) -> Optional[Conversation]:
        """An ICMP port unreachable quoting a UDP datagram: tie it to that datagram's conversation."""
        conv = self._current.get(_key(quote))
        if conv is not None:
            conv.unreachable.append((frame, time_ns))
            conv.last_frame = frame
        return conv

    def _start(self, packet: Packet) -> Conversation:
        self.started += 1
        conv = new_conversation(packet, self.started, self.settings, self.network_time, self.keep_segments)
        if self.keeps is not None and not self.keeps(conv):
            conv.keep_segments = False
        if self.on_finished is None:
            self.conversations.append(conv)
        return conv


def new_conversation(packet: Packet, index: int, settings: ZeekSettings, network_time: Optional[int],
                     keep_segments: bool = True) -> Conversation:
    """Conversation number `index`, begun by `packet` (rule 4 decides who is who)."""
    src, dst = Endpoint(packet.src, packet.sport), Endpoint(packet.dst, packet.dport)
    flipped = _flips_at_start(packet, settings.likely_server_ports)
    if flipped:
        src, dst = dst, src
    began_mid_stream = packet.proto == TCP and not packet.flags & SYN
    zeek = ZeekState(packet.proto, packet.time_ns, settings, network_time)
    if flipped:
        zeek.mark_flipped()
    conv = Conversation(index, packet.proto, src, dst, began_mid_stream, keep_segments, zeek)
    conv.first_time_ns = packet.time_ns
    conv.first_frame = packet.frame
    return conv


class Frames:
    """What a first pass found of every conversation (rule 6), by number, in arrays of machine words (25
    bytes a conversation, whatever it held): its first, last and end frame, and whether it is wanted."""

    def __init__(self) -> None:
        self.first = array("q")
        self.last = array("q")
        self.end = array("q")          # 0: it lasted to the capture's end
        self.wanted = bytearray()

    def __len__(self) -> int:
        return len(self.first)

    def add(self, index: int, first_frame: int, last_frame: int, end_frame: Optional[int], wanted: bool) -> None:
        grow = index - len(self.first)
        if grow > 0:
            for column in (self.first, self.last, self.end):
                column.extend([0] * grow)
            self.wanted.extend(bytes(grow))
        at = index - 1
        self.first[at], self.last[at], self.end[at] = first_frame, last_frame, end_frame or 0
        self.wanted[at] = 1 if wanted else 0

    def keep_only_the_first_wanted(self) -> None:
        first = self.wanted.find(1)
        if first >= 0:
            self.wanted[first + 1:] = bytes(len(self.wanted) - first - 1)

    def last_wanted_frame(self) -> Optional[int]:
        """The last frame any wanted conversation has, or None when none is wanted."""
        frames = [self.last[at] for at in range(len(self.wanted)) if self.wanted[at]]
        return max(frames) if frames else None


class ReplayMismatch(InputError):
    """The second pass met a conversation where the first had none: the two passes disagree, which
    they can only if the file changed between them (a capture still being written, say)."""


class Replay:
    """A second pass over a capture that rebuilds only the wanted conversations of `frames`, with their
    segments, from the same capture's packets fed in the same order.

    It needs no key from the first pass: a packet whose key has no conversation in progress (begun, and
    not yet past its last frame) begins the next conversation by number, which must begin at that very
    frame; every other packet belongs to the conversation in progress on its key (rule 6). So nothing is
    tracked of a conversation before its first frame or after its last, and only what is wanted is
    rebuilt; the state a packet leaves is the same as in ConversationTracker, whose timers only ever
    decide when a conversation ends, which the first pass already said. Each rebuilt conversation goes
    to `on_finished` as soon as the capture is past its last frame (the rest at `finish()`), so in order
    of last frame, not of number: `on_begun` is told each one's number as it begins, to put them in order."""

    def __init__(self, frames: Frames, on_finished: Callable[[Conversation], None],
                 settings: ZeekSettings = ZeekSettings(), on_begun: Optional[Callable[[int], None]] = None) -> None:
        self.frames = frames
        self.on_finished = on_finished
        self.on_begun = on_begun        # told each wanted conversation's number as it begins
        self.settings = settings
        self.network_time: Optional[int] = None
        self._next = 1                                  # the number the next conversation to begin has
        # key -> (number, last frame, the conversation if wanted) of those in progress
        self._current: Dict[Key, Tuple[int, int, Optional[Conversation]]] = {}
        self._ending: List[Tuple[int, int, Key]] = []    # (last frame, number, key), a heap

    def feed(self, packet: Packet) -> Optional[Conversation]:
        return self._take(packet, corrupt=False)

    def feed_corrupt(self, packet: Packet) -> Optional[Conversation]:
        return self._take(packet, corrupt=True)

    def _take(self, packet: Packet, corrupt: bool) -> Optional[Conversation]:
        conv = self._lookup(packet)
        if conv is not None:
            if corrupt:
                conv._add_corrupt(packet)
            else:
                conv._add(packet)
            conv.last_frame = packet.frame
            conv.zeek.timers.clear()
        return conv

    def feed_unreachable(self, quote, frame: int, time_ns: int) -> Optional[Conversation]:
        self._pass(frame)
        found = self._current.get(_key(quote))
        if found is None or found[2] is None:
            return None
        found[2].unreachable.append((frame, time_ns))
        found[2].last_frame = frame
        return found[2]

    def finish(self) -> None:
        for key in sorted(self._current, key=lambda k: self._current[k][0]):
            self._hand_over(key)
        self._ending.clear()

    def _lookup(self, packet: Packet) -> Optional[Conversation]:
        if self.network_time is None or packet.time_ns > self.network_time:
            self.network_time = packet.time_ns
        frame = packet.frame
        self._pass(frame)
        key = _key(packet)
        found = self._current.get(key)
        if found is not None:
            return found[2]
        return self._begin(packet, key)

    def _begin(self, packet: Packet, key: Key) -> Optional[Conversation]:
        index, frames = self._next, self.frames
        if index > len(frames) or frames.first[index - 1] != packet.frame:
            expected = f"at frame {frames.first[index - 1]}" if index <= len(frames) else "none"
            raise ReplayMismatch(f"frame {packet.frame} begins conversation {index} on the second pass; the first "
                                 f"pass had it begin {expected}: did the file change while it was read?")
        self._next += 1
        conv = None
        if frames.wanted[index - 1]:
            conv = new_conversation(packet, index, self.settings, self.network_time)
            conv.key, conv.end_frame = key, frames.end[index - 1] or None
            conv.zeek.timers.clear()
            if self.on_begun is not None:
                self.on_begun(index)
        self._current[key] = (index, frames.last[index - 1], conv)
        heapq.heappush(self._ending, (frames.last[index - 1], index, key))
        return conv

    def _pass(self, frame: int) -> None:
        """Hand over every conversation whose last frame lies before `frame`."""
        while self._ending and self._ending[0][0] < frame:
            _last, _index, key = heapq.heappop(self._ending)
            self._hand_over(key)

    def _hand_over(self, key: Key) -> None:
        _index, _last, conv = self._current.pop(key)
        if conv is not None:
            conv._ended = True
            self.on_finished(conv)


def conversations(packets: Iterable[Packet], keep_segments: bool = True,
                  settings: ZeekSettings = ZeekSettings()) -> List[Conversation]:
    tracker = ConversationTracker(keep_segments, settings=settings)
    for packet in packets:
        tracker.feed(packet)
    return tracker.conversations
