"""Header decoding: every link type, IPv4/IPv6, TCP/UDP, lengths, errors; cross-checked with tshark."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from support import pcapbuild as pb
from harness.wire.decode import (NonFirstFragment, PacketDecodeError, UnreachableQuote, UnsupportedLinkType,
                            check_linktype, decode, decode_icmp_unreachable)
from harness.wire.packet import ACK, PSH, SYN, TCP, UDP, Packet
from harness.wire.reader import CaptureFormatError, Record, open_capture

SEGMENT = pb.tcp(sport=40000, dport=8080, seq=0xDEADBEEF, ack=0x01020304, flags=PSH | ACK, window=512,
                 payload=b"hello world")
DATAGRAM = pb.udp(sport=5353, dport=53, payload=b"query")


def record(data: bytes, linktype: int = 1, origlen=None, time_ns: int = 12_500_000_000) -> Record:
    return Record(linktype, time_ns, len(data), len(data) if origlen is None else origlen, data, 0, ())


def check_segment(packet: Packet, src="10.0.0.1", dst="10.0.0.2", frame=7, ip_len=None):
    if ip_len is None:
        ip_len = 71 if ":" in src else 51        # IPv6: payload length + 40; IPv4: the total length
    assert packet == Packet(frame, 12_500_000_000, src, dst, TCP, 40000, 8080, 11, b"hello world",
                            0xDEADBEEF, 0x01020304, PSH | ACK, 512, None, None, ip_len)


# -- link types -------------------------------------------------------------------------

V4_SEGMENT = pb.ipv4(payload=SEGMENT)
V6_SEGMENT = pb.ipv6(src="2001:db8::1", dst="2001:db8::2", payload=SEGMENT)


@pytest.mark.parametrize("linktype, frame", [
    (1, pb.ether(V4_SEGMENT)),
    (1, pb.ether(V4_SEGMENT, vlans=[(0x8100, 100)])),
    (1, pb.ether(V4_SEGMENT, vlans=[(0x88A8, 10), (0x8100, 20)])),
    (113, pb.sll(V4_SEGMENT)),
    (276, pb.sll2(V4_SEGMENT)),
    (0, pb.null(V4_SEGMENT, 2, "<")),
    (0, pb.null(V4_SEGMENT, 2, ">")),
    (108, pb.null(V4_SEGMENT, 2, ">")),
    (101, V4_SEGMENT),
    (12, V4_SEGMENT),
    (14, V4_SEGMENT),
    (228, V4_SEGMENT),
], ids=["ether", "vlan", "qinq", "sll", "sll2", "null-le", "null-be", "loop", "raw", "raw12",
        "raw14", "ipv4"])
def test_ipv4_over_each_link_type(linktype, frame):
    check_linktype(linktype)
    check_segment(decode(record(frame, linktype), 7))


@pytest.mark.parametrize("linktype, frame", [
    (1, pb.ether(V6_SEGMENT, 0x86DD)),
    (1, pb.ether(V6_SEGMENT, 0x86DD, vlans=[(0x8100, 7)])),
    (113, pb.sll(V6_SEGMENT, 0x86DD)),
    (276, pb.sll2(V6_SEGMENT, 0x86DD)),
    (0, pb.null(V6_SEGMENT, 24, "<")),
    (0, pb.null(V6_SEGMENT, 28, ">")),
    (0, pb.null(V6_SEGMENT, 30, "<")),
    (101, V6_SEGMENT),
    (229, V6_SEGMENT),
], ids=["ether", "vlan", "sll", "sll2", "null24", "null28-be", "null30", "raw", "ipv6"])
def test_ipv6_over_each_link_type(linktype, frame):
    check_segment(decode(record(frame, linktype), 7), "2001:db8::1", "2001:db8::2")


PPPOE_SESSION = b"\x11\x00\x00\x2a"            # version/type, code 0 (session data), session id 42
MPLS_TWO_LABELS = struct.pack("!II", (100 << 12) | 64, (200 << 12) | 0x100 | 64)


def pppoe(payload: bytes, ppp_protocol: int = 0x0021) -> bytes:
    return PPPOE_SESSION + struct.pack("!HH", len(payload) + 2, ppp_protocol) + payload


def fddi_snap(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x50" + b"\x02" * 12 + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", ethertype) + payload


def fabricpath(frame: bytes) -> bytes:
    """A Cisco FabricPath frame: outer addresses, ethertype 0x8903, FTag and TTL, then the Ethernet frame with
    its frame check sequence (which Wireshark's dissector expects there; the IP lengths leave it out)."""
    return pb.MAC_B + pb.MAC_A + b"\x89\x03\x00\x3f" + frame + b"\x00\x00\x00\x00"


def pbb(payload: bytes, ethertype: int = 0x0800) -> bytes:
    """802.1ah behind a VLAN tag, as Zeek's pbb.pcap has it: the I-tag, then the customer's Ethernet header."""
    return pb.ether(b"\x00\x1e\xbb\x30" + pb.MAC_A + pb.MAC_B + struct.pack("!H", ethertype) + payload, 0x88E7,
                    vlans=[(0x8100, 0xFD3)])


def vntag(payload: bytes, after: int = 0x8100) -> bytes:
    """A VN-Tag and (as Zeek reads it only then) a VLAN tag after it, as vntag_vlan_sandwich_clean.pcap has."""
    inner = struct.pack("!HH", 250, 0x0800) + payload if after == 0x8100 else payload
    return pb.ether(b"\x00\x00\x00\x33" + struct.pack("!H", after) + inner, 0x8926, vlans=[(0x8100, 250)])


SNAP_IPV4 = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
WLAN_ADDRESSES = pb.MAC_A + pb.MAC_B + pb.MAC_A + b"\x10\x00"


def wlan(payload: bytes, control: bytes = b"\x08\x01", llc: bytes = SNAP_IPV4, qos: bool = False,
         four_addresses: bool = False) -> bytes:
    """An 802.11 frame: frame control, duration, three addresses and sequence, then the fourth address
    (From DS and To DS both set) and the QoS control if asked, then LLC/SNAP and the payload."""
    return (control + b"\x00\x00" + WLAN_ADDRESSES + (pb.MAC_B if four_addresses else b"")
            + (b"\x00\x00" if qos else b"") + llc + payload)


RADIOTAP = b"\x00\x00\x08\x00\x00\x00\x00\x00"        # version 0, length 8, nothing present


# Link layers beyond loopback's, for captures people bring from elsewhere (Zeek's test traces have them all).
OTHER_LINKS_V4 = [
    (9, b"\xff\x03\x00\x21" + V4_SEGMENT),
    (9, b"\x00\x21" + V4_SEGMENT),
    (9, b"\x21" + V4_SEGMENT),
    (50, b"\xff\x03\x00\x21" + V4_SEGMENT),
    (50, b"\x0f\x00\x08\x00" + V4_SEGMENT),
    (51, pppoe(V4_SEGMENT)),
    (104, b"\x8f\x00\x08\x00" + V4_SEGMENT),
    (10, fddi_snap(V4_SEGMENT)),
    (1, pb.ether(pppoe(V4_SEGMENT), 0x8864)),
    (1, pb.ether(pppoe(V4_SEGMENT), 0x8864, vlans=[(0x8100, 5)])),
    (1, pb.ether(MPLS_TWO_LABELS + V4_SEGMENT, 0x8847)),
    (113, pb.sll(MPLS_TWO_LABELS[4:] + V4_SEGMENT, 0x8847)),
    (1, fabricpath(pb.ether(V4_SEGMENT))),
    (1, fabricpath(pb.ether(V4_SEGMENT, vlans=[(0x8100, 9)]))),
    (1, pbb(V4_SEGMENT)),
    (1, pbb(struct.pack("!HH", 5, 0x0800) + V4_SEGMENT, 0x8100)),
    (1, vntag(V4_SEGMENT)),
    (105, wlan(V4_SEGMENT)),
    (105, wlan(V4_SEGMENT, b"\x88\x02", qos=True)),
    (105, wlan(V4_SEGMENT, b"\x08\x03", four_addresses=True)),
    (105, wlan(V4_SEGMENT, b"\x88\x03", qos=True, four_addresses=True)),
    (127, RADIOTAP + wlan(V4_SEGMENT)),
]
OTHER_LINK_IDS = ["ppp", "ppp-no-address", "ppp-compressed", "ppp-hdlc", "ppp-hdlc-cisco", "pppoe", "chdlc",
                  "fddi", "ether-pppoe", "vlan-pppoe", "ether-mpls", "sll-mpls", "fabricpath", "fabricpath-vlan",
                  "pbb", "pbb-vlan", "vntag-vlan", "wlan", "wlan-qos", "wlan-4-addresses", "wlan-qos-4-addresses",
                  "radiotap"]


@pytest.mark.parametrize("linktype, frame", OTHER_LINKS_V4, ids=OTHER_LINK_IDS)
def test_ipv4_over_other_link_layers(linktype, frame):
    check_linktype(linktype)
    check_segment(decode(record(frame, linktype), 7))


@pytest.mark.parametrize("linktype, frame", [
    (9, b"\xff\x03\x00\x57" + V6_SEGMENT),
    (51, pppoe(V6_SEGMENT, 0x0057)),
    (104, b"\x0f\x00\x86\xdd" + V6_SEGMENT),
    (10, fddi_snap(V6_SEGMENT, 0x86DD)),
    (1, pb.ether(MPLS_TWO_LABELS + V6_SEGMENT, 0x8848)),
    (1, fabricpath(pb.ether(V6_SEGMENT, 0x86DD))),
    (1, pbb(V6_SEGMENT, 0x86DD)),
    (105, wlan(V6_SEGMENT, llc=SNAP_IPV4[:6] + b"\x86\xdd")),
    (127, RADIOTAP + wlan(V6_SEGMENT, b"\x88\x01", llc=SNAP_IPV4[:6] + b"\x86\xdd", qos=True)),
], ids=["ppp", "pppoe", "chdlc", "fddi", "mpls", "fabricpath", "pbb", "wlan", "radiotap-qos"])
def test_ipv6_over_other_link_layers(linktype, frame):
    check_segment(decode(record(frame, linktype), 7), "2001:db8::1", "2001:db8::2")


@pytest.mark.parametrize("linktype, frame, what", [
    (9, b"\xff\x03\xc0\x21" + b"\x01" * 10, "non-IP frames"),            # LCP
    (51, pppoe(b"\x01" * 10, 0xC021), "non-IP frames"),
    (10, b"\x50" + b"\x02" * 12 + b"\x42\x42\x03" + b"\x00" * 20, "non-IP frames"),   # spanning tree LLC
    (1, pb.ether(MPLS_TWO_LABELS + b"\x00" * 30, 0x8847), "non-IP frames"),  # pseudowire control word
    (1, pb.ether(pppoe(pb.ipv4(proto=1, payload=b"\x08" + b"\x00" * 7)), 0x8864), "ICMP"),
    (1, vntag(V4_SEGMENT, after=0x0800), "VN-Tags not followed by a VLAN tag"),     # Zeek reads no further
    (1, pbb(b"\x00\x01" + b"\x00" * 26, 0x0806), "ARP"),
    (105, b"\x80\x00\x00\x00" + WLAN_ADDRESSES[:18] + b"\x00" * 20, "802.11 management and control frames"),
    (105, wlan(b"", b"\x48\x01", llc=b"") + b"\x00" * 4, "802.11 data frames without data"),     # null data
    (105, wlan(V4_SEGMENT, b"\x88\x41", qos=True), "encrypted 802.11 frames"),
    (105, wlan(b"\x12" * 40, b"\x08\x41", llc=b""), "encrypted 802.11 frames"),
    (105, wlan(b"\x01" * 30, llc=b"\x42\x42\x03\x00\x00\x00\x00\x00"), "802.11 frames without LLC/SNAP"),
    (105, wlan(b"\x01" * 30, llc=SNAP_IPV4[:6] + b"\x88\x8e"), "EAPOL"),
    (127, RADIOTAP + wlan(b"\x01" * 30, llc=SNAP_IPV4[:6] + b"\x08\x06"), "ARP"),
])
def test_not_ip_on_other_link_layers(linktype, frame, what):
    from harness.wire.decode import describe_other
    assert decode(record(frame, linktype), 1) is None
    assert describe_other(record(frame, linktype)) == what


@pytest.mark.parametrize("linktype, frame, message", [
    (9, b"\xff\x03", "frame 3: frame ends before its PPP protocol field"),
    (9, b"\xff\x03\x00", "frame 3: frame ends inside its PPP protocol field"),
    (51, b"\x11\x00", "frame 3: frame ends before its PPP protocol field"),
    (104, b"\x0f\x00\x08", "frame 3: frame of 3 bytes is too short for the Cisco HDLC header (4 bytes)"),
    (10, b"\x50" * 20, "frame 3: frame of 20 bytes is too short for the FDDI and LLC headers"),
    (1, pb.ether(struct.pack("!I", 100 << 12), 0x8847), "frame 3: frame ends inside its MPLS label stack"),
    (1, fabricpath(pb.MAC_A * 2)[:28], "frame 3: frame ends inside its Cisco FabricPath header"),
    (1, pbb(b"")[:-2], "frame 3: frame ends inside its 802.1ah (PBB) header"),
    (1, pb.ether(b"\x00\x00\x00\x33\x81", 0x8926), "frame 3: frame ends inside its VN-Tag"),
    (105, wlan(b"", llc=b"")[:20], "frame 3: 802.11 frame of 20 bytes is too short for its header"),
    (105, wlan(b"", b"\x08\x03", llc=b""), "frame 3: 802.11 frame of 24 bytes is too short for its header"),
    (105, wlan(b"", llc=b"\xaa\xaa\x03\x00\x00"), "frame 3: 802.11 frame ends inside its LLC/SNAP header"),
    (127, b"\x00\x00\x08", "frame 3: frame of 3 bytes is too short for the radiotap header"),
    (127, RADIOTAP, "frame 3: radiotap header length 8 leaves nothing of the 8-byte frame"),
])
def test_other_link_layers_cut_short(linktype, frame, message):
    with pytest.raises(PacketDecodeError) as caught:
        decode(record(frame, linktype), 3)
    assert str(caught.value) == message


def test_vlan_tagged_sll():
    frame = pb.sll(struct.pack("!HH", 100, 0x0800) + V4_SEGMENT, protocol=0x8100)
    check_segment(decode(record(frame, 113), 7))


@pytest.mark.parametrize("linktype, frame", [
    (1, pb.ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, 0x0806)),     # ARP
    (1, pb.ether(pb.ipv4(proto=1, payload=b"\x08\x00\x00\x00\x00\x01\x00\x01"))),   # ICMP echo
    (1, pb.ether(pb.ipv6(next_header=58, payload=b"\x80\x00\x00\x00"), 0x86DD)),     # ICMPv6
    (1, pb.ether(pb.ipv6(next_header=59), 0x86DD)),                                 # no next header
    (1, pb.ether(pb.ipv4(proto=50, payload=b"\x00" * 16))),                         # ESP
    (1, pb.ether(b"\x00" * 40, 0x88CC)),                                            # LLDP
    (0, pb.null(V4_SEGMENT, 7)),                                                    # unknown AF
    (101, b"\x50" + V4_SEGMENT[1:]),                                                # IP version 5
    (113, pb.sll(b"\x00" * 40, 0x0004)),                                            # 802.2 frame
])
def test_not_tcp_or_udp_is_none(linktype, frame):
    assert decode(record(frame, linktype), 1) is None


