"""IP fragment reassembly as Zeek does it (harness.wire.fragments): in order, out of order, overlapping,
duplicated, never completed, timed out, bounded in memory."""
from __future__ import annotations

import struct

from support import pcapbuild as pb
from harness.wire.checksum import ipv4_header_valid
from harness.wire.fragments import FRAGMENT_TIMEOUT, Fragment, Reassembler

SECOND = 10**9
START = 1_700_000_000 * SECOND


def fragment(offset, payload, more=True, ident=1, time_ns=START, frame=1, header=None):
    header = header or pb.ipv4(proto=17)[:20]
    return Fragment(4, "10.0.0.1", "10.0.0.2", ident, offset, more, header, 9, 17, payload, frame, time_ns)


def test_in_order_fragments_complete_at_the_last_one():
    reassembler = Reassembler()
    first, second = fragment(0, b"a" * 16, frame=1), fragment(16, b"b" * 8, more=False, frame=2)
    assert reassembler.add(first) is None and len(reassembler) == 1
    done = reassembler.add(second)
    assert done.frames == (1, 2) and done.datagram[20:] == b"a" * 16 + b"b" * 8
    assert struct.unpack_from("!HH", done.datagram, 2)[0] == 44
    assert done.datagram[6] & 0x3F == 0 and done.datagram[7] == 0          # no longer a fragment
    assert ipv4_header_valid(done.datagram[:20])
    assert len(reassembler) == 0 and reassembler.pending_bytes == 0


def test_out_of_order_fragments_complete_when_the_hole_fills():
    reassembler = Reassembler()
    assert reassembler.add(fragment(16, b"c" * 8, more=False, frame=1)) is None
    assert reassembler.add(fragment(8, b"b" * 8, frame=2)) is None
    done = reassembler.add(fragment(0, b"a" * 8, frame=3))
    assert done.datagram[20:] == b"a" * 8 + b"b" * 8 + b"c" * 8 and done.frames == (1, 2, 3)


def test_data_held_first_wins_an_overlap_and_a_duplicate_adds_nothing():
    reassembler = Reassembler()
    reassembler.add(fragment(8, b"B" * 16))
    held = reassembler.pending_bytes
    assert reassembler.add(fragment(8, b"X" * 16)) is None and reassembler.pending_bytes == held
    done = reassembler.add(fragment(0, b"a" * 32, more=False))      # overlaps the middle, fills both ends
    assert done.datagram[20:] == b"a" * 8 + b"B" * 16 + b"a" * 8


def test_a_fragment_reaching_past_the_last_one_extends_the_datagram():
    reassembler = Reassembler()
    assert reassembler.add(fragment(8, b"b" * 8)) is None           # reaches to 16...
    done = reassembler.add(fragment(0, b"a" * 8, more=False))       # ...though the last says 8
    assert done.datagram[20:] == b"a" * 8 + b"b" * 8


def test_contiguous_data_past_the_end_with_a_hole_beyond_is_the_datagram():
    reassembler = Reassembler()
    reassembler.add(fragment(32, b"z" * 8))                         # beyond a hole
    done = reassembler.add(fragment(0, b"a" * 16, more=False))
    assert done.datagram[20:] == b"a" * 16                           # Zeek analyses the contiguous part


def test_a_fragment_of_another_datagram_does_not_mix_in():
    reassembler = Reassembler()
    reassembler.add(fragment(0, b"a" * 8, ident=1))
    assert reassembler.add(fragment(8, b"b" * 8, more=False, ident=2)) is None
    assert len(reassembler) == 2
    assert reassembler.add(fragment(8, b"c" * 8, more=False, ident=1)).datagram[20:] == b"a" * 8 + b"c" * 8


