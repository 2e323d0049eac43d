#!/usr/bin/env python3
"""Print how harness's summary agrees with the conn.log Zeek wrote for each trace of captures/zeek/:
per-field agreement, then one line per conversation that differs, marked with the documented
exception (captures/zeek/exceptions.tsv) it falls under, if any.

    python scripts/zeek_conformance.py [SUBSTRING]      # only traces whose path contains it

Runs the C scanner when it is compiled; HARNESS_PURE_PYTHON=1 runs the pure-Python path.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import zeek_conformance as conformance  # noqa: E402  (tests/ is not a package on sys.path)
from harness.analysis.pipeline import speedups_status  # noqa: E402


def main() -> int:
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    with open(conformance.CORPUS / "exceptions.tsv", encoding="utf-8", newline="") as table:
        exceptions = [row for row in csv.reader(table, delimiter="\t") if row and not row[0].startswith("#")]
    comparisons = [conformance.compare(entry) for entry in conformance.entries() if only in entry["trace"]]
    print(f"harness analysis: {speedups_status()[1]}")
    print(conformance.figures(comparisons))
    excepted = 0
    for comparison in comparisons:
        trace = comparison.entry["trace"].removeprefix("traces/")
        if comparison.error:
            print(f"{trace}: harness could not read it: {comparison.error}")
        for pair in comparison.pairs:
            if pair.zeek is not None and pair.harness is not None and not pair.differ:
                continue
            named = next((row[2] for row in exceptions if row[0] == trace and row[1] in ("*", pair.tuple)), "")
            excepted += bool(named)
            print(f"  [{named or 'UNEXPLAINED'}] {conformance.describe(comparison, pair)}")
    rows = sum(1 for c in comparisons for p in c.pairs if p.zeek is not None)
    print(f"documented exceptions: {excepted} conversations of {rows} Zeek rows"
          + (f" ({100 * excepted / rows:.1f}%)" if rows else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
