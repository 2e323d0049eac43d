"""Capture file readers: every format, byte order and timestamp resolution, and every error."""
from __future__ import annotations

import gzip
import io
import os
import struct

import pytest

from support import pcapbuild as pb
from harness.wire.reader import MAX_BLOCK, CaptureFormatError, Record, open_capture

FRAME = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"hello")))


def write(tmp_path, data: bytes, name: str = "x.pcap"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path):
    with open_capture(path) as capture:
        return capture, list(capture)


def read_until_error(path):
    """(records yielded before the error, the CaptureFormatError)."""
    got = []
    with open_capture(path) as capture:
        with pytest.raises(CaptureFormatError) as caught:
            for record in capture:
                got.append(record)
    return got, caught.value


# -- pcap -------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"])
def test_pcap_microsecond_both_byte_orders(tmp_path, order):
    frames = [FRAME, FRAME + b"!", b"\x00" * 60]
    data = pb.pcap([(1700000000, 123456, frames[0]), (1700000001, 999999, frames[1]),
                    (1700000002, 1, frames[2], 1514)], order=order)
    capture, records = read_all(write(tmp_path, data))
    assert capture.format == "pcap" and not capture.compressed and not capture.nanosecond
    assert capture.linktype == 1 and capture.linktypes == {1} and capture.snaplen == 65535
    assert [r.data for r in records] == frames
    assert [r.time_ns for r in records] == [1700000000123456000, 1700000001999999000, 1700000002000001000]
    assert [r.offset for r in records] == [24, 24 + 16 + len(frames[0]), 24 + 32 + len(frames[0]) + len(frames[1])]
    assert records[2].caplen == 60 and records[2].origlen == 1514
    assert all(r.linktype == 1 and r.comments == () and isinstance(r, Record) for r in records)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcap_nanosecond_both_byte_orders(tmp_path, order):
    data = pb.pcap([(1, 123456789, FRAME), (1700000000, 123456789, FRAME), (5, 999999999, FRAME)],
                   order=order, nano=True)
    capture, records = read_all(write(tmp_path, data))
    assert capture.nanosecond
    assert capture.interfaces[0].tsresol == 10**9
    # Every nanosecond, also at epoch scale, where a float would hold only ~0.24 us.
    assert [r.time_ns for r in records] == [1123456789, 1700000000123456789, 5999999999]


def test_pcap_linktype_upper_bits_are_not_link_type(tmp_path):
    # Bits 16+ of the link-type field carry FCS information.
    data = bytearray(pb.pcap([(0, 0, FRAME)], linktype=113))
    data[22] = 0x04
    _, records = read_all(write(tmp_path, bytes(data)))
    assert records[0].linktype == 113


def test_pcap_record_bigger_than_snaplen_tolerated_within_limit(tmp_path):
    big = b"\x00" * 65550   # a whole loopback-MTU frame, as scapy writes under snaplen 65535
    _, records = read_all(write(tmp_path, pb.pcap([(0, 0, big)], snaplen=65535)))
    assert records[0].caplen == 65550


def test_pcap_records_span_read_chunks(tmp_path, monkeypatch):
    import harness.wire.reader as pcapfile
    monkeypatch.setattr(pcapfile, "CHUNK", 100)
    frames = [bytes([i]) * (37 + 13 * i) for i in range(40)]
    data = pb.pcap([(i, i, f) for i, f in enumerate(frames)])
    _, records = read_all(write(tmp_path, data))
    assert [r.data for r in records] == frames


def test_empty_pcap_has_no_records(tmp_path):
    capture, records = read_all(write(tmp_path, pb.pcap([])))
    assert records == [] and capture.linktype == 1


def test_scapy_written_pcap(tmp_path):
    from scapy.all import IP, TCP, Ether, wrpcap
    packets = [Ether(dst="02:00:00:00:00:02") / IP(src="10.1.1.1", dst="10.1.1.2") / TCP(sport=i + 1, dport=80)
               for i in range(5)]
    for i, packet in enumerate(packets):
        packet.time = 1700000000.5 + i / 1000
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), packets)
    _, records = read_all(path)
    assert [r.data for r in records] == [bytes(p) for p in packets]
    assert [r.time_ns for r in records] == [1700000000500000000 + i * 1000000 for i in range(5)]