def test_a_datagram_never_completed_is_reported_when_the_capture_ends():
    reassembler = Reassembler()
    reassembler.add(fragment(0, b"a" * 8, frame=3))
    reassembler.add(fragment(16, b"c" * 8, more=False, frame=5))
    (dropped,) = reassembler.finish()
    assert dropped.frames == (3, 5) and (dropped.held, dropped.size) == (16, 24)
    assert dropped.describe() == ("frames 3, 5: IPv4 datagram 10.0.0.1 -> 10.0.0.2 id 0x1 never completed "
                                  "(16 of 24 bytes); not analysed")
    assert len(reassembler) == 0 and reassembler.finish() == []


def test_a_datagram_not_completed_within_the_timeout_is_dropped():
    assert FRAGMENT_TIMEOUT == 300 * SECOND                          # Zeek's frag_timeout
    reassembler = Reassembler()
    reassembler.add(fragment(0, b"a" * 8, frame=1, time_ns=START))
    assert reassembler.add(fragment(8, b"b" * 8, more=False, frame=2, time_ns=START + FRAGMENT_TIMEOUT - 1))
    reassembler = Reassembler()
    reassembler.add(fragment(0, b"a" * 8, frame=3, time_ns=START))
    assert reassembler.add(fragment(8, b"b" * 8, more=False, frame=4, time_ns=START + FRAGMENT_TIMEOUT)) is None
    (dropped,) = reassembler.take_dropped()
    assert dropped.frames == (3,) and "not completed within 300 s" in dropped.reason
    assert len(reassembler) == 1                                     # the late fragment began a new datagram


def test_memory_is_bounded_by_datagrams_and_by_bytes():
    reassembler = Reassembler(max_datagrams=3)
    for ident in range(5):
        reassembler.add(fragment(0, b"a" * 8, ident=ident, frame=ident + 1))
    assert len(reassembler) == 3
    assert [d.frames for d in reassembler.take_dropped()] == [(1,), (2,)]
    reassembler = Reassembler(max_bytes=4000)
    for ident in range(10):
        reassembler.add(fragment(0, b"a" * 1000, ident=ident))
        assert reassembler.pending_bytes <= 4000
    assert len(reassembler) < 10 and all("MiB" in d.reason for d in reassembler.take_dropped())
    # The datagram a fragment belongs to is never the one given up for it.
    reassembler = Reassembler(max_datagrams=1)
    reassembler.add(fragment(0, b"a" * 8, ident=1))
    reassembler.add(fragment(0, b"b" * 8, ident=2))
    assert reassembler.add(fragment(8, b"c" * 8, more=False, ident=2)).datagram[20:] == b"b" * 8 + b"c" * 8


def test_a_datagram_too_long_for_its_length_field_is_dropped():
    reassembler = Reassembler()
    reassembler.add(fragment(65528, b"a" * 100, more=False))
    assert reassembler.add(fragment(0, b"b" * 65528)) is None
    assert "more than its length field" in reassembler.take_dropped()[0].reason


def test_an_ipv6_datagram_gets_its_payload_length_and_the_fragment_s_next_header():
    header = bytearray(pb.ipv6(next_header=44))
    reassembler = Reassembler()
    first = Fragment(6, "2001:db8::1", "2001:db8::2", 0xABCDEF, 0, True, bytes(header), 6, 17, b"a" * 8, 1, START)
    assert reassembler.add(first) is None
    last = first._replace(offset=8, more=False, payload=b"b" * 4, next_header=58, frame=2)
    done = reassembler.add(last)
    assert done.datagram[:4] == header[:4] and done.datagram[8:40] == header[8:40]
    assert struct.unpack_from("!H", done.datagram, 4)[0] == 12 and done.datagram[6] == 17     # offset 0's
    assert done.datagram[40:] == b"a" * 8 + b"b" * 4


def test_tiny_fragments_cost_more_than_their_bytes():
    reassembler = Reassembler()
    for offset in range(0, 8 * 200, 16):
        reassembler.add(fragment(offset, b"x" * 8))
    assert reassembler.pending_bytes > 200 * 8
