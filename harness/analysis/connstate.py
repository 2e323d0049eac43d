"""Zeek's view of a connection: endpoint states, `conn_state` and `history`, packet by packet. Pure code.

Rules, as Zeek's TCP analyzer and base/protocols/conn/main.zeek apply them:

Endpoint states (one per side): INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET.
1. INACTIVE, on a packet it sends:
   - SYN from the originator: SYN_SENT (SYN_ACK_SENT if the ACK bit is set too).
   - SYN from the responder: ESTABLISHED, and an originator in SYN_SENT becomes ESTABLISHED too.
   - FIN: CLOSED. RST: RESET.
   - anything else: PARTIAL (the capture began mid-stream), except a pure ACK while the peer is
     ESTABLISHED (the SYN was missed: ESTABLISHED), or a bare ACK from the responder while the
     originator is in SYN_SENT (an early ACK: stays INACTIVE).
2. SYN_SENT / SYN_ACK_SENT: FIN gives CLOSED, RST gives RESET.
3. ESTABLISHED / PARTIAL: FIN (without RST) gives CLOSED, and a peer that had sent FIN and then
   RST goes back to CLOSED (that was a normal close); RST gives RESET.
4. CLOSED: RST gives RESET, unless the peer has closed too.
5. RESET is final.

conn_state from the two endpoint states, in this order (INACTIVE and PARTIAL count as inactive):
   responder RESET: REJ if the originator is SYN_SENT/SYN_ACK_SENT (or RESET with no payload
   either way), else RSTRH if the originator is inactive, else RSTR;
   originator RESET: RSTOS0 if the responder is inactive and history matches ^?S[^HAFGIQ]*R,
   OTH if the responder is otherwise inactive, else RSTO;
   both CLOSED: SF; originator CLOSED: SH if the responder is inactive, else S2;
   responder CLOSED: SHR if the originator is inactive, else S3;
   originator SYN_SENT and responder INACTIVE: S0; both ESTABLISHED: S1; anything else: OTH.
   UDP: SF when both sides sent, S0 only the originator, SHR only the responder.

history letters, upper case for the originator, lower case for the responder:
   S SYN, H SYN-ACK, A pure ACK, D payload, F FIN, R RST, T retransmitted payload, W zero window,
   I FIN+RST, Q SYN+FIN or SYN+RST, ^ roles flipped (the first packet was a SYN-ACK).
   A, D, I and Q are recorded once per side; S, H, F and R again whenever the sequence number
   differs from the last one of that kind; T and W on the 1st, 10th, 100th... occurrence.
   A packet with payload is D only when it carries no SYN, FIN or RST. UDP: D/d per datagram side.
   Zeek's C (bad checksum) and G (content gap) are not recorded: loopback captures carry
   unverifiable checksums, and gaps are reported as missed bytes instead.

Payload bytes are counted by sequence space: the highest byte sent minus the first, so a
retransmission is not counted twice (and bytes the capture missed are, as Zeek counts them; the
holes a jump in sequence numbers leaves and nothing fills are reported as missed bytes).
History T is Zeek's: a segment with payload that does not advance its side's highest sequence number.

The counters of retransmissions, out-of-order segments and duplicate ACKs follow tshark 4.0's TCP
analysis instead, so that the two agree. Per side tshark keeps next_seq (one past the highest
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

import re
from array import array
from typing import Dict, List, Optional

from harness.wire.packet import ACK, FIN, RST, SYN, TCP, Packet

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")
_INACTIVE_LIKE = (INACTIVE, PARTIAL)
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")
_LOGARITHMIC_COUNTS = frozenset((1, 10, 100, 1000, 10000, 100000, 1000000))
SEQ_MODULO = 1 << 32
HALF_SEQ_SPACE = 1 << 31
MAX_HOLES = 64  # beyond this the oldest holes are forgotten: memory stays bounded on a lossy capture


def _seq_delta(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit difference."""
    delta = (a - b) % SEQ_MODULO
    return delta - SEQ_MODULO if delta >= HALF_SEQ_SPACE else delta


def _seq_after(a: int, b: int) -> bool:
    """_seq_delta(a, b) > 0: is a after b in sequence space?"""
    return 0 < (a - b) % SEQ_MODULO < HALF_SEQ_SPACE


