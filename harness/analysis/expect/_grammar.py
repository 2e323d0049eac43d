"""The text form of an expectation, line by line, into steps and named checks (see the package docstring)."""
from __future__ import annotations

import ast
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

from harness.analysis.expect._model import ANY_VALUE, SpecError, Step, Timing
from harness.analysis.expect._rules import STREAM_OPS, CaptureRule, FilterRule, StreamRule, parse_capture_rule
from harness.wire.packet import FLAG_BITS

ANY_SEGMENTS = "..."
_WORD = re.compile(r'<[^>]*>?|\S+?="(?:[^"\\]|\\.)*"|"(?:[^"\\]|\\.)*"|\S+')
_NUMBER_FIELDS = {"len": "length", "seq": "seq", "ack": "ack", "win": "window", "mss": "mss", "wscale": "wscale"}
_TIMING = re.compile(r"after(<=|>=|<|>|=)(\d+(?:\.\d+)?)(ns|us|ms|s)(?:~(\d+(?:\.\d+)?)(ns|us|ms|s))?$")
_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
_OPTION_ITEM = re.compile(r"(mss|wscale) (\d+|\*)|sackOK|nop|eol|TS val (\d+|\*) ecr (\d+|\*)"
                          r"|sack( (\d+|\*):(\d+|\*))+")


class Parsed(NamedTuple):
    steps: List[Optional[Step]]          # None for each `...`
    checks: List[str]
    streams: List[StreamRule]
    filters: List[FilterRule]
    capture: List[CaptureRule]


def parse_lines(text: str, source: str, known_checks, load=None) -> Parsed:
    """An expectation's text, line by line; `load` finds the expectation an `each=` names."""
    parsed = Parsed([], [], [], [], [])
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        indent = len(raw) - len(raw.lstrip())
        try:
            words = [(match.start(), match.group()) for match in _WORD.finditer(line)]
            if line == ANY_SEGMENTS:
                parsed.steps.append(None)
            elif words[0][1] == "check" and len(words) > 1 and words[1][1] == "filter":
                parsed.filters.append(FilterRule(_quoted(words[2:], words[1][0], "check filter"), number))
            elif line.startswith("check max-gap"):
                gap = re.fullmatch(r"max-gap=(\d+(?:\.\d+)?)(ns|us|ms|s)", line[len("check "):].strip())
                if gap is None:
                    raise _At(len("check "), "max-gap takes a time with its unit, as in check max-gap=1s")
                parsed.checks.append(f"max-gap={round(float(gap.group(1)) * _UNITS[gap.group(2)])}")
            elif line.startswith("check "):
                check = line[len("check "):].strip()
                if check not in known_checks:
                    raise _At(len("check "), f"unknown check {check!r}; known: {', '.join(sorted(known_checks))}"
                                             f", or filter \"EXPR\"")
                parsed.checks.append(check)
            elif words[0][1] in ("conversations", "capture"):
                try:
                    parsed.capture.append(parse_capture_rule(words, number, line, load))
                except ValueError as error:
                    if isinstance(error.args[0], tuple):
                        raise _At(*error.args[0]) from None
                    raise
            elif len(words) > 1 and words[1][1] == "stream" and words[0][1] in ("C>S", "S>C"):
                parsed.streams.append(_parse_stream(words, number))
            else:
                parsed.steps.append(_parse_step(line, number))
        except _At as error:
            raise SpecError(f"{source}:{number}:{indent + error.column + 1}: {error.message}") from None
        except SpecError as error:
            raise SpecError(f"{source}:{number}: {error}") from None
    return parsed


def _quoted(words, after_column: int, what: str) -> str:
    """The one quoted string that must follow `what`."""
    if len(words) != 1 or not (words[0][1].startswith('"') and words[0][1].endswith('"') and len(words[0][1]) > 1):
        raise _At(words[0][0] if words else after_column, f"{what} takes one quoted string, as in {what} \"tcp.len > 0\"")
    try:
        return ast.literal_eval(words[0][1])
    except (ValueError, SyntaxError):
        raise _At(words[0][0], f"{what} takes one quoted string") from None


def _parse_stream(words, number: int) -> StreamRule:
    if len(words) < 3 or words[2][1] not in STREAM_OPS:
        raise _At(words[2][0] if len(words) > 2 else words[1][0],
                  f"a stream rule is `C>S stream OP \"TEXT\"` with OP one of {', '.join(STREAM_OPS)}")
    text = _quoted(words[3:], words[2][0], f"stream {words[2][1]}")
    return StreamRule(words[0][1] == "C>S", words[2][1], text.encode("utf-8"), number)


def _strip_comment(raw: str) -> str:
    in_quote = False
    for i, ch in enumerate(raw):
        if ch == '"' and (i == 0 or raw[i - 1] != "\\"):
            in_quote = not in_quote
        elif ch == "#" and not in_quote:
            return raw[:i].strip()
    return raw.strip()