def test_unsupported_link_type_message():
    with pytest.raises(UnsupportedLinkType) as caught:
        check_linktype(107)
    message = str(caught.value)
    assert message.startswith("link type 107 (Frame Relay) is not supported; supported: 0 (BSD loopback), "
                               "1 (Ethernet), ")
    assert "276 (Linux cooked v2)" in message and "\n" not in message
    assert caught.value.linktype == 107
    assert "link type 4242 is not supported" in str(UnsupportedLinkType(4242))


def test_decode_refuses_unsupported_link_type():
    with pytest.raises(UnsupportedLinkType):
        decode(record(V4_SEGMENT, 107), 1)


# -- IPv4 / IPv6 / TCP / UDP ------------------------------------------------------------

def test_udp_over_ipv4_and_ipv6():
    v4 = decode(record(pb.ether(pb.ipv4(src="192.168.1.1", dst="192.168.1.2", proto=17, payload=DATAGRAM))), 3)
    assert v4 == Packet(3, 12_500_000_000, "192.168.1.1", "192.168.1.2", UDP, 5353, 53, 5, b"query", ip_len=33)
    v6 = decode(record(pb.ether(pb.ipv6(src="::1", dst="fe80::1", next_header=17, payload=DATAGRAM), 0x86DD)), 4)
    assert v6 == Packet(4, 12_500_000_000, "::1", "fe80::1", UDP, 5353, 53, 5, b"query", ip_len=53)


