"""Holding a conversation's segments to an expectation's steps: the alignment, and what differs."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from harness.analysis.conversation import Conversation, Segment, describe_segment
from harness.analysis.expect._model import Context, Problem, Step, contexts


def match_path(steps: Sequence[Optional[Step]], conversation: Conversation,
               dissection=None) -> Optional[List[Optional[int]]]:
    """For each segment, the index of the step it matched (None inside a `...`), if the whole matches.

    A forward simulation over step positions, one segment at a time, so a long conversation costs
    time and memory in proportion to its segments, never recursion depth.
    """
    segments, proto = conversation.segments, conversation.proto
    context = contexts(conversation, dissection)

    def closure(positions: Dict[int, object]) -> Dict[int, object]:
        # `...` and optional steps may also be passed by without consuming a segment.
        for position in sorted(positions):
            while position < len(steps) and (steps[position] is None or steps[position].optional):
                position += 1
                positions.setdefault(position, positions.get(position - 1))
        return positions

    start = object()
    frontier = closure({0: start})
    history: List[Dict[int, Tuple[int, Optional[int]]]] = []
    for index, segment in enumerate(segments):
        arrived: Dict[int, Tuple[int, Optional[int]]] = {}
        for position in frontier:
            if position == len(steps):
                continue
            step = steps[position]
            if step is None:
                arrived.setdefault(position, (position, None))
            elif not step.mismatches(segment, proto, context[index]):
                arrived.setdefault(position + 1, (position, position))
        if not arrived:
            return None
        history.append(arrived)
        frontier = closure(dict(arrived))
    if len(steps) not in frontier:
        return None
    # Walk back from the end: at each segment, from the position reached to the one it came from.
    path: List[Optional[int]] = []
    position = len(steps)
    for arrived in reversed(history):
        while position not in arrived:
            position -= 1   # undo a pass-by of `...` or an optional step
        position, matched = arrived[position]
        path.append(matched)
    return path[::-1]


def match_steps(steps: Sequence[Optional[Step]], conversation: Conversation, dissection=None) -> List[Problem]:
    if match_path(steps, conversation, dissection) is not None:
        return []
    context = contexts(conversation, dissection)
    if all(step is not None and not step.optional for step in steps):
        return _positional_differences(steps, conversation.segments, conversation.proto, context)
    return [_first_unmatched(steps, conversation.segments, conversation.proto, context)]


def _positional_differences(steps: Sequence[Step], segments: Sequence[Segment], proto: int,
                            context: Sequence[Context]) -> List[Problem]:
    diffs = []
    for position, (step, segment) in enumerate(zip(steps, segments), 1):
        fields = step.mismatches(segment, proto, context[position - 1])
        if fields:
            diffs.append(Problem(f"segment {position} (frame {segment.packet.frame}): expected `{step.describe()}`, "
                                 f"wire `{describe_segment(segment, proto, direction=True)}`\n"
                                 + "\n".join(f"    {field}" for field in fields), segment.packet.frame))
    if len(segments) != len(steps):
        diffs.append(Problem(f"expected {len(steps)} segments, the wire has {len(segments)}"))
        for step in steps[len(segments):]:
            diffs.append(Problem(f"missing: `{step.describe()}`"))
        for segment in segments[len(steps):]:
            diffs.append(Problem(f"unexpected: frame {segment.packet.frame} {describe_segment(segment, proto, direction=True)}",
                                 segment.packet.frame))
    return diffs


def _first_unmatched(steps: Sequence[Optional[Step]], segments: Sequence[Segment], proto: int,
                     context: Sequence[Context]) -> Problem:
    """Where the wire first leaves the expectation, walking both in order: a step must match the
    next segment unless a `...` comes before it; optional steps are taken when they match. A hint
    for the reader (the first dead end of one walk), not a proof that no other alignment exists."""
    j = 0
    may_skip = False
    for step in steps:
        if step is None:
            may_skip = True
            continue
        skipped_from = j
        if may_skip:
            while j < len(segments) and step.mismatches(segments[j], proto, context[j]):
                j += 1
        if j < len(segments) and not step.mismatches(segments[j], proto, context[j]):
            j += 1
            may_skip = False
            continue
        if step.optional:
            j = skipped_from
            continue
        if j == len(segments):
            return _nothing_left(step, segments[skipped_from:], proto, context[skipped_from:], skipped_from)
        segment = segments[j]
        return Problem(f"segment {j + 1} (frame {segment.packet.frame}): expected `{step.describe()}` "
                       f"(line {step.line}), wire `{describe_segment(segment, proto, direction=True)}`\n"
                       + "\n".join(f"    {field}" for field in step.mismatches(segment, proto, context[j])),
                       segment.packet.frame)
    if j < len(segments) and not may_skip:
        return Problem(f"{len(segments) - j} segment(s) after the last step, from frame {segments[j].packet.frame}",
                       segments[j].packet.frame)
    return Problem("the wire matches each step in turn but not the expectation as a whole "
                   "(an optional step or `...` is taken where another alignment was needed)")



_SHAPE = ("direction:", "protocol:", "flags:")


def _nothing_left(step: Step, passed: Sequence[Segment], proto: int, context: Sequence[Context],
                  first_index: int) -> Problem:
    """No segment met the step: name the one of its direction and flags that `...` passed over
    with the fewest fields differing (the first of those), since that is usually the one meant."""
    text = f"no segment left for step `{step.describe()}` (line {step.line})"
    nearest = None
    for offset, (segment, segment_context) in enumerate(zip(passed, context)):
        fields = step.mismatches(segment, proto, segment_context)
        if fields and not any(field.startswith(_SHAPE) for field in fields) and (
                nearest is None or len(fields) < len(nearest[2])):
            nearest = (offset, segment, fields)
    if nearest is None:
        return Problem(text)
    offset, segment, fields = nearest
    return Problem(f"{text}; the nearest, segment {first_index + offset + 1} (frame {segment.packet.frame}) "
                   f"`{describe_segment(segment, proto, direction=True)}`, differs:\n"
                   + "\n".join(f"    {field}" for field in fields), segment.packet.frame)
