"""Random but plausible TCP conversations, many to a capture, for the differential test against tshark.

`conversation(rng, index, start_ns)` plays one connection between two simulated endpoints and
returns the Packets a capture point saw: a handshake (or part of one, or none: mid-stream),
data both ways with segments lost before the capture or after it, duplicated, reordered and
retransmitted (after duplicate ACKs, after a timeout, or within the initial RTT), pure ACKs that
repeat or change the window (zero windows included), keep-alives, zero-window probes, and a
close by FIN and/or RST in some order, with stray packets after it. Sequence numbers start
anywhere, near the 2^32 wrap often. Times are integer nanoseconds and often fall exactly on,
or one nanosecond either side of, the lines tshark draws: the initial RTT after the side's
sequence number last advanced, 20 ms after the peer's last ACK.

`capture(seed, conversations)` puts many such conversations (distinct ports) one after the
other in one list of packets, numbered as frames, ready for `wire.to_pcap`.

What the generator does not make, on purpose: SYNs with a new sequence number once a
conversation has begun (tshark starts a new stream on those, the harness a new conversation:
port reuse, not analysis); SYN+FIN segments; and, as a side's first captured segment, one below
its next sequence number (a keep-alive or a retransmission) or above it (the one before lost),
when its SYN was not captured: the harness counts that side's bytes from its first segment, as
Zeek does, tshark from the ACK number the peer sent ("below_first_captured"; only the byte count
differs, and the comparison skips it for conversations begun mid-stream already).
"""
from __future__ import annotations

import random
from typing import List, Optional, Tuple

from harness.wire.packet import ACK, FIN, PSH, RST, SYN, TCP, Packet

MS = 1_000_000
US = 1_000
SEQ_MODULO = 1 << 32
DEFAULT_IRTT = 3 * MS
FAST_RETRANSMISSION_WINDOW = 20 * MS


class _End:
    """One endpoint: what it sent (unwrapped sequence numbers) and what it received."""

    def __init__(self, name: str, host: str, port: int, isn: int) -> None:
        self.name, self.host, self.port = name, host, port
        self.isn = isn
        self.nxt = isn                 # next new sequence number (unwrapped)
        self.sent: List[Tuple[int, int, int]] = []   # (seq, payload length, flags) of new segments
        self.received: List[Tuple[int, int]] = []    # ranges of the peer's sequence space received
        self.rcv_nxt: Optional[int] = None           # what it acknowledges
        self.window = 65535
        self.last_ack_sent: Optional[int] = None
        self.fin_sent = False
        self.rst_sent = False
        self.seen_syn = False

    def receive(self, seq: int, end: int) -> None:
        if self.rcv_nxt is None:
            self.rcv_nxt = seq
        self.received.append((seq, end))
        advanced = True
        while advanced:
            advanced = False
            for start, stop in self.received:
                if start <= self.rcv_nxt < stop:
                    self.rcv_nxt = stop
                    advanced = True
        self.received = [(a, b) for a, b in self.received if b > self.rcv_nxt]