def test_ipv4_options_are_skipped():
    packet = decode(record(pb.ether(pb.ipv4(options=b"\x94\x04\x00\x00", payload=SEGMENT))), 7)
    check_segment(packet, ip_len=55)       # the total length counts the options


def test_ipv6_extension_headers_are_skipped():
    frame = pb.ipv6(payload=SEGMENT, extensions=[(0, pb.ipv6_option_header(0)), (43, pb.ipv6_option_header(1)),
                                                 (60, pb.ipv6_option_header(0))])
    check_segment(decode(record(frame, 101), 7), "2001:db8::1", "2001:db8::2", ip_len=103)   # + 8 + 16 + 8


def test_ipv6_authentication_header_is_skipped():
    ah = bytes([2]) + b"\x00" * 14  # AH payload len 2: (2+2)*4 = 16 bytes with its next-header byte
    frame = pb.ipv6(payload=SEGMENT, extensions=[(51, ah)])
    check_segment(decode(record(frame, 101), 7), "2001:db8::1", "2001:db8::2", ip_len=87)    # + 16


def test_first_fragment_is_decoded_with_the_whole_udp_length():
    whole = pb.udp(payload=b"z" * 3000)
    first = pb.ipv4(proto=17, payload=whole[:1480], more_fragments=True)
    packet = decode(record(first, 101), 1)
    assert packet.payload_len == 3000 and packet.payload == b"z" * 1472
    first6 = pb.ipv6(next_header=17, payload=whole[:1232], extensions=[(44, pb.ipv6_fragment_header(0, True))])
    packet = decode(record(first6, 101), 1)
    assert packet.payload_len == 3000 and packet.payload == b"z" * 1224 and packet.sport == 5353


