"""A capture file to packets and conversations: the reader and the decoder, with their warnings.

Packets that cannot be decoded are skipped with a warning rather than stopping the analysis;
a damaged file stops it, but only after everything before the damage has been analysed.

The steps, in order: open the file (wire.reader), decode each record (wire.decode's unwrap: every
TCP/UDP packet it holds, tunnels opened and IP fragments reassembled as Zeek does), track each packet
into its conversation (analysis.tracker), and on the way count what is not TCP/UDP and warn of what
cannot be decoded. analyse() keeps every conversation with its segments, for ladders and
expectations; stream_summaries() keeps none, handing each record over as its conversation ends.
A datagram whose fragments never all arrived is not analysed, and is warned of in one line.

stream_summaries hands the per-packet work to the C scanner (harness/analysis/_speedups.c) when it
was compiled: a translation of tracker.py, zeek.py and tshark.py, which stay the reference, held to
them by tests/unit/test_speedups.py. Its interface is this module's: the constants it is given
(scanner_limits), the reader's bulk protocol it implements, the facts it hands back (summary.FACTS).
Every record its fast path (decode()'s) does not take goes to _RecordDecoder, which returns a Packet,
None, or a list of Packets (a tunnel's outer and inner packets), fed in that order.

verify_checksums (off by default) checks IP, TCP and UDP checksums as Zeek does unless run with -C:
a packet with a bad IPv4 header checksum is dropped (warned of, and tallied), one with a bad TCP or
UDP checksum goes to the tracker's feed_corrupt (Zeek's history C, nothing else). The C scanner is
told (scanner_limits' verify_checksums), and then takes no record on its fast path, which cannot check.
"""
from __future__ import annotations

import heapq
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from harness.analysis.conversation import Conversation
from harness.analysis.tracker import ConversationTracker, Frames, Replay
from harness.wire.decode import (BadIPChecksum, BadTransportChecksum, Other, PacketDecodeError, UnreachableQuote,
                                 check_linktype, decode_icmp_unreachable, unwrap)
from harness.wire.fragments import Reassembler
from harness.wire.packet import TCP, UDP, Packet
from harness.wire.tunnel import TunnelSessions
from harness.wire.reader import CaptureFormatError, open_capture
from harness.analysis.summary import facts, record, record_json
from harness.analysis import zeek
from harness.analysis.tshark import DEFAULT_OUT_OF_ORDER_THRESHOLD, FAST_RETRANSMISSION_WINDOW
from harness.analysis.zeek import ZeekSettings

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
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]] = None,
                 verify_checksums: bool = False) -> Iterator[Packet]:
    """TCP and UDP packets of a capture, in file order; frames number every record, as Wireshark does.

    ICMP port-unreachable errors are not packets of a conversation; `on_unreachable` gets the
    datagram each one quotes, with its frame number and time.
    """
    decoder = _RecordDecoder(path, warnings, on_unreachable, verify_checksums)
    yield from _decoded(path, decoder)
    decoder.finish()


def _decoded(path, decode_record: "_RecordDecoder", stop_at: Optional[int] = None) -> Iterator[Packet]:
    """The packets of every record, or of those before frame `stop_at`."""
    with open_capture(path) as capture:
        for frame, raw in enumerate(capture, 1):
            if frame == stop_at:
                return
            decode_record.frames = frame
            found = decode_record(raw, frame)
            if type(found) is list:
                yield from found
            elif found is not None:
                yield found


