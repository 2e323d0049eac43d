"""IP fragment reassembly as Zeek does it (harness.wire.fragments, and through unwrap() and the pipeline):
in order, out of order, overlapping, duplicated, never completed, timed out, bounded in memory; IPv4
and IPv6; cross-checked with tshark, which also shows the datagram on the fragment that completes it."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from support import pcapbuild as pb
from harness.analysis.pipeline import analyse, read_packets
from harness.wire.decode import Other, decode, decode_all, unwrap
from harness.wire.checksum import ipv4_header_valid
from harness.wire.fragments import FRAGMENT_TIMEOUT, Fragment, Reassembler
from harness.wire.packet import TCP, UDP
from harness.wire.reader import Record, open_capture

TSHARK = shutil.which("tshark")
SECOND = 10**9
START = 1_700_000_000 * SECOND


def v4_fragments(datagram: bytes, size: int, ident: int = 0x1234):
    """An IPv4 datagram (pbuild.ipv4 output) cut into fragments of `size` data bytes (a multiple of 8)."""
    header, data = datagram[:20], datagram[20:]
    pieces = []
    for offset in range(0, len(data), size):
        chunk = data[offset:offset + size]
        more = offset + size < len(data)
        piece = bytearray(header)
        struct.pack_into("!HHH", piece, 2, 20 + len(chunk), ident, (offset // 8) | (0x2000 if more else 0))
        pieces.append(bytes(piece) + chunk)
    return pieces


def v6_fragments(datagram: bytes, size: int, ident: int = 0xABCDEF):
    """An IPv6 datagram without extension headers cut into fragments, each with a Fragment header."""
    header, data, next_header = datagram[:40], datagram[40:], datagram[6]
    pieces = []
    for offset in range(0, len(data), size):
        chunk = data[offset:offset + size]
        more = offset + size < len(data)
        piece = bytearray(header)
        piece[6] = 44
        struct.pack_into("!H", piece, 4, 8 + len(chunk))
        pieces.append(bytes(piece) + struct.pack("!BxHI", next_header, offset | more, ident) + chunk)
    return pieces


def records(packets, ethertype=0x0800, gap=SECOND):
    return [Record(1, START + n * gap, 14 + len(p), 14 + len(p), pb.ether(p, ethertype), 0, ())
            for n, p in enumerate(packets)]


def fragment(offset, payload, more=True, ident=1, time_ns=START, frame=1, header=None):
    header = header or pb.ipv4(proto=17)[:20]
    return Fragment(4, "10.0.0.1", "10.0.0.2", ident, offset, more, header, 9, 17, payload, frame, time_ns)


DATAGRAM = pb.ipv4(proto=17, payload=pb.udp(sport=5000, dport=6000, payload=bytes(range(256)) * 12))   # 3080 bytes


# -- the reassembler alone ---------------------------------------------------------------

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


# -- through unwrap() and the pipeline -------------------------------------------------------

def test_ipv6_reassembly_rebuilds_the_unfragmentable_part():
    datagram = pb.ipv6(next_header=17, payload=pb.udp(payload=b"q" * 100),
                       extensions=[(0, pb.ipv6_option_header(0))])
    pieces = []
    for offset, more in ((0, True), (56, False)):
        chunk = datagram[48:][offset:offset + 56]
        header = bytearray(datagram[:48])
        header[40] = 44
        struct.pack_into("!H", header, 4, 8 + 8 + len(chunk))
        pieces.append(bytes(header) + struct.pack("!BxHI", 17, offset | more, 9) + chunk)
    reassembler = Reassembler()
    got = [unwrap(r, n, fragments=reassembler) for n, r in enumerate(records(pieces, 0x86DD), 1)]
    assert got[0] == [Other("IPv6 fragments", None)]
    (packet,) = got[1]
    assert (packet.proto, packet.payload_len, packet.payload, packet.frame) == (UDP, 100, b"q" * 100, 2)


@pytest.mark.parametrize("order", ["in order", "reversed", "middle first"])
def test_a_fragmented_udp_datagram_counts_once_at_the_fragment_that_completes_it(order, tmp_path):
    pieces = v4_fragments(DATAGRAM, 1480)
    pieces = {"in order": pieces, "reversed": pieces[::-1], "middle first": [pieces[1], pieces[0], pieces[2]]}[order]
    path = tmp_path / "fragments.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, pb.ether(p)) for n, p in enumerate(pieces)]))
    warnings = []
    (packet,) = list(read_packets(path, warnings))
    assert (packet.frame, packet.time_ns) == (3, (1700000000 + 2) * SECOND) and not warnings
    assert (packet.sport, packet.dport, packet.payload_len, packet.payload) == (5000, 6000, 3072, bytes(range(256)) * 12)
    assert packet.ip_len == len(DATAGRAM)            # the reassembled datagram's, once
    analysis = analyse(path)
    assert analysis.packets == 1 and analysis.others == {"IPv4 fragments": 2} and not analysis.warnings


def test_without_a_reassembler_fragments_read_as_decode_reads_them():
    first, later, last = v4_fragments(DATAGRAM, 1480)
    (r1, r2, r3) = records([first, later, last])
    assert decode_all(r1, 1) == [decode(r1, 1)] and decode(r1, 1).payload_len == 3072
    assert isinstance(unwrap(r2, 2)[0], Exception)


def test_a_datagram_left_incomplete_gets_one_warning_line_and_no_packet(tmp_path):
    first, _middle, last = v4_fragments(DATAGRAM, 1480)
    other = v4_fragments(pb.ipv4(proto=6, payload=pb.tcp(payload=b"t" * 40)), 32, ident=77)
    path = tmp_path / "incomplete.pcap"
    frames = [first, last, other[0], pb.ipv4(payload=pb.tcp(sport=1, dport=2))]
    path.write_bytes(pb.pcap([(1700000000 + n, 0, pb.ether(p)) for n, p in enumerate(frames)]))
    analysis = analyse(path)
    assert analysis.packets == 1 and analysis.others == {"IPv4 fragments": 3}
    assert analysis.warnings == [
        f"{path}: frames 1, 2: IPv4 datagram 10.0.0.1 -> 10.0.0.2 id 0x1234 never completed (1600 of 3080 bytes); "
        f"not analysed",
        f"{path}: frame 3: IPv4 datagram 10.0.0.1 -> 10.0.0.2 id 0x4d never completed (32 bytes, its end never "
        f"seen); not analysed"]


def test_a_fragment_cut_by_the_capture_is_not_reassembled():
    first, later, last = v4_fragments(DATAGRAM, 1480)
    reassembler = Reassembler()
    cut = Record(1, START, 100, 14 + len(first), pb.ether(first)[:100], 0, ())
    (packet,) = unwrap(cut, 1, fragments=reassembler)
    assert packet.payload_len == 3072 and len(reassembler) == 0      # read as the header-only first fragment
    cut_later = Record(1, START, 100, 14 + len(later), pb.ether(later)[:100], 0, ())
    assert "fragment at offset 1480" in str(unwrap(cut_later, 2, fragments=reassembler)[0])


def test_fragments_of_a_tunnel_are_opened_once_whole():
    inner = pb.ipv4(src="192.168.1.1", dst="192.168.1.2", payload=pb.tcp(sport=7, dport=8, payload=b"i" * 600))
    outer = pb.ipv4(src="1.1.1.1", dst="2.2.2.2", proto=47, payload=pb.gre(inner))
    reassembler = Reassembler()
    found = [unwrap(r, n, fragments=reassembler) for n, r in enumerate(records(v4_fragments(outer, 304)), 1)]
    assert found[0] == found[1] == [Other("IPv4 fragments", None)]
    (packet,) = found[2]
    assert (packet.src, packet.proto, packet.payload_len, packet.frame) == ("192.168.1.1", TCP, 600, 3)


def test_an_ipv6_datagram_reassembled_by_the_pipeline(tmp_path):
    datagram = pb.ipv6(next_header=6, payload=pb.tcp(sport=80, dport=9000, payload=b"6" * 2000))
    path = tmp_path / "v6.pcap"
    pieces = v6_fragments(datagram, 1232)
    path.write_bytes(pb.pcap([(1700000000 + n, 0, pb.ether(p, 0x86DD)) for n, p in enumerate(pieces[::-1])]))
    (packet,) = list(read_packets(path))
    assert (packet.proto, packet.sport, packet.payload_len, packet.frame) == (TCP, 80, 2000, 2)


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
def test_reassembled_datagrams_match_tshark(tmp_path):
    """tshark (ip.defragment and ipv6.defragment, on by default) shows the reassembled datagram on the
    frame that completes it; so does harness, whatever the order the fragments came in."""
    udp4 = v4_fragments(DATAGRAM, 1480)
    tcp4 = v4_fragments(pb.ipv4(src="10.0.0.3", dst="10.0.0.4", payload=pb.tcp(sport=1, dport=2, payload=b"t" * 900)),
                        512, ident=5)
    udp6 = v6_fragments(pb.ipv6(next_header=17, payload=pb.udp(sport=53, dport=5353, payload=b"6" * 2500)), 1232)
    frames = ([pb.ether(p) for p in udp4[::-1]] + [pb.ether(p) for p in (tcp4[1], tcp4[0])]
              + [pb.ether(p, 0x86DD) for p in (udp6[0], udp6[2], udp6[1])])
    path = tmp_path / "fragments.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate(frames)]))
    fields = ["frame.number", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "tcp.len", "udp.length"]
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-E", "occurrence=l"]
                         + [a for f in fields for a in ("-e", f)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    theirs = [line.split("\t") for line in out.splitlines()]
    theirs = [(int(row[0]), row[1] or row[2], int(row[3] or row[4]), int(row[5]) if row[5] else int(row[6]) - 8)
              for row in theirs if row[3] or row[4]]
    reassembler, ours = Reassembler(), []
    with open_capture(path) as capture:
        for number, rec in enumerate(capture, 1):
            ours += [(p.frame, p.src, p.sport, p.payload_len) for p in decode_all(rec, number, fragments=reassembler)]
    assert ours == theirs and len(ours) == 3
