"""annotate(): any capture to pcapng with verdicts as packet comments; cross-checked with tshark."""
from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from support import pcapbuild as pb
from harness.render.annotate import annotate
from harness.wire.reader import CaptureFormatError, open_capture
from harness.wire.pcapng import ENHANCED_PACKET, INTERFACE_STATISTICS, BlockSplitter
from support import REPO

LAB = REPO / "captures" / "lab"
TSHARK = shutil.which("tshark") or ("/usr/bin/tshark" if Path("/usr/bin/tshark").exists() else None)
needs_tshark = pytest.mark.skipif(not TSHARK, reason="tshark not installed")

TCP_FRAME = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"hello")))
UDP_FRAME = pb.ether(pb.ipv4(src="10.0.0.9", proto=17, payload=pb.udp(payload=b"x")))
IF_NAME = 2


def read(path):
    """(records, capture) with the capture's metadata filled in."""
    with open_capture(path) as capture:
        return list(capture), capture


def assert_same_packets(source, output):
    before, _ = read(source)
    after, capture = read(output)
    assert capture.format == "pcapng"
    assert len(after) == len(before)
    for old, new in zip(before, after):
        assert (new.linktype, new.caplen, new.origlen, new.data) == (old.linktype, old.caplen, old.origlen, old.data)
        assert new.time_ns == old.time_ns
    return before, after, capture


def no_partials(directory: Path):
    return not list(directory.glob("*.partial"))


def tshark(path, *fields):
    """One dict per frame of the fields asked for, each a list of values (as tshark -T json gives)."""
    args = [TSHARK, "-r", str(path), "-T", "json"]
    for name in fields:
        args += ["-e", name]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return [frame["_source"]["layers"] for frame in json.loads(done.stdout or "[]")]


