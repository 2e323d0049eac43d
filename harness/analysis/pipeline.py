"""A capture file to packets and conversations: the reader and the decoder, with their warnings.

Packets that cannot be decoded are skipped with a warning rather than stopping the analysis;
a damaged file stops it, but only after everything before the damage has been analysed.

stream_conversations (and stream_summaries over it) hands the per-packet work to the C scanner in
harness/analysis/_speedups.c when it was compiled: a translation of tracker.py, conversation.py, zeek.py and tshark.py,
which stay the reference, held to them by tests/unit/test_speedups.py. analyse, which keeps every
segment for ladders and expectations, is pure Python.
"""
from __future__ import annotations

import os
from array import array
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from harness.analysis.tshark import TsharkEndpoint, TsharkState
from harness.analysis.zeek import ZeekEndpoint, ZeekState
from harness.analysis.conversation import Conversation, Endpoint
from harness.analysis.tracker import ConversationTracker
from harness.wire.decode import (PacketDecodeError, UnreachableQuote, check_linktype, decode, decode_icmp_unreachable,
                            describe_other)
from harness.wire.packet import TCP, Packet
from harness.wire.reader import CaptureFormatError, open_capture
from harness.analysis.summary import summarize

try:
    from harness.analysis import _speedups
    _SPEEDUPS_MISSING = ""
except ImportError as error:  # not compiled (no C compiler at install time): the pure-Python path serves
    _speedups = None
    _SPEEDUPS_MISSING = str(error)
# Set to any non-empty value to summarize in pure Python although the C scanner is there.
PURE_PYTHON_ENV = "HARNESS_PURE_PYTHON"
# Written by setup.py's build_ext when the C scanner could not be compiled: why, in one line.
SPEEDUPS_REASON_FILE = Path(__file__).with_name("_speedups.unavailable")

# A file of nothing but broken frames (a gzip of zeros, say) has one per 16 bytes; past this
# many, skipped frames are counted in one line instead of each keeping a line in memory.
WARNING_LIMIT = 100


def speedups_status() -> Tuple[bool, str]:
    """(whether summaries run through the compiled C scanner, a line saying which path and why)."""
    if _speedups is not None:
        if os.environ.get(PURE_PYTHON_ENV):
            return False, f"pure Python ({PURE_PYTHON_ENV} is set; the compiled C scanner is installed)"
        return True, f"compiled C ({Path(_speedups.__file__).name})"
    try:
        reason = SPEEDUPS_REASON_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        reason = f"harness.analysis._speedups is not installed ({_SPEEDUPS_MISSING})"
    return False, f"pure Python, several times slower: {reason}"


def read_packets(path, warnings: Optional[List[str]] = None,
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]] = None) -> Iterator[Packet]:
    """TCP and UDP packets of a capture, in file order; frames number every record, as Wireshark does.

    ICMP port-unreachable errors are not packets of a conversation; `on_unreachable` gets the
    datagram each one quotes, with its frame number and time.
    """
    yield from _decoded(path, _RecordDecoder(path, warnings, on_unreachable))


def _decoded(path, decode_record: "_RecordDecoder") -> Iterator[Packet]:
    with open_capture(path) as capture:
        for frame, record in enumerate(capture, 1):
            decode_record.frames = frame
            packet = decode_record(record, frame)
            if packet is not None:
                yield packet


class _RecordDecoder:
    """One record to its Packet, or None: unsupported link types raise, undecodable frames are
    skipped with a warning, ICMP port unreachables go to `on_unreachable`, and every frame that is
    not TCP or UDP is counted in `others` by what it is ("ARP": 3, ...)."""

    def __init__(self, path, warnings: Optional[List[str]],
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]]) -> None:
        self.path, self.warnings, self.on_unreachable = path, warnings, on_unreachable
        self.checked = set()
        self.skipped = 0
        self.frames = 0
        self.others: Dict[str, int] = {}

    def __call__(self, record, frame: int) -> Optional[Packet]:
        if record.linktype not in self.checked:
            check_linktype(record.linktype)
            self.checked.add(record.linktype)
        try:
            packet = decode(record, frame)
        except PacketDecodeError as error:
            self.skipped += 1
            self.others["undecodable frames"] = self.skipped
            if self.warnings is not None:
                _warn_skipped(self.warnings, self.path, error, self.skipped)
            return None
        if packet is None:
            kind = describe_other(record)
            self.others[kind] = self.others.get(kind, 0) + 1
            if self.on_unreachable is not None:
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
class Analysis:
    path: str
    conversations: List[Conversation]
    packets: int                                  # TCP and UDP packets
    warnings: List[str] = field(default_factory=list)
    damage: Optional[CaptureFormatError] = None   # set when the file ended in damage
    frames: int = 0                               # every record read, TCP/UDP or not
    others: Dict[str, int] = field(default_factory=dict)   # the frames that are not TCP/UDP, by kind

    def contents(self) -> str:
        """What was read, in words: '12 packets (8 ARP, 4 ICMP)'."""
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.others.items(), key=lambda kv: -kv[1]))
        noun = "packet" if self.frames == 1 else "packets"
        if self.packets:
            kinds = ", ".join(filter(None, [f"{self.packets} TCP/UDP", kinds]))
        return f"{self.frames} {noun}" + (f" ({kinds})" if kinds else "")


