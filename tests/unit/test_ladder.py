"""The text ladder: aligned whatever the rows carry, payloads elided to fit."""
from harness.analysis.pipeline import analyse
from harness.analysis.tracker import conversations
from harness.render.ladder import PAYLOAD_SHOWN, render

from support import REPO
from support.packets import HANDSHAKE, tcp


def test_every_arrow_ends_in_the_same_column_whatever_the_payload():
    (conversation,) = conversations(tcp(HANDSHAKE + [("C", "PA", b"x" * 3000), ("S", "PA", b"short"),
                                                     ("S", "A", b"", {"seq": 123456789})]))
    rows = render(conversation).splitlines()[2:]
    assert len({len(row) for row in rows}) == 1, rows
    shown = rows[3][rows[3].index("b'"):].split(" ")[0]
    assert shown.endswith("...") and len(shown) == PAYLOAD_SHOWN
    assert "b'short'" in rows[4]


def test_a_real_capture_with_large_sequence_numbers_stays_aligned():
    conversation = analyse(REPO / "captures" / "corpus" / "lossy-router-r1.pcapng").conversations[0]
    rows = render(conversation).splitlines()[2:]
    assert len({len(row) for row in rows}) == 1