class _RecordDecoder:
    """One record to its Packet, None, or a list of Packets (outer first, then what its tunnels carry):
    unsupported link types raise, undecodable frames are skipped with a warning (a packet with a bad
    TCP/UDP checksum goes to `on_corrupt` instead, when there is one), ICMP port unreachables
    (inside tunnels too) go to `on_unreachable`, and everything a record holds that is not TCP or UDP
    is counted in `others` by what it is ("ARP": 3, "ICMP in GRE": 2, ...). It keeps the IP fragments
    awaiting the rest of their datagram and what outer UDP flows showed of their tunnels; finish()
    warns of each datagram never completed."""

    def __init__(self, path, warnings: Optional[List[str]],
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]],
                 verify_checksums: bool = False, on_corrupt: Optional[Callable[[Packet], object]] = None) -> None:
        self.path, self.warnings, self.on_unreachable = path, warnings, on_unreachable
        self.verify_checksums, self.on_corrupt = verify_checksums, on_corrupt
        self.checked = set()
        self.skipped = 0
        self.frames = 0
        self.others: Dict[str, int] = {}
        self.fragments = Reassembler()
        self.tunnels = TunnelSessions(zeek.UDP_INACTIVITY_TIMEOUT)
        self._skipped_lines = _Limited(warnings, lambda more: f"{path}: {more} more undecodable frames skipped "
                                                               f"(a warning each for the first {WARNING_LIMIT} only)")
        self._dropped_lines = _Limited(warnings, lambda more: f"{path}: {more} more IP datagrams not analysed for "
                                                               f"fragments missing (a warning each for the first "
                                                               f"{WARNING_LIMIT} only)")

    def __call__(self, record, frame: int):
        if record.linktype not in self.checked:
            check_linktype(record.linktype)
            self.checked.add(record.linktype)
        found = unwrap(record, frame, self.verify_checksums, self.fragments, self.tunnels)
        if self.fragments.has_dropped:
            self._warn_dropped(self.fragments.take_dropped())
        if len(found) == 1 and type(found[0]) is Packet:
            return found[0]
        packets = []
        for item in found:
            if type(item) is Packet:
                packets.append(item)
            elif self.on_corrupt is not None and isinstance(item, BadTransportChecksum):
                self.on_corrupt(item.packet)       # before the record's other packets: in C alike
            elif type(item) is Other:
                self.others[item.kind] = self.others.get(item.kind, 0) + 1
                if self.on_unreachable is not None and item.record is not None:
                    quote = decode_icmp_unreachable(item.record)
                    if quote is not None:
                        self.on_unreachable(quote, frame, record.time_ns)
            else:
                self._skip(item)
        if not packets:
            return None
        return packets[0] if len(packets) == 1 else packets

    def _skip(self, error: PacketDecodeError) -> None:
        self.skipped += 1
        if isinstance(error, BadTransportChecksum):
            kind = "bad TCP checksums" if error.packet.proto == TCP else "bad UDP checksums"
        elif isinstance(error, BadIPChecksum):
            kind = "bad IPv4 header checksums"
        else:
            kind = "undecodable frames"
        self.others[kind] = self.others.get(kind, 0) + 1
        if self.warnings is not None:
            self._skipped_lines.add(f"{self.path}: {error}; skipped")

    def finish(self) -> None:
        """The capture has ended: each datagram still missing fragments is warned of. (Not called when
        the file ends in damage: the rest of a datagram may have been in what was lost, which the
        damage's own line already says.)"""
        self._warn_dropped(self.fragments.finish())

    def _warn_dropped(self, dropped) -> None:
        if self.warnings is not None:
            for datagram in dropped:
                self._dropped_lines.add(f"{self.path}: {datagram.describe()}")


class _Limited:
    """Warnings of one kind: a line each for the first WARNING_LIMIT, then one line that counts the rest
    (a file of nothing but broken frames would otherwise keep a line per 16 bytes)."""

    def __init__(self, warnings: Optional[List[str]], summary: Callable[[int], str]) -> None:
        self.warnings, self.summary = warnings, summary
        self.count = 0
        self._summary_at: Optional[int] = None

    def add(self, line: str) -> None:
        if self.warnings is None:
            return
        self.count += 1
        if self.count <= WARNING_LIMIT:
            self.warnings.append(line)
        elif self._summary_at is None:
            self._summary_at = len(self.warnings)
            self.warnings.append(self.summary(self.count - WARNING_LIMIT))
        else:
            self.warnings[self._summary_at] = self.summary(self.count - WARNING_LIMIT)


