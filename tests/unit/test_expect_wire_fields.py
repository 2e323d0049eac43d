"""Steps that say more about a segment: its window (scaled as Wireshark scales it), its TCP options
(one by one, or the whole list as packetdrill writes it), and when it came. Each construct passes
on the wire it describes and fails, saying why, on one it does not."""
import subprocess

import pytest

from harness.analysis.expect import Expectation, SpecError
from harness.analysis.expect._model import contexts
from harness.analysis.pipeline import analyse
from harness.analysis.tracker import conversations

from support import REPO, needs
from support.packets import HANDSHAKE, LAB_DATA, MILLISECOND, START_NS, syn_options, tcp

LAB_CAPTURE = REPO / "captures" / "lab" / "tcp-lab.pcapng"


def conv_of(packets):
    (conversation,) = conversations(packets)
    return conversation


def problems(text, conversation):
    return [str(problem) for problem in Expectation.parse(text).problems(conversation)]


def test_win_is_the_window_scaled_by_the_senders_shift_once_both_syns_carried_one():
    # Both SYNs carry wscale 7 (the builder's Linux options): after them, 64 means 64 << 7.
    conversation = conv_of(tcp(HANDSHAKE + [("C", "PA", b"yp", {"window": 64})]))
    assert problems("C>S SYN win=65483\n...\nC>S PSH,ACK win=8192", conversation) == []
    (problem,) = problems("C>S SYN\n...\nC>S PSH,ACK win=64", conversation)
    assert "    win: expected 64, wire 8192 (field 64, scaled)" in problem


def test_win_is_the_field_itself_when_a_syn_had_no_window_scale_or_was_not_captured():
    unscaled = conv_of(tcp([("C", "S", b"", {"wscale": None, "options": syn_options(wscale=None)}),
                            *HANDSHAKE[1:], ("C", "PA", b"yp", {"window": 64})]))
    assert problems("C>S SYN\n...\nC>S PSH,ACK win=64", unscaled) == []
    mid_stream = conv_of(tcp(LAB_DATA, first_frame=4))
    assert [c.window for c in contexts(mid_stream)] == [65483] * 4


def test_options_one_by_one_and_as_a_list():
    conversation = conv_of(tcp(HANDSHAKE))
    assert problems("C>S SYN mss=65495 wscale=7 sackOK TS <mss 65495,sackOK,TS val * ecr 0,nop,wscale 7>\n...",
                    conversation) == []
    assert problems("C>S SYN mss=* wscale=*\n...", conversation) == []
    bare = conv_of(tcp([("C", "S", b"", {"mss": None, "wscale": None, "options": b""}), *HANDSHAKE[1:]]))
    (problem,) = problems("C>S SYN mss=* sackOK TS <mss 65495>\n...", bare)
    assert problem.splitlines()[1:] == [
        "    mss: expected the option, the wire has none",
        "    sackOK: expected the SACK-permitted option, the wire has none",
        "    TS: expected the timestamps option, the wire has none",
        "    options: expected <mss 65495>, wire <>"]
    (problem,) = problems("C>S SYN mss=1460 wscale=9 <mss 65495,sackOK,TS val 5 ecr 0,nop,wscale 7>\n...",
                          conversation)
    assert problem.splitlines()[1:] == [
        "    mss: expected 1460, wire 65495", "    wscale: expected 9, wire 7",
        "    options: expected <mss 65495,sackOK,TS val 5 ecr 0,nop,wscale 7>, "
        "wire <mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7>"]


def test_after_bounds_the_time_since_the_segment_before():
    steps = HANDSHAKE + [("C", "PA", b"yp", {"time_ns": START_NS + 2 * MILLISECOND}),
                         ("S", "PA", b"ok", {"time_ns": START_NS + 42 * MILLISECOND})]
    conversation = conv_of(tcp(steps))
    assert problems("C>S SYN\n...\nS>C PSH,ACK after<=50ms", conversation) == []
    assert problems("C>S SYN\n...\nS>C PSH,ACK after=40ms~1ms", conversation) == []
    assert problems("C>S SYN\n...\nS>C PSH,ACK after>1s", conversation) == [
        "no segment left for step `S>C PSH,ACK after>1s` (line 3); the nearest, segment 5 (frame 5) "
        "`S>C PSH, ACK seq=1 ack=3 len=2`, differs:\n"
        "    time: expected after>1s, wire after 40.000 ms"]
    exact = "C>S SYN\nS>C SYN,ACK\nC>S ACK\nC>S PSH,ACK after>=1ms\nS>C PSH,ACK after=40ms~0ns"
    assert problems(exact, conversation) == [
        "segment 4 (frame 4): expected `C>S PSH,ACK after>=1ms`, wire `C>S PSH, ACK seq=1 ack=1 len=2`\n"
        "    time: expected after>=1ms, wire after 0.0 us"]
    (problem,) = problems("C>S SYN after<1s\n...", conversation)
    assert "time: expected after<1s, but it is the conversation's first segment" in problem


def test_udp_steps_take_after_but_no_tcp_fields():
    from support.packets import udp
    conversation = conv_of(udp([("C", b"hello"), ("S", b"HELLO")]))
    assert problems("C>S UDP len=5\nS>C UDP after<=2ms", conversation) == []
    with pytest.raises(SpecError, match=r"<string>:1:15: a UDP step has no win"):
        Expectation.parse("C>S UDP len=5 win=3")


def test_the_lab_capture_described_with_every_new_construct():
    conversation = analyse(LAB_CAPTURE).conversations[0]
    text = ("C>S SYN seq=0 win=65495 mss=65495 sackOK TS wscale=10 <mss 65495,sackOK,TS val * ecr 0,nop,wscale 10>\n"
            "S>C SYN,ACK win=65483 <mss 65495,sackOK,TS val * ecr *,nop,wscale 10> after<=1s\n"
            "C>S ACK win=65536 <nop,nop,TS val * ecr *>\n"
            "...\n")
    assert problems(text, conversation) == []
    assert problems(text.replace("win=65536", "win=64"), conversation)


def test_scaled_windows_agree_with_tsharks_calculated_window_size():
    paths = [LAB_CAPTURE, *sorted((REPO / "captures" / "corpus").glob("*.pcap*"))]
    for path in paths:
        done = subprocess.run([needs.tool("tshark"), "-2", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields",
                               "-e", "frame.number", "-e", "tcp.window_size"],
                              capture_output=True, text=True, timeout=120, check=True)
        theirs = dict(line.split("\t") for line in done.stdout.splitlines() if "\t" in line)
        for conversation in analyse(path).conversations:
            for segment, context in zip(conversation.segments, contexts(conversation)):
                if conversation.proto == 6 and str(segment.packet.frame) in theirs:
                    assert (path.name, segment.packet.frame, context.window) == \
                        (path.name, segment.packet.frame, int(theirs[str(segment.packet.frame)]))


def test_max_gap_bounds_every_pause_of_the_conversation():
    steps = HANDSHAKE + [("C", "PA", b"yp", {"time_ns": START_NS + 2 * MILLISECOND}),
                         ("S", "PA", b"ok", {"time_ns": START_NS + 1502 * MILLISECOND})]
    conversation = conv_of(tcp(steps))
    assert problems("check max-gap=2s", conversation) == []
    assert problems("check max-gap=1s", conversation) == [
        "max-gap: 1.500 s passed between frame 4 and frame 5, more than 1 s"]
    assert Expectation.parse("C>S UDP\ncheck max-gap=500ms").proto == "udp"
    with pytest.raises(SpecError, match=r"<string>:1:7: max-gap takes a time with its unit"):
        Expectation.parse("check max-gap=1")
