"""Tunnels opened as Zeek opens them (harness.wire.tunnel, through unwrap() and decode_all()): IP in IP,
GRE (with its optional fields, PPTP, Ethernet, ERSPAN, Aruba 802.11), VXLAN, Geneve, Teredo, AYIYA,
GTPv1 and GRE over UDP; what each does not read; depth; what outer UDP flows teach; inner wire
lengths; ICMP inside; cross-checked with tshark."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from support import pcapbuild as pb
from harness.analysis.pipeline import analyse
from harness.wire.decode import (Other, PacketDecodeError, UnreachableQuote, decode, decode_all,
                                 decode_icmp_unreachable, unwrap)
from harness.wire.packet import TCP, UDP, Packet
from harness.wire.reader import Record, open_capture
from harness.wire.tunnel import TUNNEL_MAX_DEPTH, TunnelSessions

TSHARK = shutil.which("tshark")
SECOND = 10**9

INNER_TCP = pb.ipv4(src="192.168.7.1", dst="192.168.7.2", payload=pb.tcp(sport=33000, dport=80, seq=5, payload=b"GET"))
INNER_UDP6 = pb.ipv6(src="2001:0:4136:e378::1", dst="2001:db8::53", next_header=17,
                     payload=pb.udp(sport=5353, dport=53, payload=b"six"))
INNER_ETHER = pb.ether(INNER_TCP)


def record(data: bytes, origlen=None, time_ns=5 * SECOND) -> Record:
    return Record(1, time_ns, len(data), len(data) if origlen is None else origlen, data, 0, ())


def outer_ip(payload: bytes, proto: int, src="10.1.1.1", dst="10.2.2.2") -> bytes:
    return pb.ether(pb.ipv4(src=src, dst=dst, proto=proto, payload=payload))


def outer_udp(payload: bytes, sport: int, dport: int, src="10.1.1.1", dst="10.2.2.2") -> bytes:
    return outer_ip(pb.udp(sport=sport, dport=dport, payload=payload), 17, src, dst)


def teredo(inner: bytes, origin: bool = False, authentication: bool = False) -> bytes:
    headers = b""
    if authentication:
        headers += b"\x00\x01\x02\x03" + b"id" + b"aut" + bytes(8) + b"\x00"
    if origin:
        headers += b"\x00\x00" + struct.pack("!H", 3544 ^ 0xFFFF) + bytes(4)
    return headers + inner


def ayiya(inner: bytes, next_header: int = 41, opcode: int = 1, signed: bool = False) -> bytes:
    """AYIYA's header: a 16-byte identity (length code 4), and if `signed` a 20-byte SHA-1 signature
    (signature length 5 words, hash 2, authentication 1: the 0x52 0x11 Zeek recognises on any port)."""
    identity = bytes(16)
    if signed:
        return struct.pack("!BBBBI", (4 << 4) | 1, 0x52, 0x10 | opcode, next_header, 0) + identity + bytes(20) + inner
    return struct.pack("!BBBBI", (4 << 4) | 1, 0, opcode, next_header, 0) + identity + inner


def gtp(inner: bytes, message: int = 255, flags: int = 0x30, extension: bytes = b"") -> bytes:
    body = inner
    if flags & 0x07:
        body = struct.pack("!HBB", 0, 0, 0x85 if extension else 0) + extension + inner
    return struct.pack("!BBHI", flags, message, len(body), 0x1234) + body


def amsdu(*packets: bytes) -> bytes:
    """An 802.11 QoS data frame, A-MSDU bit set, with an LLC/SNAP subframe for each IPv4 packet."""
    return amsdu_of(*(b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + packet for packet in packets))


def amsdu_of(*msdus: bytes) -> bytes:
    """An 802.11 A-MSDU of these subframe payloads, each padded as Zeek reads it (length % 4 bytes)."""
    body = b""
    for index, msdu in enumerate(msdus):
        body += pb.MAC_A + pb.MAC_B + struct.pack("!H", len(msdu)) + msdu
        if index < len(msdus) - 1:
            body += bytes(len(msdu) % 4)
    return b"\x88\x01\x00\x00" + pb.MAC_A + pb.MAC_B + pb.MAC_A + b"\x00\x00" + b"\x80\x00" + body


def shape(found):
    """Each thing found, in a word: ('TCP', src, sport) / ('UDP', ...), Other's kind, or the error class."""
    out = []
    for item in found:
        if isinstance(item, Packet):
            out.append(("TCP" if item.proto == TCP else "UDP", item.src, item.sport))
        elif isinstance(item, Other):
            out.append(item.kind)
        else:
            out.append(type(item).__name__)
    return out


