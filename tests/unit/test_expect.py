"""Expectations: the text form, the step matcher, and the named checks (pure, no capture)."""
import pytest

from harness.analysis.tracker import conversations
from harness.analysis.expect import CHECKS, Expectation, SpecError, load_expectation

from support.packets import (CLIENT_FIRST, FOUR_WAY_SERVER_FIRST, HANDSHAKE, LAB_DATA, THREE_WAY_SERVER_FIRST, tcp,
                  udp)


def texts(problems):
    """Problems as the words they say (a Problem is text and, where there is one, a frame)."""
    return [str(problem) for problem in problems]


def conv_of(packets):
    (conv,) = conversations(packets)
    return conv


LAB = HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST


def test_the_tcp_lab_expectation_accepts_the_reports_eleven_segments():
    assert texts(load_expectation("tcp_lab").problems(conv_of(tcp(LAB)))) == []


def test_a_merged_ack_is_listed_field_by_field_against_the_step():
    merged_ack = HANDSHAKE + [("C", "PA", b"yp"), ("S", "PA", b"thank you !"), ("C", "A", b"")] + \
        FOUR_WAY_SERVER_FIRST
    problems = texts(load_expectation("tcp_lab").problems(conv_of(tcp(merged_ack))))
    assert problems[0].startswith("segment 5 (frame 5): expected `S>C ACK len=0 seq=1 ack=3`, "
                                  "wire `S>C PSH, ACK seq=1 ack=3 len=11`")
    assert "    len: expected 0, wire 11" in problems[0]
    assert "expected 11 segments, the wire has 10" in problems


def test_three_segment_close_fails_the_exact_lab_but_passes_graceful_close():
    packets = tcp(HANDSHAKE + LAB_DATA + THREE_WAY_SERVER_FIRST)
    assert texts(load_expectation("tcp_lab").problems(conv_of(packets)))
    assert texts(load_expectation("tcp_graceful").problems(conv_of(packets))) == []


def test_client_first_close_is_graceful():
    assert texts(CHECKS["graceful-close"](conv_of(tcp(HANDSHAKE + LAB_DATA + CLIENT_FIRST)))) == []


def test_simultaneous_close_is_graceful():
    simultaneous = [("C", "FA", b""), ("S", "FA", b"", {"ack": 1004}), ("C", "A", b""), ("S", "A", b"")]
    packets = tcp(HANDSHAKE + LAB_DATA + simultaneous)
    assert texts(CHECKS["graceful-close"](conv_of(packets))) == []


def test_graceful_close_names_the_reset_and_the_missing_fins():
    reset = tcp(HANDSHAKE + [("C", "PA", b"yp"), ("S", "A", b""), ("S", "RA", b"")])
    problems = texts(CHECKS["graceful-close"](conv_of(reset)))
    assert problems == ["server sent RST at frame 6 (an abortive close, not a graceful one)",
                        "the client never sent FIN", "the server never sent FIN"]


def test_graceful_close_wants_each_fin_acknowledged():
    unacked = tcp(HANDSHAKE + LAB_DATA + [("S", "FA", b""), ("C", "A", b""), ("C", "FA", b"")])
    assert texts(CHECKS["graceful-close"](conv_of(unacked))) == [
        "the client's FIN (frame 10) was never acknowledged (no ACK=4 from the server)"]


def test_broken_server_expectation_matches_reset_after_the_request():
    broken = tcp(HANDSHAKE + [("C", "PA", b"yp"), ("S", "A", b""), ("S", "RA", b"")])
    assert texts(load_expectation("tcp_broken_server").problems(conv_of(broken))) == []
    replied = tcp(HANDSHAKE + [("C", "PA", b"yp"), ("S", "PA", b"thank you !"), ("S", "RA", b"")])
    assert texts(load_expectation("tcp_broken_server").problems(conv_of(replied))) == [
        "no-data-from-server: the server sent 11 bytes at frame 5"]


def test_handshake_check_wants_mss_window_and_isn_plus_one():
    no_mss = tcp([("C", "S", b"", {"mss": None, "window": 0})] + HANDSHAKE[1:])
    assert texts(CHECKS["handshake"](conv_of(no_mss))) == ["the SYN (frame 1) advertises no window",
                                                    "the SYN (frame 1) carries no MSS option"]
    wrong_ack = tcp([HANDSHAKE[0], ("S", "SA", b"", {"ack": 1005}), ("C", "A", b"")])
    assert "the SYN-ACK (frame 2) acknowledges 5, not the client's ISN+1" in texts(CHECKS["handshake"](conv_of(wrong_ack)))


def test_sequence_consistency_catches_a_gap_and_an_ack_of_unsent_data():
    gap = tcp(HANDSHAKE + [("C", "PA", b"yp", {"seq": 1005}), ("S", "A", b"", {"ack": 999999})])
    problems = texts(CHECKS["sequence-consistent"](conv_of(gap)))
    assert problems[0] == "frame 4: client seq=5, expected 1"
    assert problems[1].startswith("frame 5: server acknowledges")
    assert texts(CHECKS["sequence-consistent"](conv_of(tcp(LAB)))) == []


def test_udp_lab_expectation():
    good = udp([("C", b"YP"), ("S", b"thank you !"), ("C", b"nihao"), ("S", b"thank you !")])
    assert texts(load_expectation("udp_lab").problems(conv_of(good))) == []
    lost_reply = udp([("C", b"YP"), ("S", b"thank you !"), ("C", b"nihao")])
    assert texts(load_expectation("udp_lab").problems(conv_of(lost_reply))) == [
        "expected 4 segments, the wire has 3", 'missing: `S>C UDP len=11 data="thank you !"`']


