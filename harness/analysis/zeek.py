"""Zeek's view of a connection: endpoint states, `conn_state`, `history`, byte counts and content gaps,
packet by packet, and the timers that end it. Pure code: no I/O, no clock but the packets' own times.

A translation of what Zeek 9 does (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc,
src/analyzer/protocol/tcp/TCP_Endpoint.cc and TCP_Reassembler.cc, src/packet_analysis/protocol/udp/,
src/session/Session.cc, scripts/base/protocols/conn/main.zeek; the timer values from
scripts/base/init-bare.zeek), with the names Zeek gives things, so that a reader can hold one
against the other. The counters tshark reports (retransmissions, out of order, duplicate ACKs) are
harness.analysis.tshark's: the two analyzers see the same packets and share nothing.

Rules, in the order Zeek applies them to a TCP packet (`ZeekState.feed`):

1. Sequence space. Each endpoint keeps `start_seq` (its SYN's sequence number; without one, the first
   sequence number seen minus 1, or the peer's first ACK minus 1), `last_seq` (one past its highest
   sequence number, SYN and FIN counting one each, a RST's payload not counting) with a count of 32-bit
   wraps, and `ack_seq` (the highest ACK its peer sent, with wraps). Sequence numbers are relative to
   start_seq in 64 bits, so byte counts do not wrap at 4 GiB.
2. History letters (upper case for the originator, lower for the responder): S (SYN), H (SYN-ACK),
   F (FIN), R (RST) once, and again whenever the relative sequence number differs from that letter's
   last one; I (FIN+RST) and Q (other flag combinations) and D (payload) and A (a pure ACK) once per
   side; T (retransmission: payload that does not advance last_seq), W (zero window), C (bad
   checksum) and G (content gap) on the 1st, 10th, 100th... time. `^` marks a role flip.
3. Role flips: at the first packet, if it is not a SYN (or is a SYN-ACK) and its source port is a
   likely server port, unless both ports are and (it is a SYN-ACK or its source port is the higher);
   UDP when the source port is a likely server port and the destination is not (`NewConn`). Later:
   a connection whose history is just "H" (it began with a SYN-ACK) flips at the first pure ACK or
   payload from either side (history becomes "^h"); and a SYN from the responder answering the
   originator's SYN-ACK flips it too.
4. Endpoint states: INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET, moved
   by the state machine of TCPSessionAdapter::UpdateStateMachine (`_update_state_machine`).
5. Content: each side's payload goes to a reassembler (Zeek reassembles every connection from its
   first packet by default). Bytes that an ACK from the peer covers but the capture never delivered
   (lost, or cut by the snapshot length) are a content gap: history G and missed_bytes, when both
   sides are established or closing cleanly (always, with report_gaps_for_partial). A FIN whose
   side still has undelivered data closes only once that data is acknowledged.
6. Byte counts (`Size`): the higher of last_seq and ack_seq, minus start_seq, minus the SYN and FIN;
   0 for a half-open connection that was discovered and aborted.
7. `last_time` (so conn.log's duration) advances with every packet until both sides have closed.
8. Timers (`Timer`; fired by the tracker when capture time reaches them): a SYN with no answer
   for tcp_attempt_delay ends the connection (S0); once closed (both FINs, a RST, or a FIN with the
   peer never heard from) it ends tcp_close_delay after its last time; a periodic expire check every
   tcp_session_timer; inactivity ends it once idle for at least the inactivity timeout (60 s until
   the handshake is done, then tcp_inactivity_timeout; UDP 60 s).
9. A SYN on a pair that already has a connection starts a new one (`is_reuse`) when either side has
   closed or reset, or when its sequence number is not the connection's initial one.
10. UDP: D/d per direction once, bytes are the UDP lengths less their headers, states active once a
   side has sent.

conn_state from the endpoint states, as conn/main.zeek's conn_state() (`conn_state`).
"""
from __future__ import annotations

import re
from array import array
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from harness.analysis.zeek_ports import DEFAULT_LIKELY_SERVER_PORTS
from harness.wire.packet import ACK, FIN, RST, SYN, TCP, Packet, seq_delta

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (
    "INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED", "RESET")
_HANDSHAKE_STATES = (INACTIVE, SYN_SENT, SYN_ACK_SENT)
_INACTIVE_LIKE = (INACTIVE, PARTIAL)
_RSTOS0_HISTORY = re.compile(r"\^?S[^HAFGIQ]*R.*")