OUTER_UDP = ("UDP", "10.1.1.1")
INNER_GET = ("TCP", "192.168.7.1", 33000)
ERSPAN_II = bytes.fromhex("1000000100000000")      # version 1, session 1 (Zeek skips it unread)
INNER_SIX = ("UDP", "2001:0:4136:e378::1", 5353)


# -- IP in IP and GRE --------------------------------------------------------------------

@pytest.mark.parametrize("frame, expected", [
    (outer_ip(INNER_TCP, 4), [INNER_GET]),
    (outer_ip(INNER_UDP6, 41), [INNER_SIX]),
    (outer_ip(INNER_TCP, 41), [INNER_GET]),                        # the version nibble decides, as in Zeek
    (outer_ip(pb.gre(INNER_TCP), 47), [INNER_GET]),
    (outer_ip(pb.gre(INNER_TCP, key=7, sequence=9, checksum=True), 47), [INNER_GET]),
    (outer_ip(pb.gre(INNER_UDP6, 0x86DD), 47), [INNER_SIX]),
    (outer_ip(pb.gre(INNER_ETHER, 0x6558), 47), [INNER_GET]),
    (outer_ip(pb.gre(INNER_ETHER, 0x88BE), 47), [INNER_GET]),                          # ERSPAN type I
    (outer_ip(pb.gre(bytes(8) + INNER_ETHER, 0x88BE, sequence=1), 47), [INNER_GET]),   # type II
    (outer_ip(pb.gre(bytes(12) + INNER_ETHER, 0x22EB, sequence=1), 47), [INNER_GET]),  # type III
    (outer_ip(pb.gre(bytes(11) + b"\x01" + bytes(8) + INNER_ETHER, 0x22EB), 47), [INNER_GET]),  # and its subheader
    (outer_ip(pb.gre(b"\xff\x03\x00\x21" + INNER_TCP, 0x880B, key=len(INNER_TCP) << 16, sequence=1, ack=0,
                     version=1), 47), [INNER_GET]),                                    # PPTP
    (pb.ether(pb.ipv6(next_header=4, payload=pb.ipv4(proto=47, payload=pb.gre(
        b"\xff\x03\x00\x21" + INNER_TCP, 0x880B, key=0, version=1))), 0x86DD), [INNER_GET]),
    (outer_ip(pb.gre(amsdu(INNER_TCP, pb.ipv4(payload=pb.tcp(sport=44))), 0x8210), 47),
     [INNER_GET, ("TCP", "10.0.0.1", 44)]),                                             # Aruba, A-MSDU
], ids=["ipip", "6in4", "4in41", "gre", "gre-key-seq-csum", "gre-ipv6", "gre-ethernet", "erspan1", "erspan2",
        "erspan3", "erspan3-subheader", "pptp", "pptp-in-ipv6", "aruba-amsdu"])
def test_ip_tunnels_give_their_inner_packets(frame, expected):
    assert shape(unwrap(record(frame), 1)) == expected
    assert [p.frame for p in decode_all(record(frame), 1)] == [1] * len(expected)
    assert decode(record(frame), 1) is None        # decode() reads only the outer packet, which is not TCP/UDP