def test_wildcard_and_alternatives():
    spec = Expectation.parse("C>S SYN\n...\nS>C RST|RST,ACK\n")
    assert spec.problems(conv_of(tcp(HANDSHAKE + [("S", "R", b"")]))) == []
    assert spec.problems(conv_of(tcp(HANDSHAKE + [("S", "RA", b"")]))) == []
    assert texts(spec.problems(conv_of(tcp(HANDSHAKE)))) == ["no segment left for step `S>C RST|RST,ACK` (line 3)"]


def test_psh_is_compared_only_when_named():
    assert Expectation.parse("C>S ACK len=2").problems(conv_of(tcp([("C", "PA", b"yp")]))) == []
    assert Expectation.parse("C>S PSH,ACK").problems(conv_of(tcp([("C", "A", b"yp")])))


@pytest.mark.parametrize("text, message", [
    ("X>Y SYN", "<string>:1:1: a step starts with C>S or S>C, not 'X>Y'"),
    ("C>S SYN,FOO", "<string>:1:9: unknown TCP flag 'FOO'"),
    ("C>S SYN|RST,ACK,BAD", "<string>:1:17: unknown TCP flag 'BAD'"),
    ("C>S SYN len=two", "<string>:1:13: len must be a whole number, got 'two'"),
    ("\n\nC>S ACK data=\"unterminated", "<string>:3:14: data must be a quoted string"),
    ("C>S UDP ack=3", "<string>:1:9: a UDP step has no ack"),
    ("check nonsense", "<string>:1:7: unknown check 'nonsense'"),
    ("C>S ACK window=3", "<string>:1:9: expected len=, seq=, ack=, data=, win=, mss=, wscale=, sackOK, TS, "
                         "<options> or after..., got 'window=3'"),
    ("  C>S SYN win=x", "<string>:1:15: win must be a whole number, got 'x'"),
    ("C>S SYN <mss 1460,bogus 3>", "<string>:1:19: unknown TCP option 'bogus 3'"),
    ("C>S SYN <mss 1460", "<string>:1:9: an option list ends with `>`"),
    ("C>S ACK after<=50", "<string>:1:9: a time is after<=N"),
    ("C>S ACK after=40ms", "<string>:1:9: after= needs a tolerance"),
    ("S>C UDP sackOK", "<string>:1:9: a UDP step has no sackOK"),
])
def test_spec_errors_name_the_line(text, message):
    with pytest.raises(SpecError) as error:
        Expectation.parse(text)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_comments_and_hashes_inside_data():
    spec = Expectation.parse('C>S PSH,ACK data="#1 \\"quoted\\""   # a comment\n')
    assert spec.steps[0].data == b'#1 "quoted"'


def test_an_optional_step_may_be_missing_but_must_match_if_present():
    spec = Expectation.parse("C>S SYN\nS>C SYN,ACK\n? C>S ACK len=0\nC>S PSH,ACK len=2\n")
    assert spec.problems(conv_of(tcp(HANDSHAKE + [("C", "PA", b"yp")]))) == []
    assert spec.problems(conv_of(tcp(HANDSHAKE[:2] + [("C", "PA", b"yp")]))) == []
    assert texts(spec.problems(conv_of(tcp(HANDSHAKE[:2] + [("C", "PA", b"yp!")])))) == [
        "segment 3 (frame 3): expected `C>S PSH,ACK len=2` (line 4), wire `C>S PSH, ACK seq=1 ack=1 len=3`\n"
        "    len: expected 2, wire 3"]
    assert spec.steps[2].describe() == "? C>S ACK len=0"


def test_problems_name_their_frame_and_frame_notes_give_a_verdict_per_packet():
    broken = conv_of(tcp(HANDSHAKE + [("C", "PA", b"yp"), ("S", "A", b""), ("S", "RA", b"")]))
    problems = load_expectation("tcp_graceful").problems(broken)
    assert [p.frame for p in problems] == [6, None, None]
    notes = load_expectation("tcp_graceful").frame_notes(broken)
    assert notes[1] == "ok: step 1 `C>S SYN seq=0`" and notes[4] == "ok: within `...`"
    # A failing frame says FAIL and nothing else: never "ok" and "FAIL" at once.
    assert notes[6] == "FAIL: graceful-close: server sent RST at frame 6 (an abortive close, not a graceful one)"
    lab = load_expectation("tcp_lab")
    merged = conv_of(tcp(HANDSHAKE + [("C", "PA", b"yp"), ("S", "PA", b"thank you !")]))
    assert lab.frame_notes(merged)[5].startswith("FAIL: segment 5 (frame 5): expected `S>C ACK len=0 seq=1 ack=3`")


def test_a_long_conversation_matches_without_recursion():
    data = [("S", "PA", b"x" * 10)] * 5000
    conversation = conv_of(tcp(HANDSHAKE + data + FOUR_WAY_SERVER_FIRST))
    spec = Expectation.parse("C>S SYN\nS>C SYN,ACK\n...\nS>C FIN,ACK\n...\n")
    assert texts(spec.problems(conversation)) == []
    notes = spec.frame_notes(conversation)
    assert notes[5004] == "ok: step 4 `S>C FIN,ACK`" and len(notes) == len(conversation.segments)


def test_a_stray_segment_before_a_wildcard_is_named_not_skipped():
    # Steps before a `...` must meet consecutive segments: a bad ACK is the problem, not a later good one.
    stray = [("C", "A", b"", {"ack": 900058}), ("C", "A", b"")]
    problems = load_expectation("tcp_graceful").problems(conv_of(tcp(HANDSHAKE[:2] + stray)))
    assert str(problems[0]).startswith("segment 3 (frame 3): expected `C>S ACK seq=1 ack=1` (line 6)")
    assert problems[0].frame == 3 and "ack: expected 1, wire 58" in str(problems[0])
