"""harness explain: the walk-through in the lab report's manner, in English and Chinese. Every number
it states about a frame is that frame's (or, where it derives an ACK, the segment acknowledged);
both languages state the same numbers; TCP states follow RFC 9293; what it cannot explain it names."""
import re

import pytest

from harness.analysis.pipeline import analyse
from harness.analysis.tcp_states import tcp_states
from harness.cli import main
from harness.render import i18n
from harness.render.explain import explain, frame_analysis
from harness.wire.tcp_options import parse_tcp_options

from support import REPO

LAB = REPO / "captures" / "lab"
CORPUS = REPO / "captures" / "corpus"
FRAME = {"en": re.compile(r"^Frame (\d+): "), "zh": re.compile(r"^第 (\d+) 帧：")}


def paragraphs_by_frame(text, language):
    found = {}
    for paragraph in text.split("\n\n"):
        match = FRAME[language].match(paragraph)
        if match:
            found[int(match.group(1))] = paragraph
    return found


def numbers(paragraph):
    return sorted(int(n) for n in re.findall(r"\d+", paragraph.replace("2MSL", "")
                                             .replace("FIN_WAIT_1", "").replace("FIN_WAIT_2", "")))


def allowed_numbers(conversation, index):
    segment = conversation.segments[index]
    allowed = {segment.packet.frame, 0, 1, segment.length, segment.packet.seq, segment.packet.window}
    for value in (segment.rel_seq, segment.rel_ack):
        if value is not None:
            allowed |= {value, value - 1, value + segment.length, value + segment.length + 1,
                        value + segment.length - 1}
    options = parse_tcp_options(segment.packet.options)
    allowed |= {options.mss or 0, options.wscale or 0, 1 << (options.wscale or 0)}
    if index:
        previous = conversation.segments[index - 1]
        allowed |= {previous.length, previous.rel_seq or 0, (previous.rel_seq or 0) + previous.length}
    allowed |= {conversation.zeek.orig.payload_bytes, conversation.resp.port}
    return allowed


CAPTURES = [LAB / "tcp-lab.pcapng", LAB / "tcp-broken-server.pcapng", LAB / "udp-lab.pcapng",
            CORPUS / "lossy-router-r1.pcapng", CORPUS / "http11-keepalive-client-close.pcapng",
            CORPUS / "closed-port.pcapng", CORPUS / "udp-unreachable.pcapng"]


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_number_said_of_a_frame_is_read_off_the_wire(path, language):
    for conversation in analyse(path).conversations:
        said = paragraphs_by_frame(explain(conversation, language), language)
        assert set(said) >= {s.packet.frame for s in conversation.segments}
        for index, segment in enumerate(conversation.segments):
            stray = set(numbers(said[segment.packet.frame])) - allowed_numbers(conversation, index)
            if parse_tcp_options(segment.packet.options).first(5) is not None:
                continue          # SACK edges: test_sack_blocks_are_the_peers_relative_bytes
            assert not stray, (segment.packet.frame, stray, said[segment.packet.frame])


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_both_languages_state_the_same_numbers(path):
    for conversation in analyse(path).conversations:
        english = paragraphs_by_frame(explain(conversation, "en"), "en")
        chinese = paragraphs_by_frame(explain(conversation, "zh"), "zh")
        assert english.keys() == chinese.keys()
        for frame in english:
            assert set(numbers(english[frame])) == set(numbers(chinese[frame])), (english[frame], chinese[frame])


def test_the_lab_walk_through_says_what_the_report_says():
    text = explain(analyse(LAB / "tcp-lab.pcapng").conversations[0], "en")
    said = paragraphs_by_frame(text, "en")
    assert said[1].startswith("Frame 1: the client sends a SYN (SYN=1) to open a connection. Its sequence number is 0")
    assert "advertises a window of 65495 bytes" in said[1] and "MSS 65495" in said[1]
    assert "ACK=1 acknowledges the client's SYN" in said[2]
    assert "The three-way handshake is complete. Both sides are now ESTABLISHED." in said[3]
    assert 'the client sends 2 bytes ("yp"), bytes 1 to 2 of its stream (seq=1)' in said[4]
    assert "the server acknowledges the client's 2 bytes with ACK=3: seq 1 plus 2" in said[5]
    assert 'the server sends 11 bytes ("thank you !")' in said[6]
    assert "acknowledges the server's 11 bytes with ACK=12: seq 1 plus 11" in said[7]
    assert "the server sends FIN (FIN=1): it has nothing more to send. A FIN takes one sequence number, seq=12" in said[8]
    assert "ACK=13: its seq 12 plus one" in said[9]
    assert "The server is now TIME_WAIT" in said[10] and "The client is now CLOSED." in said[11]
    assert [line for line in text.splitlines() if line.startswith("## ")] == [
        "## Handshake, frames 1 to 3: the connection is set up.",
        "## Data, frames 4 to 7: the two sides exchange bytes and acknowledge them.",
        "## Teardown, frames 8 to 11: the connection is closed."]
    chinese = paragraphs_by_frame(explain(analyse(LAB / "tcp-lab.pcapng").conversations[0], "zh"), "zh")
    assert chinese[1].startswith("第 1 帧：客户端生成一个 SYN 为 1 的 TCP 包并发送出去")
    assert "返回 ACK=3 的确认包" in chinese[5] and "返回 ACK=12 的确认包" in chinese[7]
    assert "表示它没有数据要发送了" in chinese[8]