class Side:
    """What one endpoint has sent, as far as the summary needs it."""

    # Slots: a capture has a pair of these per conversation, and each packet reads and writes several.
    __slots__ = ("is_orig", "state", "prev_state", "packets", "start_seq", "highest_seq", "rexmit_payloads",
                 "retransmissions", "out_of_order", "duplicate_acks", "zero_windows", "holes", "next_seq",
                 "next_seq_time", "last_ack", "last_ack_time", "window", "dupacks_in_a_row", "keep_alive",
                 "max_seq_to_ack", "payloads", "_recorded")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.packets = 0
        self.start_seq: Optional[int] = None    # the sequence number just before the first payload byte
        self.highest_seq: Optional[int] = None  # one past the highest payload byte sent
        self.rexmit_payloads = 0                # Zeek's count behind history T
        self.retransmissions = 0                # tshark's, from here on
        self.out_of_order = 0
        self.duplicate_acks = 0
        self.zero_windows = 0
        self.holes: List[list] = []             # [start, end) ranges skipped by a sequence jump
        # tshark's view from here on (module docstring): 0 stands for "not known yet", as in tshark.
        self.next_seq = 0                       # one past the highest sequence number sent, SYN and FIN included
        self.next_seq_time = 0
        self.max_seq_to_ack = 0                 # one past the highest sequence number sent without a gap
        self.last_ack: Optional[int] = None     # the ACK field of the side's last segment
        self.last_ack_time = 0
        self.window: Optional[int] = None
        self.dupacks_in_a_row = 0               # -1 after an ACK of a segment the capture missed
        self.keep_alive = False                 # whether the side's last segment was a keep-alive
        self.payloads = array("I")
        # History letters recorded so far, each with the sequence number it was last seen with (None
        # for the letters recorded once only).
        self._recorded: Dict[str, Optional[int]] = {}

    def set_state(self, state: str) -> None:
        self.prev_state, self.state = self.state, state

    @property
    def payload_bytes(self) -> int:
        if self.start_seq is None or self.highest_seq is None:
            return 0
        return max(0, _seq_delta(self.highest_seq, self.start_seq))

    def __repr__(self) -> str:
        return f"Side({'orig' if self.is_orig else 'resp'}, {self.state}, packets={self.packets})"


def _fill_hole(holes: List[list], start: int, end: int) -> bool:
    """Whether [start, end) lies within one hole; if so, the hole shrinks or splits around it."""
    for index, (hole_start, hole_end) in enumerate(holes):
        if _seq_delta(start, hole_start) >= 0 and _seq_delta(hole_end, end) >= 0:
            pieces = [[hole_start, start]] if start != hole_start else []
            pieces += [[end, hole_end]] if end != hole_end else []
            holes[index:index + 1] = pieces
            return True
    return False


FAST_RETRANSMISSION_WINDOW = 20_000_000      # nanoseconds
DEFAULT_OUT_OF_ORDER_THRESHOLD = 3_000_000   # nanoseconds, when the initial RTT is unknown


