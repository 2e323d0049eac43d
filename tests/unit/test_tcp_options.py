"""TCP options as harness.wire.tcp_options reads them, from hand-made bytes and from a real capture."""
from harness.analysis.pipeline import analyse
from harness.wire.tcp_options import MSS, TIMESTAMPS, TcpOption, parse_tcp_options

from support import REPO
from support.packets import syn_options


def test_linux_syn_options_read_and_written_as_packetdrill_writes_them():
    options = parse_tcp_options(syn_options(65495, 7, ts_val=109693791, ts_ecr=0))
    assert options.describe() == "<mss 65495,sackOK,TS val 109693791 ecr 0,nop,wscale 7>"
    assert (options.mss, options.wscale, options.sack_permitted, options.timestamps, options.complete) == \
        (65495, 7, True, (109693791, 0), True)


def test_sack_blocks_eol_and_unknown_kinds():
    raw = bytes([1, 1, 5, 18]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + \
        (10).to_bytes(4, "big") + (20).to_bytes(4, "big") + bytes([30, 4, 0xAB, 0xCD, 0, 0, 0])
    options = parse_tcp_options(raw)
    assert options.describe() == "<nop,nop,sack 1:2 10:20,opt30 abcd,eol>"
    assert options.complete


def test_a_list_cut_short_keeps_what_came_before_and_says_so():
    cut = syn_options()[:9]            # mss, sackOK, then 3 of the timestamps' 10 bytes
    options = parse_tcp_options(cut)
    assert [item.kind for item in options.items] == [MSS, 4] and not options.complete
    assert not parse_tcp_options(bytes([2, 1, 0, 0])).complete    # a length below 2


def test_a_known_kind_with_the_wrong_length_is_kept_raw():
    options = parse_tcp_options(bytes([2, 3, 5]) + bytes([8, 10]) + bytes(8))
    assert options.items == (TcpOption(MSS, b"\x05"), TcpOption(TIMESTAMPS, (0, 0)))
    assert options.mss is None


def test_the_lab_capture_keeps_every_segments_options():
    conversation = analyse(REPO / "captures" / "lab" / "tcp-lab.pcapng").conversations[0]
    described = [parse_tcp_options(segment.packet.options).describe() for segment in conversation.segments]
    assert described[0].startswith("<mss 65495,sackOK,TS val ") and described[0].endswith(" ecr 0,nop,wscale 10>")
    assert all(text.startswith("<nop,nop,TS val ") for text in described[2:])
