"""The harness's summary agrees with tshark's two-pass dissection on every reference capture
(what is compared: tests/tshark_view.py)."""
from pathlib import Path

import pytest

from tshark_view import assert_summary_agrees_with_tshark

CAPTURES = Path(__file__).parent.parent / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
                   and "runs" not in p.parts)


@pytest.mark.parametrize("path", REFERENCE, ids=[str(p.relative_to(CAPTURES)) for p in REFERENCE])
def test_summary_agrees_with_tshark(path):
    assert_summary_agrees_with_tshark(path)