def test_non_first_fragments_are_not_decodable():
    later = pb.ipv4(proto=17, payload=b"z" * 800, fragment_offset=1480)
    with pytest.raises(NonFirstFragment, match=r"^frame 5: IPv4 fragment at offset 1480 has no UDP header"):
        decode(record(later, 101), 5)
    later6 = pb.ipv6(next_header=6, payload=b"z" * 800, extensions=[(44, pb.ipv6_fragment_header(1232))])
    with pytest.raises(NonFirstFragment, match=r"^frame 6: IPv6 fragment at offset 1232 has no TCP header"):
        decode(record(later6, 101), 6)
    assert issubclass(NonFirstFragment, PacketDecodeError)
    # A later fragment of something that is not TCP/UDP is simply not ours.
    assert decode(record(pb.ipv4(proto=1, payload=b"z" * 8, fragment_offset=8), 101), 1) is None
    icmp6_later = pb.ipv6(next_header=58, payload=b"z" * 8, extensions=[(44, pb.ipv6_fragment_header(8))])
    assert decode(record(icmp6_later, 101), 1) is None


def test_snaplen_truncated_packet_keeps_wire_length():
    frame = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"p" * 1000)))
    packet = decode(record(frame[:80], origlen=len(frame)), 1)
    assert packet.payload_len == 1000 and packet.payload == b"p" * 26
    frame6 = pb.ether(pb.ipv6(next_header=17, payload=pb.udp(payload=b"u" * 500)), 0x86DD)
    packet = decode(record(frame6[:70], origlen=len(frame6)), 1)
    assert packet.payload_len == 500 and packet.payload == b"u" * 8


