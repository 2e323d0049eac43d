"""The data of an expectation: its steps, and the problems found when a conversation is held to it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

from harness.analysis.conversation import Segment
from harness.errors import InputError
from harness.wire.packet import ACK, FIN, FLAG_BITS, RST, SYN, TCP, flag_names

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


class Step(NamedTuple):
    is_orig: bool
    flag_choices: Optional[Tuple[int, ...]]   # None: a UDP datagram
    length: Optional[int] = None
    seq: Optional[int] = None
    ack: Optional[int] = None
    data: Optional[bytes] = None
    line: int = 0
    optional: bool = False

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
        return " ".join(parts)

    def mismatches(self, segment: Segment, proto: int) -> List[str]:
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
        return diffs


def _quote(data: bytes) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flags_match(wanted: int, actual: int) -> bool:
    compared = _ALWAYS_COMPARED | (wanted & ~_ALWAYS_COMPARED)
    return actual & compared == wanted
