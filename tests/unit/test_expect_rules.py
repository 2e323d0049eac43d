"""What an expectation says beyond its steps: a side's reassembled stream, rules over the whole
capture, and display filters (their tshark outcome handed in; tests/unit/test_dissect.py runs tshark).
Each passes on the wire it describes and fails, saying why, on one it does not."""
import pytest

from harness.analysis.expect import Expectation, FilterOutcome, SpecError, load_expectation, stream_of
from harness.analysis.pipeline import analyse
from harness.analysis.tracker import conversations

from support import REPO
from support.packets import FOUR_WAY_SERVER_FIRST, HANDSHAKE, LAB_DATA, tcp, udp

HTTP10 = REPO / "captures" / "corpus" / "http10-server-close.pcapng"


def conv_of(packets):
    (conversation,) = conversations(packets)
    return conversation


def problems(text, conversation, dissection=None):
    return [str(problem) for problem in Expectation.parse(text).problems(conversation, dissection)]


# -- streams ------------------------------------------------------------------------------------

def test_a_stream_is_reassembled_across_segments_retransmissions_and_reordering():
    steps = HANDSHAKE + [("C", "PA", b"GET / HT"), ("C", "PA", b"TP/1.1\r\n", {"seq": 1009}),
                         ("C", "PA", b"GET / HT", {"seq": 1001}),          # a retransmission
                         ("S", "PA", b"HTTP/1.1 200 OK\r\n")]
    conversation = conv_of(tcp(steps))
    assert stream_of(conversation, True) == (b"GET / HTTP/1.1\r\n", None)
    assert problems('C>S stream equals "GET / HTTP/1.1\\r\\n"\nS>C stream startswith "HTTP/1.1 200"\n'
                    'C>S stream contains "HTTP/1.1"\nS>C stream endswith "OK\\r\\n"', conversation) == []
    assert problems('S>C stream startswith "HTTP/1.0"', conversation) == [
        '`S>C stream startswith "HTTP/1.0"` (line 1): the server\'s stream (17 bytes) begins "HTTP/1.1 200 OK\\r\\n"']


def test_a_hole_in_the_stream_is_said_and_what_follows_is_not_guessed():
    conversation = conv_of(tcp(HANDSHAKE + [("C", "PA", b"abc"), ("C", "PA", b"ghi", {"seq": 1007})]))
    assert stream_of(conversation, True) == (b"abc", 3)
    (problem,) = problems('C>S stream contains "ghi"', conversation)
    assert problem.endswith("; it has a hole at byte 3 (never captured), so what follows is unknown")


def test_udp_streams_join_the_datagrams_and_a_silent_side_is_said():
    conversation = conv_of(udp([("C", b"YP"), ("C", b"nihao")]))
    assert problems('C>S stream equals "YPnihao"', conversation) == []
    assert problems('S>C stream contains "thank"', conversation) == [
        '`S>C stream contains "thank"` (line 1): the server sent no payload']


def test_http_request_reply_holds_on_real_http_and_not_on_the_lab():
    spec = load_expectation("http_request_reply")
    for name in ("http10-server-close", "http11-keepalive-client-close", "ipv6-http"):
        conversation = analyse(REPO / "captures" / "corpus" / f"{name}.pcapng").conversations[0]
        assert spec.problems(conversation) == [], name
    lab = analyse(REPO / "captures" / "lab" / "tcp-lab.pcapng").conversations[0]
    assert [str(p) for p in spec.problems(lab)] == [
        '`C>S stream contains " HTTP/1."` (line 8): the client\'s stream (2 bytes) begins "yp"',
        '`S>C stream startswith "HTTP/1."` (line 9): the server\'s stream (11 bytes) begins "thank you !"']
    aborted = analyse(REPO / "captures" / "corpus" / "abort-linger0.pcapng").conversations[0]
    assert any("graceful-close" in str(p) for p in spec.problems(aborted))


# -- capture rules ------------------------------------------------------------------------------

def _three_connections():
    first = tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST, client=("10.0.0.1", 40001))
    second = tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST, client=("10.0.0.1", 40002), first_frame=12)
    third = tcp(HANDSHAKE + LAB_DATA + [("S", "RA", b"")], client=("10.0.0.1", 40003), first_frame=23)
    dns = udp([("C", b"query"), ("S", b"answer"), ("C", b"query 2")], server=("10.0.0.2", 53), first_frame=31)
    return conversations(first + second + third + dns)


def capture_problems(text, found):
    return [str(problem) for problem in Expectation.parse(text).capture_problems(found)]


def test_conversations_are_counted_by_protocol_and_server_port():
    found = _three_connections()
    assert capture_problems("conversations tcp to=8080 count=3\nconversations udp count=1\n"
                            "conversations count>=4\nconversations tcp to=9 count<=0", found) == []
    (problem,) = capture_problems("conversations tcp to=8080 count=1", found)
    assert problem.startswith("`conversations tcp to=8080 count=1` (line 1): expected 1 conversation, the capture "
                              "has 3 (1: tcp 10.0.0.1:40001 (originator) <-> 10.0.0.2:8080; 2: ")


