"""A capture file to packets and conversations: the reader and the decoder, with their warnings.

Packets that cannot be decoded are skipped with a warning rather than stopping the analysis;
a damaged file stops it, but only after everything before the damage has been analysed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional

from harness.conversation import Conversation, ConversationTracker
from harness.decode import PacketDecodeError, UnreachableQuote, check_linktype, decode, decode_icmp_unreachable
from harness.packet import Packet
from harness.pcapfile import CaptureFormatError, open_capture


def read_packets(path, warnings: Optional[List[str]] = None,
                 on_unreachable: Optional[Callable[[UnreachableQuote, int, float], None]] = None) -> Iterator[Packet]:
    """TCP and UDP packets of a capture, in file order; frames number every record, as Wireshark does.

    ICMP port-unreachable errors are not packets of a conversation; `on_unreachable` gets the
    datagram each one quotes, with its frame number and time.
    """
    checked = set()
    with open_capture(path) as capture:
        for frame, record in enumerate(capture, 1):
            if record.linktype not in checked:
                check_linktype(record.linktype)
                checked.add(record.linktype)
            try:
                packet = decode(record, frame)
            except PacketDecodeError as error:
                if warnings is not None:
                    warnings.append(f"{path}: {error}; skipped")
                continue
            if packet is not None:
                yield packet
            elif on_unreachable is not None:
                quote = decode_icmp_unreachable(record)
                if quote is not None:
                    on_unreachable(quote, frame, record.ts)


@dataclass
class Trace:
    path: str
    conversations: List[Conversation]
    packets: int
    warnings: List[str] = field(default_factory=list)
    damage: Optional[CaptureFormatError] = None   # set when the file ended in damage


def load_trace(path, keep_segments: bool = True) -> Trace:
    """Every conversation of a capture; a damaged file yields what came before the damage.

    Without keep_segments only the per-conversation summary is kept: memory then grows with the
    number of conversations, not packets.
    """
    tracker = ConversationTracker(keep_segments)
    warnings: List[str] = []
    count = 0
    damage = None
    try:
        for packet in read_packets(path, warnings, tracker.feed_unreachable):
            tracker.feed(packet)
            count += 1
    except CaptureFormatError as error:
        damage = error
    return Trace(str(path), tracker.conversations, count, warnings, damage)