def test_ethernet_padding_is_not_payload():
    frame = pb.ether(pb.ipv4(payload=pb.tcp(flags=ACK)))
    padded = frame + b"\x00" * (60 - len(frame))
    packet = decode(record(padded), 1)
    assert packet.payload_len == 0 and packet.payload == b""
    tiny_udp = pb.ether(pb.ipv4(proto=17, payload=pb.udp(payload=b"ab")))
    packet = decode(record(tiny_udp + b"\xff" * (60 - len(tiny_udp))), 1)
    assert packet.payload_len == 2 and packet.payload == b"ab"


def test_segmentation_offload_zero_total_length_uses_wire_length():
    frame = pb.ether(pb.ipv4(payload=pb.tcp(payload=b"s" * 100), total_length=0))
    packet = decode(record(frame), 1)
    assert packet.payload_len == 100


def test_syn_options():
    options = b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\x00" * 8 + b"\x01\x03\x03\x07"
    syn = pb.ether(pb.ipv4(payload=pb.tcp(flags=SYN, options=options)))
    packet = decode(record(syn), 1)
    assert (packet.mss, packet.wscale, packet.flags) == (1460, 7, SYN)
    # Options of other segments are not looked at.
    ack = pb.ether(pb.ipv4(payload=pb.tcp(flags=ACK, options=options)))
    assert (decode(record(ack), 1).mss, decode(record(ack), 1).wscale) == (None, None)
    # Malformed options end the parse without an error.
    broken = pb.ether(pb.ipv4(payload=pb.tcp(flags=SYN, options=b"\x02\x04\x05\xb4\x08\x00\x03\x03\x07\x00")))
    assert (decode(record(broken), 1).mss, decode(record(broken), 1).wscale) == (1460, None)
    overrun = pb.ether(pb.ipv4(payload=pb.tcp(flags=SYN, options=b"\x01\x01\x03\x09")))
    assert decode(record(overrun), 1).wscale is None