# -- pcapng -----------------------------------------------------------------------------

def multi_section_pcapng() -> bytes:
    little = (pb.shb("<", [(1, b"first section"), (1, b"written by the backend"), (2, b"x86_64"),
                           (3, b"Linux 6.1"), (4, b"dumpcap 4.0")])
              + pb.idb(1, 262144, [(2, b"lo"), (3, b"loopback"), (11, b"\x00tcp port 80"), pb.tsresol(9),
                                   (1, b"iface comment")])
              + pb.idb(276, 65535, [(2, b"any"), pb.tsresol(0x80 | 10), pb.tsoffset(1000)])
              + pb.epb(0, 1700000000123456789, FRAME, opts=[(1, b"look here"), (2, b"\x01\x00\x00\x00")])
              + pb.block(4, b"\x00\x00\x00\x00")             # Name Resolution Block: skipped
              + pb.epb(1, 3 * 1024 + 512, b"sll2 frame")     # 3.5 s in 2^-10 units, +1000 s offset
              + pb.block(0x00000BAD, b"custom block body")   # unknown: skipped
              + pb.spb(FRAME)
              + pb.block(5, b"\x00" * 12))                   # Interface Statistics Block: skipped
    big = (pb.shb(">", [(1, b"second section")])
           + pb.idb(0, 0, order=">")
           + pb.epb(0, 42_000_001, b"\x02\x00\x00\x00null", order=">", origlen=100)
           + pb.packet_block(0, 43_000_000, b"old", order=">"))
    return little + big


def test_pcapng_sections_interfaces_and_block_kinds(tmp_path):
    data = multi_section_pcapng()
    capture, records = read_all(write(tmp_path, data, "x.pcapng"))
    assert capture.format == "pcapng"
    assert [(r.linktype, r.data) for r in records] == [
        (1, FRAME), (276, b"sll2 frame"), (1, FRAME), (0, b"\x02\x00\x00\x00null"), (0, b"old")]
    times = [r.time_ns for r in records]
    assert times[0] == 1700000000123456789
    assert times[1] == 1003_500_000_000
    assert times[2] == times[1]         # Simple Packet Blocks have no timestamp
    assert times[3] == 42_000_001_000 and times[4] == 43_000_000_000
    assert records[0].comments == ("look here",)
    assert all(r.comments == () for r in records[1:])
    assert records[3].caplen == 8 and records[3].origlen == 100
    # Offsets point at each block.
    for record in records:
        head = data[record.offset:record.offset + 4]
        assert head in (b"\x06\x00\x00\x00", b"\x03\x00\x00\x00", b"\x00\x00\x00\x06", b"\x00\x00\x00\x02")

    assert capture.comments == ["first section", "written by the backend", "second section"]
    first, second = capture.sections
    assert (first.byte_order, first.hardware, first.os, first.application) == ("little", "x86_64", "Linux 6.1",
                                                                                "dumpcap 4.0")
    assert second.byte_order == "big" and second.comments == ("second section",)
    assert second.offset == data.index(b"\x0a\x0d\x0d\x0a\x00", 4)
    lo, any_, null = capture.interfaces
    assert (lo.section, lo.index, lo.linktype, lo.name, lo.description, lo.filter, lo.tsresol) == (
        0, 0, 1, "lo", "loopback", "tcp port 80", 10**9)
    assert lo.comments == ("iface comment",)
    assert (any_.index, any_.linktype, any_.tsresol, any_.tsoffset, any_.snaplen) == (1, 276, 1024, 1000, 65535)
    assert (null.section, null.index, null.linktype, null.name, null.filter) == (1, 0, 0, None, None)
    assert capture.linktypes == {0, 1, 276}


def test_pcapng_metadata_fills_in_as_iteration_starts(tmp_path):
    with open_capture(write(tmp_path, multi_section_pcapng(), "x.pcapng")) as capture:
        records = iter(capture)
        next(records)
        assert capture.comments[:2] == ["first section", "written by the backend"]
        assert [i.name for i in capture.interfaces] == ["lo", "any"]


def test_simple_packet_block_is_cut_to_snaplen(tmp_path):
    data = pb.shb() + pb.idb(1, 20) + pb.spb(FRAME[:20], origlen=len(FRAME))
    _, records = read_all(write(tmp_path, data, "x.pcapng"))
    assert records[0].caplen == 20 and records[0].origlen == len(FRAME) and records[0].data == FRAME[:20]


