"""The ladder as SVG: well-formed, one arrow per segment with the ladder's labels, hostile text escaped."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.analysis.tracker import conversations
from harness.render.ladder import segment_label as ladder_label
from harness.render.svg import render_svg, render_svg_all
from harness.analysis.pipeline import analyse

from support.packets import HANDSHAKE, LAB_DATA, FOUR_WAY_SERVER_FIRST, START_NS, renumber, tcp, udp
from support import REPO

LAB = REPO / "captures" / "lab"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = b'<script>&"'


def parse(document: str) -> ET.Element:
    root = ET.fromstring(document.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, css_class: str):
    return [g for g in root.iter(f"{SVG}g") if css_class in g.get("class", "").split()]


def texts(element: ET.Element, css_class: str):
    return [t.text for t in element.iter(f"{SVG}text") if css_class in t.get("class", "").split()]


def arrow_line(group: ET.Element):
    (line,) = group.iter(f"{SVG}line")
    return float(line.get("x1")), float(line.get("x2"))


def lab_conversation(name: str = "tcp-lab"):
    (conversation,) = analyse(LAB / f"{name}.pcapng").conversations
    return conversation


def test_tcp_lab_has_one_arrow_per_segment_with_the_ladders_labels():
    conversation = lab_conversation()
    root = parse(render_svg(conversation, "captures/lab/tcp-lab.pcapng"))
    arrows = groups(root, "segment")
    assert len(arrows) == 11
    assert [int(g.get("data-frame")) for g in arrows] == list(range(1, 12))
    labels = [texts(g, "label")[0] for g in arrows]
    assert labels == [ladder_label(s, conversation.proto) for s in conversation.segments]
    assert labels[0].split() == ["SYN", "seq=0", "ack=-", "len=0"]
    assert labels[3].split() == ["PSH,", "ACK", "seq=1", "ack=1", "len=2", "b'yp'"]
    assert labels[5].endswith("len=11 b'thank you !'")
    assert [texts(g, "time")[0] for g in arrows][0] == "0.000000"
    # Client to server runs left to right, replies right to left.
    for group, segment in zip(arrows, conversation.segments):
        start, end = arrow_line(group)
        assert (start < end) == segment.is_orig
    assert texts(root, "endpoint") == [f"client {conversation.orig}", f"server {conversation.resp}"]
    assert texts(root, "pcap") == ["pcap: captures/lab/tcp-lab.pcapng"]


def test_udp_labels_are_the_ladders():
    root = parse(render_svg(lab_conversation("udp-lab")))
    labels = [texts(g, "label")[0] for g in groups(root, "segment")]
    assert labels == ["UDP len=2 b'YP'", "UDP len=11 b'thank you !'", "UDP len=5 b'nihao'",
                      "UDP len=11 b'thank you !'"]


def test_hostile_payload_note_title_and_path_are_escaped():
    (conversation,) = conversations(tcp(HANDSHAKE + [("C", "PA", HOSTILE)]))
    note = 'FAIL: expected "yp", got <script>&" \x00\x1b'
    document = render_svg(conversation, pcap='/tmp/<evil>&"pcap', notes={4: note}, title="<b>&'")
    assert "<script" not in document and "<evil>" not in document and "<b>" not in document
    root = parse(document)
    (label,) = texts(groups(root, "segment")[3], "label")
    assert label.endswith(f"len={len(HOSTILE)} {HOSTILE!r}") and "<script>&\"" in label
    assert texts(root, "note") == ['FAIL: expected "yp", got <script>&" \\x00\\x1b']
    assert texts(root, "pcap") == ['pcap: /tmp/<evil>&"pcap']
    assert texts(root, "title") == ["<b>&'"]


def test_notes_are_green_when_ok_and_red_otherwise_and_their_rows_are_marked():
    conversation = lab_conversation()
    root = parse(render_svg(conversation, notes={1: "ok: step 1 `C>S SYN seq=0`", 6: "FAIL: no reply",
                                                 7: "okay? no: starts with ok, so green", 99: "not a frame here"}))
    arrows = {int(g.get("data-frame")): g for g in groups(root, "segment")}
    colours = {}
    for frame, group in arrows.items():
        for text in group.iter(f"{SVG}text"):
            if "note" in text.get("class", "").split():
                colours[frame] = (text.get("class"), text.get("fill"), text.text)
    assert colours == {1: ("note ok", "#1a7f37", "ok: step 1 `C>S SYN seq=0`"),
                       6: ("note fail", "#cf222e", "FAIL: no reply"),
                       7: ("note ok", "#1a7f37", "okay? no: starts with ok, so green")}
    tinted = {frame for frame, group in arrows.items() if any(r.get("class") == "verdict" for r in group.iter(f"{SVG}rect"))}
    assert tinted == {1, 6, 7}


def test_retransmissions_are_dashed():
    packets = tcp(HANDSHAKE + [("C", "PA", b"yp")])
    (conversation,) = conversations(renumber(packets + [packets[-1]]))
    root = parse(render_svg(conversation))
    arrows = groups(root, "segment")
    assert [("retransmitted" in g.get("class"), "stroke-dasharray" in next(g.iter(f"{SVG}line")).attrib)
            for g in arrows] == [(False, False)] * 4 + [(True, True)]
    assert texts(arrows[-1], "label")[0].endswith("[retransmission] b'yp'")


def test_icmp_unreachable_is_its_own_kind_of_arrow_from_the_server():
    (conversation,) = conversations(udp([("C", b"YP")]))
    conversation.unreachable.append((2, START_NS + 500_000_000))
    root = parse(render_svg(conversation))
    assert len(groups(root, "segment")) == 1
    (unreachable,) = groups(root, "unreachable")
    assert unreachable.get("data-frame") == "2" and texts(unreachable, "label") == ["ICMP port unreachable"]
    assert texts(unreachable, "time") == ["0.500000"]
    start, end = arrow_line(unreachable)
    assert start > end


def test_long_labels_widen_the_diagram_instead_of_being_cut():
    payload = bytes(range(24))     # every byte escaped: the longest label the ladder makes
    (conversation,) = conversations(tcp(HANDSHAKE + [("C", "PA", payload)]))
    root = parse(render_svg(conversation))
    last = groups(root, "segment")[-1]
    assert texts(last, "label")[0] == ladder_label(conversation.segments[-1], conversation.proto)
    start, end = arrow_line(last)
    assert end - start > len(texts(last, "label")[0]) * 11 * 0.6
    assert float(root.get("width")) >= 900


def test_all_conversations_stack_in_one_document():
    udp_conversation, tcp_conversation = lab_conversation("udp-lab"), lab_conversation()
    root = parse(render_svg_all([udp_conversation, tcp_conversation], "two captures",
                                notes={3: "ok: frame 3 of each"}))
    # The states' column beside the server's lifeline and the note widen it; the legend adds its lines.
    assert 900 < float(root.get("width")) < 1100 and 500 < float(root.get("height")) < 800
    diagrams = groups(root, "conversation")
    assert [len(groups(d, "segment")) for d in diagrams] == [4, 11]
    headings = [float(t.get("y")) for t in root.iter(f"{SVG}text") if t.get("class") == "heading"]
    last_row_of_first = max(float(t.get("y")) for t in diagrams[0].iter(f"{SVG}text"))
    assert headings[0] < last_row_of_first < headings[1]
    assert len(texts(root, "note")) == 2


def test_conversation_without_kept_segments_and_empty_list_still_render():
    (summary_only,) = conversations(tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST), keep_segments=False)
    root = parse(render_svg(summary_only))
    assert not groups(root, "segment") and len(groups(root, "conversation")) == 1
    parse(render_svg_all([]))


def test_phases_states_and_the_legend_explain_the_picture():
    conversation = lab_conversation()
    root = parse(render_svg(conversation))
    assert [(g.get("data-phase"), texts(g, "phase-name")) for g in groups(root, "phase")] == [
        ("handshake", ["handshake"]), ("data", ["data"]), ("teardown", ["teardown"])]
    by_frame = {int(g.get("data-frame")): g for g in groups(root, "segment")}
    client = {frame: texts(g, "client") for frame, g in by_frame.items() if texts(g, "client")}
    server = {frame: texts(g, "server") for frame, g in by_frame.items() if texts(g, "server")}
    assert client == {1: ["SYN_SENT"], 2: ["ESTABLISHED"], 8: ["CLOSE_WAIT"], 10: ["LAST_ACK"], 11: ["CLOSED"]}
    assert server == {2: ["SYN_RECEIVED"], 3: ["ESTABLISHED"], 8: ["FIN_WAIT_1"], 9: ["FIN_WAIT_2"],
                      10: ["TIME_WAIT"]}
    assert texts(root, "initial") == ["CLOSED", "LISTEN"]
    (legend,) = groups(root, "legend")
    flags = [text.split()[0] for text in texts(legend, "legend-flag")]
    assert flags == ["SYN", "ACK", "PSH", "FIN", "RST"]
    assert any("relative" in text for text in texts(legend, "legend-note"))
    # Client states sit left of its lifeline, server states right of theirs, notes beyond them.
    client_x = float(next(root.iter(f"{SVG}line")).get("x1"))
    for text in root.iter(f"{SVG}text"):
        if "client" in text.get("class", "").split() and "state" in text.get("class", ""):
            assert float(text.get("x")) < client_x and text.get("text-anchor") == "end"


def test_udp_has_no_phases_nor_states_but_the_legend():
    root = parse(render_svg(lab_conversation("udp-lab")))
    assert not groups(root, "phase") and not texts(root, "state") and len(groups(root, "legend")) == 1