def _scan(path, tracker: ConversationTracker) -> Analysis:
    decoder = _RecordDecoder(path, [], tracker.feed_unreachable)
    count = 0
    damage = None
    try:
        for packet in _decoded(path, decoder):
            tracker.feed(packet)
            count += 1
    except CaptureFormatError as error:
        damage = error
    return Analysis(str(path), tracker.conversations, count, decoder.warnings, damage, decoder.frames, decoder.others)


def analyse(path, keep_segments: bool = True) -> Analysis:
    """Every conversation of a capture; a damaged file yields what came before the damage."""
    return _scan(path, ConversationTracker(keep_segments))


def stream_summaries(path, emit: Callable[[Dict[str, object]], None]) -> Analysis:
    """Each conversation's summary record, handed to `emit` as soon as the conversation has ended.

    Nothing is kept per conversation once it is summarized, so memory follows the number of open
    conversations, not the size of the capture. The Analysis returned has no conversations.
    """
    return stream_conversations(path, lambda conversation: emit(summarize(conversation)))


def stream_conversations(path, on_finished: Callable[[Conversation], None]) -> Analysis:
    """Each conversation, without its segments, handed to `on_finished` as soon as it has ended, in
    the order ConversationTracker ends them. The per-packet work is done in C (harness.analysis._speedups)
    when it was compiled, unless HARNESS_PURE_PYTHON is set; the conversations are the same either
    way (tests/unit/test_speedups.py holds the two to that, slot by slot)."""
    if _speedups is not None and not os.environ.get(PURE_PYTHON_ENV):
        scanner = _speedups.Scanner(lambda values: on_finished(_conversation_from_scan(values)))
        decoder = _RecordDecoder(path, [], scanner.feed_unreachable)
        damage = None
        try:
            with open_capture(path) as capture:
                capture.bulk_pcap, capture.bulk_pcapng = scanner.walk_pcap, scanner.walk_pcapng
                scanner.feed_records(capture, decoder)
        except CaptureFormatError as error:
            damage = error
        scanner.finish()
        return Analysis(str(path), [], scanner.packets, decoder.warnings, damage, scanner.frames, decoder.others)
    tracker = ConversationTracker(keep_segments=False, on_finished=on_finished)
    trace = _scan(path, tracker)
    tracker.finish()
    return trace


# The C scanner hands each ended conversation over as a tuple (harness/analysis/_speedups.c, conv_values), made
# back into the objects the pure-Python tracker would have made. Slots are filled by unpacking, not
# through __init__: this runs once per conversation, and is a good part of the summary's time.

def _endpoints_from_scan(is_orig: bool, values: tuple) -> Tuple[ZeekEndpoint, TsharkEndpoint]:
    zeek = ZeekEndpoint.__new__(ZeekEndpoint)
    tshark = TsharkEndpoint.__new__(TsharkEndpoint)
    zeek.is_orig = is_orig
    (zeek.state, zeek.prev_state, zeek.packets, zeek.start_seq, zeek.highest_seq, zeek.rexmit_payloads,
     tshark.retransmissions, tshark.out_of_order, tshark.duplicate_acks, zeek.zero_windows, zeek.holes,
     tshark.next_seq, tshark.next_seq_time, tshark.last_ack, tshark.last_ack_time, tshark.window,
     tshark.dupacks_in_a_row, tshark.keep_alive, tshark.max_seq_to_ack, payloads, recorded) = values
    zeek.payloads = array("I", payloads)
    zeek._recorded = dict(recorded)
    return zeek, tshark


def _conversation_from_scan(values: tuple) -> Conversation:
    (index, proto, orig_host, orig_port, resp_host, resp_port, began_mid_stream, first_time_ns, last_time_ns,
     unreachable, orig_isn, flipped, history, initial_rtt, syn_time, orig, resp) = values
    zeek = ZeekState.__new__(ZeekState)
    zeek.proto, zeek.flipped, zeek._history = proto, flipped, list(history)
    (zeek.orig, tshark_orig), (zeek.resp, tshark_resp) = _endpoints_from_scan(True, orig), _endpoints_from_scan(False, resp)
    tshark = None
    if proto == TCP:
        tshark = TsharkState.__new__(TsharkState)
        tshark.orig, tshark.resp, tshark.initial_rtt, tshark._syn_time = tshark_orig, tshark_resp, initial_rtt, syn_time
    conversation = Conversation.__new__(Conversation)
    (conversation.index, conversation.proto, conversation.orig, conversation.resp, conversation.began_mid_stream,
     conversation.keep_segments, conversation.segments, conversation.zeek, conversation.tshark,
     conversation.unreachable, conversation.first_time_ns, conversation.last_time_ns, conversation._seq_base,
     conversation._orig_isn) = (
        index, proto, Endpoint(orig_host, orig_port), Endpoint(resp_host, resp_port), began_mid_stream,
        False, [], zeek, tshark, unreachable, first_time_ns, last_time_ns, {}, orig_isn)
    return conversation