def test_dumpcap_style_pcapng_from_scapy(tmp_path):
    from scapy.all import IP, UDP, Ether
    from scapy.utils import PcapNgWriter
    path = tmp_path / "scapy.pcapng"
    packets = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=53) for i in range(3)]
    for i, packet in enumerate(packets):
        packet.time = 1700000000 + i / 4
    with PcapNgWriter(str(path)) as writer:
        for packet in packets:
            writer.write(packet)
    _, records = read_all(path)
    assert [r.data for r in records] == [bytes(p) for p in packets]
    assert [r.time_ns for r in records] == [1700000000_000000000, 1700000000_250000000, 1700000000_500000000]


# -- gzip and streams -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed(tmp_path, kind):
    plain = pb.pcap([(1, 2, FRAME), (3, 4, FRAME)]) if kind == "pcap" else multi_section_pcapng()
    _, expected = read_all(write(tmp_path, plain, "plain"))
    capture, records = read_all(write(tmp_path, gzip.compress(plain), "x.gz"))
    assert capture.compressed and capture.format == kind
    assert records == expected


def test_gzip_multiple_members(tmp_path):
    plain = pb.pcap([(i, 0, FRAME) for i in range(10)])
    data = gzip.compress(plain[:100]) + gzip.compress(plain[100:])
    _, records = read_all(write(tmp_path, data, "x.gz"))
    assert [r.time_ns for r in records] == [i * 10**9 for i in range(10)]


def _two_members(damage_at=None, after=b""):
    plain = pb.pcap([(i, 0, FRAME) for i in range(11)])
    second = bytearray(gzip.compress(plain[24 + 5 * (16 + len(FRAME)):]))
    if damage_at is not None:
        second[damage_at if damage_at >= 0 else len(second) + damage_at] ^= 0xFF
    return gzip.compress(plain[:24 + 5 * (16 + len(FRAME))]) + bytes(second) + after


@pytest.mark.parametrize("damage_at, after", [(10, b""), (12, b""), (-6, b""), (None, b"trailing garbage"),
                                              (None, b"\x1f\x8b\x08 not gzip")],
                         ids=["second-header", "second-data", "second-crc", "garbage", "gzip-like-garbage"])
def test_damage_after_the_first_gzip_member_is_damage_not_the_end(damage_at, after, tmp_path):
    """As `gzip -t` rejects them: a damaged later member, or bytes after the last that are no member."""
    got, error = read_until_error(write(tmp_path, _two_members(damage_at, after), "x.pcap.gz"))
    assert error is not None and "gzip" in str(error), f"read {len(got)} of 11 records as a whole file"
    assert len(got) >= 5


def test_zero_padding_after_the_last_gzip_member_is_tolerated(tmp_path):
    _, records = read_all(write(tmp_path, _two_members(after=bytes(512)), "x.pcap.gz"))
    assert len(records) == 11


def test_gzip_streams_in_bounded_reads(tmp_path):
    plain = pb.pcap([(i, 0, FRAME * 20) for i in range(2000)])
    compressed = io.BytesIO(gzip.compress(plain))
    sizes = []
    real_read = compressed.read
    compressed.read = lambda size=-1: sizes.append(size) or real_read(size)
    with open_capture(compressed, name="stream.gz") as capture:
        assert sum(1 for _ in capture) == 2000
    assert sizes and max(sizes) <= 1 << 16 and -1 not in sizes


def test_open_stream_and_unseekable_stream():
    data = pb.pcap([(1, 0, FRAME)])

    class Pipe:
        def __init__(self, raw):
            self.raw = io.BytesIO(raw)

        def read(self, size=-1):
            return self.raw.read(min(size, 7) if size and size > 0 else size)

    for stream in (io.BytesIO(data), Pipe(data), Pipe(gzip.compress(data))):
        with open_capture(stream, name="pipe") as capture:
            assert [r.data for r in capture] == [FRAME]


def test_close_closes_file(tmp_path):
    capture = open_capture(write(tmp_path, pb.pcap([(1, 0, FRAME)])))
    raw = capture._stream
    capture.close()
    assert raw.closed


# -- errors -----------------------------------------------------------------------------

def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError):
        open_capture(tmp_path / "nope.pcap")