@pytest.mark.parametrize("frame, kind", [
    (outer_ip(pb.gre(INNER_TCP, flags=0x4000), 47), "GRE with a routing field"),
    (outer_ip(pb.gre(INNER_TCP, flags=0x0008), 47), "GRE with reserved flags set"),
    (outer_ip(pb.gre(INNER_TCP, version=2), 47), "GRE version 2"),
    (outer_ip(pb.gre(b"\x00\x01\x41\x00" + INNER_TCP, 0x8847), 47), "GRE protocol 0x8847"),
    (outer_ip(pb.gre(INNER_TCP, 0x0800, version=1), 47), "enhanced GRE protocol 0x0800"),
    (outer_ip(pb.gre(b"\xff\x03\xc0\x21" + bytes(20), 0x880B, key=0, version=1), 47), "PPP protocol 0xc021 in PPTP's GRE"),
    (outer_ip(pb.gre(b"\xff\x03\x00\x21" + INNER_TCP + b"xx", 0x880B, key=0, version=1), 47),
     "PPTP's GRE payload longer than its IP packet"),
    (outer_ip(b"\x00\x00", 47), "truncated GRE headers"),
    (outer_ip(pb.gre(pb.ipv4(proto=1, payload=b"\x08" + bytes(7))), 47), "ICMP in GRE"),
    (outer_ip(pb.gre(pb.ether(b"\x00\x01" + bytes(26), 0x0806), 0x6558), 47), "ARP in GRE"),
], ids=["routing", "reserved-flags", "version-2", "mpls", "egre-not-ppp", "pptp-lcp", "pptp-longer", "cut",
        "icmp", "arp-in-ethernet"])
def test_what_gre_holds_that_is_not_read_is_said(frame, kind):
    assert unwrap(record(frame), 1)[-1].kind == kind


def test_at_most_four_tunnels_are_opened():
    packet = pb.ipv4(src="9.9.9.9", payload=pb.tcp(sport=99))
    for depth in range(TUNNEL_MAX_DEPTH + 1):
        packet = pb.ipv4(src=f"10.0.0.{depth}", proto=4, payload=packet)
    assert shape(unwrap(record(pb.ether(packet)), 1)) == ["tunnels nested deeper than 4 in IP-in-IP in IP-in-IP in "
                                                          "IP-in-IP in IP-in-IP"]
    assert shape(unwrap(record(pb.ether(packet[20:])), 1)) == [("TCP", "9.9.9.9", 99)]


def test_an_ip_tunnel_cut_by_the_capture_leaves_its_inner_packet_unread():
    frame = outer_ip(pb.gre(INNER_TCP), 47)
    (error,) = unwrap(record(frame[:-2], origlen=len(frame)), 1)
    assert isinstance(error, PacketDecodeError) and str(error).endswith("(inside GRE)")
    assert "IPv4 total length 43 exceeds the 41 bytes" in str(error)


def test_an_icmp_error_inside_a_tunnel_quotes_its_datagram():
    quoted = pb.ipv4(src="192.168.7.1", dst="192.168.7.2", proto=17, payload=pb.udp(sport=4000, dport=53))
    icmp = pb.ipv4(src="192.168.7.2", dst="192.168.7.1", proto=1, payload=b"\x03\x03\x00\x00" + bytes(4) + quoted)
    (other,) = unwrap(record(outer_ip(pb.gre(icmp), 47)), 1)
    assert other.kind == "ICMP in GRE"
    assert decode_icmp_unreachable(other.record) == UnreachableQuote("192.168.7.1", "192.168.7.2", UDP, 4000, 53)


def test_an_amsdu_frame_holds_a_packet_per_subframe():
    frame = amsdu(INNER_TCP, pb.ipv4(payload=pb.tcp(sport=44)), pb.ipv4(payload=pb.tcp(sport=45)))
    rec = Record(105, 5 * SECOND, len(frame), len(frame), frame, 0, ())
    assert [p.sport for p in decode_all(rec, 1)] == [33000, 44, 45]
    assert decode(rec, 1).sport == 33000                    # decode() reads the first
    cut = Record(105, 5 * SECOND, len(frame) - 10, len(frame), frame[:-10], 0, ())
    assert shape(unwrap(cut, 1)) == [INNER_GET, ("TCP", "10.0.0.1", 44), "PacketDecodeError"]
    assert str(unwrap(cut, 1)[-1]) == "frame 1: 802.11 A-MSDU subframe of 48 bytes cut off"
    # Zeek stops at a subframe it cannot hand on.
    eapol = b"\xaa\xaa\x03\x00\x00\x00\x88\x8e" + bytes(10)
    frame = amsdu_of(eapol, b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + INNER_TCP)
    assert shape(unwrap(Record(105, 5 * SECOND, len(frame), len(frame), frame, 0, ()), 1)) == ["EAPOL"]


