"""The data of an expectation: its steps, and the problems found when a conversation is held to it."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import List, Mapping, NamedTuple, Optional, Tuple, Union

from harness.analysis.conversation import Conversation, Segment
from harness.errors import InputError
from harness.wire.packet import ACK, FIN, FLAG_BITS, RST, SYN, TCP, flag_names
from harness.wire.tcp_options import parse_tcp_options

_ALWAYS_COMPARED = SYN | FIN | RST | ACK


@dataclass(frozen=True)
class Problem:
    """What is wrong, in words (str() is the text); `frame` names the packet it is about, if one."""

    text: str
    frame: Optional[int] = None

    def __str__(self) -> str:
        return self.text

    def prefixed(self, prefix: str) -> "Problem":
        return Problem(f"{prefix}{self.text}", self.frame)


class SpecError(InputError, ValueError):
    """A malformed expectation; str() is one line naming the source and the line."""


class FilterOutcome(NamedTuple):
    """tshark's verdict on one display filter over a conversation's frames."""
    passing: frozenset                        # frame numbers that match it
    values: Mapping[int, Mapping[str, str]]   # per frame (at least those that fail), the filter's fields as tshark shows them


# An outcome per expression, or the one line saying why tshark could not give one.
Dissection = Mapping[str, Union[FilterOutcome, str]]


def filter_verdict(expression: str, frame: int, dissection: Optional[Dissection]) -> Optional[str]:
    """None if the frame matches; else why not, in words."""
    outcome = None if dissection is None else dissection.get(expression)
    if outcome is None:
        return f"filter \"{expression}\" was not evaluated (no tshark dissection was run)"
    if isinstance(outcome, str):
        return f"filter \"{expression}\" could not be evaluated: {outcome}"
    if frame in outcome.passing:
        return None
    values = outcome.values.get(frame, {})
    shown = ", ".join(f"{name}={value}" for name, value in values.items()) or "none of its fields present"
    return f"tshark says frame {frame} does not match \"{expression}\" ({shown})"


class Context(NamedTuple):
    """What a step may ask of a segment beyond the segment itself: its window as Wireshark
    calculates it (tcp.window_size), the time since the conversation's segment before it, and
    tshark's verdicts on the expectation's display filters (a Dissection, if one was made)."""
    window: int
    gap_ns: Optional[int]
    dissection: Optional[object] = None


ANY_VALUE = -1            # mss=* or wscale=*: the option is there, whatever its value
_MAX_WINDOW_SHIFT = 14    # RFC 7323 2.3; Wireshark clamps a larger one to it


def contexts(conversation: Conversation, dissection: Optional[object] = None) -> List[Context]:
    """A Context per segment. The window is scaled as Wireshark scales it: by the sender's window
    scale when both SYNs were captured and both carried the option, never on a SYN itself."""
    shifts = {}
    for segment in conversation.segments:
        if segment.flags & SYN and segment.is_orig not in shifts:
            shifts[segment.is_orig] = segment.packet.wscale
    scaled = len(shifts) == 2 and None not in shifts.values()
    found, previous = [], None
    for segment in conversation.segments:
        window = segment.packet.window
        if scaled and not segment.flags & SYN:
            window <<= min(shifts[segment.is_orig], _MAX_WINDOW_SHIFT)
        found.append(Context(window, None if previous is None else segment.packet.time_ns - previous, dissection))
        previous = segment.packet.time_ns
    return found


class Timing(NamedTuple):
    """`after<=50ms`, `after>=1s`, `after=40ms~10ms`: the time since the segment before."""
    op: str                 # "<=", "<", ">=", ">", "="
    ns: int
    tolerance_ns: int = 0
    text: str = ""

    def holds(self, gap_ns: int) -> bool:
        if self.op == "=":
            return abs(gap_ns - self.ns) <= self.tolerance_ns
        return _COMPARISONS[self.op](gap_ns, self.ns)


_COMPARISONS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


class Step(NamedTuple):
    is_orig: bool
    flag_choices: Optional[Tuple[int, ...]]   # None: a UDP datagram
    length: Optional[int] = None
    seq: Optional[int] = None
    ack: Optional[int] = None
    data: Optional[bytes] = None
    line: int = 0
    optional: bool = False
    window: Optional[int] = None              # win=: tcp.window_size, scaled (Context)
    mss: Optional[int] = None
    wscale: Optional[int] = None
    sack_permitted: bool = False              # sackOK: the option is present
    timestamps: bool = False                  # TS: the option is present
    options: Optional[Tuple[str, ...]] = None  # <...>: the whole list, in order; `*` matches any number
    after: Optional[Timing] = None
    where: Optional[str] = None               # where "EXPR": a display filter the segment matches (tshark)

    def describe(self) -> str:
        parts = ["?"] if self.optional else []
        parts.append("C>S" if self.is_orig else "S>C")
        if self.flag_choices is None:
            parts.append("UDP")
        else:
            parts.append("|".join(",".join(n for n, b in FLAG_BITS.items() if f & b)
                                  for f in self.flag_choices))
        for name in ("length", "seq", "ack"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{'len' if name == 'length' else name}={value}")
        if self.data is not None:
            parts.append(f"data={_quote(self.data)}")
        for name, value in (("win", self.window), ("mss", self.mss), ("wscale", self.wscale)):
            if value is not None:
                parts.append(f"{name}={'*' if value == ANY_VALUE else value}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.timestamps:
            parts.append("TS")
        if self.options is not None:
            parts.append("<" + ",".join(self.options) + ">")
        if self.after is not None:
            parts.append(self.after.text)
        if self.where is not None:
            parts.append(f"where {_quote(self.where.encode('utf-8'))}")
        return " ".join(parts)

    def mismatches(self, segment: Segment, proto: int, context: Optional[Context] = None) -> List[str]:
        """What differs between this step and a segment, field by field (empty: it matches)."""
        diffs = []
        if segment.is_orig != self.is_orig:
            diffs.append(f"direction: expected {'C>S' if self.is_orig else 'S>C'}, "
                         f"wire {'C>S' if segment.is_orig else 'S>C'}")
        if (self.flag_choices is None) != (proto != TCP):
            diffs.append(f"protocol: expected {'UDP' if self.flag_choices is None else 'TCP'}")
            return diffs
        if self.flag_choices is not None and not any(_flags_match(want, segment.flags)
                                                     for want in self.flag_choices):
            wanted = " or ".join(flag_names(f) for f in self.flag_choices)
            diffs.append(f"flags: expected {wanted}, wire {flag_names(segment.flags)}")
        for name, wire in (("length", segment.length), ("seq", segment.rel_seq), ("ack", segment.rel_ack)):
            want = getattr(self, name)
            if want is not None and want != wire:
                diffs.append(f"{'len' if name == 'length' else name}: expected {want}, wire {wire}")
        if self.data is not None and segment.payload != self.data:
            diffs.append(f"data: expected {_quote(self.data)}, wire {_quote(segment.payload)}")
        if self.flag_choices is not None:
            diffs += self._tcp_mismatches(segment, context)
        if self.where is not None:
            why = filter_verdict(self.where, segment.packet.frame, context.dissection if context else None)
            if why is not None:
                diffs.append(f"where: {why}")
        if self.after is not None and context is not None:
            if context.gap_ns is None:
                diffs.append(f"time: expected {self.after.text}, but it is the conversation's first segment")
            elif not self.after.holds(context.gap_ns):
                diffs.append(f"time: expected {self.after.text}, wire after {_duration(context.gap_ns)}")
        return diffs

    def _tcp_mismatches(self, segment: Segment, context: Optional[Context]) -> List[str]:
        diffs = []
        if self.window is not None:
            wire = context.window if context is not None else segment.packet.window
            if wire != self.window:
                scaled = "" if wire == segment.packet.window else f" (field {segment.packet.window}, scaled)"
                diffs.append(f"win: expected {self.window}, wire {wire}{scaled}")
        if (self.mss, self.wscale, self.sack_permitted, self.timestamps, self.options) == (None, None, False, False, None):
            return diffs
        options = parse_tcp_options(segment.packet.options)
        for name, want, wire in (("mss", self.mss, options.mss), ("wscale", self.wscale, options.wscale)):
            if want == ANY_VALUE and wire is None:
                diffs.append(f"{name}: expected the option, the wire has none")
            elif want is not None and want != ANY_VALUE and want != wire:
                diffs.append(f"{name}: expected {want}, wire {'none' if wire is None else wire}")
        if self.sack_permitted and not options.sack_permitted:
            diffs.append("sackOK: expected the SACK-permitted option, the wire has none")
        if self.timestamps and options.timestamps is None:
            diffs.append("TS: expected the timestamps option, the wire has none")
        if self.options is not None:
            wire_options = [item.describe() for item in options.items]
            if len(wire_options) != len(self.options) or not all(
                    _option_matches(want, got) for want, got in zip(self.options, wire_options)):
                diffs.append(f"options: expected <{','.join(self.options)}>, wire {options.describe() or '<>'}")
        return diffs


def _option_matches(pattern: str, wire: str) -> bool:
    want, got = pattern.split(), wire.split()
    return len(want) == len(got) and all(w in ("*", g) for w, g in zip(want, got))


def _duration(ns: int) -> str:
    if ns >= 10**9:
        return f"{ns / 10**9:.3f} s"
    if ns >= 10**6:
        return f"{ns / 10**6:.3f} ms"
    return f"{ns / 10**3:.1f} us"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(data: bytes) -> str:
    """The bytes as a quoted string on one line, with Python's escapes (control characters and bytes
    that are not UTF-8 as \\xNN), so a problem about them stays one line."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xdc00:02x}")
        elif char < " " or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _flags_match(wanted: int, actual: int) -> bool:
    compared = _ALWAYS_COMPARED | (wanted & ~_ALWAYS_COMPARED)
    return actual & compared == wanted