def test_empty_file(tmp_path):
    path = write(tmp_path, b"")
    with pytest.raises(CaptureFormatError) as caught:
        open_capture(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: empty file (0 bytes) at byte 0")
    assert "pcapng" in message and "\n" not in message
    assert caught.value.offset == 0 and caught.value.path == str(path)


def test_wrong_magic_says_what_it_saw(tmp_path):
    path = write(tmp_path, b"<html><body>oops</body></html>", "x.pcap")
    with pytest.raises(CaptureFormatError) as caught:
        open_capture(path)
    message = str(caught.value)
    assert f"{path}: not a capture file: starts with 3c 68 74 6d ('<htm') at byte 0" in message
    assert "a1b2c3d4" in message and "0a0d0d0a" in message and "gzip" in message


def test_too_short_file(tmp_path):
    with pytest.raises(CaptureFormatError, match=r"too short .*\(2 bytes: d4 c3\) at byte 0"):
        open_capture(write(tmp_path, b"\xd4\xc3"))


def test_truncated_pcap_file_header(tmp_path):
    with pytest.raises(CaptureFormatError, match=r"truncated pcap file header at byte 0 \(needs 24 bytes, 10 left\)"):
        open_capture(write(tmp_path, pb.pcap([])[:10]))


def test_unsupported_pcap_version(tmp_path):
    with pytest.raises(CaptureFormatError, match=r"unsupported pcap version 1\.0 at byte 4"):
        open_capture(write(tmp_path, pb.pcap([], version=(1, 0))))


def test_truncated_pcap_record_after_good_records(tmp_path):
    data = pb.pcap([(1, 0, FRAME), (2, 0, FRAME), (3, 0, FRAME)])
    path = write(tmp_path, data[:-10])
    got, error = read_until_error(path)
    assert [r.time_ns for r in got] == [10**9, 2 * 10**9]
    damaged = 24 + 2 * (16 + len(FRAME))
    assert error.offset == damaged
    assert str(error) == (f"{path}: truncated pcap record at byte {damaged} "
                          f"(needs {16 + len(FRAME)} bytes, {16 + len(FRAME) - 10} left)")


def test_truncated_pcap_record_header(tmp_path):
    data = pb.pcap([(1, 0, FRAME)]) + b"\x01\x00\x00\x00\x00\x00"
    got, error = read_until_error(write(tmp_path, data))
    assert len(got) == 1
    assert "truncated pcap record header" in str(error) and error.offset == 24 + 16 + len(FRAME)
    assert "(needs 16 bytes, 6 left)" in str(error)


def test_absurd_pcap_record_length(tmp_path):
    data = pb.pcap([(1, 0, FRAME)]) + struct.pack("<IIII", 2, 0, 0x7FFFFFF0, 60) + FRAME
    got, error = read_until_error(write(tmp_path, data))
    assert len(got) == 1
    assert error.offset == 24 + 16 + len(FRAME)
    assert f"pcap record length {0x7FFFFFF0} is absurd" in str(error)


def test_pcap_caplen_over_snaplen(tmp_path):
    data = pb.pcap([(1, 0, FRAME, None, 300000)], snaplen=1500)
    _, error = read_until_error(write(tmp_path, data))
    assert error.offset == 24 and "snaplen is 1500" in str(error)


def pcapng_path(tmp_path, *blocks) -> str:
    return write(tmp_path, pb.shb() + pb.idb(1) + b"".join(blocks), "x.pcapng")


HEAD = len(pb.shb() + pb.idb(1))


def test_truncated_enhanced_packet_block(tmp_path):
    good = pb.epb(0, 1, FRAME)
    cut = pb.epb(0, 2, FRAME + b"x" * 30)
    path = pcapng_path(tmp_path, good, cut[:40])
    got, error = read_until_error(path)
    assert [r.data for r in got] == [FRAME]
    at = HEAD + len(good)
    assert str(error) == f"{path}: truncated Enhanced Packet Block at byte {at} (needs {len(cut)} bytes, 40 left)"


def test_truncated_block_header(tmp_path):
    path = pcapng_path(tmp_path, pb.epb(0, 1, FRAME), b"\x06\x00\x00")
    got, error = read_until_error(path)
    assert len(got) == 1 and "truncated block header" in str(error) and "needs 8 bytes, 3 left" in str(error)


@pytest.mark.parametrize("length, why", [(8, "below minimum"), (34, "not a multiple of 4"),
                                         (MAX_BLOCK + 4, "over the limit"), (0xFFFFFFFC, "absurd")])
def test_bad_block_lengths(tmp_path, length, why):
    good = pb.epb(0, 1, FRAME)
    bad = pb.block(6, b"\x00" * 40, length=length)
    path = pcapng_path(tmp_path, good, bad)
    got, error = read_until_error(path)
    assert len(got) == 1
    assert error.offset == HEAD + len(good)
    assert f"bad length {length} in Enhanced Packet Block at byte {HEAD + len(good)}" in str(error)


def test_trailing_length_mismatch(tmp_path):
    path = pcapng_path(tmp_path, pb.block(6, b"\x00" * 20, trailing_length=99))
    _, error = read_until_error(path)
    assert error.offset == HEAD and "trailing length 99 does not match its length 32" in str(error)


def test_epb_captured_length_overruns_block(tmp_path):
    path = pcapng_path(tmp_path, pb.epb(0, 1, FRAME, caplen=len(FRAME) + 100))
    _, error = read_until_error(path)
    assert error.offset == HEAD and f"captured length {len(FRAME) + 100} overruns the block" in str(error)


def test_epb_unknown_interface(tmp_path):
    path = pcapng_path(tmp_path, pb.epb(3, 1, FRAME))
    _, error = read_until_error(path)
    assert error.offset == HEAD and "refers to interface 3 at byte" in str(error) and "has 1 interfaces" in str(error)


def test_packets_before_any_interface(tmp_path):
    path = write(tmp_path, pb.shb() + pb.spb(FRAME), "x.pcapng")
    _, error = read_until_error(path)
    assert error.offset == len(pb.shb()) and "before any Interface Description Block" in str(error)


def test_option_overrun(tmp_path):
    body = struct.pack("<IIIII", 0, 0, 1, 4, 4) + b"abcd" + struct.pack("<HH", 1, 200) + b"xxxx"
    path = pcapng_path(tmp_path, pb.block(6, body))
    _, error = read_until_error(path)
    assert error.offset == HEAD + 28 + 4 and "option 1 overruns its block" in str(error)


def test_bad_byte_order_magic(tmp_path):
    data = bytearray(pb.shb() + pb.idb(1))
    data[8:12] = b"\x00\x11\x22\x33"
    _, error = read_until_error(write(tmp_path, bytes(data), "x.pcapng"))
    assert error.offset == 8 and "bad byte-order magic" in str(error) and "00 11 22 33" in str(error)


def test_bad_byte_order_magic_in_later_section(tmp_path):
    second = bytearray(pb.shb(">"))
    second[8:12] = b"\x00\x11\x22\x33"
    path = pcapng_path(tmp_path, pb.epb(0, 1, FRAME), bytes(second))
    got, error = read_until_error(path)
    assert len(got) == 1 and error.offset == HEAD + len(pb.epb(0, 1, FRAME)) + 8


def test_unsupported_pcapng_version(tmp_path):
    _, error = read_until_error(write(tmp_path, pb.shb(major=2) + pb.idb(1), "x.pcapng"))
    assert error.offset == 0 and "unsupported pcapng version 2.0" in str(error)


def test_truncated_gzip_yields_everything_before_the_cut(tmp_path):
    plain = pb.pcap([(i, 0, FRAME) for i in range(200)])
    compressed = gzip.compress(plain)
    path = write(tmp_path, compressed[:len(compressed) // 2], "x.pcap.gz")
    got, error = read_until_error(path)
    assert len(got) > 0 and [r.time_ns for r in got] == [i * 10**9 for i in range(len(got))]
    assert "truncated gzip stream" in str(error) and str(path) in str(error) and "\n" not in str(error)
    assert error.offset >= 24 + len(got) * (16 + len(FRAME))


def test_truncated_gzip_at_record_boundary_is_still_reported(tmp_path):
    compressed = gzip.compress(pb.pcap([(1, 0, FRAME)]))
    _, error = read_until_error(write(tmp_path, compressed[:-8], "x.gz"))   # trailer (CRC, size) gone
    assert "truncated gzip stream" in str(error)


def test_corrupt_gzip(tmp_path):
    compressed = bytearray(gzip.compress(pb.pcap([(i, 0, FRAME) for i in range(50)])))
    compressed[len(compressed) // 2] ^= 0xFF
    path = write(tmp_path, bytes(compressed), "x.gz")
    with pytest.raises(CaptureFormatError) as caught:
        with open_capture(path) as capture:
            list(capture)
    assert "gzip" in str(caught.value) and str(path) in str(caught.value)


def test_gzip_of_garbage(tmp_path):
    with pytest.raises(CaptureFormatError, match=r"not a capture file: starts with 68 65 6c 6c"):
        open_capture(write(tmp_path, gzip.compress(b"hello world"), "x.gz"))


def test_empty_gzip(tmp_path):
    with pytest.raises(CaptureFormatError, match="empty gzip stream at byte 0"):
        open_capture(write(tmp_path, gzip.compress(b""), "x.gz"))


# -- many records (how fast is bench/bench.py's business: no timed tests) ------------------

def test_200k_records_read_whole_in_both_formats(tmp_path):
    frame = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"x" * 40)))
    record = struct.pack("<IIII", 1, 2, len(frame), len(frame)) + frame
    pcap_path = write(tmp_path, pb.pcap([]) + record * 200_000)
    block = pb.epb(0, 5, frame)
    ng_path = write(tmp_path, pb.shb() + pb.idb(1) + block * 200_000, "x.pcapng")
    for path in (pcap_path, ng_path):
        with open_capture(path) as capture:
            assert sum(1 for record in capture if record.data == frame) == 200_000


def _bomb(tmp_path, records: int):
    """A gzip'd pcap of empty records: a few KB that inflate a thousandfold."""
    path = tmp_path / "bomb.pcap.gz"
    path.write_bytes(gzip.compress(pb.pcap([]) + struct.pack("<IIII", 1, 0, 0, 0) * records, 9))
    return path


def test_a_gzip_that_inflates_past_its_bound_stops_with_one_line(tmp_path, monkeypatch):
    """Issue 15 item 8: decompression bombs were read to the end (10 minutes, 2 GB)."""
    from harness.wire import reader
    monkeypatch.setattr(reader, "INFLATE_FLOOR", 1 << 20)
    path = _bomb(tmp_path, 200_000)          # 3.2 MB inflated, some 10 KB compressed
    got, error = read_until_error(path)
    assert isinstance(error, reader.ReadLimitReached)
    assert str(error).startswith(f"{path}: stopped reading after 1,048,576 bytes (the gzip'd file inflates past 64x")
    assert str(error).endswith("a decompression bomb? To read it all: --max-bytes 0)")
    # The bound is checked as each 1 MiB chunk is asked for: what came before it is read, and no more than a chunk past.
    assert (1 << 20) // 16 - 1 <= len(got) <= (2 << 20) // 16, "what came before the bound was read"


def test_the_bound_can_be_lifted_or_set(tmp_path, monkeypatch):
    from harness.wire import reader
    monkeypatch.setattr(reader, "INFLATE_FLOOR", 1 << 20)
    path = _bomb(tmp_path, 200_000)
    with open_capture(path, max_bytes=0) as capture:
        assert sum(1 for _ in capture) == 200_000
    monkeypatch.setenv(reader.MAX_BYTES_ENV, "100K")
    plain = write(tmp_path, pb.pcap([(i, 0, FRAME) for i in range(20_000)]), "plain.pcap")
    _, error = read_until_error(plain)
    assert str(error).endswith("(the bound set by --max-bytes; raise it to read more)")


def test_max_bytes_on_the_command_line(tmp_path, monkeypatch, capsys):
    from harness.cli import main
    from harness.wire import reader
    monkeypatch.setattr(reader, "INFLATE_FLOOR", 1 << 20)
    path = _bomb(tmp_path, 200_000)
    assert main(["summary", str(path)]) == 2
    assert "stopped reading after 1,048,576 bytes" in capsys.readouterr().err
    assert main(["summary", "--max-bytes", "0", str(path)]) == 0     # read whole: nothing but undecodable frames
    err = capsys.readouterr().err
    assert "stopped reading" not in err and "199900 more undecodable frames" in err
    assert reader.MAX_BYTES_ENV not in os.environ, "the bound is the command's, not left to later ones"