# -- UDP tunnels ---------------------------------------------------------------------------

@pytest.mark.parametrize("frame, expected", [
    (outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789), [INNER_GET]),
    (outer_udp(pb.vxlan(INNER_ETHER), 4789, 50000), [INNER_GET]),                       # a reply, from the port
    (outer_udp(pb.geneve(INNER_ETHER, options=bytes(8)), 50000, 6081), [INNER_GET]),
    (outer_udp(pb.geneve(INNER_TCP, 0x0800), 50000, 6081), [INNER_GET]),
    (outer_udp(teredo(INNER_UDP6), 50000, 3544), [INNER_SIX]),
    (outer_udp(teredo(INNER_UDP6, origin=True), 3544, 50000), [INNER_SIX]),
    (outer_udp(teredo(INNER_UDP6, origin=True, authentication=True), 50000, 3544), [INNER_SIX]),
    (outer_udp(teredo(INNER_UDP6), 50000, 50001), [INNER_SIX]),                          # recognised, any port
    (outer_udp(ayiya(INNER_UDP6), 50000, 5072), [INNER_SIX]),
    (outer_udp(ayiya(INNER_TCP, 4, signed=True), 50000, 5073), [INNER_GET]),             # recognised, any port
    (outer_udp(gtp(INNER_TCP), 2152, 2152), [INNER_GET]),
    (outer_udp(gtp(INNER_UDP6, flags=0x32), 2152, 2152), [INNER_SIX]),                   # sequence number word
    (outer_udp(gtp(INNER_TCP, flags=0x34, extension=b"\x01\x00\x00\x00"), 2152, 2152), [INNER_GET]),
    (outer_udp(pb.gre(INNER_TCP), 50000, 4754), [INNER_GET]),
    (outer_udp(gtp(pb.ipv4(src="10.9.9.9", proto=17, payload=pb.udp(sport=40000, dport=3544,
                                                                      payload=teredo(INNER_UDP6)))), 2152, 2152),
     [("UDP", "10.9.9.9", 40000), INNER_SIX]),                                          # Teredo in GTP
], ids=["vxlan", "vxlan-reply", "geneve-options", "geneve-ip", "teredo", "teredo-origin", "teredo-auth",
        "teredo-detected", "ayiya", "ayiya-detected", "gtp", "gtp-sequence", "gtp-extension", "gre-over-udp",
        "teredo-in-gtp"])
def test_udp_tunnels_give_the_outer_datagram_then_its_inner_packets(frame, expected):
    found = unwrap(record(frame), 1)
    assert shape(found[:1])[0][:2] == OUTER_UDP and shape(found[1:]) == expected
    assert decode(record(frame), 1) == found[0]                # decode() gives the outer datagram


