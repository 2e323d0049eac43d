"""The text ladder: aligned whatever the rows carry, payloads elided to fit, and for TCP a key, a
line opening each phase and each side's TCP state where it changes."""
import re

from harness.analysis.pipeline import analyse
from harness.analysis.tracker import conversations
from harness.render.ladder import KEY, PAYLOAD_SHOWN, render

from support import REPO
from support.packets import HANDSHAKE, tcp

ROW = re.compile(r"^ *\d+ +\d+\.\d{6}  ")


def arrows(text):
    """Each packet row without what follows its arrow (states, notes)."""
    return [re.split(r"  \[|  <<", line)[0] for line in text.splitlines() if ROW.match(line)]


def test_every_arrow_ends_in_the_same_column_whatever_the_payload():
    (conversation,) = conversations(tcp(HANDSHAKE + [("C", "PA", b"x" * 3000), ("S", "PA", b"short"),
                                                     ("S", "A", b"", {"seq": 123456789})]))
    rows = arrows(render(conversation))
    assert len(rows) == 6 and len({len(row) for row in rows}) == 1, rows
    shown = rows[3][rows[3].index("b'"):].split(" ")[0]
    assert shown.endswith("...") and len(shown) == PAYLOAD_SHOWN
    assert "b'short'" in rows[4]


def test_a_real_capture_with_large_sequence_numbers_stays_aligned():
    conversation = analyse(REPO / "captures" / "corpus" / "lossy-router-r1.pcapng").conversations[0]
    rows = arrows(render(conversation))
    assert len(rows) == len(conversation.segments) and len({len(row) for row in rows}) == 1


def test_phases_and_states_are_marked_as_in_the_svg():
    text = render(analyse(REPO / "captures" / "lab" / "tcp-lab.pcapng").conversations[0])
    lines = text.splitlines()
    assert lines[1] == KEY
    assert [line.strip() for line in lines if line.strip().startswith("-- ")] == [
        "-- handshake (frames 1-3) --", "-- data (frames 4-7) --", "-- teardown (frames 8-11) --"]
    by_frame = {int(line.split()[0]): line for line in lines if ROW.match(line)}
    assert by_frame[1].endswith("  [client SYN_SENT]")
    assert by_frame[2].endswith("  [client ESTABLISHED] [server SYN_RECEIVED]")
    assert by_frame[10].endswith("  [client LAST_ACK] [server TIME_WAIT]")
    assert not by_frame[5].endswith("]")