def test_each_conversation_is_held_to_an_expectation_and_resets_are_found_anywhere():
    found = _three_connections()
    (problem,) = [p for p in capture_problems("conversations tcp count=3 each=tcp_lab", found)
                  if "expected 11 segments" in p]
    assert problem.startswith("`conversations tcp count=3 each=tcp_lab` (line 1): conversation 3 "
                              "(tcp 10.0.0.1:40003 (originator) <-> 10.0.0.2:8080) against tcp_lab: ")
    assert capture_problems("capture no-rst", found) == [
        "`capture no-rst` (line 1): conversation 3 (tcp 10.0.0.1:40003 (originator) <-> 10.0.0.2:8080): "
        "the server sent RST at frame 30"]
    assert capture_problems("capture no-rst to=9", found) == []


def test_every_datagram_answered():
    found = _three_connections()
    assert capture_problems("capture answered to=53", found) == [
        "`capture answered to=53` (line 1): conversation 4 (udp 10.0.0.1:40000 (originator) <-> 10.0.0.2:53): "
        "the datagram at frame 33 was never answered"]
    assert capture_problems("capture answered", conversations(udp([("C", b"a"), ("S", b"b")]))) == []


def test_an_expectation_of_capture_rules_only_says_nothing_of_one_conversation():
    spec = Expectation.parse("conversations tcp count=3\ncapture no-rst")
    assert not spec.about_a_conversation and spec.problems(_three_connections()[0]) == []


# -- display filters, their outcome handed in ---------------------------------------------------

def test_where_and_check_filter_read_the_dissection_they_are_given():
    conversation = conv_of(tcp(HANDSHAKE + LAB_DATA))
    frames = frozenset(range(1, 8))
    outcome = {"tcp.len > 0": FilterOutcome(frozenset({4, 6}), {f: {"tcp.len": "0"} for f in frames}),
               "!tcp.analysis.flags": FilterOutcome(frames, {})}
    text = 'C>S SYN\n...\nS>C PSH,ACK len=11 where "tcp.len > 0"\n...\ncheck filter "!tcp.analysis.flags"'
    assert problems(text, conversation, outcome) == []
    assert problems('C>S SYN where "tcp.len > 0"\n...', conversation, outcome) == [
        'segment 1 (frame 1): expected `C>S SYN where "tcp.len > 0"` (line 1), wire `C>S SYN seq=0 ack=None len=0`\n'
        '    where: tshark says frame 1 does not match "tcp.len > 0" (tcp.len=0)']
    assert problems('check filter "tcp.len > 0"', conversation, outcome)[:1] == [
        '`check filter` (line 1): tshark says frame 1 does not match "tcp.len > 0" (tcp.len=0)']


def test_a_filter_nobody_evaluated_or_tshark_refused_is_one_line_for_its_own_steps_only():
    conversation = conv_of(tcp(HANDSHAKE))
    assert problems('check filter "tcp"\ncheck handshake', conversation) == [
        '`check filter` (line 1): filter "tcp" was not evaluated (no tshark dissection was run)']
    refused = {"tcp": "tshark is not here"}
    assert problems('check filter "tcp"', conversation, refused) == [
        '`check filter` (line 1): filter "tcp" could not be evaluated: tshark is not here']
    spec = Expectation.parse('C>S SYN where "a"\n...\ncheck filter "b"\ncheck filter "a"')
    assert spec.filter_expressions == ["a", "b"]


@pytest.mark.parametrize("text, message", [
    ('C>S stream begins "x"', "<string>:1:12: a stream rule is `C>S stream OP \"TEXT\"`"),
    ("C>S stream contains x", "<string>:1:21: stream contains takes one quoted string"),
    ("check filter tcp", "<string>:1:14: check filter takes one quoted string"),
    ('C>S ACK where tcp', "<string>:1:15: where takes one quoted string"),
    ("conversations tcp", "<string>:1:1: a conversations rule needs count=N or each=SPEC"),
    ("conversations tcp count=x", "<string>:1:19: count is count=N, count>=N or count<=N"),
    ("conversations tcp port=80 count=1", "<string>:1:19: expected tcp, udp, to=PORT, count=N, each=SPEC"),
    ("capture everything", "<string>:1:9: a capture rule is `capture no-rst` or `capture answered [to=PORT]`"),
    ("conversations each=nonesuch", "<string>:1: no expectation 'nonesuch'"),
])
def test_rule_errors_name_the_line_and_column(text, message):
    with pytest.raises(SpecError) as error:
        Expectation.parse(text)
    assert str(error.value).startswith(message)
