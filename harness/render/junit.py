"""Verdicts as JUnit XML, the report format CI systems read: one testcase per verdict. Pure code."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Case", "junit_xml"]


class Case(NamedTuple):
    name: str
    verdict: str                 # "PASS", "FAIL" (the wire did not match) or "ERROR" (it could not be judged)
    seconds: float
    message: Optional[str] = None    # one line: the cause
    details: str = ""               # the problems, field by field
    output: str = ""                # what the programs printed, for a failure


def junit_xml(suite: str, cases: Sequence[Case], classname: str = "harness") -> str:
    failures = sum(case.verdict == "FAIL" for case in cases)
    errors = sum(case.verdict == "ERROR" for case in cases)
    total = sum(case.seconds for case in cases)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites><testsuite name={quoteattr(suite)} tests="{len(cases)}" failures="{failures}" '
             f'errors="{errors}" skipped="0" time="{total:.3f}">']
    for case in cases:
        head = (f'  <testcase classname={quoteattr(classname)} name={quoteattr(case.name)} '
                f'time="{case.seconds:.3f}"')
        if case.verdict == "PASS":
            lines.append(head + "/>")
            continue
        tag = "failure" if case.verdict == "FAIL" else "error"
        lines.append(head + ">")
        lines.append(f"    <{tag} message={quoteattr(_clean(case.message or case.verdict))}>{escape(_clean(case.details))}</{tag}>")
        if case.output:
            lines.append(f"    <system-out>{escape(_clean(case.output))}</system-out>")
        lines.append("  </testcase>")
    lines.append("</testsuite></testsuites>")
    return "\n".join(lines) + "\n"


def _clean(text: str) -> str:
    """What XML 1.0 cannot carry (control characters) as \\xNN."""
    return "".join(c if c in "\t\n\r" or ord(c) >= 32 else f"\\x{ord(c):02x}" for c in text)