class _Conversation:
    def __init__(self, rng: random.Random, index: int, start_ns: int) -> None:
        self.rng = rng
        self.now = start_ns
        self.packets: List[Packet] = []
        client = ("10.%d.%d.1" % (1 + index // 250 % 250, index % 250), 1024 + index % 60000)
        server = ("10.%d.%d.2" % (1 + index // 250 % 250, index % 250), rng.choice((80, 443, 8080)))
        self.c = _End("C", client[0], client[1], self._isn())
        self.s = _End("S", server[0], server[1], self._isn())
        self.irtt = DEFAULT_IRTT    # as tshark will measure it, once it has
        self.syn_time: Optional[int] = None
        self.irtt_known = False
        # For timing on tshark's lines: when each side's highest sequence number last advanced on
        # the wire, and when it last sent an ACK.
        self.advanced_at = {"C": start_ns, "S": start_ns}
        self.wire_next = {"C": None, "S": None}
        self.last_ack_at = {"C": start_ns, "S": start_ns}
        self.held: List[Packet] = []    # a segment held back to be sent after the next (reordering)

    def _isn(self) -> int:
        rng = self.rng
        kind = rng.random()
        if kind < 0.35:
            return SEQ_MODULO - rng.randint(1, 6000)     # the wrap comes within the conversation
        if kind < 0.45:
            return rng.choice((0, 1, SEQ_MODULO - 1, 1 << 31, (1 << 31) - 1))
        return rng.randrange(SEQ_MODULO)

    # --- emitting ----------------------------------------------------------------------------
    def _gap(self) -> int:
        rng = self.rng
        kind = rng.random()
        if kind < 0.08:
            return 0
        if kind < 0.15:
            return rng.randint(1, 3)
        if kind < 0.55:
            return rng.randint(1 * US, 400 * US)
        if kind < 0.85:
            return rng.randint(400 * US, 5 * MS)
        if kind < 0.95:
            return rng.randint(5 * MS, 40 * MS)
        return rng.randint(40 * MS, 400 * MS)

    def _time_on_a_line(self, side: str) -> None:
        """Move the clock to (or one ns beside) a line tshark draws for `side`'s next segment, if ahead."""
        rng = self.rng
        peer = "S" if side == "C" else "C"
        line = rng.choice((self.advanced_at[side] + self.irtt, self.last_ack_at[peer] + FAST_RETRANSMISSION_WINDOW,
                           self.advanced_at[side] + DEFAULT_IRTT))
        at = line + rng.choice((-1, 0, 0, 1))
        if at >= self.now:
            self.now = at

    def emit(self, end: _End, flags: int, seq: int, length: int, ack: Optional[int] = None,
             window: Optional[int] = None, timing: str = "gap", captured: bool = True) -> Optional[Packet]:
        peer = self.s if end is self.c else self.c
        if timing == "gap":
            self.now += self._gap()
        elif timing == "line":
            self.now += self.rng.choice((0, 1, self._gap()))
            self._time_on_a_line(end.name)
        if flags & ACK and ack is None:
            ack = end.rcv_nxt if end.rcv_nxt is not None else peer.isn + 1
        if not flags & ACK:
            ack = 0 if ack is None else ack
        win = end.window if window is None else window
        payload = bytes(self.rng.getrandbits(8) for _ in range(min(length, 4))) + b"x" * max(0, length - 4)
        packet = Packet(0, self.now, end.host, peer.host, TCP, end.port, peer.port, length, payload,
                        seq % SEQ_MODULO, ack % SEQ_MODULO, flags, win)
        if not captured:
            return packet
        self.packets.append(packet)
        self._after_wire(end, packet, seq, length, flags)
        return packet

    def _after_wire(self, end: _End, packet: Packet, seq: int, length: int, flags: int) -> None:
        name = end.name
        if flags & SYN and not flags & ACK:
            self.syn_time = packet.time_ns
        if flags & ACK and not flags & SYN and self.syn_time is not None and not self.irtt_known:
            if packet.time_ns - self.syn_time > 0:
                self.irtt = packet.time_ns - self.syn_time
                self.irtt_known = True
        stop = seq + length + (1 if flags & (SYN | FIN) else 0)
        if not flags & RST and (self.wire_next[name] is None or stop > self.wire_next[name]):
            self.wire_next[name] = stop
            self.advanced_at[name] = packet.time_ns
        if flags & ACK:
            self.last_ack_at[name] = packet.time_ns

    def deliver(self, end: _End, seq: int, length: int, flags: int) -> None:
        peer = self.s if end is self.c else self.c
        stop = seq + length + (1 if flags & (SYN | FIN) else 0)
        if stop > seq:
            peer.receive(seq, stop)

    # --- steps -------------------------------------------------------------------------------
    def send_new(self, end: _End, length: int, flags: int = ACK | PSH, timing: str = "gap") -> None:
        """A new segment: captured or lost before the capture, delivered or lost after it."""
        rng = self.rng
        seq = end.nxt
        end.nxt += length + (1 if flags & (SYN | FIN) else 0)
        end.sent.append((seq, length, flags))
        captured = rng.random() > 0.08 or self.wire_next[end.name] is None   # (see below_first_captured)
        delivered = rng.random() < (0.95 if captured else 0.4)
        if (captured and self.held == [] and rng.random() < 0.06 and not flags & (SYN | FIN)
                and self.wire_next[end.name] is not None):
            packet = self.emit(end, flags, seq, length, timing=timing, captured=False)
            self.held.append(packet)   # sent after the next segment
        elif captured:
            packet = self.emit(end, flags, seq, length, timing=timing)
            if rng.random() < 0.05:       # the same packet twice on the wire
                self.now += rng.choice((0, 1, 50 * US))
                self.packets.append(packet._replace(time_ns=self.now))
            if self.held:
                self._release_held()
        if delivered:
            self.deliver(end, seq, length, flags)

    def _release_held(self) -> None:
        held = self.held.pop()
        self.now += self.rng.choice((0, 1, self._gap()))
        packet = held._replace(time_ns=self.now)
        self.packets.append(packet)
        end = self.c if held.src == self.c.host and held.sport == self.c.port else self.s
        seq = self._unwrap(end, held.seq)
        self._after_wire(end, packet, seq, held.payload_len, held.flags)

    def _unwrap(self, end: _End, seq32: int) -> int:
        """The unwrapped sequence number nearest end.nxt with these low 32 bits."""
        base = end.nxt - (end.nxt - seq32) % SEQ_MODULO
        return base if end.nxt - base < SEQ_MODULO // 2 else base + SEQ_MODULO

    def ack(self, end: _End, window: Optional[int] = None, timing: str = "gap", times: int = 1,
            ack: Optional[int] = None) -> None:
        if window is not None:
            end.window = window
        for _ in range(times):
            self.emit(end, ACK, end.nxt, 0, ack=ack, timing=timing)
            timing = "gap" if self.rng.random() < 0.7 else "tight"
            if timing == "tight":
                self.now += self.rng.choice((0, 1, 100 * US))

    def retransmit(self, end: _End, timing: str) -> None:
        rng = self.rng
        peer = self.s if end is self.c else self.c
        if self.wire_next[end.name] is None:
            return   # (see below_first_captured)
        sent = [s for s in end.sent if not s[2] & SYN]   # SYNs are sent again in the handshake only
        if not sent:
            return
        unacked = [s for s in sent if peer.rcv_nxt is None or s[0] + s[1] + bool(s[2] & (SYN | FIN)) > peer.rcv_nxt]
        seq, length, flags = rng.choice(unacked) if unacked and rng.random() < 0.8 else rng.choice(sent)
        if length > 2 and rng.random() < 0.2:       # repacketized: a part, or more than before
            cut = rng.randint(1, length - 1)
            if rng.random() < 0.5:
                seq, length = seq + cut, length - cut
            else:
                length = cut
        elif rng.random() < 0.1 and end.nxt > seq + length:
            length = min(end.nxt - seq, length + rng.randint(1, 3000))
            flags &= ~FIN
        self.emit(end, flags, seq, length, timing=timing)
        if rng.random() < 0.9:
            self.deliver(end, seq, length, flags)

    def keep_alive(self, end: _End) -> None:
        if self.wire_next[end.name] is None:
            return   # (see below_first_captured)
        length = self.rng.choice((0, 1))
        self.emit(end, ACK, end.nxt - 1, length, timing=self.rng.choice(("gap", "line")))
        if self.rng.random() < 0.7:
            peer = self.s if end is self.c else self.c
            self.ack(peer)

    def zero_window_probe(self, end: _End) -> None:
        peer = self.s if end is self.c else self.c
        if peer.window != 0:
            self.ack(peer, window=0)
        advance = self.rng.random() < 0.5
        seq = end.nxt
        if advance:
            end.nxt += 1
            end.sent.append((seq, 1, ACK))
        self.emit(end, ACK, seq, 1, timing=self.rng.choice(("gap", "line")))
        for _ in range(self.rng.randint(0, 2)):
            self.ack(peer, window=0)
            if self.rng.random() < 0.5:
                self.emit(end, ACK, seq, 1)
        if self.rng.random() < 0.7:
            self.ack(peer, window=self.rng.choice((65535, 29200, 512)))

    # --- the whole conversation -------------------------------------------------------------
    def handshake(self) -> Tuple[_End, _End]:
        rng = self.rng
        c, s = self.c, self.s
        kind = rng.random()
        if kind < 0.2:      # mid-stream: neither SYN seen; either side speaks first
            c.nxt += 1
            s.nxt += 1
            c.rcv_nxt, s.rcv_nxt = s.nxt, c.nxt
            return (c, s) if rng.random() < 0.5 else (s, c)
        syn_captured = kind >= 0.3
        c.nxt += 1
        c.sent.append((c.isn, 0, SYN))
        if syn_captured:
            self.emit(c, SYN, c.isn, 0)
            for _ in range(rng.choice((0, 0, 0, 1, 2))):   # the SYN again, same ISN
                self.now += rng.choice((1, 3 * MS, 200 * MS, 1000 * MS))
                self.emit(c, SYN, c.isn, 0, timing="none")
        s.rcv_nxt = c.nxt
        s.nxt += 1
        s.sent.append((s.isn, 0, SYN | ACK))
        if rng.random() < 0.95:
            self.emit(s, SYN | ACK, s.isn, 0, ack=c.nxt)
            if rng.random() < 0.1:
                self.emit(s, SYN | ACK, s.isn, 0, ack=c.nxt)
        c.rcv_nxt = s.nxt
        if rng.random() < 0.85:
            self.emit(c, ACK, c.nxt, 0)
        return c, s

    def data_phase(self, first: _End, second: _End) -> None:
        rng = self.rng
        for _ in range(rng.randint(2, 40)):
            end = first if rng.random() < 0.6 else second
            peer = second if end is first else first
            action = rng.random()
            if action < 0.35:
                length = rng.choice((1, 2, rng.randint(1, 100), rng.randint(100, 1460), 1460))
                self.send_new(end, length)
            elif action < 0.55:
                window = None
                if rng.random() < 0.2:
                    window = rng.choice((0, 1024, 65535, 29200, peer.window + 1 & 0xFFFF))
                self.ack(peer, window=window, times=rng.choice((1, 1, 1, 2, 3, 4)))
            elif action < 0.65:
                # duplicate ACKs, then perhaps a fast retransmission on tshark's 20 ms line
                self.ack(peer, times=rng.choice((2, 3, 4)))
                self.retransmit(end, timing=rng.choice(("gap", "line", "tight")))
            elif action < 0.78:
                self.retransmit(end, timing=rng.choice(("gap", "line", "line", "tight")))
            elif action < 0.84:
                self.keep_alive(end)
            elif action < 0.89:
                self.zero_window_probe(end)
            elif action < 0.94:
                # a burst of new segments, some reordered
                for _ in range(rng.randint(2, 5)):
                    self.send_new(end, rng.randint(1, 1460), timing=rng.choice(("gap", "tight")))
            else:
                self.ack(end, window=rng.choice((0, 65535, end.window ^ 0x100)))
        if self.held:
            self._release_held()

    def close(self, first: _End, second: _End) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.15:
            return                                   # still open at the end of the capture
        if kind < 0.55:
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            self.send_new(a, rng.choice((0, 0, 0, 10)), flags=FIN | ACK)
            if rng.random() < 0.7:
                self.ack(b)
            if rng.random() < 0.8:
                self.send_new(b, 0, flags=FIN | ACK)
                if rng.random() < 0.3:
                    self.retransmit(b, timing="gap")
                self.ack(a)
        elif kind < 0.75:
            a = first if rng.random() < 0.5 else second
            flags = RST | ACK if rng.random() < 0.6 else RST
            self.emit(a, flags, a.nxt, 0, ack=None if flags & ACK else 0)
        else:
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            self.send_new(a, 0, flags=FIN | ACK)
            self.emit(rng.choice((a, b)), RST | ACK, rng.choice((a, b)).nxt, 0)
        if rng.random() < 0.2:                       # a straggler
            end = rng.choice((first, second))
            if rng.random() < 0.5:
                self.ack(end)
            else:
                self.retransmit(end, timing="gap")


def conversation(rng: random.Random, index: int, start_ns: int) -> List[Packet]:
    conv = _Conversation(rng, index, start_ns)
    first, second = conv.handshake()
    conv.data_phase(first, second)
    conv.close(first, second)
    return conv.packets


START_NS = 1_700_000_000 * 10**9


def capture(seed: int, conversations: int) -> List[Packet]:
    """`conversations` random conversations from `seed`, one after another, frames numbered from 1."""
    rng = random.Random(seed)
    packets: List[Packet] = []
    now = START_NS + rng.randrange(10**9)
    for index in range(conversations):
        one = conversation(rng, index, now)
        if one:
            packets.extend(one)
            now = one[-1].time_ns
        now += rng.randint(1, 10 * MS)
    return [p._replace(frame=i) for i, p in enumerate(packets, 1)]