@dataclass
class Analysis:
    path: str
    conversations: List[Conversation]
    packets: int                                  # TCP and UDP packets
    warnings: List[str] = field(default_factory=list)
    damage: Optional[CaptureFormatError] = None   # set when the file ended in damage
    frames: int = 0                               # every record read, TCP/UDP or not
    others: Dict[str, int] = field(default_factory=dict)   # the frames that are not TCP/UDP, by kind
    started: Optional[int] = None    # conversations in the capture, where `conversations` holds only some

    @property
    def conversation_count(self) -> int:
        """How many conversations the capture has (numbered 1 to this), whether they are held or not."""
        return len(self.conversations) if self.started is None else self.started

    def contents(self) -> str:
        """What was read, in words: '12 packets (8 ARP, 4 ICMP)'."""
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.others.items(), key=lambda kv: -kv[1]))
        noun = "packet" if self.frames == 1 else "packets"
        if self.packets:
            kinds = ", ".join(filter(None, [f"{self.packets} TCP/UDP", kinds]))
        return f"{self.frames} {noun}" + (f" ({kinds})" if kinds else "")


def _scan(path, tracker: ConversationTracker, verify_checksums: bool = False) -> Analysis:
    decoder = _RecordDecoder(path, [], tracker.feed_unreachable, verify_checksums, tracker.feed_corrupt)
    count = 0
    damage = None
    try:
        for packet in _decoded(path, decoder):
            tracker.feed(packet)
            count += 1
    except CaptureFormatError as error:
        damage = error
    if damage is None:
        decoder.finish()
    return Analysis(str(path), tracker.conversations, count, decoder.warnings, damage, decoder.frames, decoder.others)


def analyse(path, keep_segments: bool = True, settings: ZeekSettings = ZeekSettings(),
            verify_checksums: bool = False) -> Analysis:
    """Every conversation of a capture; a damaged file yields what came before the damage."""
    return _scan(path, ConversationTracker(keep_segments, settings=settings), verify_checksums)


def stream_summaries(path, emit: Callable[[Dict[str, object]], None], settings: ZeekSettings = ZeekSettings(),
                     verify_checksums: bool = False, as_json: bool = False) -> Analysis:
    """Each conversation's summary record, handed to `emit` as soon as the conversation has ended, in
    the order ConversationTracker ends them; with as_json, as its JSON text (summary.record_json).

    Nothing is kept per conversation once it is summarized, so memory follows the number of open
    conversations, not the size of the capture. The Analysis returned has no conversations.
    The per-packet work is done in C (harness.analysis._speedups) when it was compiled, unless
    HARNESS_PURE_PYTHON is set: it hands over each conversation's facts (summary.FACTS), which are
    the same either way (tests/unit/test_speedups.py holds the two to that), checksums verified or not.
    """
    if as_json and _speedups is not None and not os.environ.get(PURE_PYTHON_ENV):
        return stream_facts(path, emit, settings, verify_checksums, as_json=True)
    dressed = record_json if as_json else record
    return conversation_facts(path, lambda found: emit(dressed(found)), settings, verify_checksums)


