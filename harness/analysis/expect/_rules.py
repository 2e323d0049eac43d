"""What an expectation says beyond its steps: a direction's reassembled stream, display filters that
tshark evaluates, and rules over the whole capture. Pure code: a display filter's outcome is handed
in (a Dissection, made at the edge by harness.run.dissect), never computed here.

Rules:
1. A stream is the payload one side sent, in sequence order: TCP segments are placed by their
   relative sequence number (a retransmission or an overlap adds nothing twice) up to the first
   byte never captured (a hole, or payload the snapshot length cut); UDP datagrams are joined in
   the order they came.
2. `check filter "EXPR"`: every frame of the conversation matches EXPR, as tshark's two-pass
   dissection reads it; `where "EXPR"` on a step: the segment it meets does.
3. Capture rules count and judge conversations selected by protocol and by the server's port
   (`to=`): `conversations tcp to=8080 count=1`, `... count>=3 each=tcp_graceful`;
   `capture no-rst` (no RST in any TCP conversation); `capture answered [to=PORT]` (every UDP
   datagram a client sent was answered before its next one).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from harness.analysis.conversation import Conversation
from harness.analysis.expect._model import Dissection, FilterOutcome, Problem, _quote, filter_verdict
from harness.wire.packet import RST, SYN, TCP, UDP


# -- streams (rule 1) ---------------------------------------------------------------------------

def stream_of(conversation: Conversation, is_orig: bool) -> Tuple[bytes, Optional[int]]:
    """(the side's stream, the offset of its first hole or None)."""
    segments = [s for s in conversation.segments if s.is_orig == is_orig and s.length]
    if conversation.proto != TCP:
        data = b"".join(s.payload for s in segments)
        cut = next((i for i, s in enumerate(segments) if len(s.payload) < s.length), None)
        return data, None if cut is None else sum(len(s.payload) for s in segments[:cut + 1])
    if not segments:
        return b"", None
    def first_byte(segment) -> int:     # data on a SYN starts after the SYN's sequence number
        return segment.rel_seq + bool(segment.flags & SYN)

    ordered = sorted(segments, key=first_byte)
    start = first_byte(ordered[0])
    out = bytearray()
    for segment in ordered:
        offset = first_byte(segment) - start
        if offset > len(out):
            return bytes(out), len(out)
        out += segment.payload[len(out) - offset:]
        if len(segment.payload) < segment.length and offset + len(segment.payload) >= len(out):
            return bytes(out), len(out)
    return bytes(out), None


STREAM_OPS = ("startswith", "endswith", "contains", "equals")


class StreamRule(NamedTuple):
    is_orig: bool
    op: str
    data: bytes
    line: int = 0

    def describe(self) -> str:
        return f"{'C>S' if self.is_orig else 'S>C'} stream {self.op} {_quote(self.data)}"

    def problems(self, conversation: Conversation) -> List[Problem]:
        data, hole = stream_of(conversation, self.is_orig)
        held = {"startswith": data.startswith, "endswith": data.endswith,
                "contains": lambda wanted: wanted in data, "equals": lambda wanted: data == wanted}[self.op](self.data)
        if held:
            return []
        side = "client" if self.is_orig else "server"
        shown = data[:60] if self.op != "endswith" else data[-60:]
        where = "ends" if self.op == "endswith" else "begins"
        text = (f"`{self.describe()}` (line {self.line}): the {side}'s stream ({len(data)} bytes) "
                f"{where} {_quote(shown)}{'...' if len(data) > 60 else ''}" if data else
                f"`{self.describe()}` (line {self.line}): the {side} sent no payload")
        if hole is not None:
            text += f"; it has a hole at byte {hole} (never captured), so what follows is unknown"
        return [Problem(text)]


# -- display filters (rule 2) -------------------------------------------------------------------

class FilterRule(NamedTuple):
    expression: str
    line: int = 0

    def problems(self, conversation: Conversation, dissection: Optional[Dissection]) -> List[Problem]:
        outcome = None if dissection is None else dissection.get(self.expression)
        if not isinstance(outcome, FilterOutcome):     # not evaluated: one line, not one per frame
            return [Problem(f"`check filter` (line {self.line}): "
                            f"{filter_verdict(self.expression, 0, dissection)}")]
        return [Problem(f"`check filter` (line {self.line}): {filter_verdict(self.expression, s.packet.frame, dissection)}",
                        s.packet.frame)
                for s in conversation.segments if s.packet.frame not in outcome.passing]


# -- capture rules (rule 3) ---------------------------------------------------------------------

class CaptureRule(NamedTuple):
    kind: str                        # "conversations", "no-rst" or "answered"
    proto: Optional[int] = None
    to_port: Optional[int] = None
    count: Optional[Tuple[str, int]] = None   # ("=", 1), (">=", 3), ("<=", 2)
    each: Optional[object] = None    # an Expectation every selected conversation must match
    each_name: str = ""
    line: int = 0
    text: str = ""

    def problems(self, conversations: Sequence[Conversation]) -> List[Problem]:
        tally = CaptureTally([self])
        for conversation in conversations:
            tally.take(conversation)
        return tally.problems()

    def takes(self, conversation: Conversation) -> bool:
        return ((self.proto is None or conversation.proto == self.proto)
                and (self.to_port is None or conversation.resp.port == self.to_port))

    def problems_of(self, conversation: Conversation) -> List[Problem]:
        """What this rule finds wrong with one conversation it selects (its count aside)."""
        prefix = f"`{self.text}` (line {self.line}): "
        found: List[Problem] = []
        if self.kind == "no-rst":
            for segment in conversation.segments:
                if conversation.proto == TCP and segment.flags & RST:
                    side = "client" if segment.is_orig else "server"
                    found.append(Problem(f"{prefix}conversation {conversation.index} ({conversation.describe()}): "
                                         f"the {side} sent RST at frame {segment.packet.frame}", segment.packet.frame))
            return found
        if self.kind == "answered":
            if conversation.proto != UDP:
                return found
            waiting = None
            for segment in conversation.segments:
                if segment.is_orig:
                    if waiting is not None:
                        break
                    waiting = segment
                else:
                    waiting = None
            if waiting is not None:
                found.append(Problem(f"{prefix}conversation {conversation.index} ({conversation.describe()}): the "
                                     f"datagram at frame {waiting.packet.frame} was never answered",
                                     waiting.packet.frame))
            return found
        if self.each is not None:
            for problem in self.each.problems(conversation):
                found.append(Problem(f"{prefix}conversation {conversation.index} ({conversation.describe()}) "
                                     f"against {self.each_name}: {problem}", problem.frame))
        return found

    def count_problems(self, have: int, listed: List[str]) -> List[Problem]:
        """The count's verdict, given how many conversations it selected and the first five, described."""
        if self.kind != "conversations" or self.count is None:
            return []
        op, wanted = self.count
        if {"=": have == wanted, ">=": have >= wanted, "<=": have <= wanted}[op]:
            return []
        prefix = f"`{self.text}` (line {self.line}): "
        return [Problem(f"{prefix}expected {'' if op == '=' else op}{wanted} "
                        f"conversation{'s' if wanted != 1 else ''}, the capture has {have}"
                        + (f" ({'; '.join(listed)}{'; ...' if have > 5 else ''})" if have else ""))]


class CaptureTally:
    """Capture rules judged one conversation at a time, as a capture is read (conversations are taken
    in order of number, and dropped once taken): problems() gives each rule's problems, its count's
    first, in the order of the rules."""

    def __init__(self, rules: Sequence[CaptureRule]) -> None:
        self.rules = list(rules)
        self._found: List[List[Problem]] = [[] for _ in self.rules]
        self._counts = [0] * len(self.rules)
        self._listed: List[List[str]] = [[] for _ in self.rules]

    def take(self, conversation: Conversation) -> None:
        for number, rule in enumerate(self.rules):
            if not rule.takes(conversation):
                continue
            self._counts[number] += 1
            if len(self._listed[number]) < 5:
                self._listed[number].append(f"{conversation.index}: {conversation.describe()}")
            self._found[number] += rule.problems_of(conversation)

    def problems(self) -> List[Problem]:
        found: List[Problem] = []
        for number, rule in enumerate(self.rules):
            found += rule.count_problems(self._counts[number], self._listed[number]) + self._found[number]
        return found


def parse_capture_rule(words: Sequence[Tuple[int, str]], line: int, text: str, load) -> CaptureRule:
    """`words` after the leading keyword, with their columns; `load` finds an expectation by name.
    Raises ValueError((column, message)) for the grammar to place."""
    keyword = words[0][1]
    fields: Dict[str, object] = {"line": line, "text": text}
    rest = list(words[1:])
    if keyword == "capture":
        if not rest or rest[0][1] not in ("no-rst", "answered"):
            column = rest[0][0] if rest else words[0][0]
            raise ValueError((column, "a capture rule is `capture no-rst` or `capture answered [to=PORT]`"))
        fields["kind"] = rest.pop(0)[1]
        fields["proto"] = TCP if fields["kind"] == "no-rst" else UDP
    else:
        fields["kind"] = "conversations"
    for column, word in rest:
        if word in ("tcp", "udp") and fields["kind"] == "conversations":
            fields["proto"] = TCP if word == "tcp" else UDP
        elif word.startswith("to=") and word[3:].isdigit():
            fields["to_port"] = int(word[3:])
        elif word.startswith("count") and fields["kind"] == "conversations":
            for op in (">=", "<=", "="):
                if word.startswith("count" + op) and word[5 + len(op):].isdigit():
                    fields["count"] = (op, int(word[5 + len(op):]))
                    break
            else:
                raise ValueError((column, f"count is count=N, count>=N or count<=N, got {word!r}"))
        elif word.startswith("each=") and fields["kind"] == "conversations":
            fields["each_name"] = word[5:]
            fields["each"] = load(word[5:])
        else:
            allowed = "tcp, udp, to=PORT, count=N, each=SPEC" if fields["kind"] == "conversations" else "to=PORT"
            raise ValueError((column, f"expected {allowed}, got {word!r}"))
    if fields["kind"] == "conversations" and "count" not in fields and "each" not in fields:
        raise ValueError((words[0][0], "a conversations rule needs count=N or each=SPEC"))
    return CaptureRule(**fields)