SECOND = 10**9
# Zeek's defaults (scripts/base/init-bare.zeek), in nanoseconds of capture time.
TCP_SYN_TIMEOUT = 5 * SECOND
TCP_SESSION_TIMER = 6 * SECOND
TCP_CONNECTION_LINGER = 5 * SECOND
TCP_ATTEMPT_DELAY = 5 * SECOND
TCP_CLOSE_DELAY = 5 * SECOND
TCP_INACTIVITY_TIMEOUT = 300 * SECOND
UDP_INACTIVITY_TIMEOUT = 60 * SECOND
TOO_LARGE_SEQ_DELTA = 1048576
HISTORY_SCALE = 10          # T, W, C and G are recorded on the 1st, 10th, 100th... occurrence
# More disjoint runs of unacknowledged data than this in one direction and the reassembler gives up
# on that direction, as Zeek's does past tcp_excessive_data_without_further_acks; memory stays bounded.
MAX_BUFFERED_RUNS = 1024

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1

# Timer kinds. The analyzer's are cancelled together when the connection closes (CancelTimers);
# the inactivity timer belongs to the session and is replaced when its timeout changes.
EXPIRE, ATTEMPT, CONN_DELETE, INACTIVITY = "expire", "attempt", "conn-delete", "inactivity"


@dataclass(frozen=True)
class ZeekSettings:
    """What a Zeek run is configured with, where it changes conn.log: Zeek's own names and defaults.
    `likely_server_ports` holds (port, proto) pairs; by default, those of a plain `zeek -r` run."""
    likely_server_ports: FrozenSet[Tuple[int, int]] = DEFAULT_LIKELY_SERVER_PORTS
    report_gaps_for_partial: bool = False
    tcp_max_initial_window: int = 16384
    tcp_max_above_hole_without_any_acks: int = 16384
    tcp_excessive_data_without_further_acks: int = 10 * 1024 * 1024


def _u32(value: int) -> int:
    return value & _MASK32


def _is_clean(endpoint: "ZeekEndpoint") -> bool:
    return endpoint.state == ESTABLISHED or (endpoint.state == CLOSED and endpoint.prev_state == ESTABLISHED)


class Reassembler:
    """One direction's TCP_Reassembler, as far as conn.log sees it: which relative sequence numbers
    have arrived (`runs`: disjoint, sorted, merged [start, end) ranges not yet trimmed by an ACK), up to
    where the stream is delivered without a hole (`delivered`, Zeek's last_reassem_seq), and below
    which everything is forgotten (`trim_seq`)."""

    __slots__ = ("delivered", "trim_seq", "runs", "skip_deliveries", "did_eof")

    def __init__(self) -> None:
        self.delivered = 1          # relative sequence numbers: the SYN is 0, the first byte 1
        self.trim_seq = 1
        self.runs: List[List[int]] = []
        self.skip_deliveries = False
        self.did_eof = False

    @property
    def has_blocks(self) -> bool:
        return bool(self.runs)

    @property
    def buffered(self) -> int:
        return sum(end - start for start, end in self.runs)

    @property
    def undelivered(self) -> int:
        """Zeek's NumUndeliveredBytes: from the delivered point to the end of the highest run."""
        return self.runs[-1][1] - self.delivered if self.runs else 0

    def insert(self, seq: int, upper: int) -> Optional[Tuple[int, int]]:
        """Record [seq, upper) as arrived; the part not yet trimmed, or None."""
        if upper <= self.trim_seq:
            return None
        seq = max(seq, self.trim_seq)
        runs = self.runs
        index = 0
        while index < len(runs) and runs[index][1] < seq:
            index += 1
        start, end = seq, upper
        last = index
        while last < len(runs) and runs[last][0] <= end:
            start, end = min(start, runs[last][0]), max(end, runs[last][1])
            last += 1
        runs[index:last] = [[start, end]]
        return seq, upper

    def deliver_from(self, seq: int, upper: int) -> None:
        """Zeek's BlockInserted: data arriving at the delivered point is delivered, and so is every run
        it now joins."""
        if seq > self.delivered or upper <= self.delivered:
            return
        for start, end in self.runs:
            if start <= self.delivered < end:
                self.delivered = end
                return

    def clear(self) -> None:
        self.runs.clear()
        self.skip_deliveries = True


