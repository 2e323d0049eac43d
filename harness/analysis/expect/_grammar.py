"""The text form of an expectation, line by line, into steps and named checks (see the package docstring)."""
from __future__ import annotations

import ast
import re
from typing import Dict, List, Optional, Tuple

from harness.analysis.expect._model import SpecError, Step
from harness.wire.packet import FLAG_BITS

ANY_SEGMENTS = "..."
_WORD = re.compile(r'\S+?="(?:[^"\\]|\\.)*"|\S+')


def parse_lines(text: str, source: str, known_checks) -> Tuple[List[Optional[Step]], List[str]]:
    """(steps, with None for each `...`; check names) of an expectation's text."""
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
                if check not in known_checks:
                    raise SpecError(f"unknown check {check!r}; known: {', '.join(sorted(known_checks))}")
                checks.append(check)
            else:
                steps.append(_parse_step(line, number))
        except SpecError as error:
            raise SpecError(f"{source}:{number}: {error}") from None
    return steps, checks


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
        if name not in FLAG_BITS:
            raise SpecError(f"unknown TCP flag {name!r}; known: {', '.join(FLAG_BITS)}")
        bits |= FLAG_BITS[name]
    return bits