@pytest.mark.parametrize("frame, message", [
    (pb.ether(pb.ipv4(payload=SEGMENT, ihl=4)), "IPv4 header length 16 is less than 20"),
    (pb.ether(pb.ipv4(payload=SEGMENT, total_length=10)), "IPv4 total length 10 is less than its header length 20"),
    (pb.ether(pb.ipv4(payload=SEGMENT, total_length=2000)), "IPv4 total length 2000 exceeds the"),
    (pb.ether(pb.ipv4(payload=SEGMENT, version=6)), "IPv4 packet with IP version 6"),
    (pb.ether(pb.ipv4(payload=pb.tcp(data_offset=4))), "TCP data offset 16 is less than 20"),
    (pb.ether(pb.ipv4(payload=pb.tcp(data_offset=15))), "TCP header length 60 exceeds the 20-byte segment"),
    (pb.ether(pb.ipv4(payload=SEGMENT[:12])), "TCP segment of 12 bytes is shorter than a TCP header"),
    (pb.ether(pb.ipv4(proto=17, payload=pb.udp(length=4))), "UDP length 4 is less than 8"),
    (pb.ether(pb.ipv4(proto=17, payload=pb.udp(length=400))), "UDP length 400 exceeds the 8 bytes of IP payload"),
    (pb.ether(pb.ipv4(proto=17, payload=b"abc")), "UDP datagram of 3 bytes is shorter than a UDP header"),
    (pb.ether(pb.ipv6(payload=SEGMENT, payload_length=500), 0x86DD), "IPv6 payload length 500 exceeds"),
    (pb.ether(pb.ipv6(payload=SEGMENT, extensions=[(0, b"\x07" + b"\x00" * 6)]), 0x86DD),
     "IPv6 extension headers run past the payload length"),
    (pb.ether(b"\x45\x00"), "captured only 2 bytes of the IPv4 header"),
    (b"\x02\x00\x00", "frame of 3 bytes is too short for the Ethernet header (14 bytes)"),
    (pb.ether(b"", vlans=[(0x8100, 1)])[:16], "frame ends inside a VLAN tag"),
])
def test_malformed_headers_raise_one_line_errors(frame, message):
    with pytest.raises(PacketDecodeError) as caught:
        decode(record(frame), 9)
    assert str(caught.value).startswith("frame 9: ")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.frame == 9


def test_header_cut_off_by_capture_is_an_error():
    frame = pb.ether(pb.ipv4(payload=SEGMENT))
    with pytest.raises(PacketDecodeError, match="captured only 10 bytes of the TCP header"):
        decode(record(frame[:44], origlen=len(frame)), 2)


def test_addresses_are_cached_but_correct():
    sources = [f"10.{i // 256}.{i % 256}.1" for i in range(300)]
    frames = [pb.ipv4(src=source, dst="10.9.9.9", payload=SEGMENT) for source in sources]
    for _ in range(2):
        assert [decode(record(f, 101), 1).src for f in frames] == sources


# -- ICMP port unreachable --------------------------------------------------------------

def test_icmp_port_unreachable_quotes_udp():
    quoted = pb.ipv4(src="10.0.0.1", dst="10.0.0.2", proto=17, payload=pb.udp(sport=40001, dport=9999))
    icmp = b"\x03\x03\x00\x00\x00\x00\x00\x00" + quoted
    frame = pb.ether(pb.ipv4(src="10.0.0.2", dst="10.0.0.1", proto=1, payload=icmp))
    assert decode(record(frame), 1) is None
    assert decode_icmp_unreachable(record(frame)) == UnreachableQuote("10.0.0.1", "10.0.0.2", UDP, 40001, 9999)

    quoted6 = pb.ipv6(src="::1", dst="::2", next_header=17, payload=pb.udp(sport=40002, dport=9998))
    icmp6 = b"\x01\x04\x00\x00\x00\x00\x00\x00" + quoted6
    frame6 = pb.sll2(pb.ipv6(src="::2", dst="::1", next_header=58, payload=icmp6), 0x86DD)
    assert decode_icmp_unreachable(record(frame6, 276)) == UnreachableQuote("::1", "::2", UDP, 40002, 9998)


def test_icmp_unreachable_rejects_everything_else():
    assert decode_icmp_unreachable(record(pb.ether(V4_SEGMENT))) is None
    host_unreachable = b"\x03\x01\x00\x00\x00\x00\x00\x00" + pb.ipv4(proto=17, payload=pb.udp())
    assert decode_icmp_unreachable(record(pb.ether(pb.ipv4(proto=1, payload=host_unreachable)))) is None
    truncated = b"\x03\x03\x00\x00\x00\x00\x00\x00" + pb.ipv4(proto=17, payload=pb.udp())[:22]
    assert decode_icmp_unreachable(record(pb.ether(pb.ipv4(proto=1, payload=truncated)))) is None
    assert decode_icmp_unreachable(record(b"\x00" * 5)) is None