class ZeekEndpoint:
    """What one endpoint has sent, as Zeek's TCP_Endpoint keeps it (UDP uses packets, size and state)."""

    # Slots: a capture has a pair of these per conversation, and each packet reads and writes several.
    __slots__ = ("is_orig", "peer", "state", "prev_state", "start_seq", "last_seq", "seq_wraps", "ack_seq",
                 "ack_wraps", "fin_cnt", "fin_seq", "did_close", "hist_last_syn", "hist_last_fin", "hist_last_rst",
                 "scaled", "packets", "ip_bytes", "payloads", "reassembler", "missed_bytes", "udp_size")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.peer: "ZeekEndpoint" = self
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start_seq = 0          # in [0, 2^32): Zeek's start_seq, which InitStartSeq sets from 32-bit numbers
        self.last_seq = 0           # 32-bit, with seq_wraps
        self.seq_wraps = 0
        self.ack_seq = 0            # 32-bit, with ack_wraps
        self.ack_wraps = 0
        self.fin_cnt = 0
        self.fin_seq = 0            # relative
        self.did_close = False
        self.hist_last_syn = self.hist_last_fin = self.hist_last_rst = 0
        # letter ("T", "W", "C", "G"): [count, next threshold], made at a letter's first use (most
        # conversations never retransmit, shrink the window or fail a checksum)
        self.scaled: Dict[str, List[int]] = {}
        self.packets = 0
        self.ip_bytes = 0           # the IP lengths of its packets (Zeek's ConnSize analyzer)
        self.payloads = array("I")
        self.reassembler = Reassembler()
        self.missed_bytes = 0       # content gaps reported for this direction
        self.udp_size = -1          # UDP: payload bytes sent, -1 before the first datagram

    def set_last_seq(self, seq: int) -> None:       # Zeek's UpdateLastSeq
        if seq < self.last_seq:
            self.seq_wraps = _u32(self.seq_wraps + 1)
        self.last_seq = seq

    def set_ack_seq(self, seq: int) -> None:        # Zeek's UpdateAckSeq
        if seq < self.ack_seq:
            self.ack_wraps = _u32(self.ack_wraps + 1)
        self.ack_seq = seq

    def init_sequence(self, start: int, last: int) -> None:
        self.start_seq = self.ack_seq = start
        self.last_seq = last

    def relative(self, seq: int, wraps: int) -> int:
        return ((wraps << 32) + seq - self.start_seq) & _MASK64

    def no_data_acked(self) -> bool:
        ack = ((self.ack_wraps << 32) + self.ack_seq) & _MASK64
        return ack == self.start_seq or ack == self.start_seq + 1

    @property
    def payload_bytes(self) -> int:
        """conn.log's orig_bytes/resp_bytes for this side (Zeek's TCP_Endpoint::Size, or UDP's length sum)."""
        if self.udp_size >= 0:
            return self.udp_size
        if (self.prev_state == SYN_SENT and self.state == RESET and self.peer.state == INACTIVE
                and not self.no_data_acked()):
            return 0    # a half-open connection discovered and aborted: its sequence numbers say nothing
        last = ((self.seq_wraps << 32) + self.last_seq) & _MASK64
        ack = ((self.ack_wraps << 32) + self.ack_seq) & _MASK64
        size = ((last if last > ack else ack) - self.start_seq) & _MASK64
        if size:
            size -= 1     # the SYN
        if self.fin_cnt and size:
            size -= 1     # the FIN
        return size

    def __repr__(self) -> str:
        return f"ZeekEndpoint({'orig' if self.is_orig else 'resp'}, {self.state}, packets={self.packets})"


def _relative_seq(endpoint: ZeekEndpoint, seq: int, last: int, wraps: int) -> Tuple[int, bool]:
    """Zeek's get_relative_seq: `seq` relative to the endpoint's start in 64 bits, and whether it lies
    before the start (an underflow)."""
    delta = seq_delta(seq, last)
    if delta < 0:
        if wraps and seq > last:
            wraps -= 1
    elif delta > 0:
        if seq < last:
            wraps += 1
    if wraps == 0:
        delta = seq_delta(seq, endpoint.start_seq)
        return delta & _MASK64, delta < 0
    return endpoint.relative(seq, wraps), False


# Each (kind, side) Connection::CheckHistory is asked about, as a bit of ZeekState._hist_seen.
_HISTORY_KEYS = {(kind, is_orig): 1 << (2 * number + is_orig)
                 for number, kind in enumerate(("UDP-D", "FIN_RST", "MULTI_FLAG", "SYN", "FIN", "RST", "DATA", "ACK"))
                 for is_orig in (False, True)}


