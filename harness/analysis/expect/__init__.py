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
- `len`, `seq`, `ack` (relative numbers), `data` (a quoted string, Python escapes), `win` (scaled
  as Wireshark scales it), `mss`, `wscale`, `sackOK`, `TS`, `<option list>`, `after<=T` (time since
  the segment before) and `where "FILTER"` (a display filter) are checked only when given.
- Without `...` lines the wire must show exactly the steps, one segment each, nothing more.
- `check NAME` adds a semantic check from CHECKS, `check filter "FILTER"` a display filter every
  frame matches; `C>S stream OP "TEXT"` holds a side's reassembled stream; `conversations ...`
  and `capture ...` lines hold the whole capture (_rules). Every one that fails is reported.
- Display filters are evaluated at the edge (harness.run.dissect) and handed in as a Dissection.

The grammar, with an example of each construct: docs/expectations.rst.

Built-in expectations live in builtin/ beside this package; `load_expectation(spec)` is the one
way to find one: a file's path, or a built-in's name with or without `.txt`.

Modules: _model (Step, Problem, SpecError), _grammar (text to steps and rules), _match (segments
against steps), _checks (the named checks), _rules (streams, display filters' verdicts, capture
rules), _write (an expectation from a conversation). Pure code: nothing here captures or runs anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from harness.analysis.conversation import Conversation
from harness.analysis.expect._checks import CHECKS, named_check
from harness.analysis.expect._grammar import ANY_SEGMENTS, parse_lines
from harness.analysis.expect._match import match_path, match_steps
from harness.analysis.expect._model import Problem, SpecError, Step, contexts
from harness.analysis.expect._rules import CaptureRule, CaptureTally, Dissection, FilterOutcome, FilterRule, StreamRule, stream_of
from harness.analysis.expect._write import write_expectation

BUILTIN_DIR = Path(__file__).parent / "builtin"

__all__ = ["ANY_SEGMENTS", "BUILTIN_DIR", "CHECKS", "CaptureRule", "Dissection", "Expectation", "FilterOutcome",
           "FilterRule", "Problem", "SpecError", "Step", "StreamRule", "builtin_names", "load_expectation",
           "stream_of", "write_expectation"]


@dataclass
class Expectation:
    """Steps (None for each `...`), named checks, stream and filter rules about the conversation,
    and rules about the whole capture, from `source` (a file, or "<string>")."""

    name: str
    steps: List[Optional[Step]]
    checks: List[str] = field(default_factory=list)
    source: str = "<string>"
    streams: List[StreamRule] = field(default_factory=list)
    filters: List[FilterRule] = field(default_factory=list)
    capture: List[CaptureRule] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, name: str = "expectation", source: str = "<string>") -> "Expectation":
        parsed = parse_lines(text, source, CHECKS, load_expectation)
        return cls(name, parsed.steps, parsed.checks, source, parsed.streams, parsed.filters, parsed.capture)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Expectation":
        path = Path(path)
        return cls.parse(path.read_text(encoding="utf-8"), path.stem, str(path))

    @property
    def proto(self) -> Optional[str]:
        """"tcp" or "udp", the protocol its steps and checks are of; None when they do not say."""
        udp = {step.flag_choices is None for step in self.steps if step is not None}
        tcp_checks = [check for check in self.checks if not check.startswith("max-gap=")]
        if udp == {True} and not tcp_checks:
            return "udp"
        if udp <= {False} and (udp or tcp_checks):
            return "tcp"      # every named check but max-gap is about TCP
        return None

    @property
    def about_a_conversation(self) -> bool:
        """Whether it says anything of one conversation (else only of the whole capture)."""
        return bool(self.steps or self.checks or self.streams or self.filters)

    @property
    def filter_expressions(self) -> List[str]:
        """The display filters it asks tshark about, each once, in order of appearance."""
        found = [step.where for step in self.steps if step is not None and step.where is not None]
        found += [rule.expression for rule in self.filters]
        return list(dict.fromkeys(found))

    def problems(self, conversation: Conversation, dissection: Optional[Dissection] = None) -> List[Problem]:
        """Everything about the conversation that the expectation does not allow, in order;
        `dissection` holds tshark's verdicts on its display filters (harness.run.dissect)."""
        found = match_steps(self.steps, conversation, dissection) if self.steps else []
        for check in self.checks:
            label = check if not check.startswith("max-gap=") else "max-gap"
            found += [problem.prefixed(f"{label}: ") for problem in named_check(check)(conversation)]
        for stream in self.streams:
            found += stream.problems(conversation)
        for rule in self.filters:
            found += rule.problems(conversation, dissection)
        return found

    def capture_problems(self, conversations: Sequence[Conversation]) -> List[Problem]:
        """What the capture's conversations, taken together, do not allow (its capture rules)."""
        tally = self.capture_tally()
        for conversation in conversations:
            tally.take(conversation)
        return tally.problems()

    def capture_tally(self) -> CaptureTally:
        """Its capture rules, to be given the conversations one at a time (take), in order of number."""
        return CaptureTally(self.capture)

    def frame_notes(self, conversation: Conversation, dissection: Optional[Dissection] = None) -> Dict[int, str]:
        """A verdict per frame, for annotating the capture: which step it met, or what was wrong with it."""
        notes: Dict[int, List[str]] = {}
        path = match_path(self.steps, conversation, dissection)
        if path is not None:
            for segment, index in zip(conversation.segments, path):
                step = self.steps[index] if index is not None else None
                notes.setdefault(segment.packet.frame, []).append(
                    f"ok: step {index + 1} `{step.describe()}`" if step else "ok: within `...`")
        elif all(step is not None and not step.optional for step in self.steps):
            for segment, step, context in zip(conversation.segments, self.steps, contexts(conversation, dissection)):
                if not step.mismatches(segment, conversation.proto, context):
                    notes.setdefault(segment.packet.frame, []).append(f"ok: `{step.describe()}`")
        failed: Dict[int, List[str]] = {}
        for problem in self.problems(conversation, dissection):
            if problem.frame is not None:
                failed.setdefault(problem.frame, []).append(f"FAIL: {problem}")
        # A frame that fails anything says only that: never "ok" and "FAIL" at once.
        notes.update(failed)
        return {frame: "; ".join(texts) for frame, texts in notes.items()}


def builtin_names() -> List[str]:
    """The shipped expectations, by name: tcp_lab, udp_lab, ..."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.txt"))


def load_expectation(spec: Union[str, Path]) -> Expectation:
    """An expectation file's path, or the name of a built-in one (with or without .txt).

    A path that exists wins; otherwise a bare name is looked up among the built-ins. Anything else
    is a SpecError naming the built-ins; an unreadable file is an OSError as open() raises it.
    """
    spec = str(spec)
    path = Path(spec)
    builtin = BUILTIN_DIR / (spec if spec.endswith(".txt") else f"{spec}.txt")
    if not path.exists() and "/" not in spec and builtin.is_file():
        path = builtin
    if not path.exists():
        raise SpecError(f"no expectation {spec!r}: not a file, nor a built-in one ({', '.join(builtin_names())})")
    return Expectation.load(path)
