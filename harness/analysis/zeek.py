"""Zeek's view of a connection: endpoint states, `conn_state`, `history` and byte counts, packet by packet.

Pure code. The counters tshark reports (retransmissions, out of order, duplicate ACKs) are
harness.analysis.tshark's: the two analyzers see the same packets and share nothing.

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
"""
from __future__ import annotations

import re
from array import array
from typing import Dict, List, Optional

from harness.wire.packet import ACK, FIN, RST, SEQ_MODULO, SYN, TCP, Packet, seq_after, seq_delta

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")
_INACTIVE_LIKE = (INACTIVE, PARTIAL)
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")
LOGARITHMIC_COUNTS = frozenset((1, 10, 100, 1000, 10000, 100000, 1000000))   # when T and W are recorded
MAX_HOLES = 64  # beyond this the oldest holes are forgotten: memory stays bounded on a lossy capture


class ZeekEndpoint:
    """What one endpoint has sent, as Zeek's TCP analyzer keeps it."""

    # Slots: a capture has a pair of these per conversation, and each packet reads and writes several.
    __slots__ = ("is_orig", "state", "prev_state", "packets", "start_seq", "highest_seq", "rexmit_payloads",
                 "zero_windows", "holes", "payloads", "_recorded")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.packets = 0
        self.start_seq: Optional[int] = None    # the sequence number just before the first payload byte
        self.highest_seq: Optional[int] = None  # one past the highest payload byte sent
        self.rexmit_payloads = 0                # the count behind history T
        self.zero_windows = 0
        self.holes: List[list] = []             # [start, end) ranges skipped by a sequence jump
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
        return max(0, seq_delta(self.highest_seq, self.start_seq))

    @property
    def missed_bytes(self) -> int:
        return sum((hole_end - hole_start) % SEQ_MODULO for hole_start, hole_end in self.holes)

    def __repr__(self) -> str:
        return f"ZeekEndpoint({'orig' if self.is_orig else 'resp'}, {self.state}, packets={self.packets})"


def _fill_hole(holes: List[list], start: int, end: int) -> bool:
    """Whether [start, end) lies within one hole; if so, the hole shrinks or splits around it."""
    for index, (hole_start, hole_end) in enumerate(holes):
        if seq_delta(start, hole_start) >= 0 and seq_delta(hole_end, end) >= 0:
            pieces = [[hole_start, start]] if start != hole_start else []
            pieces += [[end, hole_end]] if end != hole_end else []
            holes[index:index + 1] = pieces
            return True
    return False


class ZeekState:
    """Feed a conversation's packets in order; read conn_state, history and the endpoints at any time."""

    __slots__ = ("proto", "orig", "resp", "flipped", "_history")

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.orig = ZeekEndpoint(True)
        self.resp = ZeekEndpoint(False)
        self.flipped = False
        self._history: List[str] = []

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
        flags, seq = packet.flags, packet.seq
        # A bare ACK after the first segment leaves the sequence space as it was.
        retransmitted = (self._track_sequence(side, flags, seq, length)
                         if length or flags & SYN or side.start_seq is None else False)
        self._update_history(side, peer, flags, seq, length, packet.window, retransmitted)
        # Only a first packet, a FIN or a RST moves an endpoint's state (rules 1-5).
        if flags & (FIN | RST) or side.state == INACTIVE:
            self._update_state(side, peer, flags, length)
        return retransmitted

    def mark_flipped(self) -> None:
        self.flipped = True

    # --- sequence space ------------------------------------------------------------------
    def _track_sequence(self, side: ZeekEndpoint, flags: int, seq: int, length: int) -> bool:
        if flags & RST:
            return False
        first_byte = seq + 1 if flags & SYN else seq
        if side.start_seq is None or (flags & SYN and side.highest_seq == side.start_seq):
            side.start_seq = side.highest_seq = first_byte
        if length == 0:
            return False
        side.payloads.append(length)
        end = (first_byte + length) % SEQ_MODULO
        if seq_after(end, side.highest_seq):
            if seq_after(first_byte, side.highest_seq):
                side.holes.append([side.highest_seq, first_byte])
                del side.holes[:-MAX_HOLES]
            side.highest_seq = end
            return False
        _fill_hole(side.holes, first_byte, end)
        side.rexmit_payloads += 1
        return True

    # --- history -----------------------------------------------------------------------------
    def _record_once(self, side: ZeekEndpoint, letter: str) -> None:
        """A, D, I, Q: recorded the first time only."""
        if letter not in side._recorded:
            side._recorded[letter] = None
            self._history.append(letter if side.is_orig else letter.lower())

    def _record_sequenced(self, side: ZeekEndpoint, letter: str, seq: int) -> None:
        """S, H, F, R: recorded again whenever the sequence number differs from the last one."""
        recorded = side._recorded
        if letter not in recorded or recorded[letter] != seq:
            recorded[letter] = seq
            self._history.append(letter if side.is_orig else letter.lower())

    def _record_counted(self, side: ZeekEndpoint, letter: str, count: int) -> None:
        """T, W: recorded on the 1st, 10th, 100th... occurrence."""
        if count in LOGARITHMIC_COUNTS:
            self._history.append(letter if side.is_orig else letter.lower())

    def _update_history(self, side: ZeekEndpoint, peer: ZeekEndpoint, flags: int, seq: int, length: int, window: int,
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
    def _update_state(self, side: ZeekEndpoint, peer: ZeekEndpoint, flags: int, length: int) -> None:
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

    def _from_inactive(self, side: ZeekEndpoint, peer: ZeekEndpoint, flags: int, length: int) -> None:
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
