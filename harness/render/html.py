"""Verdicts as one self-contained HTML page: a table of every run, then each run's cause, problems,
the programs' output, its ladder drawn in SVG and its walk-through in words. No script, no style sheet or font from elsewhere:
the file opens the same from a mail attachment as from a CI artifact. Pure code."""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence
from xml.sax.saxutils import escape, quoteattr

__all__ = ["Entry", "html_page"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-top: 1px solid #d0d7de; padding-top: 1em; }
table.verdicts { border-collapse: collapse; } table.verdicts td, table.verdicts th { border: 1px solid #d0d7de;
  padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
.PASS { color: #1a7f37; font-weight: bold; } .FAIL { color: #cf222e; font-weight: bold; }
.ERROR { color: #9a6700; font-weight: bold; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.ladder { overflow-x: auto; border: 1px solid #d0d7de; }
.cause { font-size: 1.05em; }
.walkthrough { max-width: 60em; line-height: 1.45; } .walkthrough h3 { font-size: 1em; margin-bottom: 0.2em; }
"""


class Entry(NamedTuple):
    name: str
    verdict: str                    # PASS, FAIL or ERROR
    cause: Optional[str] = None     # one sentence
    details: str = ""
    output: str = ""
    pcap: Optional[str] = None
    svg: Optional[str] = None       # an SVG document (harness.render.svg), drawn inline
    seconds: float = 0.0
    walkthrough: str = ""           # harness.render.explain's text: paragraphs, "## " headings


def _anchor(name: str) -> str:
    return "run-" + "".join(c if c.isalnum() else "-" for c in name)


def _link(pcap: Optional[str], base: Optional[str]) -> str:
    if not pcap:
        return ""
    href = os.path.relpath(pcap, base) if base else pcap
    return f"<a href={quoteattr(href)}>{escape(pcap)}</a>"


def _walkthrough(text: str) -> str:
    parts = ["<div class='walkthrough'>"]
    for paragraph in text.strip().split("\n\n"):
        if paragraph.startswith("## "):
            parts.append(f"<h3>{escape(paragraph[3:])}</h3>")
        else:
            parts.append(f"<p>{escape(paragraph)}</p>")
    parts.append("</div>")
    return "\n".join(parts)


def html_page(title: str, entries: Sequence[Entry], summary: str = "", base: Optional[str] = None,
              language: str = "en") -> str:
    """The page; `base` is the folder the page is written to, so pcap links are relative to it."""
    rows = []
    for entry in entries:
        rows.append(f"<tr class='entry'><td><a href='#{_anchor(entry.name)}'>{escape(entry.name)}</a></td>"
                    f"<td class={quoteattr(entry.verdict)}>{entry.verdict}</td><td>{escape(entry.cause or '')}</td>"
                    f"<td>{_link(entry.pcap, base)}</td><td>{entry.seconds:.1f} s</td></tr>")
    sections = []
    for entry in entries:
        parts = [f"<h2 id={quoteattr(_anchor(entry.name))}>{escape(entry.name)}: "
                 f"<span class={quoteattr(entry.verdict)}>{entry.verdict}</span></h2>"]
        if entry.cause:
            parts.append(f"<p class='cause'>{escape(entry.cause)}</p>")
        if entry.details:
            parts.append(f"<pre class='details'>{escape(entry.details)}</pre>")
        if entry.output:
            parts.append(f"<p>What the programs printed:</p><pre class='output'>{escape(entry.output)}</pre>")
        if entry.svg:
            svg = entry.svg.split("?>", 1)[-1] if entry.svg.startswith("<?xml") else entry.svg
            parts.append(f"<div class='ladder'>{svg}</div>")
        if entry.walkthrough:
            parts.append(_walkthrough(entry.walkthrough))
        if entry.pcap:
            parts.append(f"<p>pcap: {_link(entry.pcap, base)}</p>")
        sections.append("\n".join(parts))
    return (f"<!DOCTYPE html>\n<html lang={quoteattr(language)}><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{escape(title)}</h1>\n"
            + (f"<p class='summary'>{escape(summary)}</p>\n" if summary else "")
            + "<table class='verdicts'><tr><th>who</th><th>verdict</th><th>cause</th><th>pcap</th><th>time</th></tr>\n"
            + "\n".join(rows) + "\n</table>\n" + "\n".join(sections) + "\n</body></html>\n")