class ZeekState:
    """One connection, fed its packets in order: read conn_state, history and the endpoints at any time.

    The tracker asks `is_reuse` before feeding a SYN, collects `timers` (time, kind, generation) after
    each packet and hands each one back through `on_timer` when capture time reaches it."""

    __slots__ = ("proto", "settings", "orig", "resp", "_history", "_hist_seen", "flips", "start_time",
                 "last_time", "is_active", "is_partial", "first_packet_seen", "close_deferred", "deferred_gen_event",
                 "inactivity_timeout", "timers", "analyzer_generation", "inactivity_generation")

    def __init__(self, proto: int, time_ns: int = 0, settings: ZeekSettings = ZeekSettings(),
                 network_time: Optional[int] = None) -> None:
        self.proto = proto
        self.settings = settings
        self.orig = ZeekEndpoint(True)
        self.resp = ZeekEndpoint(False)
        self.orig.peer, self.resp.peer = self.resp, self.orig
        self._history: List[str] = []
        self._hist_seen = 0       # bits of _HISTORY_KEYS: which (kind, side) history has recorded
        self.flips = 0
        self.start_time = self.last_time = time_ns
        self.is_active = True
        self.is_partial = False
        self.first_packet_seen = [False, False]     # from the originator, from the responder
        self.close_deferred = False
        self.deferred_gen_event = False
        self.inactivity_timeout = 0
        self.timers: List[Tuple[int, str, int]] = []
        self.analyzer_generation = 0
        self.inactivity_generation = 0
        if proto == TCP:
            self._add_timer((time_ns if network_time is None else network_time) + TCP_SYN_TIMEOUT, EXPIRE)
        self._set_inactivity_timeout(UDP_INACTIVITY_TIMEOUT)

    @property
    def history(self) -> str:
        return "".join(self._history)

    @property
    def flipped(self) -> bool:
        return self.flips % 2 == 1

    # --- the packet ------------------------------------------------------------------------------
    def feed(self, packet: Packet, is_orig: bool) -> bool:
        """Take one packet (`is_orig`: sent by the originator as the connection stood before it);
        returns whether it retransmitted payload (history T's rule). The packet's sender afterwards is
        the endpoint that sent it: if the roles flipped on this packet, `flips` has moved."""
        endpoint = self.orig if is_orig else self.resp
        if self.proto != TCP:
            self._feed_udp(packet, endpoint, is_orig)
            return False
        retransmitted = self._process(packet, endpoint, endpoint.peer, is_orig)
        endpoint.packets += 1
        endpoint.ip_bytes += packet.ip_len
        if packet.payload_len:
            endpoint.payloads.append(packet.payload_len)
        return retransmitted

    def checksum_error(self, is_orig: bool) -> None:
        """A packet Zeek discards for its bad TCP or UDP checksum: history C, nothing else."""
        if self.proto == TCP:
            self._scaled(self.orig if is_orig else self.resp, "C")
        else:
            self._scaled_letter("C" if is_orig else "c", self.orig if is_orig else self.resp, "C")

    def mark_flipped(self) -> None:
        """The connection's roles were flipped when it was made (rule 3's likely server ports)."""
        self._flip()

    def _feed_udp(self, packet: Packet, endpoint: ZeekEndpoint, is_orig: bool) -> None:
        self.last_time = packet.time_ns
        self._conn_check_history(("UDP-D", is_orig), "D" if is_orig else "d")
        endpoint.udp_size = packet.payload_len if endpoint.udp_size < 0 else endpoint.udp_size + packet.payload_len
        endpoint.state = ESTABLISHED     # UDP_ACTIVE
        endpoint.packets += 1
        endpoint.ip_bytes += packet.ip_len
        endpoint.payloads.append(packet.payload_len)

    def _process(self, packet: Packet, endpoint: ZeekEndpoint, peer: ZeekEndpoint, is_orig: bool) -> bool:
        """TCPSessionAdapter::Process, step by step."""
        flags, base_seq, ack_seq, length, now = packet.flags, packet.seq, packet.ack, packet.payload_len, packet.time_ns
        self._set_partial_status(flags, is_orig)
        seg_len = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0) - (length if flags & RST else 0)
        seq_one_past_segment = _u32(base_seq + seg_len)
        self._init_endpoint(endpoint, flags, base_seq, seq_one_past_segment)
        rel_seq, seq_underflow = _relative_seq(endpoint, base_seq, endpoint.last_seq, endpoint.seq_wraps)
        self._update_history(flags, endpoint, rel_seq, length)
        if packet.window == 0 and not flags & RST and peer.state != CLOSED and endpoint.state != RESET:
            self._scaled(endpoint, "W")
        if not (self.orig.did_close and self.resp.did_close):
            self.last_time = now
        if flags & FIN:
            endpoint.fin_cnt += 1
            endpoint.fin_seq = (rel_seq + seg_len) & _MASK64
        rel_ack = 0
        if flags & ACK:
            if peer.state == INACTIVE:
                rel_ack = 1
                start = _u32(ack_seq - 1)
                peer.init_sequence(start, start)
            else:
                rel_ack, ack_underflow = _relative_seq(peer, ack_seq, peer.ack_seq, peer.ack_wraps)
                if ack_underflow:
                    rel_ack = 0
                elif not flags & RST:
                    delta_ack = seq_delta(ack_seq, peer.ack_seq)
                    if not (ack_seq == 0 and delta_ack > TOO_LARGE_SEQ_DELTA) and delta_ack > 0:
                        peer.set_ack_seq(ack_seq)
        delta_last, retransmitted = self._update_last_seq(endpoint, seq_one_past_segment, flags, length)
        do_close, gen_event = self._update_state_machine(now, endpoint, peer, base_seq, length, is_orig, flags)
        if flags & ACK:
            self._ack_received(peer, rel_ack)
        rel_data_seq = (rel_seq + 1) & _MASK64 if flags & SYN else rel_seq
        if length > 0 and len(packet.payload) >= length and not flags & RST and not seq_underflow:
            self._data_sent(endpoint, rel_data_seq, length)
        self.first_packet_seen[0 if is_orig else 1] = True
        self._check_eof(endpoint)
        if do_close:
            self._connection_closed(endpoint, peer, gen_event)
        return retransmitted

    def _set_partial_status(self, flags: int, is_orig: bool) -> None:
        # Only the first packet each way counts; is_partial spares a partial connection's first ACK a gap.
        if is_orig:
            if not self.first_packet_seen[0]:
                self.is_partial = not flags & SYN or bool(flags & ACK)
        elif not self.first_packet_seen[1] and not self.is_partial:
            self.is_partial = not flags & SYN

    @staticmethod
    def _init_endpoint(endpoint: ZeekEndpoint, flags: int, first_seg_seq: int, last_seq: int) -> None:
        state = endpoint.state
        if state == INACTIVE:
            if flags & SYN:
                endpoint.start_seq = endpoint.ack_seq = first_seg_seq
            else:
                # A partial connection: numbered as if a SYN came just before, the first packet not a duplicate.
                endpoint.start_seq = endpoint.ack_seq = _u32(first_seg_seq - 1)
                last_seq = first_seg_seq
            endpoint.last_seq = last_seq
        elif state in (SYN_SENT, SYN_ACK_SENT):
            if flags & SYN and first_seg_seq != endpoint.start_seq:
                endpoint.init_sequence(first_seg_seq, last_seq)
        elif state in (ESTABLISHED, PARTIAL):
            if flags & SYN:
                endpoint.init_sequence(first_seg_seq, last_seq)
        elif state == RESET:
            if flags & SYN and endpoint.prev_state == INACTIVE:
                endpoint.init_sequence(first_seg_seq, last_seq)

    def _update_last_seq(self, endpoint: ZeekEndpoint, last_seq: int, flags: int, length: int) -> Tuple[int, bool]:
        delta_last = seq_delta(last_seq, endpoint.last_seq)
        if flags & (SYN | RST) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
            pass
        elif flags & FIN and endpoint.last_seq == _u32(endpoint.start_seq + 1):
            endpoint.set_last_seq(last_seq)     # a >2 GB connection seen only by its SYN and FIN
        elif endpoint.state == RESET:
            pass                                # sequence numbers after a RST are not trusted
        elif delta_last > 0:
            endpoint.set_last_seq(last_seq)
        elif length > 0:
            self._scaled(endpoint, "T")
            return delta_last, True
        return delta_last, False

    # --- history ---------------------------------------------------------------------------------------
    def _conn_check_history(self, key: Tuple[str, bool], code: str) -> bool:
        """Connection::CheckHistory: record `code` the first time `key` is seen; True if seen before."""
        bit = _HISTORY_KEYS[key]
        if not self._hist_seen & bit:
            self._hist_seen |= bit
            self._history.append(code)
            return False
        return True

    def _check_history(self, endpoint: ZeekEndpoint, kind: str, code: str) -> bool:
        """TCP_Endpoint::CheckHistory, with its flip of a connection that began with a SYN-ACK."""
        if code in "AD" and self._history == ["H"]:
            self._flip()
            self._history[:] = ["^", "h"]
            self.first_packet_seen[0] = True
        if not endpoint.is_orig:
            code = code.lower()
        return self._conn_check_history((kind, endpoint.is_orig), code)

    def _add_history(self, endpoint: ZeekEndpoint, code: str) -> None:
        self._history.append(code if endpoint.is_orig else code.lower())

    def _scaled(self, endpoint: ZeekEndpoint, letter: str) -> None:
        self._scaled_letter(letter if endpoint.is_orig else letter.lower(), endpoint, letter)

    def _scaled_letter(self, code: str, endpoint: ZeekEndpoint, letter: str) -> None:
        """Session::ScaledHistoryEntry, with its 32-bit counter and threshold."""
        counts = endpoint.scaled.get(letter)
        if counts is None:
            counts = endpoint.scaled[letter] = [0, 1]
        counts[0] = _u32(counts[0] + 1)
        if counts[0] == counts[1]:
            self._history.append(code)
            threshold = _u32(counts[1] * HISTORY_SCALE)
            if threshold <= counts[1]:
                counts[0] = 0
            else:
                counts[1] = threshold

    def _update_history(self, flags: int, endpoint: ZeekEndpoint, rel_seq: int, length: int) -> None:
        bits = (1 if flags & SYN else 0) + (1 if flags & FIN else 0) + (1 if flags & RST else 0)
        if bits > 1:
            if flags & FIN and flags & RST:
                self._check_history(endpoint, "FIN_RST", "I")
            else:
                self._check_history(endpoint, "MULTI_FLAG", "Q")
        elif bits == 1:
            if flags & SYN:
                code = "H" if flags & ACK else "S"
                if self._check_history(endpoint, "SYN", code) and rel_seq != endpoint.hist_last_syn:
                    self._add_history(endpoint, code)
                endpoint.hist_last_syn = rel_seq
            if flags & FIN:
                fin_at = (rel_seq + length) & _MASK64     # a FIN's place is after its data
                if self._check_history(endpoint, "FIN", "F") and fin_at != endpoint.hist_last_fin:
                    self._add_history(endpoint, "F")
                endpoint.hist_last_fin = fin_at
            if flags & RST:
                if self._check_history(endpoint, "RST", "R") and rel_seq != endpoint.hist_last_rst:
                    self._add_history(endpoint, "R")
                endpoint.hist_last_rst = rel_seq
        elif length:
            self._check_history(endpoint, "DATA", "D")
        elif flags & ACK:
            self._check_history(endpoint, "ACK", "A")

    def _flip(self) -> None:
        """Connection::FlipRoles: originator and responder change places, and the history says so."""
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig, self.resp.is_orig = True, False
        self.first_packet_seen.reverse()
        self.is_partial = False
        self.flips += 1
        self._history.append("^")

    # --- endpoint state machine ----------------------------------------------------------------------
    def _set_state(self, endpoint: ZeekEndpoint, state: str) -> None:
        if state != endpoint.state:
            if (state not in _HANDSHAKE_STATES and endpoint.state in _HANDSHAKE_STATES
                    and endpoint.peer.state in _HANDSHAKE_STATES):
                self._set_inactivity_timeout(TCP_INACTIVITY_TIMEOUT)   # the handshake is over
            endpoint.prev_state, endpoint.state = endpoint.state, state

    def _update_state_machine(self, now: int, endpoint: ZeekEndpoint, peer: ZeekEndpoint, base_seq: int,
                              length: int, is_orig: bool, flags: int) -> Tuple[bool, bool]:
        """(do_close, gen_event): whether the connection closes on this packet, and reports it."""
        state = endpoint.state
        if state == INACTIVE:
            return self._update_inactive_state(now, endpoint, peer, base_seq, length, is_orig, flags)
        if state in (SYN_SENT, SYN_ACK_SENT):
            do_close = gen_event = False
            if flags & FIN:
                self._set_state(endpoint, CLOSED)
                do_close = gen_event = True
            if flags & RST:
                self._set_state(endpoint, RESET)
                self.is_active = False          # ConnectionReset
                do_close = True
            return do_close, gen_event
        if state in (ESTABLISHED, PARTIAL):
            do_close = gen_event = False
            if flags & SYN and state == PARTIAL and peer.state == INACTIVE and not flags & ACK:
                self._set_state(endpoint, SYN_SENT)          # a SYN after a partial start
            if flags & FIN and not flags & RST:
                self._set_state(endpoint, CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    self._set_state(peer, CLOSED)            # the peer's FIN then RST was a normal close
                do_close = gen_event = True
            if flags & RST:
                self._set_state(endpoint, RESET)
                do_close = True
                if peer.state != RESET or peer.prev_state != ESTABLISHED:
                    self.is_active = False      # ConnectionReset
            return do_close, gen_event
        if state == CLOSED:
            # A RST after this side's FIN, unless both have closed (then the FIN exchange stands).
            if flags & RST and peer.state != CLOSED:
                self._set_state(endpoint, RESET)
                return not endpoint.did_close, False
        return False, False

    def _update_inactive_state(self, now: int, endpoint: ZeekEndpoint, peer: ZeekEndpoint, base_seq: int,
                               length: int, is_orig: bool, flags: int) -> Tuple[bool, bool]:
        do_close = gen_event = False
        if flags & SYN:
            if is_orig:
                self._set_state(endpoint, SYN_ACK_SENT if flags & ACK else SYN_SENT)
                self._add_timer(now + TCP_ATTEMPT_DELAY, ATTEMPT)
            else:
                if not flags & ACK and peer.state == SYN_ACK_SENT and base_seq == endpoint.start_seq:
                    # A SYN answering the originator's SYN-ACK: the two were captured the wrong way round.
                    self._flip()
                    self._set_state(peer, ESTABLISHED)
                    self.first_packet_seen[0] = True
                if peer.state == SYN_SENT:
                    self._set_state(peer, ESTABLISHED)
                self._set_state(endpoint, ESTABLISHED)
        if flags & FIN:
            self._set_state(endpoint, CLOSED)
            do_close = gen_event = True
        if flags & RST:
            self._set_state(endpoint, RESET)
            is_reject = peer.state == ESTABLISHED if is_orig else peer.state in (SYN_SENT, SYN_ACK_SENT)
            do_close = True
            gen_event = not is_reject
        if endpoint.state == INACTIVE:
            if not is_orig and length == 0 and self.orig.state == SYN_SENT:
                pass        # an ACK of the SYN before the SYN-ACK (some TCPs do it): not a partial start
            elif flags & ACK and peer.state == ESTABLISHED:
                self._set_state(endpoint, ESTABLISHED)      # the SYN was missed, the SYN-ACK was not
                self.is_partial = False
                self.first_packet_seen[0 if is_orig else 1] = True
            else:
                self._set_state(endpoint, PARTIAL)
        return do_close, gen_event

    # --- content: reassembly, gaps and the close that waits for them -----------------------------------
    def _data_sent(self, endpoint: ZeekEndpoint, seq: int, length: int) -> None:
        """TCP_Reassembler::DataSent and Reassembler::NewBlock."""
        reassembler = endpoint.reassembler
        if reassembler.skip_deliveries:
            return
        ack = endpoint.relative(endpoint.ack_seq, endpoint.ack_wraps)
        upper = (seq + length) & _MASK64
        if seq < ack:
            if upper <= ack:
                return      # delivered and acknowledged already
            seq = ack
        block = reassembler.insert(seq, upper)
        if block is not None:
            self._block_inserted(endpoint, *block)
        if (endpoint.no_data_acked() and self.settings.tcp_max_above_hole_without_any_acks
                and reassembler.undelivered > self.settings.tcp_max_above_hole_without_any_acks):
            reassembler.clear()
        elif ((self.settings.tcp_excessive_data_without_further_acks
               and reassembler.buffered > self.settings.tcp_excessive_data_without_further_acks)
              or len(reassembler.runs) > MAX_BUFFERED_RUNS):
            reassembler.clear()

    def _block_inserted(self, endpoint: ZeekEndpoint, seq: int, upper: int) -> None:
        reassembler = endpoint.reassembler
        before = reassembler.delivered
        reassembler.deliver_from(seq, upper)
        if reassembler.delivered == before:
            return
        if (endpoint.no_data_acked() and self.settings.tcp_max_initial_window
                and endpoint.payload_bytes > self.settings.tcp_max_initial_window):
            # Much sent and nothing acknowledged: the peer's ACKs are not in the capture; let go.
            self._trim_to_seq(endpoint, reassembler.delivered)

    def _ack_received(self, endpoint: ZeekEndpoint, seq: int) -> None:
        """The peer acknowledged `seq` (relative) of `endpoint`'s data."""
        if endpoint.fin_cnt and seq >= endpoint.fin_seq:
            seq = (endpoint.fin_seq - 1) & _MASK64
        if seq <= endpoint.reassembler.trim_seq:
            return
        self._trim_to_seq(endpoint, seq)
        self._check_eof(endpoint)

    def _trim_to_seq(self, endpoint: ZeekEndpoint, seq: int) -> None:
        reassembler = endpoint.reassembler
        if seq > reassembler.delivered:
            self._undelivered(endpoint, seq)
        runs = reassembler.runs
        while runs and runs[0][1] <= seq:
            del runs[0]
        if runs and runs[0][0] <= reassembler.delivered < runs[0][1]:
            reassembler.deliver_from(reassembler.delivered, runs[0][1])
        reassembler.trim_seq = seq

    def _undelivered(self, endpoint: ZeekEndpoint, up_to_seq: int) -> None:
        """TCP_Reassembler::Undelivered: acknowledged data the capture never delivered is a gap."""
        reassembler = endpoint.reassembler
        if up_to_seq <= 2 and self.is_partial:
            return      # the first ACK of a partial connection, whose start was only guessed
        if not reassembler.skip_deliveries:
            for start, end in list(reassembler.runs):
                if start < reassembler.delivered:
                    continue
                if start >= up_to_seq:
                    break
                self._gap(endpoint, start - reassembler.delivered)
                reassembler.delivered = start
                self._block_inserted(endpoint, start, end)
            if up_to_seq > reassembler.delivered:
                self._gap(endpoint, up_to_seq - reassembler.delivered)
        if up_to_seq > reassembler.delivered:
            reassembler.delivered = up_to_seq

    def _gap(self, endpoint: ZeekEndpoint, length: int) -> None:
        clean = _is_clean(endpoint) and _is_clean(endpoint.peer)
        if clean:
            self._scaled(endpoint, "G")
        if self.settings.report_gaps_for_partial or clean:
            endpoint.missed_bytes += length       # conn/main.zeek's content_gap handler

    def _data_pending(self, endpoint: ZeekEndpoint) -> bool:
        """Whether `endpoint` still has data to deliver, so its close must wait (TCP_Reassembler::DataPending)."""
        reassembler = endpoint.reassembler
        if reassembler.skip_deliveries:
            return False
        delivered = (endpoint.start_seq + reassembler.delivered) & _MASK64
        last = ((endpoint.seq_wraps << 32) + endpoint.last_seq) & _MASK64
        if last < delivered:
            return False
        if delivered != (last - 1) & _MASK64 and delivered != last:
            return True
        return endpoint.state != RESET and endpoint.peer.reassembler.has_blocks

    def _check_eof(self, endpoint: ZeekEndpoint) -> None:
        reassembler = endpoint.reassembler
        if (not reassembler.did_eof and (endpoint.fin_cnt or endpoint.state in (CLOSED, RESET))
                and not self._data_pending(endpoint)):
            reassembler.did_eof = True
            if self.close_deferred:
                self._connection_closed(endpoint, endpoint.peer, self.deferred_gen_event)
                self.close_deferred = False

    def _connection_closed(self, endpoint: ZeekEndpoint, peer: ZeekEndpoint, gen_event: bool) -> None:
        if self._data_pending(endpoint):
            self.close_deferred = True
            self.deferred_gen_event = self.deferred_gen_event or gen_event
            return
        self.close_deferred = False
        if endpoint.did_close:
            return
        endpoint.did_close = True
        if endpoint.state == RESET or peer.did_close or peer.state == INACTIVE:
            if endpoint.prev_state != INACTIVE or peer.state != INACTIVE:
                if self.deferred_gen_event:
                    gen_event = True
                    self.deferred_gen_event = False
                if gen_event:
                    self.is_active = False      # ConnectionFinished
            self.analyzer_generation += 1       # CancelTimers
            self._add_timer(self.last_time + TCP_CLOSE_DELAY, CONN_DELETE)
        elif endpoint.prev_state != INACTIVE:
            self._add_timer(self.last_time + TCP_SESSION_TIMER, EXPIRE)

    # --- timers -----------------------------------------------------------------------------------------
    def _add_timer(self, when: int, kind: str) -> None:
        generation = self.inactivity_generation if kind == INACTIVITY else self.analyzer_generation
        self.timers.append((when, kind, generation))

    def _set_inactivity_timeout(self, timeout: int) -> None:
        if timeout == self.inactivity_timeout:
            return
        self.inactivity_generation += 1
        self.inactivity_timeout = timeout
        self._add_timer(self.last_time + timeout, INACTIVITY)

    def on_timer(self, kind: str, generation: int, now: int) -> bool:
        """A timer of this connection came due at capture time `now`: True if the connection ends."""
        if kind == INACTIVITY:
            if generation != self.inactivity_generation:
                return False
            if self.last_time + self.inactivity_timeout <= now:
                return True
            self._add_timer(self.last_time + self.inactivity_timeout, INACTIVITY)
            return False
        if generation != self.analyzer_generation:
            return False
        if kind == CONN_DELETE:
            return True
        if not self.is_active:
            return False
        orig, resp = self.orig, self.resp
        if kind == ATTEMPT:
            if orig.state in (SYN_SENT, SYN_ACK_SENT) and resp.state == INACTIVE:
                self.is_active = False
                return True
            return False
        # EXPIRE: ended if idle for tcp_connection_linger and closed or half-closed; or never heard from.
        if self.last_time + TCP_CONNECTION_LINGER < now:
            if orig.did_close or resp.did_close:
                if ((orig.did_close and resp.did_close) or RESET in (orig.state, resp.state)
                        or INACTIVE in (orig.state, resp.state)):
                    self.is_active = False
                    return True
            if orig.state == INACTIVE and resp.state == INACTIVE:
                return True
        self._add_timer(now + TCP_SESSION_TIMER, EXPIRE)
        return False

    def is_reuse(self, packet: Packet) -> bool:
        """Whether this SYN starts a new connection on the same pair (TCPSessionAdapter::IsReuse)."""
        flags = packet.flags
        if not flags & SYN:
            return False
        opener = self.orig
        if flags & ACK:
            if self.orig.state != INACTIVE:
                return False    # not a half connection
            opener = self.resp
        if not (self.orig.did_close or self.resp.did_close):
            if packet.seq == opener.start_seq:
                return False
            if (not flags & ACK and opener.state == SYN_ACK_SENT and self.resp.state == INACTIVE
                    and packet.seq == self.resp.start_seq):
                return False    # the SYN of a SYN/SYN-ACK pair captured the wrong way round
        return True

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