def _classify_resend(side: Side, peer: Side, flags: int, seq: int, length: int, now: int,
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


class ConnectionState:
    """Feed a conversation's packets in order; read conn_state, history and counters at any time."""

    __slots__ = ("proto", "orig", "resp", "flipped", "_history", "initial_rtt", "_syn_time")

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.orig = Side(True)
        self.resp = Side(False)
        self.flipped = False
        self._history: List[str] = []
        self.initial_rtt: Optional[int] = None     # nanoseconds
        self._syn_time: Optional[int] = None

    @property
    def history(self) -> str:
        return ("^" if self.flipped else "") + "".join(self._history)

    def feed(self, packet: Packet, is_orig: bool) -> bool:
        """Take one packet; returns whether it retransmitted payload (TCP only)."""
        if is_orig:
            side, peer = self.orig, self.resp
        else:
            side, peer = self.resp, self.orig
        side.packets += 1
        length = packet.payload_len
        if self.proto != TCP:
            side.payloads.append(length)
            if side.highest_seq is None:
                side.start_seq = side.highest_seq = 0
            side.highest_seq += length
            self._record_once(side, "D")
            side.state = ESTABLISHED  # "active", in Zeek's UDP terms
            return False
        flags, seq, now, window = packet.flags, packet.seq, packet.time_ns, packet.window
        # A bare ACK after the first segment leaves the sequence space as it was.
        retransmitted = (self._track_sequence(side, flags, seq, length)
                         if length or flags & SYN or side.start_seq is None else False)

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

        self._update_history(side, peer, flags, seq, length, window, retransmitted)
        # Only a first packet, a FIN or a RST moves an endpoint's state (rules 1-5).
        if flags & (FIN | RST) or side.state == INACTIVE:
            self._update_state(side, peer, flags, length)
        return retransmitted

    def mark_flipped(self) -> None:
        self.flipped = True

    def _measure_initial_rtt(self, flags: int, now: int) -> None:
        """tshark's iRTT: from the last SYN before it to the first segment with ACK and without SYN,
        from either side; measured after that segment's own analysis, and again if it came out 0."""
        if flags & SYN:
            if not flags & ACK:
                self._syn_time = now
        elif flags & ACK and self._syn_time is not None and now != self._syn_time:
            self.initial_rtt = now - self._syn_time

    # --- sequence space ------------------------------------------------------------------
    def _track_sequence(self, side: Side, flags: int, seq: int, length: int) -> bool:
        if flags & RST:
            return False
        first_byte = seq + 1 if flags & SYN else seq
        if side.start_seq is None or (flags & SYN and side.highest_seq == side.start_seq):
            side.start_seq = side.highest_seq = first_byte
        if length == 0:
            return False
        side.payloads.append(length)
        end = (first_byte + length) % SEQ_MODULO
        if _seq_after(end, side.highest_seq):
            if _seq_after(first_byte, side.highest_seq):
                side.holes.append([side.highest_seq, first_byte])
                del side.holes[:-MAX_HOLES]
            side.highest_seq = end
            return False
        _fill_hole(side.holes, first_byte, end)
        side.rexmit_payloads += 1
        return True

    # --- history -----------------------------------------------------------------------------
    def _record_once(self, side: Side, letter: str) -> None:
        """A, D, I, Q: recorded the first time only."""
        if letter not in side._recorded:
            side._recorded[letter] = None
            self._history.append(letter if side.is_orig else letter.lower())

    def _record_sequenced(self, side: Side, letter: str, seq: int) -> None:
        """S, H, F, R: recorded again whenever the sequence number differs from the last one."""
        recorded = side._recorded
        if letter not in recorded or recorded[letter] != seq:
            recorded[letter] = seq
            self._history.append(letter if side.is_orig else letter.lower())

    def _record_counted(self, side: Side, letter: str, count: int) -> None:
        """T, W: recorded on the 1st, 10th, 100th... occurrence."""
        if count in _LOGARITHMIC_COUNTS:
            self._history.append(letter if side.is_orig else letter.lower())

    def _update_history(self, side: Side, peer: Side, flags: int, seq: int, length: int, window: int,
                        retransmitted: bool) -> None:
        if flags & (SYN | FIN | RST):
            control = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
            if control > 1:
                self._record_once(side, "I" if flags & FIN and flags & RST else "Q")
            elif flags & SYN:
                self._record_sequenced(side, "H" if flags & ACK else "S", seq)
            elif flags & FIN:
                self._record_sequenced(side, "F", (seq + length) % SEQ_MODULO)
            else:
                self._record_sequenced(side, "R", seq)
        elif length:
            self._record_once(side, "D")
        elif flags & ACK:
            self._record_once(side, "A")
        if retransmitted:
            self._record_counted(side, "T", side.rexmit_payloads)
        if window == 0 and not flags & RST and peer.state != CLOSED and side.state != RESET:
            side.zero_windows += 1
            self._record_counted(side, "W", side.zero_windows)

    # --- endpoint state machine --------------------------------------------------------------
    def _update_state(self, side: Side, peer: Side, flags: int, length: int) -> None:
        state = side.state
        if state == INACTIVE:
            self._from_inactive(side, peer, flags, length)
        elif state in (SYN_SENT, SYN_ACK_SENT):
            if flags & FIN:
                side.set_state(CLOSED)
            if flags & RST:
                side.set_state(RESET)
        elif state in (ESTABLISHED, PARTIAL):
            if flags & FIN and not flags & RST:
                side.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)
            if flags & RST:
                side.set_state(RESET)
        elif state == CLOSED:
            if flags & RST and peer.state != CLOSED:
                side.set_state(RESET)

    def _from_inactive(self, side: Side, peer: Side, flags: int, length: int) -> None:
        if flags & SYN:
            if side.is_orig:
                side.set_state(SYN_ACK_SENT if flags & ACK else SYN_SENT)
            else:
                if peer.state == SYN_SENT:
                    peer.set_state(ESTABLISHED)
                side.set_state(ESTABLISHED)
        if flags & FIN:
            side.set_state(CLOSED)
        if flags & RST:
            side.set_state(RESET)
        if side.state != INACTIVE:
            return
        if not side.is_orig and length == 0 and self.orig.state == SYN_SENT:
            return
        if flags & ACK and peer.state == ESTABLISHED:
            side.set_state(ESTABLISHED)
        else:
            side.set_state(PARTIAL)

    @property
    def closed(self) -> bool:
        """Both sides closed, or either reset: nothing more is expected but stragglers."""
        return (self.orig.state == CLOSED and self.resp.state == CLOSED) or RESET in (self.orig.state,
                                                                                      self.resp.state)

    # --- the verdict ---------------------------------------------------------------------------
    @property
    def conn_state(self) -> str:
        os_, rs = self.orig.state, self.resp.state
        if self.proto != TCP:
            if os_ != INACTIVE:
                return "SF" if rs != INACTIVE else "S0"
            return "SHR" if rs != INACTIVE else "OTH"
        o_inactive, r_inactive = os_ in _INACTIVE_LIKE, rs in _INACTIVE_LIKE
        if rs == RESET:
            if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                    os_ == RESET and self.orig.payload_bytes == 0 and self.resp.payload_bytes == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0_HISTORY.fullmatch(self.history) else "OTH"
            return "RSTO"
        if os_ == CLOSED and rs == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"
