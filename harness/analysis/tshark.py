"""tshark's TCP analysis: retransmissions, out-of-order segments and duplicate ACKs, packet by packet.

Pure code. Counted as tshark 4.0 counts them, so that `harness summary` and Wireshark agree;
Zeek's view of the same packets (states, history, bytes) is harness.analysis.zeek's.

Per side tshark keeps next_seq (one past the highest
sequence number sent; 0 means unknown, also when it wraps to exactly 0), the last segment's ACK
field, its time and window (ACK flag or not), and the run of duplicate ACKs. For each segment:
   zero-window probe: 1 byte at next_seq while the peer's last window was 0 (leaves next_seq alone);
   keep-alive: otherwise, 0 or 1 byte at next_seq - 1, no SYN/FIN/RST;
   duplicate ACK: no payload, no SYN/FIN/RST, a non-zero window and the same window, ACK field and
     next sequence number as the side's previous segment, unless the peer's last segment was a
     keep-alive (then it is that keep-alive's ACK). A new ACK field ends a run;
   an ACK above the peer's highest gap-free sequence number (a segment the capture missed) moves
     that up to the peer's next_seq if there was a gap, else sets the peer's run to -1, which the
     fast-retransmission test takes as "many" (tshark keeps it unsigned);
   then, for a segment with payload, SYN or FIN (RST too) that is not a keep-alive, the first that
   holds of:
   spurious retransmission: it has payload and the peer's last ACK field, if non-zero, covers all of
     it (payload only; tested even before next_seq is known);
   fast retransmission: it does not advance next_seq (is below it, and is not more than one byte
     starting at next_seq - 1), the peer's run is 2 or more, the peer's last ACK is this sequence
     number and came under 20 ms ago;
   out of order: it does not advance next_seq, next_seq advanced less than the initial RTT ago
     (3 ms if unknown), and the segment does not end exactly there (SYN and FIN, even both, count 1);
   retransmission: it does not advance next_seq.
   Spurious and fast retransmissions count as retransmissions, as tshark flags them. Then any
   segment, RST included, moves next_seq forward to its end.
The initial RTT: from the last SYN (without ACK) to the first segment with ACK and without SYN,
from either side, measured after that segment's own analysis (and again if it came out 0).
Times are compared in integer nanoseconds, as tshark's nstime: a float of today's epoch seconds
cannot tell 68664 ns from 68665 ns, and the out-of-order threshold sits exactly on such a line.
"""
from __future__ import annotations

from typing import Optional

from harness.wire.packet import ACK, FIN, HALF_SEQ_SPACE, RST, SEQ_MODULO, SYN, Packet

FAST_RETRANSMISSION_WINDOW = 20_000_000      # nanoseconds
DEFAULT_OUT_OF_ORDER_THRESHOLD = 3_000_000   # nanoseconds, when the initial RTT is unknown


class TsharkEndpoint:
    """What tshark keeps of one endpoint: 0 stands for "not known yet", as in tshark."""

    __slots__ = ("retransmissions", "out_of_order", "duplicate_acks", "next_seq", "next_seq_time",
                 "max_seq_to_ack", "last_ack", "last_ack_time", "window", "dupacks_in_a_row", "keep_alive")

    def __init__(self) -> None:
        self.retransmissions = 0
        self.out_of_order = 0
        self.duplicate_acks = 0
        self.next_seq = 0                       # one past the highest sequence number sent, SYN and FIN included
        self.next_seq_time = 0
        self.max_seq_to_ack = 0                 # one past the highest sequence number sent without a gap
        self.last_ack: Optional[int] = None     # the ACK field of the side's last segment
        self.last_ack_time = 0
        self.window: Optional[int] = None
        self.dupacks_in_a_row = 0               # -1 after an ACK of a segment the capture missed
        self.keep_alive = False                 # whether the side's last segment was a keep-alive

    def __repr__(self) -> str:
        return (f"TsharkEndpoint(retransmissions={self.retransmissions}, out_of_order={self.out_of_order}, "
                f"duplicate_acks={self.duplicate_acks})")