@pytest.mark.parametrize("frame, kind", [
    (outer_udp(pb.vxlan(INNER_ETHER, flags=0), 50000, 4789), "VXLAN headers without the I flag"),
    (outer_udp(pb.vxlan(b""), 50000, 4789), "empty VXLAN datagrams"),
    (outer_udp(b"\x08\x00", 50000, 4789), "truncated VXLAN headers"),
    (outer_udp(pb.geneve(b"\x00\x01" + bytes(26), 0x0806), 50000, 6081), "ARP in Geneve"),
    (outer_udp(pb.geneve(INNER_ETHER, version=1), 50000, 6081), "Geneve version 1"),
    (outer_udp(pb.geneve(INNER_ETHER, 0x88B5), 50000, 6081), "Geneve protocol 0x88b5"),
    (outer_udp(pb.vxlan(pb.ether(pb.ipv4(proto=2, payload=bytes(8)))), 50000, 4789), "IGMP in VXLAN"),
    (outer_udp(teredo(pb.ipv6(next_header=59)), 50000, 3544), "Teredo bubbles"),
    (outer_udp(teredo(pb.ipv6(next_header=59)) + b"junk", 50000, 3544), "Teredo bubbles"),
    (outer_udp(teredo(INNER_UDP6 + b"junk"), 50000, 3544), "Teredo payload longer than its IP packet"),
    (outer_udp(b"\x00\x02" + bytes(50), 50000, 3544), "malformed Teredo headers"),
    (outer_udp(ayiya(INNER_UDP6, 17), 50000, 5072), "AYIYA next header 17"),
    (outer_udp(gtp(INNER_TCP, flags=0x50), 2152, 2152), "GTP version 2 on a GTPv1 port"),
    (outer_udp(gtp(INNER_TCP + b"junk"), 2152, 2152), "GTPv1 G-PDUs longer than its IP packet"),
    (outer_udp(gtp(b"\x10" + bytes(30)), 2152, 2152), "non-IP packets in GTPv1"),
    (outer_udp(gtp(pb.ipv4(proto=17, payload=pb.udp(2152, 2152, gtp(INNER_TCP)))), 2152, 2152), "GTPv1 datagrams in GTPv1"),
], ids=["vxlan-no-i-flag", "vxlan-empty", "vxlan-cut", "geneve-arp", "geneve-version", "geneve-other",
        "igmp-in-vxlan", "teredo-bubble", "teredo-bubble-trailing", "teredo-longer", "teredo-malformed",
        "ayiya-udp", "gtp-version-2", "gtp-longer", "gtp-not-ip", "gtp-in-gtp"])
def test_what_udp_tunnels_hold_that_is_not_read_is_said(frame, kind):
    found = unwrap(record(frame), 1)
    assert found[0].src == "10.1.1.1" and found[-1].kind == kind


@pytest.mark.parametrize("frame", [
    outer_udp(ayiya(INNER_UDP6, opcode=0), 50000, 5072),             # not "forward"
    outer_udp(gtp(INNER_TCP, message=1), 2152, 2152),                 # an echo request
    outer_udp(gtp(INNER_TCP, flags=0x20), 2152, 2152),                # GTP'
    outer_udp(b"\x12\x34\x01\x00" + bytes(40), 50000, 53),            # DNS, no tunnel
], ids=["ayiya-not-forward", "gtp-echo", "gtp-prime", "dns"])
def test_datagrams_that_carry_no_packet_are_just_datagrams(frame):
    assert unwrap(record(frame), 1) == [decode(record(frame), 1)]


def test_a_flow_that_was_malformed_for_an_analyzer_is_not_opened_by_it_again():
    bad, good = outer_udp(pb.vxlan(INNER_ETHER, flags=0), 50000, 4789), outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789)
    sessions = TunnelSessions(idle_timeout_ns=60 * SECOND)
    assert shape(unwrap(record(bad), 1, tunnels=sessions))[1] == "VXLAN headers without the I flag"
    assert shape(unwrap(record(good, time_ns=6 * SECOND), 2, tunnels=sessions))[1] == \
        "VXLAN on a flow where it was malformed before"
    reply = outer_udp(pb.vxlan(INNER_ETHER), 4789, 50000, src="10.2.2.2", dst="10.1.1.1")
    assert shape(unwrap(record(reply, time_ns=7 * SECOND), 3, tunnels=sessions))[1].startswith("VXLAN on a flow")
    # Once the flow has been idle past the UDP timeout it is a new connection, judged afresh.
    assert shape(unwrap(record(good, time_ns=68 * SECOND), 4, tunnels=sessions))[1] == INNER_GET
    # Without sessions each datagram is judged alone.
    assert shape(unwrap(record(good), 2))[1] == INNER_GET
    # GTP is not held to its violations (Zeek's GTPv1 analyzer never asks).
    sessions = TunnelSessions(idle_timeout_ns=60 * SECOND)
    unwrap(record(outer_udp(gtp(INNER_TCP, flags=0x50), 2152, 2152)), 1, tunnels=sessions)
    assert shape(unwrap(record(outer_udp(gtp(INNER_TCP), 2152, 2152)), 2, tunnels=sessions))[1] == INNER_GET