def scanner_limits(settings: ZeekSettings = ZeekSettings(), verify_checksums: bool = False) -> Dict[str, object]:
    """The analysis's constants and settings, for the C scanner: from the modules that define them,
    never copied."""
    return {"tcp_syn_timeout": zeek.TCP_SYN_TIMEOUT, "tcp_session_timer": zeek.TCP_SESSION_TIMER,
            "tcp_connection_linger": zeek.TCP_CONNECTION_LINGER, "tcp_attempt_delay": zeek.TCP_ATTEMPT_DELAY,
            "tcp_close_delay": zeek.TCP_CLOSE_DELAY, "tcp_inactivity_timeout": zeek.TCP_INACTIVITY_TIMEOUT,
            "udp_inactivity_timeout": zeek.UDP_INACTIVITY_TIMEOUT, "too_large_seq_delta": zeek.TOO_LARGE_SEQ_DELTA,
            "history_scale": zeek.HISTORY_SCALE, "max_buffered_runs": zeek.MAX_BUFFERED_RUNS,
            "likely_server_ports": sorted(settings.likely_server_ports),
            "report_gaps_for_partial": int(settings.report_gaps_for_partial),
            "verify_checksums": int(verify_checksums),
            "tcp_max_initial_window": settings.tcp_max_initial_window,
            "tcp_max_above_hole_without_any_acks": settings.tcp_max_above_hole_without_any_acks,
            "tcp_excessive_data_without_further_acks": settings.tcp_excessive_data_without_further_acks,
            "fast_retransmission_window": FAST_RETRANSMISSION_WINDOW,
            "default_out_of_order_threshold": DEFAULT_OUT_OF_ORDER_THRESHOLD}


def stream_facts(path, on_finished: Callable[[Dict[str, object]], None],
                 settings: ZeekSettings = ZeekSettings(), verify_checksums: bool = False,
                 as_json: bool = False) -> Analysis:
    """Each conversation's facts (summary.FACTS, by name) as the C scanner hands them over when it
    ends; with as_json, the JSON text of its record instead (summary.record_json(facts), written in
    C: building the record as a dict only to encode it was most of the time per conversation).
    Only with harness.analysis._speedups compiled; stream_conversations is the pure path."""
    if _speedups is None:
        raise RuntimeError(f"harness.analysis._speedups is not compiled: {speedups_status()[1]}")
    scanner = _speedups.Scanner(scanner_limits(settings, verify_checksums), on_finished, as_json)
    decoder = _RecordDecoder(path, [], scanner.feed_unreachable, verify_checksums, scanner.feed_corrupt)
    damage = None
    try:
        with open_capture(path) as capture:
            capture.bulk = scanner
            scanner.feed_records(capture, decoder)
    except CaptureFormatError as error:
        damage = error
    if damage is None:
        decoder.finish()
    scanner.finish()
    return Analysis(str(path), [], scanner.packets, decoder.warnings, damage, scanner.frames, decoder.others)


def stream_conversations(path, on_finished: Callable[[Conversation], None],
                         settings: ZeekSettings = ZeekSettings(), verify_checksums: bool = False) -> Analysis:
    """Each conversation, without its segments, handed to `on_finished` as soon as it has ended, in
    the order ConversationTracker ends them. Pure Python (the C scanner hands over facts instead)."""
    tracker = ConversationTracker(keep_segments=False, on_finished=on_finished, settings=settings)
    analysis = _scan(path, tracker, verify_checksums)
    tracker.finish()
    return analysis


class Wanted(NamedTuple):
    """The conversations a command asks for: number N, and/or those with `port` at either end, of
    `proto` ("tcp" or "udp"), each when given; with `first`, only the first (lowest number) of them."""
    number: Optional[int] = None
    port: Optional[int] = None
    proto: Optional[str] = None
    first: bool = False

    def takes(self, index: int, proto: int, ports: Tuple[int, int]) -> bool:
        if self.number is not None and index != self.number:
            return False
        if self.proto is not None and proto != (TCP if self.proto == "tcp" else UDP):
            return False
        return self.port is None or self.port in ports


class _InOrder:
    """Hands conversations on in order of number although they end in any order: one that ends while a
    lower-numbered wanted one is still open waits for it (so memory holds what ended meanwhile)."""

    def __init__(self, on_conversation: Callable[[Conversation], None]) -> None:
        self.on_conversation = on_conversation
        self._open: List[int] = []            # numbers begun and not ended (a heap)
        self._ended: Dict[int, Conversation] = {}
        self._waiting: List[int] = []         # numbers ended, not handed on (a heap)

    def begun(self, index: int) -> None:
        heapq.heappush(self._open, index)

    def ended(self, conversation: Conversation) -> None:
        self._ended[conversation.index] = conversation
        heapq.heappush(self._waiting, conversation.index)
        while self._open and self._open[0] in self._ended:
            heapq.heappop(self._open)
        while self._waiting and (not self._open or self._waiting[0] < self._open[0]):
            self.on_conversation(self._ended.pop(heapq.heappop(self._waiting)))