def tshark_columns(path, *fields):
    args = [TSHARK, "-r", str(path), "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()


# -- round trips ------------------------------------------------------------------------

def test_lab_pcapng_keeps_every_packet_and_gains_comments_on_the_right_frames(tmp_path):
    source = LAB / "tcp-lab.pcapng"
    out = tmp_path / "annotated.pcapng"
    written = annotate(source, out, {1: ["ok: step 1"], 6: ["FAIL: no reply", "second verdict"]},
                       section_comments=["harness check --expect tcp_lab: FAIL"])
    assert written == 11
    before, after, capture = assert_same_packets(source, out)
    assert [r.comments for r in after] == [("ok: step 1",), (), (), (), (), ("FAIL: no reply", "second verdict"),
                                           (), (), (), (), ()]
    _, original = read(source)
    assert capture.comments == original.comments + ["harness check --expect tcp_lab: FAIL"]
    assert capture.sections[0].application == original.sections[0].application
    (interface,) = capture.interfaces
    (source_interface,) = original.interfaces
    assert (interface.name, interface.description, interface.filter, interface.linktype, interface.snaplen) == (
        source_interface.name, source_interface.description, source_interface.filter,
        source_interface.linktype, source_interface.snaplen)
    assert interface.tsresol == 10**9
    assert no_partials(tmp_path)


def test_gzipped_pcapng_round_trips(tmp_path):
    source = tmp_path / "udp-lab.pcapng.gz"
    source.write_bytes(gzip.compress((LAB / "udp-lab.pcapng").read_bytes()))
    out = tmp_path / "out.pcapng"
    assert annotate(source, out, {4: ["ok: last datagram"]}) == 4
    _, after, _ = assert_same_packets(source, out)
    assert [r.comments for r in after] == [(), (), (), ("ok: last datagram",)]
    assert no_partials(tmp_path)


def test_scapy_pcap_round_trips_with_microsecond_times_exact(tmp_path):
    scapy = pytest.importorskip("scapy.all")
    packets = []
    for number in range(6):
        packet = (scapy.Ether() / scapy.IP(src="10.0.0.1", dst="10.0.0.2")
                  / scapy.TCP(sport=40000, dport=8080, flags="PA") / scapy.Raw(b"x" * number))
        packet.time = 1700000000.123456 + number * 1.000001
        packets.append(packet)
    whole_loopback_frame = scapy.Ether() / scapy.IP() / scapy.UDP() / scapy.Raw(b"y" * 65500)
    whole_loopback_frame.time = 1700000010.5
    packets.append(whole_loopback_frame)   # longer than the 65535 snaplen scapy writes
    source = tmp_path / "scapy.pcap"
    scapy.wrpcap(str(source), packets)
    out = tmp_path / "scapy.pcapng"
    assert annotate(source, out, {2: "FAIL: one string is one comment", 7: ["ok: big"]}) == 7
    _, after, capture = assert_same_packets(source, out)
    assert [r.time_ns for r in after] == [1700000000123456000 + n * 1000001000 for n in range(6)] + [1700000010500000000]
    assert after[1].comments == ("FAIL: one string is one comment",) and after[6].comments == ("ok: big",)
    assert [(i.linktype, i.snaplen) for i in capture.interfaces] == [(1, 65535)]
    assert capture.sections[0].application == "harness annotate"
    assert no_partials(tmp_path)


def test_nanosecond_pcap_reads_back_as_the_same_times(tmp_path):
    source = tmp_path / "nano.pcap"
    source.write_bytes(pb.pcap([(1700000000, 123456789, TCP_FRAME), (1700000000, 999999999, UDP_FRAME),
                                (5, 1, TCP_FRAME, 1514)], nano=True))
    out = tmp_path / "nano.pcapng"
    annotate(source, out, {3: ["small times keep every nanosecond"]})
    _, after, _ = assert_same_packets(source, out)
    assert after[2].origlen == 1514 and after[2].caplen == len(TCP_FRAME)
    assert [r.time_ns for r in after] == [1700000000123456789, 1700000000999999999, 5000000001]


def _two_section_capture() -> bytes:
    """Section 1: two Ethernet interfaces with different resolutions and an offset, an own comment,
    a trailing interface without packets. Section 2, big-endian: a Simple and an old Packet Block."""
    return (pb.shb(opts=[(1, b"first section")])
            + pb.idb(1, opts=[(IF_NAME, b"eth0"), pb.tsresol(6)])
            + pb.idb(1, opts=[(IF_NAME, b"eth1"), pb.tsresol(3), pb.tsoffset(1000)])
            + pb.epb(0, 1700000000123456, TCP_FRAME, opts=[(1, b"comment already there")])
            + pb.epb(1, 1700000000124, UDP_FRAME)
            + pb.epb(0, 1700000000123999, UDP_FRAME, origlen=1500)
            + pb.idb(113, opts=[(IF_NAME, b"no packets")])
            + pb.shb(order=">", opts=[(1, b"second section")])
            + pb.idb(1, opts=[(IF_NAME, b"big0")], order=">")
            + pb.spb(TCP_FRAME, order=">")
            + pb.packet_block(0, 1700000001000000, UDP_FRAME, order=">"))


def test_sections_and_interfaces_are_kept_and_packets_keep_their_interface(tmp_path):
    source = tmp_path / "multi.pcapng"
    source.write_bytes(_two_section_capture())
    out = tmp_path / "multi.out.pcapng"
    assert annotate(source, out, {1: ["mine"], 2: ["two"], 5: ["five"]}, ["on the first section"]) == 5
    _, after, capture = assert_same_packets(source, out)
    assert [r.comments for r in after] == [("comment already there", "mine"), ("two",), (), (), ("five",)]
    # Each section keeps its byte order: its blocks are copied, not re-encoded.
    assert [(s.byte_order, s.comments) for s in capture.sections] == [
        ("little", ("first section", "on the first section")), ("big", ("second section",))]
    assert [(i.section, i.index, i.name, i.linktype, i.tsoffset) for i in capture.interfaces] == [
        (0, 0, "eth0", 1, 0), (0, 1, "eth1", 1, 1000), (0, 2, "no packets", 113, 0), (1, 0, "big0", 1, 0)]


def _blocks(data: bytes):
    splitter = BlockSplitter()
    blocks = list(splitter.feed(data))
    assert splitter.pending == 0
    return blocks


def test_every_block_that_gains_nothing_is_copied_byte_for_byte(tmp_path):
    # Interface statistics (the capture's own drop counters), name resolution, decryption secrets,
    # a custom block and a packet's flags option: none is the reader's business, all survive.
    statistics = pb.block(INTERFACE_STATISTICS, struct.pack("<III", 0, 1, 2)
                          + pb.options([(4, struct.pack("<Q", 12)), (5, struct.pack("<Q", 0))]))
    name_resolution = pb.block(4, struct.pack("<HH4s", 1, 8, bytes([10, 0, 0, 9])) + b"host" + bytes(8))
    secrets = pb.block(10, struct.pack("<II", 0x544c534b, 4) + b"keys")
    custom = pb.block(0x00000BAD, struct.pack("<I", 32473) + b"private!")
    flagged = pb.epb(0, 1700000000123456, TCP_FRAME, opts=[(2, struct.pack("<I", 1))])   # epb_flags: inbound
    source_bytes = (pb.shb() + pb.idb(1, opts=[pb.tsresol(6)]) + name_resolution + secrets + flagged
                    + pb.epb(0, 1700000000123999, UDP_FRAME) + custom + statistics)
    source = tmp_path / "blocks.pcapng"
    source.write_bytes(source_bytes)
    out = tmp_path / "blocks.out.pcapng"
    assert annotate(source, out, {2: ["a verdict"]}) == 2
    before, after = _blocks(source_bytes), _blocks(out.read_bytes())
    assert [kind for kind, _ in after] == [kind for kind, _ in before]
    changed = [index for index, ((_, old), (_, new)) in enumerate(zip(before, after)) if old != new]
    assert changed == [5], "only the packet that gained a comment differs"
    records, capture = read(out)
    assert records[1].comments == ("a verdict",)
    assert capture.statistics[0].counters == {"received": 12, "dropped": 0}


def test_a_comment_on_a_simple_packet_block_makes_it_an_enhanced_one(tmp_path):
    source = tmp_path / "simple.pcapng"
    source.write_bytes(pb.shb() + pb.idb(1, opts=[pb.tsresol(6)]) + pb.epb(0, 1700000000123456, UDP_FRAME)
                       + pb.spb(TCP_FRAME))
    out = tmp_path / "simple.out.pcapng"
    annotate(source, out, {2: ["on the simple one"]})
    before, after, _ = assert_same_packets(source, out)
    assert after[1].comments == ("on the simple one",)
    assert [kind for kind, _ in _blocks(out.read_bytes())][-1] == ENHANCED_PACKET


@needs_tshark
def test_tshark_sees_the_same_interfaces_lengths_and_times(tmp_path):
    source = tmp_path / "multi.pcapng.gz"
    source.write_bytes(gzip.compress(_two_section_capture()))
    out = tmp_path / "multi.out.pcapng"
    annotate(source, out, {})
    fields = ("frame.interface_id", "frame.len", "frame.cap_len", "frame.time_epoch")
    expected, got = tshark_columns(source, *fields), tshark_columns(out, *fields)
    assert len(got) == 5
    # A Simple Packet Block has no time (tshark shows none); the reader gives it the previous one.
    assert got[:3] + got[4:] == expected[:3] + expected[4:]
    assert got[3].split("\t")[:3] == expected[3].split("\t")[:3]
    assert got[1] == "1\t43\t43\t1700001000.124000000"


@needs_tshark
def test_tshark_shows_the_comments_on_the_right_frames(tmp_path):
    out = tmp_path / "annotated.pcapng"
    annotate(LAB / "tcp-lab.pcapng", out, {4: ["ok: step 4 `C>S PSH,ACK data=\"yp\"`"],
                                          6: ["FAIL: <script>&amp; ünïcode", "and, a second one"]},
             ["verdict: FAIL"])
    # Wireshark 4.0 calls the packet comment field frame.comment (pkt_comment is its protocol).
    frames = tshark(out, "frame.number", "frame.comment")
    comments = {int(f["frame.number"][0]): f["frame.comment"] for f in frames if "frame.comment" in f}
    assert comments == {4: ["ok: step 4 `C>S PSH,ACK data=\"yp\"`"],
                        6: ["FAIL: <script>&amp; ünïcode", "and, a second one"]}
    assert len(frames) == 11


@needs_tshark
def test_tshark_lengths_and_times_match_the_source(tmp_path):
    for name in ("tcp-lab", "udp-lab", "tcp-broken-server"):
        source = LAB / f"{name}.pcapng"
        out = tmp_path / f"{name}.annotated.pcapng"
        annotate(source, out, {1: ["first"]})
        expected = [line.split("\t") for line in tshark_columns(source, "frame.len", "frame.time_epoch")]
        got = [line.split("\t") for line in tshark_columns(out, "frame.len", "frame.time_epoch")]
        assert [length for length, _ in got] == [length for length, _ in expected]
        # The lab files are nanosecond captures; the reader's float keeps them to a fraction of a microsecond.
        for (_, theirs), (_, ours) in zip(expected, got):
            assert abs(_nanoseconds(ours) - _nanoseconds(theirs)) < 250


def _nanoseconds(epoch: str) -> int:
    seconds, fraction = epoch.split(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0"))


# -- failures leave nothing behind ------------------------------------------------------

def test_comments_for_frames_beyond_the_capture_are_an_error_and_leave_no_file(tmp_path):
    out = tmp_path / "out.pcapng"
    with pytest.raises(ValueError, match="has 4 packets; comments for frames 5, 9 have no packet"):
        annotate(LAB / "udp-lab.pcapng", out, {1: ["ok"], 5: ["lost"], 9: ["lost"]})
    assert not out.exists() and no_partials(tmp_path)


@pytest.mark.parametrize("key", [0, -1, "3", True])
def test_comment_keys_must_be_frame_numbers(tmp_path, key):
    with pytest.raises(ValueError, match="not a frame number"):
        annotate(LAB / "udp-lab.pcapng", tmp_path / "out.pcapng", {key: ["x"]})
    assert not list(tmp_path.iterdir())


def test_damaged_source_fails_without_touching_an_existing_output(tmp_path):
    whole = (LAB / "tcp-lab.pcapng").read_bytes()
    source = tmp_path / "cut.pcapng"
    source.write_bytes(whole[:-30])
    out = tmp_path / "out.pcapng"
    out.write_bytes(b"previous result")
    with pytest.raises(CaptureFormatError):
        annotate(source, out, {})
    assert out.read_bytes() == b"previous result" and no_partials(tmp_path)


def test_unreadable_source_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        annotate(tmp_path / "missing.pcapng", tmp_path / "out.pcapng", {})
    assert not list(tmp_path.iterdir())


def test_output_may_replace_its_own_source(tmp_path):
    path = tmp_path / "capture.pcapng"
    shutil.copyfile(LAB / "udp-lab.pcapng", path)
    before, _ = read(path)
    assert annotate(path, path, {2: ["in place"]}) == 4
    after, _ = read(path)
    assert [r.data for r in after] == [r.data for r in before] and after[1].comments == ("in place",)
    assert no_partials(tmp_path)


def test_the_partial_file_is_never_the_source(tmp_path):
    source = tmp_path / "x.partial"
    shutil.copyfile(LAB / "udp-lab.pcapng", source)
    with pytest.raises(ValueError, match="cannot be the output's .partial"):
        annotate(source, tmp_path / "x", {})
    assert source.read_bytes() == (LAB / "udp-lab.pcapng").read_bytes()


# -- streaming --------------------------------------------------------------------------

def test_memory_does_not_grow_with_the_capture(tmp_path):
    frame = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"z" * 1400)))
    source = tmp_path / "big.pcap"
    count = 12000    # ~17 MB: well above what the streaming reader and writer hold at once
    with open(source, "wb") as stream:
        stream.write(pb.pcap([]))
        record = struct.pack("<IIII", 1700000000, 0, len(frame), len(frame)) + frame
        for _ in range(count):
            stream.write(record)
    tracemalloc.start()
    try:
        assert annotate(source, tmp_path / "big.pcapng", {count: ["last"]}) == count
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_a_clean_up_that_fails_does_not_hide_the_error_that_stopped_the_copy(tmp_path, monkeypatch):
    """Issue 15 item 3: the .partial's removal failing too (a disk gone read-only, a file where the
    directory should be) must not replace the reason the copy stopped."""
    import errno
    import harness.render.annotate as module

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(module.os, "unlink", refuse)
    with pytest.raises(ValueError, match="comments for frame 999 have no packet"):
        annotate(LAB / "tcp-lab.pcapng", tmp_path / "out.pcapng", {999: "nowhere"})
    assert not (tmp_path / "out.pcapng").exists()