def test_the_broken_server_the_udp_lab_and_a_mid_connection_capture():
    broken = explain(analyse(LAB / "tcp-broken-server.pcapng").conversations[0], "en")
    assert "Frame 6: the server resets the connection (RST=1)" in broken
    assert "## Reset, frame 6: the connection is aborted, not closed." in broken
    assert "It came after 2 bytes from the client and no reply" in broken
    udp = explain(analyse(LAB / "udp-lab.pcapng").conversations[0], "en")
    assert "UDP sets up no connection: no handshake, no acknowledgments, no teardown" in udp
    assert 'Frame 3: the client sends a datagram of 5 bytes ("nihao").' in udp
    assert udp.rstrip().endswith("Datagrams in all: 2 from the client, 2 from the server.")
    from harness.analysis.tracker import conversations
    from support.packets import LAB_DATA, tcp
    (mid,) = conversations(tcp(LAB_DATA))
    assert "The capture began mid-connection: it holds no handshake" in explain(mid, "en")


def test_retransmissions_and_sack_are_named_as_tshark_names_them():
    conversation = analyse(CORPUS / "lossy-router-r1.pcapng").conversations[0]
    verdicts = frame_analysis(conversation)
    said = paragraphs_by_frame(explain(conversation, "en"), "en")
    retransmitted = [frame for frame, verdict in verdicts.items() if verdict == "retransmission"]
    assert retransmitted
    assert conversation.tshark.orig.retransmissions + conversation.tshark.resp.retransmissions == len(retransmitted)
    assert all(said[frame].startswith(f"Frame {frame}: a retransmission") for frame in retransmitted)
    assert "Its SACK option says the server's bytes 1449-2896 arrived past a gap" in said[11]


def test_tcp_states_follow_rfc_9293_for_each_close():
    http = analyse(CORPUS / "http11-keepalive-client-close.pcapng").conversations[0]
    states = [(s.client, s.server) for s in tcp_states(http)]
    assert states[-3:] == [("FIN_WAIT_1", "CLOSE_WAIT"), ("TIME_WAIT", "LAST_ACK"), ("TIME_WAIT", "CLOSED")]
    lab = analyse(LAB / "tcp-lab.pcapng").conversations[0]
    assert [(s.client, s.server) for s in tcp_states(lab)][:3] == [
        ("SYN_SENT", "LISTEN"), ("ESTABLISHED", "SYN_RECEIVED"), ("ESTABLISHED", "ESTABLISHED")]


def test_every_message_has_its_chinese_with_the_same_fields():
    import string
    english = i18n.catalogue("en")
    chinese = i18n.read_po((i18n.LOCALE_DIR / "zh" / "LC_MESSAGES" / "harness.po").read_text(encoding="utf-8"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("update_catalogues", REPO / "scripts" / "update_catalogues.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for message, _where in module.marked_messages():
        assert message in chinese, message
        fields = {name for _, name, _, _ in string.Formatter().parse(message) if name}
        assert {name for _, name, _, _ in string.Formatter().parse(chinese[message]) if name} == fields, message
        assert english.gettext(message) == message


def test_the_language_comes_from_the_locale_unless_asked():
    assert i18n.default_language({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert i18n.default_language({"LANGUAGE": "fr:zh", "LANG": "fr_FR.UTF-8"}) == "zh"
    assert i18n.default_language({"LANG": "de_DE.UTF-8"}) == "en"
    assert i18n.default_language({"LC_ALL": "C"}) == "en"
    assert i18n.default_language({}) == "en"


def test_the_command(capsys, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert main(["explain", str(LAB / "udp-lab.pcapng")]) == 0
    assert capsys.readouterr().out.startswith("会话 1：客户端 127.0.0.1:")
    assert main(["explain", str(LAB / "udp-lab.pcapng"), "--lang", "en"]) == 0
    assert capsys.readouterr().out.startswith("Conversation 1: UDP between the client 127.0.0.1:")


def test_a_refused_connection_is_said_to_be_refused_not_set_up():
    conversation = analyse(CORPUS / "closed-port.pcapng").conversations[0]
    text = explain(conversation, "en")
    port = conversation.resp.port
    assert "## Handshake, frame 1: the client asks for a connection, which is never set up." in text
    assert (f"Frame 2: the server's host answers the SYN with RST (RST=1): the connection is refused, because "
            f"nothing listens on port {port}. The client is now CLOSED.") in text
    assert "server is now" not in text and "set up." not in text.replace("never set up.", "")