class _At(Exception):
    """A SpecError at a column of the line (0-based), before the source and line are put in front."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


def _parse_step(line: str, number: int) -> Step:
    words = [(match.start(), match.group()) for match in _WORD.finditer(line)]
    optional = words[0][1] == "?"
    if optional:
        words = words[1:]
        if not words:
            raise _At(0, "`?` must be followed by a step")
    (column, direction), rest = words[0], words[1:]
    if direction not in ("C>S", "S>C"):
        raise _At(column, f"a step starts with C>S or S>C, not {direction!r}")
    flag_choices: Optional[Tuple[int, ...]] = None
    if rest and _is_flags(rest[0][1]):
        column, token = rest.pop(0)
        if token != "UDP":
            flag_choices = tuple(_parse_flags(choice, column + start)
                                 for choice, start in _pieces(token, "|"))
    fields: Dict[str, object] = {}
    for position, (column, word) in enumerate(rest):
        if word == "where":
            fields["where"] = _quoted(rest[position + 1:], column, "where")
            break
        parsed = _parse_field(column, word)
        name = next(iter(parsed))
        if flag_choices is None and name in _TCP_ONLY:
            raise _At(column, f"a UDP step has no {_FIELD_WORDS.get(name, name)}")
        fields.update(parsed)
    return Step(direction == "C>S", flag_choices, line=number, optional=optional, **fields)


_TCP_ONLY = ("seq", "ack", "window", "mss", "wscale", "sack_permitted", "timestamps", "options")
_FIELD_WORDS = {"length": "len", "window": "win", "sack_permitted": "sackOK", "timestamps": "TS", "options": "<...>"}


def _is_flags(word: str) -> bool:
    return "=" not in word and word not in ("sackOK", "TS") and not word.startswith(("<", "after"))


def _parse_field(column: int, word: str) -> Dict[str, object]:
    if word == "sackOK":
        return {"sack_permitted": True}
    if word == "TS":
        return {"timestamps": True}
    if word.startswith("<"):
        if not word.endswith(">"):
            raise _At(column, "an option list ends with `>`")
        items = tuple(item.strip() for item in word[1:-1].split(",")) if word[1:-1].strip() else ()
        offset = 1
        for item in word[1:-1].split(","):
            if item.strip() and not _OPTION_ITEM.fullmatch(item.strip()):
                raise _At(column + offset + len(item) - len(item.lstrip()),
                          f"unknown TCP option {item.strip()!r}; known: mss N, wscale N, sackOK, "
                          f"TS val N ecr N, sack L:R, nop, eol (N may be *)")
            offset += len(item) + 1
        return {"options": items}
    if word.startswith("after"):
        timing = _TIMING.match(word)
        if timing is None:
            raise _At(column, f"a time is after<=N, after>=N, after<N, after>N or after=N~T with a unit "
                              f"(ns, us, ms, s), got {word!r}")
        op, amount, unit, tolerance, tolerance_unit = timing.groups()
        if op == "=" and tolerance is None:
            raise _At(column, f"after= needs a tolerance, as in after=40ms~10ms; got {word!r}")
        return {"after": Timing(op, round(float(amount) * _UNITS[unit]),
                                round(float(tolerance) * _UNITS[tolerance_unit]) if tolerance else 0, word)}
    key, sep, value = word.partition("=")
    if not sep or (key not in _NUMBER_FIELDS and key != "data"):
        raise _At(column, f"expected len=, seq=, ack=, data=, win=, mss=, wscale=, sackOK, TS, <options> or "
                          f"after..., got {word!r}")
    if key == "data":
        try:
            text = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise _At(column + 5, f"data must be a quoted string (is a quote missing?), got {value}") from None
        return {"data": text.encode("utf-8") if isinstance(text, str) else bytes(text)}
    if value == "*" and key in ("mss", "wscale"):
        return {_NUMBER_FIELDS[key]: ANY_VALUE}
    if not value.isdigit():
        raise _At(column + len(key) + 1, f"{key} must be a whole number"
                  + (" or * (present, any value)" if key in ("mss", "wscale") else "") + f", got {value!r}")
    return {_NUMBER_FIELDS[key]: int(value)}


def _pieces(text: str, separator: str):
    """(piece, its offset in text) for each piece between separators."""
    offset = 0
    for piece in text.split(separator):
        yield piece, offset
        offset += len(piece) + len(separator)


def _parse_flags(token: str, column: int) -> int:
    if token == "NONE":
        return 0          # a segment without flags (as expect-from writes one)
    bits = 0
    for name, start in _pieces(token, ","):
        if name not in FLAG_BITS:
            raise _At(column + start, f"unknown TCP flag {name!r}; known: {', '.join(FLAG_BITS)}")
        bits |= FLAG_BITS[name]
    return bits