def _classify_resend(side: TsharkEndpoint, peer: TsharkEndpoint, flags: int, seq: int, length: int, now: int,
                     initial_rtt: Optional[int]) -> Optional[str]:
    """'retransmission', 'out_of_order' or None, by tshark's rules (module docstring), for a segment
    with payload, SYN or FIN that is not a keep-alive. (a - b) % SEQ_MODULO >= HALF_SEQ_SPACE is
    tshark's LT_SEQ(a, b): a signed 32-bit difference below zero."""
    next_seq = side.next_seq
    # Spurious: tshark compares the end of the payload, SYN and FIN aside, with a non-zero ACK, and
    # does so before it knows next_seq.
    last_ack = peer.last_ack
    if length and last_ack and ((seq + length - last_ack) % SEQ_MODULO >= HALF_SEQ_SPACE
                                or (seq + length - last_ack) % SEQ_MODULO == 0):
        return "retransmission"
    if (not next_seq or (seq - next_seq) % SEQ_MODULO < HALF_SEQ_SPACE
            or (length > 1 and seq == (next_seq - 1) % SEQ_MODULO)):
        return None    # it advances next_seq (or next_seq is unknown: 0, as tshark keeps it)
    # (A run cut short by an ACK of an unseen segment is -1, which tshark keeps unsigned: "many".)
    if (peer.dupacks_in_a_row not in (0, 1) and last_ack == seq
            and now - peer.last_ack_time < FAST_RETRANSMISSION_WINDOW):
        return "retransmission"
    threshold = initial_rtt or DEFAULT_OUT_OF_ORDER_THRESHOLD
    if now - side.next_seq_time < threshold and next_seq != (seq + length + (flags & (SYN | FIN) != 0)) % SEQ_MODULO:
        return "out_of_order"
    return "retransmission"


class TsharkState:
    """Feed a TCP conversation's packets in order; read the counters of each endpoint at any time."""

    __slots__ = ("orig", "resp", "initial_rtt", "_syn_time")

    def __init__(self) -> None:
        self.orig = TsharkEndpoint()
        self.resp = TsharkEndpoint()
        self.initial_rtt: Optional[int] = None     # nanoseconds
        self._syn_time: Optional[int] = None

    def feed(self, packet: Packet, is_orig: bool) -> None:
        if is_orig:
            side, peer = self.orig, self.resp
        else:
            side, peer = self.resp, self.orig
        flags, seq, now, window, length = packet.flags, packet.seq, packet.time_ns, packet.window, packet.payload_len
        # tshark's analysis, in its order (module docstring); next_seq 0 is "unknown", as in tshark.
        next_seq = side.next_seq
        probe = keep_alive = False
        if length <= 1:
            if length and seq == next_seq and peer.window == 0:
                probe = True      # a zero-window probe: not a keep-alive, and it leaves next_seq alone
            elif not flags & (SYN | FIN | RST) and seq == (next_seq - 1) % SEQ_MODULO:
                keep_alive = True
        ack = packet.ack
        if (not length and window and window == side.window and seq == next_seq and ack == side.last_ack
                and not flags & (SYN | FIN | RST) and not peer.keep_alive):   # (else a keep-alive's ACK)
            side.dupacks_in_a_row = 1 if side.dupacks_in_a_row < 0 else side.dupacks_in_a_row + 1
            side.duplicate_acks += 1
        elif ack != side.last_ack:
            side.dupacks_in_a_row = 0   # a new ACK number ends the run, as in tshark
        # An ACK beyond the peer's highest contiguous sequence number (a segment the capture missed)
        # cuts the peer's run of duplicate ACKs short: tshark's "ACKed unseen segment".
        peer_max = peer.max_seq_to_ack
        if flags & ACK and peer_max and (peer_max - ack) % SEQ_MODULO >= HALF_SEQ_SPACE:
            if peer_max != peer.next_seq:   # a gap: the ACK covers it, and is told once
                peer.max_seq_to_ack = peer.next_seq
            else:
                peer.dupacks_in_a_row = -1
        if (length or flags & (SYN | FIN)) and not keep_alive:
            resend = _classify_resend(side, peer, flags, seq, length, now, self.initial_rtt)
            if resend == "retransmission":
                side.retransmissions += 1
            elif resend == "out_of_order":
                side.out_of_order += 1
        # ... then advance next_seq (RSTs and pure ACKs too), last_ack and window past it.
        if not probe:
            end = (seq + length + (flags & (SYN | FIN) != 0)) % SEQ_MODULO
            if not next_seq or (next_seq - end) % SEQ_MODULO >= HALF_SEQ_SPACE:
                side.next_seq, side.next_seq_time = end, now
            if seq == side.max_seq_to_ack or not side.max_seq_to_ack:
                side.max_seq_to_ack = side.next_seq
        # tshark remembers each segment's ACK field and window as they come, ACK flag or not.
        side.last_ack, side.last_ack_time = ack, now
        side.window = window
        side.keep_alive = keep_alive
        if self.initial_rtt is None:
            self._measure_initial_rtt(flags, now)

    def _measure_initial_rtt(self, flags: int, now: int) -> None:
        """tshark's iRTT: from the last SYN before it to the first segment with ACK and without SYN,
        from either side; measured after that segment's own analysis, and again if it came out 0."""
        if flags & SYN:
            if not flags & ACK:
                self._syn_time = now
        elif flags & ACK and self._syn_time is not None and now != self._syn_time:
            self.initial_rtt = now - self._syn_time
