"""Expectations about a conversation, and the checks that hold the wire to them. Pure code.

An expectation is a list of steps (expected segments, in order) plus named semantic checks.
Its text form, one step per line, `#` starts a comment:

    C>S SYN                 seq=0
    S>C SYN,ACK             seq=0 ack=1
    C>S PSH,ACK   len=2     ack=1 data="yp"
    ...                     (any number of segments, possibly none)
    ? C>S ACK     len=0     (a step that may be missing, e.g. an ACK merged into the next segment)
    S>C RST|RST,ACK         (alternatives)
    check graceful-close

Rules:
- C is the originator (the client), S the responder (the server).
- TCP flags are compared exactly on SYN, FIN, RST and ACK; PSH, URG, ECE and CWR only when the step
  names them. A step without flags, or with `UDP`, expects a UDP datagram.
- `len`, `seq`, `ack` (relative numbers) and `data` (a quoted string, Python escapes) are checked
  only when given.
- Without `...` lines the wire must show exactly the steps, one segment each, nothing more.
- `check NAME` adds a semantic check from CHECKS; every one that fails is reported.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from harness.conversation import Conversation, Segment
from harness.packet import ACK, CWR, ECE, FIN, PSH, RST, SYN, TCP, URG, flag_names

_FLAG_BITS = {"SYN": SYN, "FIN": FIN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG, "ECE": ECE,
              "CWR": CWR}
_ALWAYS_COMPARED = SYN | FIN | RST | ACK
ANY_SEGMENTS = "..."
_WORD = re.compile(r'\S+?="(?:[^"\\]|\\.)*"|\S+')

EXPECTATIONS_DIR = Path(__file__).parent / "expectations"


class Problem(str):
    """What is wrong, in words; `frame` names the packet it is about, when there is one."""

    frame: Optional[int]

    def __new__(cls, text: str, frame: Optional[int] = None) -> "Problem":
        problem = super().__new__(cls, text)
        problem.frame = frame
        return problem


class SpecError(ValueError):
    """A malformed expectation; str() is one line naming the source and the line."""


class Step(NamedTuple):
    outbound: bool
    flag_choices: Optional[Tuple[int, ...]]   # None: a UDP datagram
    length: Optional[int] = None
    seq: Optional[int] = None
    ack: Optional[int] = None
    data: Optional[bytes] = None
    line: int = 0
    optional: bool = False

    def describe(self) -> str:
        parts = ["?"] if self.optional else []
        parts.append("C>S" if self.outbound else "S>C")
        if self.flag_choices is None:
            parts.append("UDP")
        else:
            parts.append("|".join(",".join(n for n, b in _FLAG_BITS.items() if f & b)
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
        if segment.outbound != self.outbound:
            diffs.append(f"direction: expected {'C>S' if self.outbound else 'S>C'}, "
                         f"wire {'C>S' if segment.outbound else 'S>C'}")
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


@dataclass
class Expectation:
    name: str
    steps: List[Optional[Step]]          # None stands for `...`
    checks: List[str] = field(default_factory=list)
    source: str = "<string>"

    @classmethod
    def parse(cls, text: str, name: str = "expectation", source: str = "<string>") -> "Expectation":
        steps: List[Optional[Step]] = []
        checks: List[str] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw)
            if not line:
                continue
            try:
                if line == ANY_SEGMENTS:
                    steps.append(None)
                elif line.startswith("check "):
                    check = line[len("check "):].strip()
                    if check not in CHECKS:
                        raise SpecError(f"unknown check {check!r}; known: {', '.join(sorted(CHECKS))}")
                    checks.append(check)
                else:
                    steps.append(_parse_step(line, number))
            except SpecError as error:
                raise SpecError(f"{source}:{number}: {error}") from None
        return cls(name, steps, checks, source)

    @classmethod
    def load(cls, path) -> "Expectation":
        path = Path(path)
        return cls.parse(path.read_text(encoding="utf-8"), path.stem, str(path))

    @classmethod
    def builtin(cls, name: str) -> "Expectation":
        """One of the expectations shipped in harness/expectations (e.g. 'tcp_lab')."""
        return cls.load(EXPECTATIONS_DIR / f"{name}.txt")

    def problems(self, conversation: Conversation) -> List[Problem]:
        found = _match_steps(self.steps, conversation)
        for check in self.checks:
            found += [Problem(f"{check}: {p}", getattr(p, "frame", None)) for p in CHECKS[check](conversation)]
        return found

    def frame_notes(self, conversation: Conversation) -> Dict[int, str]:
        """A verdict per frame, for annotating the capture: which step it met, or what was wrong with it."""
        notes: Dict[int, List[str]] = {}
        path = _match_path(self.steps, conversation)
        if path is not None:
            for segment, index in zip(conversation.segments, path):
                step = self.steps[index] if index is not None else None
                notes.setdefault(segment.packet.frame, []).append(
                    f"ok: step {index + 1} `{step.describe()}`" if step else "ok: within `...`")
        elif all(step is not None and not step.optional for step in self.steps):
            for segment, step in zip(conversation.segments, self.steps):
                if not step.mismatches(segment, conversation.proto):
                    notes.setdefault(segment.packet.frame, []).append(f"ok: `{step.describe()}`")
        for problem in reversed(self.problems(conversation)):
            if problem.frame is not None:
                notes.setdefault(problem.frame, []).insert(0, f"FAIL: {problem}")
        return {frame: "; ".join(texts) for frame, texts in notes.items()}


def _strip_comment(raw: str) -> str:
    in_quote = False
    for i, ch in enumerate(raw):
        if ch == '"' and (i == 0 or raw[i - 1] != "\\"):
            in_quote = not in_quote
        elif ch == "#" and not in_quote:
            return raw[:i].strip()
    return raw.strip()


def _parse_step(line: str, number: int) -> Step:
    words = _WORD.findall(line)
    optional = words[0] == "?"
    if optional:
        words = words[1:]
        if not words:
            raise SpecError("`?` must be followed by a step")
    direction, rest = words[0], words[1:]
    if direction not in ("C>S", "S>C"):
        raise SpecError(f"a step starts with C>S or S>C, not {direction!r}")
    flag_choices: Optional[Tuple[int, ...]] = None
    if rest and "=" not in rest[0]:
        token = rest.pop(0)
        if token != "UDP":
            flag_choices = tuple(_parse_flags(choice) for choice in token.split("|"))
    fields: Dict[str, object] = {}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep or key not in ("len", "seq", "ack", "data"):
            raise SpecError(f"expected len=, seq=, ack= or data=, got {word!r}")
        if key == "data":
            try:
                text = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise SpecError(f"data must be a quoted string (is a quote missing?), got {value}") from None
            fields["data"] = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        else:
            if not value.isdigit():
                raise SpecError(f"{key} must be a whole number, got {value!r}")
            fields["length" if key == "len" else key] = int(value)
    if flag_choices is None and ("seq" in fields or "ack" in fields):
        raise SpecError("a UDP step has no seq or ack")
    return Step(direction == "C>S", flag_choices, line=number, optional=optional, **fields)


def _parse_flags(token: str) -> int:
    bits = 0
    for name in token.split(","):
        if name not in _FLAG_BITS:
            raise SpecError(f"unknown TCP flag {name!r}; known: {', '.join(_FLAG_BITS)}")
        bits |= _FLAG_BITS[name]
    return bits


def _match_path(steps: Sequence[Optional[Step]], conversation: Conversation) -> Optional[List[Optional[int]]]:
    """For each segment, the index of the step it matched (None inside a `...`), if the whole matches.

    A forward simulation over step positions, one segment at a time, so a long conversation costs
    time and memory in proportion to its segments, never recursion depth.
    """
    segments, proto = conversation.segments, conversation.proto

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
    for segment in segments:
        arrived: Dict[int, Tuple[int, Optional[int]]] = {}
        for position in frontier:
            if position == len(steps):
                continue
            step = steps[position]
            if step is None:
                arrived.setdefault(position, (position, None))
            elif not step.mismatches(segment, proto):
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


def _match_steps(steps: Sequence[Optional[Step]], conversation: Conversation) -> List[Problem]:
    if _match_path(steps, conversation) is not None:
        return []
    if all(step is not None and not step.optional for step in steps):
        return _positional_differences(steps, conversation.segments, conversation.proto)
    return [_first_unmatched(steps, conversation.segments, conversation.proto)]


def _positional_differences(steps: Sequence[Step], segments: Sequence[Segment], proto: int) -> List[Problem]:
    diffs = []
    for position, (step, segment) in enumerate(zip(steps, segments), 1):
        fields = step.mismatches(segment, proto)
        if fields:
            diffs.append(Problem(f"segment {position} (frame {segment.packet.frame}): expected `{step.describe()}`, "
                                 f"wire `{_describe_segment(segment, proto)}`\n"
                                 + "\n".join(f"    {field}" for field in fields), segment.packet.frame))
    if len(segments) != len(steps):
        diffs.append(Problem(f"expected {len(steps)} segments, the wire has {len(segments)}"))
        for step in steps[len(segments):]:
            diffs.append(Problem(f"missing: `{step.describe()}`"))
        for segment in segments[len(steps):]:
            diffs.append(Problem(f"unexpected: frame {segment.packet.frame} {_describe_segment(segment, proto)}",
                                 segment.packet.frame))
    return diffs


def _first_unmatched(steps: Sequence[Optional[Step]], segments: Sequence[Segment], proto: int) -> Problem:
    """Where the wire first leaves the expectation, walking both in order: a step must match the
    next segment unless a `...` comes before it; optional steps are taken when they match. A hint
    for the reader (the first dead end of one walk), not a proof that no other alignment exists."""
    j = 0
    may_skip = False
    for step in steps:
        if step is None:
            may_skip = True
            continue
        if may_skip:
            while j < len(segments) and step.mismatches(segments[j], proto):
                j += 1
        if j < len(segments) and not step.mismatches(segments[j], proto):
            j += 1
            may_skip = False
            continue
        if step.optional:
            continue
        if j == len(segments):
            return Problem(f"no segment left for step `{step.describe()}` (line {step.line})")
        segment = segments[j]
        return Problem(f"segment {j + 1} (frame {segment.packet.frame}): expected `{step.describe()}` "
                       f"(line {step.line}), wire `{_describe_segment(segment, proto)}`\n"
                       + "\n".join(f"    {field}" for field in step.mismatches(segment, proto)),
                       segment.packet.frame)
    if j < len(segments) and not may_skip:
        return Problem(f"{len(segments) - j} segment(s) after the last step, from frame {segments[j].packet.frame}",
                       segments[j].packet.frame)
    return Problem("the wire matches each step in turn but not the expectation as a whole "
                   "(an optional step or `...` is taken where another alignment was needed)")


def _describe_segment(segment: Segment, proto: int) -> str:
    direction = "C>S" if segment.outbound else "S>C"
    if proto != TCP:
        return f"{direction} UDP len={segment.length}"
    return (f"{direction} {flag_names(segment.flags)} seq={segment.rel_seq} ack={segment.rel_ack} "
            f"len={segment.length}")


# --- Named semantic checks: each returns what is wrong, in words, or nothing. -----------------

def check_handshake(conversation: Conversation) -> List[Problem]:
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    segs = conversation.segments
    if len(segs) < 3:
        return [Problem(f"a handshake needs 3 segments, the conversation has {len(segs)}")]
    syn, syn_ack, ack = segs[:3]
    problems = []
    if not (syn.outbound and syn.flags & (SYN | ACK) == SYN):
        problems.append(Problem(f"frame {syn.packet.frame} should be the client's SYN, is {_describe_segment(syn, TCP)}", syn.packet.frame))
    else:
        if syn.packet.window <= 0:
            problems.append(Problem(f"the SYN (frame {syn.packet.frame}) advertises no window", syn.packet.frame))
        if syn.packet.mss is None:
            problems.append(Problem(f"the SYN (frame {syn.packet.frame}) carries no MSS option", syn.packet.frame))
    if not (not syn_ack.outbound and syn_ack.flags & (SYN | ACK) == SYN | ACK):
        problems.append(Problem(f"frame {syn_ack.packet.frame} should be the server's SYN-ACK, "
                        f"is {_describe_segment(syn_ack, TCP)}", syn_ack.packet.frame))
    elif syn_ack.rel_ack != 1:
        problems.append(Problem(f"the SYN-ACK (frame {syn_ack.packet.frame}) acknowledges {syn_ack.rel_ack}, "
                        f"not the client's ISN+1", syn_ack.packet.frame))
    if not (ack.outbound and ack.flags & (SYN | ACK | RST) == ACK and ack.rel_ack == 1):
        problems.append(Problem(f"frame {ack.packet.frame} should be the client's ACK=1, is {_describe_segment(ack, TCP)}", ack.packet.frame))
    return problems


def check_graceful_close(conversation: Conversation) -> List[Problem]:
    """Both sides sent FIN, each FIN was acknowledged, and nobody reset: any close order, 3 or 4 segments."""
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    problems = []
    for segment in conversation.segments:
        if segment.flags & RST:
            problems.append(Problem(f"{_side(segment.outbound)} sent RST at frame {segment.packet.frame} "
                            f"(an abortive close, not a graceful one)", segment.packet.frame))
    for outbound in (True, False):
        fins = [s for s in conversation.segments if s.outbound == outbound and s.flags & FIN]
        if not fins:
            problems.append(Problem(f"the {_side(outbound)} never sent FIN"))
            continue
        fin = fins[0]
        fin_end = (fin.rel_seq + fin.length + 1) % (1 << 32)
        acked = [s for s in conversation.segments if s.outbound != outbound and s.rel_ack is not None
                 and s.packet.frame > fin.packet.frame and _seq_ge(s.rel_ack, fin_end)]
        if not acked:
            problems.append(Problem(f"the {_side(outbound)}'s FIN (frame {fin.packet.frame}) was never acknowledged "
                            f"(no ACK={fin_end} from the {_side(not outbound)})", fin.packet.frame))
    return problems


def check_sequence_consistent(conversation: Conversation) -> List[Problem]:
    """Every segment starts where its side left off and acknowledges nothing unsent; SYN and FIN take one."""
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    next_seq: Dict[bool, Optional[int]] = {True: None, False: None}
    problems = []
    for segment in conversation.segments:
        side = segment.outbound
        expected = next_seq[side]
        if expected is not None and segment.rel_seq != expected and not segment.flags & RST:
            problems.append(Problem(f"frame {segment.packet.frame}: {_side(side)} seq={segment.rel_seq}, "
                            f"expected {expected}", segment.packet.frame))
        consumed = segment.length + bool(segment.flags & SYN) + bool(segment.flags & FIN)
        end = (segment.rel_seq + consumed) % (1 << 32)
        if expected is None or _seq_ge(end, expected):
            next_seq[side] = end
        peer_next = next_seq[not side]
        if segment.rel_ack is not None and peer_next is not None and not _seq_ge(peer_next, segment.rel_ack):
            problems.append(Problem(f"frame {segment.packet.frame}: {_side(side)} acknowledges {segment.rel_ack}, "
                            f"but the {_side(not side)} has only sent up to {peer_next}", segment.packet.frame))
    return problems


def check_no_data_from_server(conversation: Conversation) -> List[Problem]:
    return [Problem(f"the server sent {s.length} bytes at frame {s.packet.frame}", s.packet.frame)
            for s in conversation.segments if not s.outbound and s.length]


def _side(outbound: bool) -> str:
    return "client" if outbound else "server"


def _seq_ge(a: int, b: int) -> bool:
    return (a - b) % (1 << 32) < (1 << 31)


CHECKS: Dict[str, Callable[[Conversation], List[Problem]]] = {
    "handshake": check_handshake,
    "graceful-close": check_graceful_close,
    "sequence-consistent": check_sequence_consistent,
    "no-data-from-server": check_no_data_from_server,
}
