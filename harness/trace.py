"""A capture file to packets and conversations: the reader and the decoder, with their warnings.

Packets that cannot be decoded are skipped with a warning rather than stopping the analysis;
a damaged file stops it, but only after everything before the damage has been analysed.

stream_conversations (and stream_summaries over it) hands the per-packet work to the C scanner in
harness/_speedups.c when it was compiled: a translation of conversation.py and connstate.py,
which stay the reference, held to them by tests/test_speedups.py. load_trace, which keeps every
segment for ladders and expectations, is pure Python.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from harness.connstate import ConnectionState, Side
from harness.conversation import Conversation, ConversationTracker, Endpoint
from harness.decode import PacketDecodeError, UnreachableQuote, check_linktype, decode, decode_icmp_unreachable
from harness.packet import Packet
from harness.pcapfile import CaptureFormatError, open_capture
from harness.summary import summarize

try:
    from harness import _speedups
except ImportError:          # not compiled (no C compiler at install time): the pure-Python path serves
    _speedups = None
# Set to any non-empty value to summarize in pure Python although the C scanner is there.
PURE_PYTHON_ENV = "HARNESS_PURE_PYTHON"

# A file of nothing but broken frames (a gzip of zeros, say) has one per 16 bytes; past this
# many, skipped frames are counted in one line instead of each keeping a line in memory.
WARNING_LIMIT = 100


def read_packets(path, warnings: Optional[List[str]] = None,
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]] = None) -> Iterator[Packet]:
    """TCP and UDP packets of a capture, in file order; frames number every record, as Wireshark does.

    ICMP port-unreachable errors are not packets of a conversation; `on_unreachable` gets the
    datagram each one quotes, with its frame number and time.
    """
    decode_record = _RecordDecoder(path, warnings, on_unreachable)
    with open_capture(path) as capture:
        for frame, record in enumerate(capture, 1):
            packet = decode_record(record, frame)
            if packet is not None:
                yield packet


class _RecordDecoder:
    """One record to its Packet, or None: unsupported link types raise, undecodable frames are
    skipped with a warning, ICMP port unreachables go to `on_unreachable`."""

    def __init__(self, path, warnings: Optional[List[str]],
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]]) -> None:
        self.path, self.warnings, self.on_unreachable = path, warnings, on_unreachable
        self.checked = set()
        self.skipped = 0

    def __call__(self, record, frame: int) -> Optional[Packet]:
        if record.linktype not in self.checked:
            check_linktype(record.linktype)
            self.checked.add(record.linktype)
        try:
            packet = decode(record, frame)
        except PacketDecodeError as error:
            self.skipped += 1
            if self.warnings is not None:
                _warn_skipped(self.warnings, self.path, error, self.skipped)
            return None
        if packet is None and self.on_unreachable is not None:
            quote = decode_icmp_unreachable(record)
            if quote is not None:
                self.on_unreachable(quote, frame, record.time_ns)
        return packet


def _warn_skipped(warnings: List[str], path, error: PacketDecodeError, skipped: int) -> None:
    if skipped <= WARNING_LIMIT:
        warnings.append(f"{path}: {error}; skipped")
        return
    summary = (f"{path}: {skipped - WARNING_LIMIT} more undecodable frames skipped "
               f"(a warning each for the first {WARNING_LIMIT} only)")
    if skipped == WARNING_LIMIT + 1:
        warnings.append(summary)
    else:
        warnings[-1] = summary   # only this generator appends, so the last line is the count


@dataclass
class Trace:
    path: str
    conversations: List[Conversation]
    packets: int
    warnings: List[str] = field(default_factory=list)
    damage: Optional[CaptureFormatError] = None   # set when the file ended in damage


def _scan(path, tracker: ConversationTracker) -> Tuple[int, List[str], Optional[CaptureFormatError]]:
    warnings: List[str] = []
    count = 0
    damage = None
    try:
        for packet in read_packets(path, warnings, tracker.feed_unreachable):
            tracker.feed(packet)
            count += 1
    except CaptureFormatError as error:
        damage = error
    return count, warnings, damage


def load_trace(path, keep_segments: bool = True) -> Trace:
    """Every conversation of a capture; a damaged file yields what came before the damage."""
    tracker = ConversationTracker(keep_segments)
    count, warnings, damage = _scan(path, tracker)
    return Trace(str(path), tracker.conversations, count, warnings, damage)


def stream_summaries(path, emit: Callable[[Dict[str, object]], None]) -> Trace:
    """Each conversation's summary record, handed to `emit` as soon as the conversation has ended.

    Nothing is kept per conversation once it is summarized, so memory follows the number of open
    conversations, not the size of the capture. The Trace returned has no conversations.
    """
    return stream_conversations(path, lambda conversation: emit(summarize(conversation)))


def stream_conversations(path, on_finished: Callable[[Conversation], None]) -> Trace:
    """Each conversation, without its segments, handed to `on_finished` as soon as it has ended, in
    the order ConversationTracker ends them. The per-packet work is done in C (harness._speedups)
    when it was compiled, unless HARNESS_PURE_PYTHON is set; the conversations are the same either
    way (tests/test_speedups.py holds the two to that, slot by slot)."""
    if _speedups is not None and not os.environ.get(PURE_PYTHON_ENV):
        scanner = _speedups.Scanner(lambda values: on_finished(_conversation_from_scan(values)))
        warnings: List[str] = []
        damage = None
        try:
            with open_capture(path) as capture:
                capture.bulk_pcap, capture.bulk_pcapng = scanner.walk_pcap, scanner.walk_pcapng
                scanner.feed_records(capture, _RecordDecoder(path, warnings, scanner.feed_unreachable))
        except CaptureFormatError as error:
            damage = error
        scanner.finish()
        return Trace(str(path), [], scanner.packets, warnings, damage)
    tracker = ConversationTracker(keep_segments=False, on_finished=on_finished)
    count, warnings, damage = _scan(path, tracker)
    tracker.finish()
    return Trace(str(path), [], count, warnings, damage)


# The C scanner hands each ended conversation over as a tuple (harness/_speedups.c, conv_values), made
# back into the objects the pure-Python tracker would have made. Slots are filled by unpacking, not
# through __init__: this runs once per conversation, and is a good part of the summary's time.

def _side_from_scan(is_orig: bool, values: tuple) -> Side:
    side = Side.__new__(Side)
    side.is_orig = is_orig
    (side.state, side.prev_state, side.packets, side.start_seq, side.highest_seq, side.rexmit_payloads,
     side.retransmissions, side.out_of_order, side.duplicate_acks, side.zero_windows, side.holes, side.next_seq,
     side.next_seq_time, side.last_ack, side.last_ack_time, side.window, side.dupacks_in_a_row, side.keep_alive,
     side.max_seq_to_ack, payloads, recorded) = values
    side.payloads = array("I", payloads)
    side._recorded = dict(recorded)
    return side


def _conversation_from_scan(values: tuple) -> Conversation:
    (index, proto, orig_host, orig_port, resp_host, resp_port, began_mid_stream, first_time_ns, last_time_ns,
     unreachable, orig_isn, flipped, history, initial_rtt, syn_time, orig, resp) = values
    state = ConnectionState.__new__(ConnectionState)
    state.proto, state.flipped, state._history, state.initial_rtt, state._syn_time = (
        proto, flipped, list(history), initial_rtt, syn_time)
    state.orig, state.resp = _side_from_scan(True, orig), _side_from_scan(False, resp)
    conversation = Conversation.__new__(Conversation)
    (conversation.index, conversation.proto, conversation.orig, conversation.resp, conversation.began_mid_stream,
     conversation.keep_segments, conversation.segments, conversation.state, conversation.unreachable,
     conversation.first_time_ns, conversation.last_time_ns, conversation._seq_base, conversation._orig_isn) = (
        index, proto, Endpoint(orig_host, orig_port), Endpoint(resp_host, resp_port), began_mid_stream,
        False, [], state, unreachable, first_time_ns, last_time_ns, {}, orig_isn)
    return conversation
