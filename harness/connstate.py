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
retransmission is not counted twice (and bytes the capture missed are, as Zeek counts them).
A segment with payload that does not advance its side's highest sequence number is history T, as in
Zeek, and is counted as one of two things: out of order when it only fills a hole that a jump in
the sequence numbers left (bytes this capture had not seen), a retransmission otherwise.
A duplicate ACK, as tshark defines it: no payload, no SYN/FIN/RST, and the same ACK number and
window as the side's previous segment, while the peer has sent data beyond that ACK.
"""
from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from harness.packet import ACK, FIN, RST, SYN, TCP, Packet

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")
_INACTIVE_LIKE = (INACTIVE, PARTIAL)
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")
_ONCE = frozenset("ADIQ")
_SEQUENCED = frozenset("SHFR")
_LOGARITHMIC = frozenset("TW")
SEQ_MODULO = 1 << 32
MAX_HOLES = 64  # beyond this the oldest holes are forgotten: memory stays bounded on a lossy capture


def _seq_delta(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit difference."""
    delta = (a - b) % SEQ_MODULO
    return delta - SEQ_MODULO if delta >= 1 << 31 else delta


@dataclass
class Side:
    """What one endpoint has sent, as far as the summary needs it."""

    is_orig: bool
    state: str = INACTIVE
    prev_state: str = INACTIVE
    packets: int = 0
    start_seq: Optional[int] = None   # the sequence number just before the first payload byte
    highest_seq: Optional[int] = None  # one past the highest payload byte sent
    retransmissions: int = 0
    out_of_order: int = 0
    duplicate_acks: int = 0
    zero_windows: int = 0
    holes: list = field(default_factory=list)   # [start, end) ranges skipped by a sequence jump
    last_ack: Optional[Tuple[int, int]] = None  # (ack, window) of the previous segment
    payloads: array = field(default_factory=lambda: array("I"))
    _recorded: set = field(default_factory=set)
    _last_seq_of: dict = field(default_factory=dict)

    def set_state(self, state: str) -> None:
        self.prev_state, self.state = self.state, state

    @property
    def payload_bytes(self) -> int:
        if self.start_seq is None or self.highest_seq is None:
            return 0
        return max(0, _seq_delta(self.highest_seq, self.start_seq))


def _fill_hole(holes: List[list], start: int, end: int) -> bool:
    """Whether [start, end) lies within one hole; if so, the hole shrinks or splits around it."""
    for index, (hole_start, hole_end) in enumerate(holes):
        if _seq_delta(start, hole_start) >= 0 and _seq_delta(hole_end, end) >= 0:
            pieces = [[hole_start, start]] if start != hole_start else []
            pieces += [[end, hole_end]] if end != hole_end else []
            holes[index:index + 1] = pieces
            return True
    return False


def _is_duplicate_ack(side: Side, peer: Side, packet: Packet) -> bool:
    previous, side.last_ack = side.last_ack, (packet.ack, packet.window)
    if packet.payload_len or packet.flags & (SYN | FIN | RST) or not packet.flags & ACK or previous is None:
        return False
    outstanding = peer.highest_seq is not None and _seq_delta(peer.highest_seq, packet.ack) > 0
    return previous == (packet.ack, packet.window) and packet.window != 0 and outstanding


class ConnectionState:
    """Feed a conversation's packets in order; read conn_state, history and counters at any time."""

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.orig = Side(True)
        self.resp = Side(False)
        self.flipped = False
        self._history = []

    @property
    def history(self) -> str:
        return ("^" if self.flipped else "") + "".join(self._history)

    def feed(self, packet: Packet, from_orig: bool) -> bool:
        """Take one packet; returns whether it retransmitted payload (TCP only)."""
        side, peer = (self.orig, self.resp) if from_orig else (self.resp, self.orig)
        side.packets += 1
        if self.proto != TCP:
            side.payloads.append(packet.payload_len)
            if side.highest_seq is None:
                side.start_seq = side.highest_seq = 0
            side.highest_seq += packet.payload_len
            self._record(side, "D")
            side.state = ESTABLISHED  # "active", in Zeek's UDP terms
            return False
        retransmitted = self._track_sequence(side, packet)
        if _is_duplicate_ack(side, peer, packet):
            side.duplicate_acks += 1
        self._update_history(side, peer, packet, retransmitted)
        self._update_state(side, peer, packet)
        return retransmitted

    def mark_flipped(self) -> None:
        self.flipped = True

    # --- sequence space ------------------------------------------------------------------
    def _track_sequence(self, side: Side, packet: Packet) -> bool:
        flags, length = packet.flags, packet.payload_len
        if flags & RST:
            return False
        first_byte = packet.seq + (1 if flags & SYN else 0)
        if side.start_seq is None or (flags & SYN and side.highest_seq == side.start_seq):
            side.start_seq = side.highest_seq = first_byte
        if length == 0:
            return False
        side.payloads.append(length)
        end = (first_byte + length) % SEQ_MODULO
        gap = _seq_delta(first_byte, side.highest_seq)
        if _seq_delta(end, side.highest_seq) > 0:
            if gap > 0:
                side.holes.append([side.highest_seq, first_byte])
                del side.holes[:-MAX_HOLES]
            side.highest_seq = end
            return False
        if _fill_hole(side.holes, first_byte, end):
            side.out_of_order += 1
        else:
            side.retransmissions += 1
        return True

    # --- history -----------------------------------------------------------------------------
    def _record(self, side: Side, letter: str, seq: Optional[int] = None) -> None:
        code = letter if side.is_orig else letter.lower()
        if letter in _ONCE:
            if letter in side._recorded:
                return
            side._recorded.add(letter)
        elif letter in _SEQUENCED:
            last = side._last_seq_of.get(letter)
            side._last_seq_of[letter] = seq
            if letter in side._recorded and last == seq:
                return
            side._recorded.add(letter)
        elif letter in _LOGARITHMIC:
            count = side.retransmissions + side.out_of_order if letter == "T" else side.zero_windows
            if count not in (1, 10, 100, 1000, 10000, 100000, 1000000):
                return
        self._history.append(code)

    def _update_history(self, side: Side, peer: Side, packet: Packet, retransmitted: bool) -> None:
        flags = packet.flags
        control = (flags & SYN != 0) + (flags & FIN != 0) + (flags & RST != 0)
        if control > 1:
            self._record(side, "I" if flags & FIN and flags & RST else "Q")
        elif flags & SYN:
            self._record(side, "H" if flags & ACK else "S", packet.seq)
        elif flags & FIN:
            self._record(side, "F", (packet.seq + packet.payload_len) % SEQ_MODULO)
        elif flags & RST:
            self._record(side, "R", packet.seq)
        elif packet.payload_len:
            self._record(side, "D")
        elif flags & ACK:
            self._record(side, "A")
        if retransmitted:
            self._record(side, "T")
        if packet.window == 0 and not flags & RST and peer.state != CLOSED and side.state != RESET:
            side.zero_windows += 1
            self._record(side, "W")

    # --- endpoint state machine --------------------------------------------------------------
    def _update_state(self, side: Side, peer: Side, packet: Packet) -> None:
        flags = packet.flags
        state = side.state
        if state == INACTIVE:
            self._from_inactive(side, peer, packet)
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

    def _from_inactive(self, side: Side, peer: Side, packet: Packet) -> None:
        flags = packet.flags
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
        if not side.is_orig and packet.payload_len == 0 and self.orig.state == SYN_SENT:
            return
        if flags & ACK and peer.state == ESTABLISHED:
            side.set_state(ESTABLISHED)
        else:
            side.set_state(PARTIAL)

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
