"""One page for a run of scenarios (`harness lab --html`, `harness run --html`): each run's verdict,
its cause and problems, its conversations drawn in SVG with the verdicts on their rows, and each
conversation walked through in words. Pure code: the input is the runs' results."""
from __future__ import annotations

from typing import Optional, Sequence

from harness.render.explain import explain
from harness.render.html import Entry, html_page
from harness.render.svg import render_svg_all

__all__ = ["run_page"]


def run_page(title: str, results: Sequence, language: str = "en", base: Optional[str] = None) -> str:
    """`results`: harness.run.scenario.ScenarioResults."""
    entries = []
    for result in results:
        conversation = result.conversation
        notes = result.expectation.frame_notes(conversation) if conversation is not None else {}
        conversations = result.analysis.conversations
        details = "\n".join(str(problem) for problem in result.problems)
        entries.append(Entry(
            result.scenario.name, "PASS" if result.ok else "FAIL", None if result.ok else result.diagnosis,
            details, pcap=str(result.capture.path),
            svg=render_svg_all(conversations, str(result.capture.path), notes, title=result.verdict()),
            seconds=sum(result.phases.values()),
            walkthrough="\n\n".join(explain(c, language) for c in conversations)))
    passed = sum(1 for result in results if result.ok)
    return html_page(title, entries, f"{passed} of {len(results)} passed", base=base, language=language)
