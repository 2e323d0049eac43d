"""The harness's summary agrees with tshark's two-pass dissection on every reference capture
(what is compared: tests/tshark_view.py)."""
from pathlib import Path

import pytest

from tshark_view import assert_summary_agrees_with_tshark
from wire import hole_filled_after, to_pcap

CAPTURES = Path(__file__).parent.parent / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
                   and "runs" not in p.parts)


@pytest.mark.parametrize("path", REFERENCE, ids=[str(p.relative_to(CAPTURES)) for p in REFERENCE])
def test_summary_agrees_with_tshark(path):
    assert_summary_agrees_with_tshark(path)


# Built packet by packet: each sits on a line that tshark draws to the nanosecond or by the order
# of its tests, where the harness once disagreed with it on a live capture.
EDGES = {
    "out-of-order 1 ns inside the initial RTT": hole_filled_after(68_664),
    "retransmission exactly at the initial RTT": hole_filled_after(68_665),
    "spurious before out-of-order": hole_filled_after(1_000, acked_by_server=1301),
    "out-of-order when the ACK does not cover it": hole_filled_after(1_000, acked_by_server=1151),
}


@pytest.mark.parametrize("name", EDGES)
def test_summary_agrees_with_tshark_on_the_edges_of_its_rules(name, tmp_path):
    path = tmp_path / "edge.pcap"
    path.write_bytes(to_pcap(EDGES[name]))
    assert_summary_agrees_with_tshark(path)