def stream_analysis(path, on_conversation: Callable[[Conversation], None], wanted: Wanted = Wanted(),
                    settings: ZeekSettings = ZeekSettings(), verify_checksums: bool = False) -> Analysis:
    """The conversations `wanted` asks for, each with its segments, handed to `on_conversation` in order of
    number as soon as it and every lower-numbered one asked for have ended; the Analysis returned holds
    none (its conversation_count says how many the capture has). Nothing is kept of a conversation once
    it is handed on, so memory follows the conversations open at once, not the size of the capture.

    With the C scanner compiled, two passes: the scanner finds which conversations are wanted and
    their frames (tracker rule 6), then a Replay rebuilds only those, from packets decoded up to the
    last frame it needs, and hands each on once the capture is past its last frame (so what is held
    at once is the conversations whose packets interleave, not all those Zeek's timers keep open).
    Otherwise one pass of the tracker, which keeps segments only for what is wanted and hands each on
    as its timers end it. Either way the conversations are those analyse() holds
    (tests/unit/test_streaming.py holds the two to that)."""
    if _speedups is not None and not os.environ.get(PURE_PYTHON_ENV):
        return _two_passes(path, on_conversation, wanted, settings, verify_checksums)
    in_order = _InOrder(on_conversation)
    first_taken: List[int] = []

    def keeps(conversation: Conversation) -> bool:
        ports = (conversation.orig.port, conversation.resp.port)
        if first_taken or not wanted.takes(conversation.index, conversation.proto, ports):
            return False
        if wanted.first:
            first_taken.append(conversation.index)
        in_order.begun(conversation.index)
        return True

    def finished(conversation: Conversation) -> None:
        if conversation.keep_segments:
            in_order.ended(conversation)

    tracker = ConversationTracker(on_finished=finished, settings=settings, keeps=keeps)
    analysis = _scan(path, tracker, verify_checksums)
    tracker.finish()
    analysis.started = tracker.started
    return analysis


def _two_passes(path, on_conversation: Callable[[Conversation], None], wanted: Wanted, settings: ZeekSettings,
                verify_checksums: bool) -> Analysis:
    frames = Frames()

    def found(facts: Dict[str, object]) -> None:
        frames.add(facts["index"], facts["first_frame"], facts["last_frame"], facts["end_frame"],
                   wanted.takes(facts["index"], facts["proto"], (facts["orig_p"], facts["resp_p"])))

    analysis = stream_facts(path, found, settings, verify_checksums)
    analysis.started = len(frames)
    if wanted.first:
        frames.keep_only_the_first_wanted()
    last_frame = frames.last_wanted_frame()
    if last_frame is None:
        return analysis
    in_order = _InOrder(on_conversation)
    replay = Replay(frames, in_order.ended, settings, on_begun=in_order.begun)
    decoder = _RecordDecoder(path, None, replay.feed_unreachable, verify_checksums, replay.feed_corrupt)
    try:
        for packet in _decoded(path, decoder, last_frame + 1):
            replay.feed(packet)
    except CaptureFormatError:
        pass     # the first pass met the same damage at the same place, and said so
    replay.finish()
    return analysis


def conversation_facts(path, on_facts: Callable[[Dict[str, object]], None], settings: ZeekSettings = ZeekSettings(),
                       verify_checksums: bool = False) -> Analysis:
    """Each conversation's facts (summary.FACTS, by name) as it ends: from the C scanner when it is
    compiled, else from the pure analysis; the same either way."""
    if _speedups is not None and not os.environ.get(PURE_PYTHON_ENV):
        return stream_facts(path, on_facts, settings, verify_checksums)
    return stream_conversations(path, lambda conversation: on_facts(facts(conversation)), settings, verify_checksums)