def test_the_responder_port_of_a_flow_chooses_its_tunnel():
    sessions = TunnelSessions(idle_timeout_ns=60 * SECOND)
    first = outer_udp(pb.vxlan(INNER_ETHER), 3544, 4789)              # to VXLAN's port: VXLAN, both ways
    assert shape(unwrap(record(first), 1, tunnels=sessions))[1] == INNER_GET
    back = outer_udp(pb.vxlan(INNER_ETHER), 4789, 3544, src="10.2.2.2", dst="10.1.1.1")
    assert shape(unwrap(record(back), 2, tunnels=sessions))[1] == INNER_GET
    assert shape(unwrap(record(back), 2))[1] == "malformed Teredo headers"     # judged alone: its destination
    assert len(sessions) == 1


def test_each_packet_has_its_own_ip_length():
    frame = outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789)
    outer, inner = decode_all(record(frame), 1)
    assert (outer.ip_len, inner.ip_len) == (len(frame) - 14, len(INNER_TCP))


def test_inner_wire_lengths_keep_what_the_capture_cut():
    inner = pb.ether(pb.ipv4(src="192.168.7.1", dst="192.168.7.2", payload=pb.tcp(sport=1, dport=2, payload=b"b" * 500)))
    frame = outer_udp(pb.vxlan(inner), 50000, 4789)
    outer, packet = unwrap(record(frame[:120], origlen=len(frame)), 1)
    assert (outer.payload_len, packet.payload_len, len(packet.payload)) == (8 + 500 + 54, 500, 120 - 50 - 54)


def test_an_inner_packet_that_will_not_decode_follows_the_outer_one():
    frame = outer_udp(pb.vxlan(pb.ether(pb.ipv4(payload=pb.tcp(data_offset=4)))), 50000, 4789)
    outer, error = unwrap(record(frame), 8)
    assert outer.dport == 4789 and isinstance(error, PacketDecodeError)
    assert str(error) == "frame 8: TCP data offset 16 is less than 20 (inside VXLAN)"
    with pytest.raises(PacketDecodeError):
        decode_all(record(frame), 8)


def test_the_pipeline_counts_tunnels_and_what_they_hold(tmp_path):
    frames = [outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789), outer_ip(pb.gre(INNER_TCP), 47),
              outer_udp(pb.vxlan(pb.ether(pb.ipv4(proto=2, payload=bytes(8)))), 50000, 4789),
              outer_ip(pb.gre(pb.ipv4(proto=1, payload=b"\x08" + bytes(7))), 47)]
    path = tmp_path / "tunnels.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate(frames)]))
    analysis = analyse(path)
    assert analysis.frames == 4 and analysis.packets == 4 and not analysis.warnings
    assert analysis.others == {"IGMP in VXLAN": 1, "ICMP in GRE": 1}
    conversations = sorted((c.orig[0], c.orig[1], len(c.segments)) for c in analysis.conversations)
    assert conversations == [("10.1.1.1", 50000, 2), ("192.168.7.1", 33000, 2)]


def test_an_icmp_error_inside_a_tunnel_is_tied_to_the_datagram_it_quotes(tmp_path):
    datagram = pb.ipv4(src="192.168.7.1", dst="192.168.7.2", proto=17, payload=pb.udp(sport=4000, dport=53))
    icmp = pb.ipv4(src="192.168.7.2", dst="192.168.7.1", proto=1, payload=b"\x03\x03\x00\x00" + bytes(4) + datagram)
    path = tmp_path / "unreachable.pcap"
    path.write_bytes(pb.pcap([(1700000000, 0, outer_ip(pb.gre(datagram), 47)),
                              (1700000001, 0, outer_ip(pb.gre(icmp), 47, src="10.2.2.2", dst="10.1.1.1"))]))
    (conversation,) = analyse(path).conversations
    assert conversation.orig == ("192.168.7.1", 4000) and conversation.unreachable == [(2, 1700000001 * SECOND)]