# -- cross-check with tshark ------------------------------------------------------------

TSHARK = shutil.which("tshark")
TSHARK_FIELDS = ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport",
                 "tcp.dstport", "udp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.len",
                 "udp.length", "tcp.window_size_value", "tcp.options.mss_val", "tcp.options.wscale.shift"]


def tshark_rows(path):
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
                         + [arg for field in TSHARK_FIELDS for arg in ("-e", field)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [dict(zip(TSHARK_FIELDS, line.split("\t"))) for line in out.splitlines()]


def as_tshark(packet: Packet) -> dict:
    tcp = packet.proto == TCP
    v6 = ":" in packet.src
    return {
        "frame.number": str(packet.frame),
        "ip.src": "" if v6 else packet.src, "ipv6.src": packet.src if v6 else "",
        "ip.dst": "" if v6 else packet.dst, "ipv6.dst": packet.dst if v6 else "",
        "tcp.srcport": str(packet.sport) if tcp else "", "udp.srcport": "" if tcp else str(packet.sport),
        "tcp.dstport": str(packet.dport) if tcp else "", "udp.dstport": "" if tcp else str(packet.dport),
        "tcp.seq_raw": str(packet.seq) if tcp else "", "tcp.ack_raw": str(packet.ack) if tcp else "",
        "tcp.flags": f"0x{packet.flags:04x}" if tcp else "",
        "tcp.len": str(packet.payload_len) if tcp else "",
        "udp.length": "" if tcp else str(packet.payload_len + 8),
        "tcp.window_size_value": str(packet.window) if tcp else "",
        "tcp.options.mss_val": "" if packet.mss is None else str(packet.mss),
        "tcp.options.wscale.shift": "" if packet.wscale is None else str(packet.wscale),
    }


def compare_with_tshark(path):
    expected = tshark_rows(path)
    with open_capture(path) as capture:
        ours = []
        for frame, rec in enumerate(capture, 1):
            check_linktype(rec.linktype)
            packet = decode(rec, frame)
            if packet is not None:
                ours.append(as_tshark(packet))
    expected = [row for row in expected if row["tcp.srcport"] or row["udp.srcport"]]
    assert ours == expected
    return ours


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
@pytest.mark.parametrize("linktype, frame", OTHER_LINKS_V4, ids=OTHER_LINK_IDS)
def test_other_link_layers_match_tshark(tmp_path, linktype, frame):
    path = tmp_path / "link.pcap"
    path.write_bytes(pb.pcap([(1700000000, 0, frame)], linktype=linktype))
    assert len(compare_with_tshark(path)) == 1


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
def test_scapy_crafted_capture_matches_tshark(tmp_path):
    from scapy.all import ARP, ICMP, IP, TCP as STCP, UDP as SUDP, CookedLinux, Dot1Q, Ether, IPv6, Padding, Raw
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
    from scapy.utils import wrpcap

    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    packets = [
        ether / IP(src="10.0.0.1", dst="10.0.0.2") / STCP(sport=40000, dport=80, flags="S", seq=1000,
                                                          options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]),
        ether / IP(src="10.0.0.2", dst="10.0.0.1") / STCP(sport=80, dport=40000, flags="SA", seq=5, ack=1001,
                                                          options=[("MSS", 65495), ("SAckOK", b""), ("WScale", 10)]),
        ether / IP(src="10.0.0.1", dst="10.0.0.2") / STCP(sport=40000, dport=80, flags="PA", seq=1001, ack=6)
        / Raw(b"GET / HTTP/1.0\r\n\r\n"),
        ether / IP(src="10.0.0.1", dst="10.0.0.2") / STCP(sport=40000, dport=80, flags="A", seq=1019, ack=6),
        ether / Dot1Q(vlan=42) / IP(src="10.0.0.3", dst="10.0.0.4") / SUDP(sport=5000, dport=53) / Raw(b"q" * 30),
        ether / Dot1Q(type=0x8100, vlan=1) / Dot1Q(vlan=2) / IP(src="10.0.0.5", dst="10.0.0.6") / STCP(flags="FA"),
        ether / IPv6(src="2001:db8::1", dst="2001:db8::2") / STCP(sport=1, dport=2, flags="R", seq=2**32 - 1),
        ether / IPv6(src="fe80::1", dst="ff02::fb") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / SUDP(sport=5353, dport=5353) / Raw(b"m" * 12),
        ether / ARP(),
        ether / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(),
        ether / IP(src="10.0.0.7", dst="10.0.0.8") / STCP(sport=7, dport=8, flags="A") / Raw(b"x" * 2)
        / Padding(b"\x00" * 4),
    ]
    for i, packet in enumerate(packets):
        packet.time = 1700000000 + i / 10
    plain = tmp_path / "crafted.pcap"
    wrpcap(str(plain), packets)
    rows = compare_with_tshark(plain)
    assert len(rows) == 9
    assert rows[-1]["tcp.len"] == "2"       # the 4 bytes of Ethernet padding are not payload

    cooked = tmp_path / "cooked.pcap"
    wrpcap(str(cooked), [CookedLinux(proto=0x0800) / IP(src="1.2.3.4", dst="5.6.7.8") / SUDP(sport=9, dport=10)])
    compare_with_tshark(cooked)

    # Snaplen-truncated frames: tshark derives tcp.len from the IP header, as we must.
    big = bytes(ether / IP(src="10.0.0.1", dst="10.0.0.2") / STCP(sport=3, dport=4, flags="A") / Raw(b"b" * 1000))
    truncated = tmp_path / "truncated.pcapng"
    truncated.write_bytes(pb.shb() + pb.idb(1, 96) + pb.epb(0, 5, big[:96], origlen=len(big)))
    rows = compare_with_tshark(truncated)
    assert rows[0]["tcp.len"] == "1000"


