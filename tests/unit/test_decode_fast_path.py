"""decode()'s fast path (untagged Ethernet, optionless IPv4, TCP) against the layer-by-layer decoder.

decode() reads such frames with one unpack and falls back to harness.wire.decode._decode_layers for
anything its checks do not accept. The property: for any frame, decode() and _decode_layers give
the same Packet, or raise the same error (type and message), or both give None. The frames are
valid Ethernet/IPv4/TCP frames with every header field the fast path looks at drawn from values
around its boundaries, then possibly cut or padded, and with a wire length that may lie.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness.wire.decode
from support import pcapbuild as pb
from harness.wire.decode import PacketDecodeError, _decode_layers, decode
from harness.wire.reader import Record

EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "200")) * 5

SYN_OPTIONS = b"\x02\x04\xff\xd7\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x0a"


def outcome(call):
    try:
        return "packet", call()
    except PacketDecodeError as error:
        return type(error).__name__, str(error)


MUTATIONS = ["data_offset", "proto", "total_length", "ihl", "fragment", "version", "ethertype", "cut", "origlen"]


@st.composite
def ethernet_ipv4_tcp_frames(draw):
    """Mostly frames the fast path takes; each of the rest has one or two of its checks' fields changed."""
    mutated = set(draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2)) if draw(st.booleans()) else ())

    def maybe(name, values, natural=None):
        return draw(st.sampled_from(values)) if name in mutated else natural

    flags = draw(st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x00, 0xFF]))
    options = draw(st.sampled_from([b"", SYN_OPTIONS, SYN_OPTIONS[:8], b"\x01\x01\x08\x0a" + bytes(8)]))
    payload = draw(st.binary(max_size=40))
    segment = pb.tcp(draw(st.integers(0, 65535)), draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)),
                     draw(st.integers(0, 2**32 - 1)), flags, draw(st.integers(0, 65535)), options, payload,
                     data_offset=maybe("data_offset", list(range(16))))
    natural = 20 + len(segment)
    header_end = natural - len(payload)      # where the TCP header ends, as the IP length counts
    packet = pb.ipv4(draw(st.sampled_from(["10.0.0.1", "127.0.0.1", "0.0.0.0"])), "10.0.0.2",
                     maybe("proto", [17, 1, 0], 6), segment,
                     total_length=maybe("total_length", [0, 19, 20, 39, 40, 41, header_end - 4, header_end - 1,
                                                         header_end, natural - 1, natural + 1, natural + 100,
                                                         65535]),
                     ihl=maybe("ihl", [0, 4, 6, 15]),
                     fragment_offset=maybe("fragment", [0, 8, 1480, 32768, 65528], 0),
                     more_fragments=draw(st.booleans()),
                     version=maybe("version", [0, 6, 15], 4))
    frame = pb.ether(packet, ethertype=maybe("ethertype", [0x86DD, 0x8100, 0x0806, 0x0000], 0x0800))
    frame = frame[:maybe("cut", list(range(0, 60)) + [len(frame) - 1], len(frame))]
    frame += bytes(draw(st.sampled_from([0, 0, 6])))      # Ethernet padding of short frames
    origlen = len(frame) + maybe("origlen", [1, 100, -1], 0)
    return frame, origlen


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ethernet_ipv4_tcp_frames(), st.sampled_from([1, 1, 1, 113, 101]))
def test_the_fast_path_decodes_as_the_layers_do(frame_and_origlen, linktype):
    frame, origlen = frame_and_origlen
    record = Record(linktype, 1700000000.25, len(frame), origlen, frame, 0, ())
    if origlen < len(frame):
        assert outcome(lambda: decode(record, 3))[0] == "PacketDecodeError"
        return
    assert outcome(lambda: decode(record, 3)) == outcome(lambda: _decode_layers(linktype, 1700000000.25, origlen,
                                                                                frame, 3))


def test_the_fast_path_is_taken_for_a_plain_segment(monkeypatch):
    def not_expected(*args):
        raise AssertionError("the layer-by-layer decoder was asked")

    monkeypatch.setattr(harness.wire.decode, "_decode_layers", not_expected)
    frame = pb.ether(pb.ipv4(payload=pb.tcp(flags=0x02, options=SYN_OPTIONS, payload=b"hi")))
    packet = decode(Record(1, 2.5, len(frame), len(frame) + 4, frame, 0, ()), 1)
    assert (packet.payload, packet.mss, packet.wscale, packet.flags) == (b"hi", 65495, 10, 0x02)
