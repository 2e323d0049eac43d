"""Differential test: random but plausible TCP conversations (tests/support/tcpgen.py), hundreds to one
capture, judged by tshark's two-pass analysis and by the harness, frame by frame and then
conversation by conversation. Seeds are fixed, so the test is deterministic; bench/tshark_differential.py
runs the same generator with fresh seeds for as long as you like."""
import pytest

from support import tcpgen
from support.tshark_view import assert_frames_agree_with_tshark, assert_summary_agrees_with_tshark
from support.packets import to_pcap

SEEDS = (1, 2, 3)
CONVERSATIONS = 300


@pytest.mark.parametrize("seed", SEEDS)
def test_random_conversations_agree_with_tshark_frame_by_frame(seed, tmp_path):
    packets = tcpgen.capture(seed, CONVERSATIONS)
    path = tmp_path / f"differential-{seed}.pcap"
    path.write_bytes(to_pcap(packets))
    assert_frames_agree_with_tshark(path, packets)
    assert_summary_agrees_with_tshark(path, check_shapes=False)   # (why: its docstring)