DUMPCAP = shutil.which("dumpcap")


@pytest.mark.skipif(not (TSHARK and DUMPCAP and hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="needs tshark, dumpcap and root to capture on loopback")
def test_real_loopback_capture_matches_tshark(tmp_path):
    """A real dumpcap pcapng with two interfaces (lo as Ethernet, any as SLL2 with snaplen 80)."""
    tcp_port, udp_port, probe_port = (free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM),
                                      free_port(socket.SOCK_DGRAM))
    path = tmp_path / "real.pcapng"
    bpf = f"tcp port {tcp_port} or udp port {udp_port} or udp port {probe_port}"
    dumpcap = subprocess.Popen([DUMPCAP, "-q", "-i", "lo", "-f", bpf, "-i", "any", "-y", "LINUX_SLL2",
                                "-s", "80", "-f", bpf, "-w", str(path)],
                               stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_probe(dumpcap, path, probe_port, b"start")
        with socket.create_server(("127.0.0.1", tcp_port)) as server:
            client = socket.create_connection(("127.0.0.1", tcp_port))
            conn, _ = server.accept()
            client.sendall(b"c" * 3000)
            received = 0
            while received < 3000:
                received += len(conn.recv(65536))
            conn.sendall(b"s" * 10)
            client.recv(100)
            client.close()
            conn.close()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"d" * 200, ("::1", udp_port))
        wait_for_probe(dumpcap, path, probe_port, b"end")
    finally:
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(timeout=20)
    rows = compare_with_tshark(path)
    assert {row["tcp.len"] for row in rows} >= {"3000", "10"}
    assert any(row["udp.length"] == "208" for row in rows)
    with open_capture(path) as capture:
        linktypes = {rec.linktype for rec in capture}
        assert [(i.name, i.linktype, i.filter) for i in capture.interfaces] == [("lo", 1, bpf), ("any", 276, bpf)]
        assert capture.interfaces[1].snaplen == 80
    assert linktypes == {1, 276}


def free_port(kind) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_probe(dumpcap: subprocess.Popen, path, port: int, marker: bytes, timeout: float = 15) -> None:
    """Send `marker` datagrams until the capture file shows one on both interfaces.

    dumpcap announces itself before its capture is live and writes the file in bursts,
    so the file itself is the only reliable sign; reading a half-written file is fine,
    the reader yields what is complete and then complains.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        while time.monotonic() < deadline:
            if dumpcap.poll() is not None:
                pytest.fail(f"dumpcap exited with status {dumpcap.returncode}")
            sender.sendto(marker, ("127.0.0.1", port))
            time.sleep(0.05)
            if probe_linktypes(path, port, marker) == {1, 276}:
                return
    pytest.fail(f"no {marker!r} probe in {path} after {timeout}s")


def probe_linktypes(path, port: int, marker: bytes) -> set:
    seen = set()
    try:
        with open_capture(path) as capture:
            for frame, rec in enumerate(capture, 1):
                packet = decode(rec, frame)
                if packet and packet.dport == port and packet.payload == marker:
                    seen.add(rec.linktype)
    except (OSError, CaptureFormatError):
        pass
    return seen