def test_the_c_scanner_feeds_every_packet_a_record_holds(tmp_path):
    from harness.analysis import pipeline
    if pipeline._speedups is None:
        pytest.skip("harness.analysis._speedups is not compiled")
    frames = [outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789), outer_udp(pb.vxlan(INNER_ETHER), 4789, 50000),
              outer_ip(pb.gre(amsdu(INNER_TCP, pb.ipv4(payload=pb.tcp(sport=44))), 0x8210), 47),
              pb.ether(pb.ipv4(payload=pb.tcp(sport=1, dport=2)))]
    path = tmp_path / "tunnels.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate(frames)]))
    in_c, in_python = [], []
    from harness.analysis.summary import facts
    c = pipeline.stream_facts(path, in_c.append)
    python = pipeline.stream_conversations(path, lambda conversation: in_python.append(facts(conversation)))
    assert in_c == in_python and len(in_c) == 5
    assert (c.packets, c.frames, c.others) == (python.packets, python.frames, python.others) == (7, 4, {})


# -- cross-check with tshark -----------------------------------------------------------------

TSHARK_FIELDS = ["frame.number", "frame.protocols", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "tcp.dstport",
                 "udp.dstport", "tcp.len", "udp.length"]


def tshark_transports(path):
    """Per frame, every TCP/UDP layer tshark dissects, outermost first, each with the source address of
    the IP layer it follows: [(frame, src, sport, dport, payload length), ...]."""
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
                         + [a for f in TSHARK_FIELDS for a in ("-e", f)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    frames = []
    for line in out.splitlines():
        row = {name: value.split("|") for name, value in zip(TSHARK_FIELDS, line.split("\t"))}
        seen = {"ip": 0, "ipv6": 0, "tcp": 0, "udp": 0}
        source, layers = "", []
        for protocol in row["frame.protocols"][0].split(":"):
            if protocol in seen:
                index = seen[protocol]
                seen[protocol] += 1
                if protocol in ("ip", "ipv6"):
                    source = row[f"{protocol}.src"][index]
                else:
                    length = (int(row["tcp.len"][index]) if protocol == "tcp" else int(row["udp.length"][index]) - 8)
                    layers.append((int(row["frame.number"][0]), source, int(row[f"{protocol}.srcport"][index]),
                                   int(row[f"{protocol}.dstport"][index]), length))
        frames.append(layers)
    return frames


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
def test_every_layer_matches_tshark(tmp_path):
    frames = [outer_ip(INNER_TCP, 4), outer_ip(pb.gre(INNER_TCP, key=7, sequence=9, checksum=True), 47),
              outer_ip(pb.gre(INNER_ETHER, 0x6558), 47), outer_ip(pb.gre(ERSPAN_II + INNER_ETHER, 0x88BE, sequence=1), 47),
              outer_ip(pb.gre(b"\xff\x03\x00\x21" + INNER_TCP, 0x880B, key=0, version=1), 47),
              outer_udp(pb.vxlan(INNER_ETHER), 50000, 4789), outer_udp(pb.geneve(INNER_ETHER, options=bytes(8)), 50000, 6081),
              outer_udp(teredo(INNER_UDP6, origin=True), 50000, 3544), outer_udp(gtp(INNER_TCP), 2152, 2152),
              outer_udp(gtp(INNER_UDP6, flags=0x32), 2152, 2152), outer_udp(pb.gre(INNER_TCP), 50000, 4754),
              outer_ip(INNER_UDP6, 41), outer_udp(ayiya(INNER_UDP6), 50000, 5072),
              outer_ip(pb.gre(amsdu(INNER_TCP, pb.ipv4(payload=pb.tcp(sport=44, payload=b"o"))), 0x8210), 47)]
    path = tmp_path / "tunnels.pcap"
    path.write_bytes(pb.pcap([(1700000000 + n, 0, frame) for n, frame in enumerate(frames)]))
    ours = []
    with open_capture(path) as capture:
        for number, rec in enumerate(capture, 1):
            ours.append([(p.frame, p.src, p.sport, p.dport, p.payload_len) for p in decode_all(rec, number)])
    assert ours == tshark_transports(path)
    assert [len(layers) for layers in ours] == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2]
