"""harness's summary agrees with the conn.log Zeek itself wrote, on Zeek's own test traces
(captures/zeek/; how rows are read and paired: tests/support/zeek_conformance.py).

Every field of every conn.log row agrees, except for conversations named in
captures/zeek/exceptions.tsv, each under a documented class of difference (README.md, "Where
harness and Zeek differ"); those stay under 5% of the rows, and an exception that no longer
differs fails too, so the list never hides a fix.
"""
from __future__ import annotations

import csv

import pytest

from support import zeek_conformance as conformance

EXCEPTIONS_FILE = conformance.CORPUS / "exceptions.tsv"
ENTRIES = conformance.entries()
EXCEPTION_SHARE = 0.05


def _exceptions():
    with open(EXCEPTIONS_FILE, encoding="utf-8", newline="") as table:
        rows = [row for row in csv.reader(table, delimiter="\t") if row and not row[0].startswith("#")]
    return [dict(zip(("trace", "conversation", "class", "why"), row)) for row in rows]


EXCEPTIONS = _exceptions()


def _excepted(trace: str, pair: conformance.Pair):
    for exception in EXCEPTIONS:
        if exception["trace"] == trace and exception["conversation"] in ("*", pair.tuple):
            return exception
    return None


@pytest.fixture(scope="module")
def comparisons():
    return [conformance.compare(entry) for entry in ENTRIES]


def test_the_corpus_has_what_the_issue_asks_for():
    assert len(ENTRIES) >= 40
    assert all((conformance.CORPUS / entry["trace"]).is_file() and (conformance.CORPUS / entry["baseline"]).is_file()
               for entry in ENTRIES)


def test_every_trace_is_read(comparisons):
    errors = [f"{c.entry['trace']}: {c.error}" for c in comparisons if c.error]
    assert not errors, "\n".join(errors)


def test_every_field_agrees_outside_the_documented_exceptions(comparisons):
    print("\n" + conformance.figures(comparisons))
    unexplained, excepted = [], set()
    for comparison in comparisons:
        trace = comparison.entry["trace"].removeprefix("traces/")
        for pair in comparison.pairs:
            if pair.zeek is not None and pair.harness is not None and not pair.differ:
                continue
            exception = _excepted(trace, pair)
            if exception is None:
                unexplained.append(conformance.describe(comparison, pair))
            else:
                excepted.add((trace, pair.tuple))
    rows = sum(1 for c in comparisons for p in c.pairs if p.zeek is not None)
    print(f"excepted: {len(excepted)} conversations of {rows} Zeek rows ({100 * len(excepted) / rows:.1f}%)")
    assert not unexplained, "disagreements no exception explains:\n" + "\n".join(unexplained)
    assert len(excepted) < EXCEPTION_SHARE * rows


def test_every_exception_is_still_needed(comparisons):
    by_trace = {c.entry["trace"].removeprefix("traces/"): c for c in comparisons}
    stale = []
    for exception in EXCEPTIONS:
        comparison = by_trace.get(exception["trace"])
        differing = [] if comparison is None else [
            pair for pair in comparison.pairs
            if (pair.zeek is None or pair.harness is None or pair.differ)
            and exception["conversation"] in ("*", pair.tuple)]
        if not differing:
            stale.append(f"{exception['trace']} {exception['conversation']} ({exception['class']})")
    assert not stale, "exceptions that no longer differ (remove them):\n" + "\n".join(stale)


def test_every_exception_names_a_documented_class():
    from support import REPO
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    undocumented = sorted({e["class"] for e in EXCEPTIONS if f"`{e['class']}`" not in readme})
    assert not undocumented, f"exception classes README.md does not explain: {undocumented}"
    assert all(e["why"].strip() for e in EXCEPTIONS)


def test_the_pure_python_path_agrees_with_zeek_exactly_as_the_c_path_does(comparisons, monkeypatch):
    from harness.analysis.pipeline import PURE_PYTHON_ENV, speedups_status
    if not speedups_status()[0]:
        pytest.skip("the C scanner is not compiled here: the comparisons above ran in pure Python already")
    monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    pure = [conformance.compare(entry) for entry in ENTRIES]
    assert [[(p.zeek, p.harness, p.differ) for p in c.pairs] for c in pure] == \
        [[(p.zeek, p.harness, p.differ) for p in c.pairs] for c in comparisons]
