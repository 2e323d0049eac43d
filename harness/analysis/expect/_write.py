"""An expectation written from a conversation known to be good: what the wire showed, step by step,
for a user to trim (`harness expect-from`). Pure code.

Rules:
1. One step per segment, in order: direction, every flag the segment carried (so PSH is compared too),
   len, and for TCP the relative seq and ack.
2. data= when the whole payload was captured, is at most DATA_LIMIT bytes and is UTF-8 text;
   anything else is left to len=.
3. A SYN also gets its window (win=, unscaled on a SYN) and its options as packetdrill writes them,
   with timestamp values as `*` (a TCP stack picks them at random); other segments' windows and
   timestamps change from run to run and are left out.
4. Each named check that the conversation passes is added; none that it fails.
Fed back to `check`, the expectation matches the conversation it was written from.
"""
from __future__ import annotations

from typing import List, Optional

from harness.analysis.conversation import Conversation, Segment
from harness.analysis.expect._checks import CHECKS
from harness.analysis.expect._model import _quote, contexts
from harness.wire.packet import FLAG_BITS, SYN, TCP
from harness.wire.tcp_options import TIMESTAMPS, parse_tcp_options

DATA_LIMIT = 64


def write_expectation(conversation: Conversation, source: str = "") -> str:
    """The expectation's text for the conversation, by the rules above (`source` names the capture
    in its first comment)."""
    lines = [f"# Written by `harness expect-from` from conversation {conversation.index}"
             + (f" of {source}" if source else "") + f": {conversation.describe()}.",
             "# What the wire showed; trim what need not hold (data=, win=, options, whole steps as `...`)."]
    for segment, context in zip(conversation.segments, contexts(conversation)):
        lines.append(_step(segment, conversation.proto, context.window))
    lines += [f"check {name}" for name, check in CHECKS.items()
              if conversation.proto == TCP and name != "no-data-from-server" and not check(conversation)]
    return "\n".join(lines) + "\n"


def _step(segment: Segment, proto: int, window: int) -> str:
    parts: List[str] = ["C>S" if segment.is_orig else "S>C"]
    if proto != TCP:
        parts += ["UDP", f"len={segment.length}"]
    else:
        parts += [",".join(name for name, bit in FLAG_BITS.items() if segment.flags & bit) or "NONE",
                  f"len={segment.length}", f"seq={segment.rel_seq}"]
        if segment.rel_ack is not None:
            parts.append(f"ack={segment.rel_ack}")
    data = _literal(segment)
    if data is not None:
        parts.append(f"data={data}")
    if proto == TCP and segment.flags & SYN:
        parts.append(f"win={window}")
        options = parse_tcp_options(segment.packet.options)
        if options.items and options.complete:
            parts.append("<" + ",".join("TS val * ecr *" if item.kind == TIMESTAMPS else item.describe()
                                        for item in options.items) + ">")
    return " ".join(parts)


def _literal(segment: Segment) -> Optional[str]:
    """The payload as a quoted string the grammar reads back byte for byte, if rule 2 allows one."""
    payload = segment.payload
    if not segment.length or len(payload) != segment.length or segment.length > DATA_LIMIT:
        return None
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _quote(payload)      # the grammar reads _quote's escapes back as they were
