"""A capture file to packets and conversations: the reader and the decoder, with their warnings.

Packets that cannot be decoded are skipped with a warning rather than stopping the analysis;
a damaged file stops it, but only after everything before the damage has been analysed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from harness.conversation import Conversation, ConversationTracker
from harness.decode import PacketDecodeError, UnreachableQuote, check_linktype, decode, decode_icmp_unreachable
from harness.packet import Packet
from harness.pcapfile import CaptureFormatError, open_capture
from harness.summary import summarize

# A file of nothing but broken frames (a gzip of zeros, say) has one per 16 bytes; past this
# many, skipped frames are counted in one line instead of each keeping a line in memory.
WARNING_LIMIT = 100


def read_packets(path, warnings: Optional[List[str]] = None,
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, int], None]] = None) -> Iterator[Packet]:
    """TCP and UDP packets of a capture, in file order; frames number every record, as Wireshark does.

    ICMP port-unreachable errors are not packets of a conversation; `on_unreachable` gets the
    datagram each one quotes, with its frame number and time.
    """
    checked = set()
    skipped = 0
    with open_capture(path) as capture:
        for frame, record in enumerate(capture, 1):
            if record.linktype not in checked:
                check_linktype(record.linktype)
                checked.add(record.linktype)
            try:
                packet = decode(record, frame)
            except PacketDecodeError as error:
                skipped += 1
                if warnings is not None:
                    _warn_skipped(warnings, path, error, skipped)
                continue
            if packet is not None:
                yield packet
            elif on_unreachable is not None:
                quote = decode_icmp_unreachable(record)
                if quote is not None:
                    on_unreachable(quote, frame, record.time_ns)


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
    tracker = ConversationTracker(keep_segments=False, on_finished=lambda conv: emit(summarize(conv)))
    count, warnings, damage = _scan(path, tracker)
    tracker.finish()
    return Trace(str(path), [], count, warnings, damage)
