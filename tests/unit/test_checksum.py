"""Checksums as Zeek verifies them (harness.wire.checksum, decode(verify_checksums=True)): IPv4 headers,
TCP and UDP over IPv4 and IPv6, UDP's zero, what the capture cut, off by default; cross-checked with
an independent sum (tests/support/pcapbuild.py), scapy and tshark."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from support import pcapbuild as pb
from harness.wire.checksum import internet_checksum, ipv4_header_valid, ones_complement_sum, transport_valid
from harness.wire.decode import (BadIPChecksum, BadTransportChecksum, PacketDecodeError, decode, decode_all,
                                 unwrap)
from harness.wire.packet import TCP, UDP
from harness.wire.reader import Record, open_capture

TSHARK = shutil.which("tshark")


def record(data: bytes, linktype: int = 1, origlen=None) -> Record:
    return Record(linktype, 5 * 10**9, len(data), len(data) if origlen is None else origlen, data, 0, ())


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


V4_TCP = pb.checksummed(pb.ipv4(payload=pb.tcp(seq=7, payload=b"odd length")))
V4_UDP = pb.checksummed(pb.ipv4(proto=17, payload=pb.udp(payload=b"query")))
V6_TCP = pb.checksummed(pb.ipv6(payload=pb.tcp(payload=b"hello")))
V6_UDP = pb.checksummed(pb.ipv6(next_header=17, payload=pb.udp(payload=b"abc")))


def test_the_sum_of_rfc_1071s_example():
    # RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    assert ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert ones_complement_sum(b"\xff\xff\xff\xff") == 0xFFFF and ones_complement_sum(b"\x00\x00") == 0
    assert ones_complement_sum(b"\x01") == 0x0100        # an odd byte is padded on the right


def test_headers_and_segments_built_elsewhere_are_valid_and_one_bit_off_is_not():
    from scapy.all import IP, IPv6, TCP as STCP, UDP as SUDP, Raw
    for packet in (bytes(IP(src="192.0.2.1", dst="198.51.100.7") / STCP(sport=1, dport=2, flags="PA") / Raw(b"x" * 33)),
                   V4_TCP):
        assert ipv4_header_valid(packet[:20]) and not ipv4_header_valid(flip(packet, 8))
        assert transport_valid(TCP, packet[12:16], packet[16:20], packet[20:])
        assert not transport_valid(TCP, packet[12:16], packet[16:20], flip(packet, 30)[20:])
    for packet in (bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / SUDP(sport=3, dport=4) / Raw(b"y" * 7)), V6_UDP):
        assert transport_valid(UDP, packet[8:24], packet[24:40], packet[40:])
        assert not transport_valid(UDP, packet[8:24], packet[24:40], flip(packet, 41)[40:])


def test_a_udp_checksum_of_zero_means_none_over_ipv4_only():
    unchecked = V4_UDP[:26] + b"\x00\x00" + V4_UDP[28:]
    assert transport_valid(UDP, unchecked[12:16], unchecked[16:20], unchecked[20:])
    zero6 = V6_UDP[:46] + b"\x00\x00" + V6_UDP[48:]
    assert not transport_valid(UDP, zero6[8:24], zero6[24:40], zero6[40:])


# -- decode(..., verify_checksums=True) ----------------------------------------------------------

@pytest.mark.parametrize("packet, ethertype", [(V4_TCP, 0x0800), (V4_UDP, 0x0800), (V6_TCP, 0x86DD), (V6_UDP, 0x86DD)],
                         ids=["v4-tcp", "v4-udp", "v6-tcp", "v6-udp"])
def test_good_checksums_decode_as_without_verification(packet, ethertype):
    frame = pb.ether(packet, ethertype)
    assert decode(record(frame), 1, verify_checksums=True) == decode(record(frame), 1)
    assert decode_all(record(frame), 1, verify_checksums=True) == [decode(record(frame), 1)]


def test_a_bad_ipv4_header_checksum_drops_the_packet_whatever_it_carries():
    for packet in (V4_TCP, V4_UDP, pb.checksummed(pb.ipv4(proto=1, payload=b"\x08" + bytes(7)))):
        frame = pb.ether(flip(packet, 10))
        with pytest.raises(BadIPChecksum, match=r"^frame 4: bad IPv4 header checksum 0x[0-9a-f]{4} \(0x[0-9a-f]{4} "
                                                r"expected\)$"):
            decode(record(frame), 4, verify_checksums=True)
        assert isinstance(unwrap(record(frame), 4, verify_checksums=True)[0], BadIPChecksum)
    assert issubclass(BadIPChecksum, PacketDecodeError)


@pytest.mark.parametrize("packet, ethertype, at, proto", [
    (V4_TCP, 0x0800, 20 + 16, "TCP"), (V4_UDP, 0x0800, 20 + 6, "UDP"),
    (V6_TCP, 0x86DD, 40 + 20, "TCP"), (V6_UDP, 0x86DD, 40 + 8, "UDP")], ids=["v4-tcp", "v4-udp", "v6-tcp", "v6-udp"])
def test_a_bad_transport_checksum_raises_with_the_packet_it_decoded(packet, ethertype, at, proto):
    frame = pb.ether(flip(packet, at), ethertype)
    with pytest.raises(BadTransportChecksum) as caught:
        decode(record(frame), 6, verify_checksums=True)
    assert str(caught.value).startswith(f"frame 6: bad {proto} checksum 0x")
    assert caught.value.packet == decode(record(frame), 6)      # what Zeek records as C
    assert decode(record(frame), 6) is not None                  # not verified by default
    found = unwrap(record(frame), 6, verify_checksums=True)
    assert len(found) == 1 and isinstance(found[0], BadTransportChecksum)


def test_what_the_capture_cut_is_not_verified():
    segment = pb.checksummed(pb.ipv4(payload=pb.tcp(payload=b"p" * 200)))
    bad = flip(segment, 100)                        # a payload byte the snapshot length cuts off
    frame = pb.ether(bad)
    packet = decode(record(frame[:80], origlen=len(frame)), 1, verify_checksums=True)
    assert packet.payload_len == 200
    with pytest.raises(BadTransportChecksum):
        decode(record(frame), 1, verify_checksums=True)
    # UDP: Zeek checks only a frame captured whole, even if the cut falls after the datagram.
    datagram = pb.ether(flip(V4_UDP, 30))
    assert decode(record(datagram, origlen=len(datagram) + 4), 1, verify_checksums=True).proto == UDP
    with pytest.raises(BadTransportChecksum):
        decode(record(datagram), 1, verify_checksums=True)


def test_a_first_fragment_is_not_verified_as_if_it_were_the_datagram():
    whole = pb.udp(payload=b"z" * 100)
    first = pb.checksummed(pb.ipv4(proto=17, payload=whole[:48], more_fragments=True))
    assert decode(record(pb.ether(first)), 1, verify_checksums=True).payload_len == 100


def test_a_zero_total_length_is_dropped_when_verifying():
    frame = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"s" * 10), total_length=0))
    assert decode(record(frame), 1).payload_len == 10
    with pytest.raises(BadIPChecksum, match="total length 0"):
        decode(record(frame), 1, verify_checksums=True)


def test_vxlan_may_send_a_zero_checksum_over_ipv6_too():
    inner = pb.ether(pb.checksummed(pb.ipv4(payload=pb.tcp(payload=b"in"))))
    outer = pb.checksummed(pb.ipv6(next_header=17, payload=pb.udp(40000, 4789, pb.vxlan(inner))))
    zero = outer[:46] + b"\x00\x00" + outer[48:]
    found = decode_all(record(pb.ether(zero, 0x86DD)), 1, verify_checksums=True)
    assert [p.proto for p in found] == [UDP, TCP]
    elsewhere = pb.checksummed(pb.ipv6(next_header=17, payload=pb.udp(40000, 4790, pb.vxlan(inner))))
    with pytest.raises(BadTransportChecksum):
        decode(record(pb.ether(elsewhere[:46] + b"\x00\x00" + elsewhere[48:], 0x86DD)), 1, verify_checksums=True)


def test_a_bad_outer_udp_checksum_opens_no_tunnel():
    inner = pb.ether(pb.checksummed(pb.ipv4(payload=pb.tcp(payload=b"in"))))
    outer = pb.checksummed(pb.ipv4(proto=17, payload=pb.udp(40000, 4789, pb.vxlan(inner))))
    found = unwrap(record(pb.ether(flip(outer, 27))), 1, verify_checksums=True)
    assert len(found) == 1 and isinstance(found[0], BadTransportChecksum) and found[0].packet.dport == 4789
    # A bad inner checksum leaves the outer packet standing.
    bad_inner = pb.ether(flip(pb.checksummed(pb.ipv4(payload=pb.tcp(payload=b"in"))), 40))
    outer = pb.checksummed(pb.ipv4(proto=17, payload=pb.udp(40000, 4789, pb.vxlan(bad_inner))))
    first, second = unwrap(record(pb.ether(outer)), 1, verify_checksums=True)
    assert first.dport == 4789 and isinstance(second, BadTransportChecksum)
    assert str(second).endswith("(inside VXLAN)")


def test_an_ipv6_routing_header_puts_the_final_destination_in_the_pseudo_header():
    final = bytes.fromhex("20010db8000000000000000000000099")
    routing = bytes([2, 2, 1]) + bytes(4) + final          # type 2, 1 segment left: the home address
    segment = pb.tcp(payload=b"r")
    packet = bytearray(pb.ipv6(payload=segment, extensions=[(43, routing)]))
    pseudo = bytes(packet[8:24]) + final + struct.pack("!IxxxB", len(segment), 6)
    packet[-len(segment) + 16:-len(segment) + 18] = struct.pack("!H", ~pb._ones_complement(pseudo + segment) & 0xFFFF)
    frame = pb.ether(bytes(packet), 0x86DD)
    assert decode(record(frame), 1, verify_checksums=True).dst == "2001:db8::2"


def test_the_pipeline_verifies_only_when_asked(tmp_path):
    from harness.analysis import pipeline
    from harness.analysis.summary import facts
    good, bad_tcp, bad_ip = pb.ether(V4_TCP), pb.ether(flip(V4_TCP, 40)), pb.ether(flip(V4_UDP, 11))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate([good, bad_tcp, bad_ip])]))
    plain = pipeline.analyse(path)
    assert plain.packets == 3 and not plain.warnings and len(plain.conversations) == 2
    verified = pipeline.analyse(path, verify_checksums=True)
    # The bad TCP checksum is the tracker's (Zeek's history C); the bad IPv4 header drops the packet.
    assert verified.packets == 1 and verified.others == {"bad IPv4 header checksums": 1}
    (conversation,) = verified.conversations
    assert "C" in facts(conversation)["history"] or "c" in facts(conversation)["history"]
    (warning,) = verified.warnings
    assert warning.startswith(f"{path}: frame 3: bad IPv4 header checksum 0x") and warning.endswith("; skipped")
    # The C scanner, told to verify, agrees (it then takes nothing on its fast path).
    if pipeline._speedups is not None:
        in_c, in_python = [], []
        c = pipeline.stream_facts(path, in_c.append, verify_checksums=True)
        python = pipeline.stream_conversations(path, lambda conv: in_python.append(facts(conv)), verify_checksums=True)
        assert in_c == in_python and (c.packets, c.warnings, c.others) == (python.packets, python.warnings, python.others)
    # read_packets has no tracker: it skips the bad TCP checksum with a warning.
    warnings = []
    assert len(list(pipeline.read_packets(path, warnings, verify_checksums=True))) == 1 and len(warnings) == 2


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
def test_checksum_verdicts_match_tshark(tmp_path):
    frames = [pb.ether(V4_TCP), pb.ether(flip(V4_TCP, 40)), pb.ether(V4_UDP), pb.ether(flip(V4_UDP, 29)),
              pb.ether(V6_TCP, 0x86DD), pb.ether(flip(V6_TCP, 62), 0x86DD), pb.ether(V6_UDP, 0x86DD),
              pb.ether(flip(V6_UDP, 50), 0x86DD), pb.ether(flip(V4_TCP, 13)),
              pb.ether(V4_UDP[:26] + b"\x00\x00" + V4_UDP[28:])]
    path = tmp_path / "checksums.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate(frames)]))
    out = subprocess.run([TSHARK, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                          "-o", "udp.check_checksum:TRUE", "-T", "fields", "-e", "ip.checksum.status",
                          "-e", "tcp.checksum.status", "-e", "udp.checksum.status"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    theirs, ours = [], []
    with open_capture(path) as capture:
        for number, (line, rec) in enumerate(zip(out, capture), 1):
            ip_status, tcp_status, udp_status = (line.split("\t") + ["", ""])[:3]
            # tshark: 1 good, 0 bad, 2 not verified (a UDP checksum of 0 over IPv4)
            theirs.append("bad IP" if ip_status == "0" else "bad" if "0" in (tcp_status, udp_status) else "good")
            try:
                decode(rec, number, verify_checksums=True)
                ours.append("good")
            except BadIPChecksum:
                ours.append("bad IP")
            except BadTransportChecksum:
                ours.append("bad")
    assert ours == theirs == ["good", "bad", "good", "bad", "good", "bad", "good", "bad", "bad IP", "good"]


VERIFIED_TRACES = ["chksums/localhost-bad-chksum.pcap", "tunnels/vxlan-encapsulated-igmp-v2.pcap", "tunnels/Teredo.pcap",
                   "tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap", "tunnels/gre-within-gre.pcap"]


@pytest.mark.parametrize("name", VERIFIED_TRACES)
def test_verifying_zeek_traces_in_c_and_in_python_agree(name):
    from harness.analysis import pipeline
    from harness.analysis.summary import facts
    from support import REPO
    if pipeline._speedups is None:
        pytest.skip("harness.analysis._speedups is not compiled")
    path = REPO / "captures" / "zeek" / "traces" / name
    in_c, in_python = [], []
    c = pipeline.stream_facts(path, in_c.append, verify_checksums=True)
    python = pipeline.stream_conversations(path, lambda conv: in_python.append(facts(conv)), verify_checksums=True)
    assert in_c == in_python
    assert (c.packets, c.frames, c.warnings, c.others) == (python.packets, python.frames, python.warnings, python.others)
