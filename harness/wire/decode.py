"""Decode a capture Record's link, IP and TCP/UDP headers into a Packet, and open the tunnels it holds.

    check_linktype(record.linktype)      # once per interface: UnsupportedLinkType if we can't
    packet = decode(record, frame)       # Packet, or None when it is not TCP/UDP
    found = unwrap(record, frame, fragments=Reassembler(), tunnels=TunnelSessions(...))
    #  -> every Packet the record holds, outer first, with an Other for each thing it holds that is
    #     not TCP/UDP and is read no further, and a PacketDecodeError for each part that would not decode
    packets = decode_all(record, frame)  # just the Packets (raises the first PacketDecodeError)
    quote = decode_icmp_unreachable(record)   # UnreachableQuote of a UDP datagram, or None

Rules:

* Link types: Ethernet (1), Linux cooked v1 (113) and v2 (276), BSD loopback NULL (0, AF in
  either byte order) and LOOP (108), raw IP (101, and 12/14 as BSDs write it; 228/229), PPP (9,
  with or without the FF 03 address/control and with a compressed protocol field), PPP in HDLC
  framing (50, which may also hold Cisco HDLC), PPPoE (51), Cisco HDLC (104), FDDI (10, LLC
  with SNAP), IEEE 802.11 (105) and 802.11 behind a radiotap header (127). Anything else raises
  UnsupportedLinkType, from check_linktype up front and from decode as a last resort.
* Inside the link header, any number of 802.1Q/802.1ad tags, a PPPoE session header (ethertype
  0x8864) and an MPLS label stack (0x8847/0x8848; what follows the bottom label is IPv4 or IPv6
  by its version nibble, as Zeek and Wireshark's heuristic both read it) are stepped over. So are,
  as Zeek's packet analyzers read them (src/packet_analysis/protocol/<name>/): a Cisco FabricPath
  header (0x8903, only as an Ethernet frame's first ethertype: its 16 bytes, then the Ethernet frame
  it carries), an 802.1ah PBB I-tag (0x88E7: 4 bytes, then the customer's Ethernet header) and a
  VN-Tag (0x8926: 4 bytes and an ethertype), after which Zeek reads only a VLAN tag: a VN-Tag
  followed by anything else is not read.
* 802.11 (Zeek's ieee802_11 analyzer): only data frames that carry data (not management or
  control frames, not the null-data subtypes); the fourth address when both To DS and From DS are
  set; a QoS data frame's 2-byte QoS control, and if that frame is protected (encrypted) it is not
  read; then an LLC/SNAP header with OUI 0 naming IPv4, IPv6 or ARP (anything else is not read).
  An A-MSDU (QoS control bit 7) holds subframes, each a 14-byte header with its length and then
  LLC/SNAP; each is a packet of its own (decode() gives the first), and each is followed by
  (length % 4) bytes of padding as Zeek reads it (802.11 pads the whole subframe to a multiple of 4,
  which differs for even lengths). Radiotap (127): a little-endian header length at bytes 2-3, then
  802.11.
* Packets that are not TCP or UDP over IPv4/IPv6 (ARP, ICMP, ESP, ...) give None from decode().
* payload_len comes from the IP lengths (IPv4 total length, IPv6 payload length minus
  extension headers) minus the transport header, never from the captured bytes: a
  snaplen-truncated capture still reports the wire length, and Ethernet padding of short
  frames is not payload. For UDP it is the UDP length field minus 8 (so the first fragment
  of a fragmented datagram reports the whole datagram). `payload` is what was captured.
* An IPv4 total length or IPv6 payload length of 0 means segmentation offload or a
  jumbogram: the length is then taken from the frame's wire length.
* A record whose original length is less than its captured length has a corrupt header
  (nothing captures more than the wire carried; Wireshark flags it the same way): it
  raises PacketDecodeError rather than have its IP lengths judged against a wrong wire length.
* Malformed headers (IHL or data offset < 5, lengths past the packet, headers cut off by
  the capture) raise PacketDecodeError(frame, message); non-first IP fragments, which
  carry no ports, raise its subclass NonFirstFragment. Callers decide to skip and warn.
* Every TCP segment keeps its options' bytes as captured (Packet.options, read by
  harness.wire.tcp_options); MSS and window scale are also decoded into their fields on SYN
  segments. Malformed options just end that parse, since they are not what the conversation model checks.
  Options cut off by the capture are not an error either: a snaplen of 68 (tcpdump's old
  default) cuts every SYN's options, and the fixed 20-byte header is what a conversation needs.
* verify_checksums=True checks checksums as Zeek does unless run with -C (harness.wire.checksum):
  every IPv4 header's, whatever it carries, raising BadIPChecksum (Zeek drops the packet with a
  bad_IP_checksum weird: no connection ever counts it); then each TCP and UDP segment's, raising
  BadTransportChecksum with the decoded Packet in .packet (Zeek's TCP and UDP analyzers record
  history C for it and go no further: nothing inside a bad UDP datagram is opened). A segment not
  captured whole (cut by the snapshot length) is not checked, nor is a UDP datagram whose frame
  was cut anywhere (Zeek's `remaining >= len && len <= cap_len`), and a VXLAN datagram to port
  4789 may carry checksum 0 over IPv6 too (Zeek's exception for it). With checksums verified, an
  IPv4 total length of 0 (segmentation offload) raises BadIPChecksum: Zeek drops the packet then.
  Off by default; off, nothing is checked and decode() takes its fast path as before.

unwrap() (and decode_all()) follow Zeek further, where decode() reads one packet:

* Tunnels are opened as harness.wire.tunnel says (IP in IP, GRE, VXLAN, Geneve, Teredo, AYIYA,
  GTPv1; at most Tunnel::max_depth deep): the outer packet first (a UDP tunnel's outer datagram is a
  packet of its own; an IP-in-IP or GRE outer packet is not TCP/UDP and so none), then what it
  carries, decoded as a record of its own, depth first, in the order they appear.
* Fragments go to the Reassembler given (harness.wire.fragments), whatever protocol they carry; a
  fragment gives nothing until one completes its datagram, which is then decoded in its place, at
  the time and frame of the fragment that completed it. A fragment not captured whole is not
  reassembled (Zeek's incompletely_captured_fragment): a first one is read as decode() reads it,
  the rest are not. Without a Reassembler, fragments are read as decode() reads them, and nothing
  inside a first fragment is opened.
* What a record holds that is not TCP/UDP and not opened further is an Other, whose kind says what
  it is and what holds it ("ICMP in GRE", "IPv4 fragments", "truncated VXLAN headers"); what fails
  to decode inside a tunnel is a PacketDecodeError whose message names the tunnels, after the
  packets found before it.
"""
from __future__ import annotations

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from harness.errors import InputError
from harness.wire.checksum import internet_checksum, ipv4_header_valid, pseudo_header, transport_valid
from harness.wire.fragments import Fragment, Reassembler
from harness.wire.packet import SYN, TCP, UDP, Packet
from harness.wire.reader import Record
from harness.wire.tunnel import TEREDO, VXLAN_PORTS, NotRead, TunnelSessions, ip_tunnel, udp_tunnel

__all__ = [
    "decode", "decode_all", "unwrap", "check_linktype", "decode_icmp_unreachable", "describe_other",
    "linktype_name", "UnsupportedLinkType", "PacketDecodeError", "NonFirstFragment", "BadIPChecksum",
    "BadTransportChecksum", "UnreachableQuote", "Other", "SUPPORTED_LINKTYPES",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_FDDI = 10
LINKTYPE_RAW_BSD = 12
LINKTYPE_RAW_OPENBSD = 14
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# Not a pcap link type: what an 802.11 A-MSDU subframe holds after its own header (LLC/SNAP, then
# the packet), as unwrap() hands each subframe on.
_LINK_LLC_SNAP = -1

SUPPORTED_LINKTYPES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_BSD: "raw IP",
    LINKTYPE_RAW_OPENBSD: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked v1",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2",
    LINKTYPE_PPP: "PPP",
    LINKTYPE_FDDI: "FDDI",
    LINKTYPE_PPP_HDLC: "PPP in HDLC framing",
    LINKTYPE_PPP_ETHER: "PPPoE",
    LINKTYPE_C_HDLC: "Cisco HDLC",
    LINKTYPE_IEEE802_11: "IEEE 802.11",
    LINKTYPE_IEEE802_11_RADIOTAP: "IEEE 802.11 radiotap",
}

# Names for the link types people are most likely to hand us by mistake.
_OTHER_LINKTYPE_NAMES = {
    107: "Frame Relay", 117: "OpenBSD pflog", 119: "Prism 802.11",
    138: "IP over FireWire", 143: "DOCSIS", 147: "user 0",
    187: "Bluetooth HCI H4", 189: "Linux USB", 192: "PPI", 195: "IEEE 802.15.4", 197: "ERF",
    220: "Linux USB mmapped", 227: "SocketCAN", 239: "Linux netfilter log", 249: "USBPcap",
    252: "Wireshark upper PDU", 253: "Linux netlink", 254: "Bluetooth Linux monitor",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_VLAN_ETHERTYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_ETHERTYPE_PPPOE_SESSION = 0x8864
_MPLS_ETHERTYPES = frozenset((0x8847, 0x8848))
_ETHERTYPE_FABRICPATH = 0x8903
_ETHERTYPE_PBB = 0x88E7
_ETHERTYPE_VNTAG = 0x8926
# What Zeek's VN-Tag analyzer hands on: VLAN tags only (scripts/base/packet-protocols/vntag/main.zeek).
_AFTER_VNTAG = frozenset((0x8100, 0x88A8, 0x9100))
# PPP protocol numbers (RFC 1332, RFC 5072) as the ethertype of what they carry.
_PPP_TO_ETHERTYPE = {0x0021: ETHERTYPE_IPV4, 0x0057: ETHERTYPE_IPV6}
_SNAP_OUI_0 = b"\xaa\xaa\x03\x00\x00\x00"

# Not ethertypes (they are above 0xFFFF): why a frame's network layer was not reached, for the tally.
_NOT_VLAN_AFTER_VNTAG = 0x10001
_WLAN_NOT_DATA = 0x10002
_WLAN_NO_DATA = 0x10003
_WLAN_PROTECTED = 0x10004
_WLAN_NOT_SNAP = 0x10005

# BSD loopback AF values: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD),
# 28 (FreeBSD), 30 (Darwin).
_NULL_AF_TO_ETHERTYPE = {2: ETHERTYPE_IPV4, 24: ETHERTYPE_IPV6, 28: ETHERTYPE_IPV6, 30: ETHERTYPE_IPV6}

IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58
_IPPROTO_IPIP = 4
_IPPROTO_IPV6 = 41
_IPPROTO_GRE = 47
_IPPROTO_NONE = 59
# What unwrap() reads beyond the IP header: TCP, UDP, and the IP protocols that are tunnels.
_READ_FURTHER = frozenset((TCP, UDP, _IPPROTO_IPIP, _IPPROTO_IPV6, _IPPROTO_GRE))

# What a frame that is neither TCP nor UDP is, for saying what a capture held besides conversations.
_ETHERTYPE_NAMES = {0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP", 0x8863: "PPPoE discovery",
                    0x8864: "PPPoE session", 0x8847: "MPLS", 0x8848: "MPLS", 0x888E: "EAPOL",
                    0x88F7: "PTP", 0x8809: "slow protocols (LACP)", 0x9000: "loopback test",
                    _NOT_VLAN_AFTER_VNTAG: "VN-Tags not followed by a VLAN tag",
                    _WLAN_NOT_DATA: "802.11 management and control frames",
                    _WLAN_NO_DATA: "802.11 data frames without data",
                    _WLAN_PROTECTED: "encrypted 802.11 frames",
                    _WLAN_NOT_SNAP: "802.11 frames without LLC/SNAP"}
_IP_PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 4: "IP in IP", 41: "IPv6 in IPv4", 47: "GRE", 50: "ESP",
                      51: "AH", 58: "ICMPv6", 59: "IPv6 no next header", 89: "OSPF", 103: "PIM", 112: "VRRP",
                      132: "SCTP"}
_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_DEST_OPTS = 60
_IPV6_SKIPPABLE = frozenset((_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTS))

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32_LE = struct.Struct("<I").unpack_from
_IPV4_FIXED = struct.Struct("!BxHxxHxB").unpack_from      # ver/ihl, total length, frag field, proto
_IPV6_FIXED = struct.Struct("!4xHB").unpack_from           # payload length, next header
_TCP_FIXED = struct.Struct("!HHIIBBH").unpack_from          # ports, seq, ack, offset, flags, window
_UDP_FIXED = struct.Struct("!HHH").unpack_from              # ports, length
_new_packet = tuple.__new__
# From the start of an untagged Ethernet frame: ethertype; IPv4 version/IHL, total length, fragment
# field, protocol, addresses; TCP ports, seq, ack, data offset, flags, window.
_ETHERNET_IPV4_TCP = struct.Struct("!12xHBxHxxHxB2x8sHHIIBBH").unpack_from
_ETHERNET_IPV4_TCP_SIZE = 14 + 20 + 20


class UnsupportedLinkType(InputError):
    def __init__(self, linktype: int):
        self.linktype = linktype
        super().__init__(linktype)

    def __str__(self) -> str:
        supported = ", ".join(f"{lt} ({name})" for lt, name in sorted(SUPPORTED_LINKTYPES.items()))
        return f"link type {linktype_name(self.linktype)} is not supported; supported: {supported}"


class PacketDecodeError(InputError):
    def __init__(self, frame: int, message: str):
        self.frame = frame
        self.message = message
        super().__init__(frame, message)

    def __str__(self) -> str:
        return f"frame {self.frame}: {self.message}"


class NonFirstFragment(PacketDecodeError):
    """An IP fragment past the first: it has no transport header, so no ports."""


class BadIPChecksum(PacketDecodeError):
    """An IPv4 header whose checksum is wrong (checked only when asked): Zeek drops such a packet."""


class BadTransportChecksum(PacketDecodeError):
    """A TCP or UDP segment whose checksum is wrong (checked only when asked); `packet` is what it decoded
    to, which Zeek records as history C and analyses no further."""

    def __init__(self, frame: int, message: str, packet: Packet):
        super().__init__(frame, message)
        self.packet = packet


class UnreachableQuote(NamedTuple):
    """The datagram an ICMP/ICMPv6 port-unreachable error quotes: who sent what to where."""
    src: str
    dst: str
    proto: int
    sport: int
    dport: int


class Other(NamedTuple):
    """Something a record holds that is not a TCP/UDP packet and is not read further."""
    kind: str                  # for the tally: "ARP", "ICMP in GRE", "IPv4 fragments", "empty VXLAN datagrams"
    record: Optional[Record]   # the (inner) record it is, for decode_icmp_unreachable; None if it is no packet


Found = Union[Packet, Other, PacketDecodeError]
def linktype_name(linktype: int) -> str:
    name = SUPPORTED_LINKTYPES.get(linktype) or _OTHER_LINKTYPE_NAMES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)


def check_linktype(linktype: int) -> None:
    """Raise UnsupportedLinkType unless decode() understands this link type."""
    if linktype not in SUPPORTED_LINKTYPES:
        raise UnsupportedLinkType(linktype)


# Keyed by the raw source+destination bytes: one slice and one lookup per packet, and a
# conversation repeats the same pair. Cleared when full so odd captures can't grow it forever.
_address_pairs: Dict[bytes, Tuple[str, str]] = {}
_ADDRESS_CACHE_LIMIT = 1 << 16


def address_text(raw: bytes) -> str:
    """An IPv4 or IPv6 address (4 or 16 bytes) as text, exactly as inet_ntop(3) writes it (glibc's):
    dotted quad; IPv6 in lower-case hex with the longest run of two or more zero groups (the first
    of equals) as `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` for IPv4-compatible and -mapped addresses."""
    if len(raw) == 4:
        return "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])
    groups = struct.unpack("!8H", raw)
    best_start, best_length, start = -1, 0, -1
    for index, group in enumerate(groups + (1,)):
        if group == 0 and start < 0:
            start = index
        elif group != 0 and start >= 0:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = -1
    if best_length < 2:
        best_start, best_length = -1, 0
    if best_start == 0 and (best_length == 6 or (best_length == 5 and groups[5] == 0xFFFF)):
        return ("::ffff:" if best_length == 5 else "::") + address_text(raw[12:])
    if best_start < 0:
        return ":".join("%x" % group for group in groups)
    head = ":".join("%x" % group for group in groups[:best_start])
    tail = ":".join("%x" % group for group in groups[best_start + best_length:])
    return f"{head}::{tail}"


_address = address_text


def _address_pair(raw: bytes) -> Tuple[str, str]:
    pair = _address_pairs.get(raw)
    if pair is None:
        if len(_address_pairs) >= _ADDRESS_CACHE_LIMIT:
            _address_pairs.clear()
        half = len(raw) // 2
        pair = _address_pairs[raw] = (_address(raw[:half]), _address(raw[half:]))
    return pair


def _network_layer(linktype: int, data: bytes, frame: int) -> Tuple[int, int]:
    """(ethertype, offset of the network header) for a frame; ethertype 0 if not IP, or one of the
    pseudo-ethertypes above 0xFFFF saying why the network layer was not reached."""
    if linktype == LINKTYPE_ETHERNET:
        offset = 14
        type_at = 12
        if len(data) >= 14 and data[12] == 0x89 and data[13] == 0x03:
            # Cisco FabricPath: Zeek looks for it only here, as the frame's own ethertype.
            if len(data) < 30:
                raise PacketDecodeError(frame, "frame ends inside its Cisco FabricPath header")
            offset, type_at = 30, 28
    elif linktype == LINKTYPE_LINUX_SLL2:
        offset = 20
        type_at = 0
    elif linktype == LINKTYPE_LINUX_SLL:
        offset = 16
        type_at = 14
    elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if len(data) < 4:
            raise PacketDecodeError(frame, f"frame of {len(data)} bytes is too short for the loopback header")
        family = _U32_LE(data, 0)[0]
        if family > 0xFFFF:
            # Written by a host of the other byte order.
            family = int.from_bytes(data[:4], "big")
        return _NULL_AF_TO_ETHERTYPE.get(family, 0), 4
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_BSD, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            raise PacketDecodeError(frame, "empty raw IP frame")
        version = data[0] >> 4
        return (ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6 if version == 6 else 0), 0
    elif linktype == LINKTYPE_PPP or linktype == LINKTYPE_PPP_HDLC:
        if linktype == LINKTYPE_PPP_HDLC and data[:1] in (b"\x0f", b"\x8f"):
            return _link_type_field(data, 2, 4, "Cisco HDLC", frame)
        return _ppp(data, 2 if data[:2] == b"\xff\x03" else 0, frame)
    elif linktype == LINKTYPE_PPP_ETHER:
        return _ppp(data, 6, frame)
    elif linktype == LINKTYPE_C_HDLC:
        return _link_type_field(data, 2, 4, "Cisco HDLC", frame)
    elif linktype == LINKTYPE_FDDI:
        # Frame control, two addresses, then 802.2 LLC: only SNAP (AA AA 03, an OUI) carries an ethertype.
        if len(data) < 21:
            raise PacketDecodeError(frame, f"frame of {len(data)} bytes is too short for the FDDI and LLC headers")
        if data[13:16] != b"\xaa\xaa\x03":
            return 0, 13
        return _link_type_field(data, 19, 21, "FDDI", frame)
    elif linktype == LINKTYPE_IEEE802_11 or linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        start = _radiotap_length(data, frame) if linktype == LINKTYPE_IEEE802_11_RADIOTAP else 0
        found = _wlan_payloads(data, start, frame)
        if isinstance(found, int):
            return found, start
        payloads, _amsdu, cut = found
        if not payloads:
            if cut:
                raise PacketDecodeError(frame, cut)
            return _WLAN_NO_DATA, start
        ethertype, offset = _llc_snap(data, payloads[0][0], payloads[0][1], frame)
        if ethertype == _WLAN_NOT_SNAP and data[start + 1] & 0x40:
            ethertype = _WLAN_PROTECTED
        return ethertype, offset
    elif linktype == _LINK_LLC_SNAP:
        return _llc_snap(data, 0, len(data), frame)
    else:
        raise UnsupportedLinkType(linktype)
    ethertype, offset = _link_type_field(data, type_at, offset, SUPPORTED_LINKTYPES[linktype], frame)
    while True:
        if ethertype in _VLAN_ETHERTYPES:
            if len(data) < offset + 4:
                raise PacketDecodeError(frame, "frame ends inside a VLAN tag")
            ethertype = (data[offset + 2] << 8) | data[offset + 3]
            offset += 4
        elif ethertype == _ETHERTYPE_PBB:
            # The 4-byte I-tag, then the customer's destination, source and ethertype.
            if len(data) < offset + 18:
                raise PacketDecodeError(frame, "frame ends inside its 802.1ah (PBB) header")
            ethertype = (data[offset + 16] << 8) | data[offset + 17]
            offset += 18
        elif ethertype == _ETHERTYPE_VNTAG:
            if len(data) < offset + 6:
                raise PacketDecodeError(frame, "frame ends inside its VN-Tag")
            ethertype = (data[offset + 4] << 8) | data[offset + 5]
            offset += 6
            if ethertype not in _AFTER_VNTAG:
                return _NOT_VLAN_AFTER_VNTAG, offset
        else:
            break
    if ethertype == _ETHERTYPE_PPPOE_SESSION:
        return _ppp(data, offset + 6, frame)
    if ethertype in _MPLS_ETHERTYPES:
        return _mpls(data, offset, frame)
    return ethertype, offset


def _radiotap_length(data: bytes, frame: int) -> int:
    if len(data) < 4:
        raise PacketDecodeError(frame, f"frame of {len(data)} bytes is too short for the radiotap header")
    length = data[2] | (data[3] << 8)
    if length >= len(data):
        raise PacketDecodeError(frame, f"radiotap header length {length} leaves nothing of the "
                                       f"{len(data)}-byte frame")
    return length


def _wlan_payloads(data: bytes, start: int, frame: int):
    """An 802.11 frame at data[start:], as Zeek's IEEE802_11 analyzer reads it: a pseudo-ethertype if it
    carries nothing to read, else ([(start, end) of each LLC/SNAP payload], whether it is an A-MSDU,
    why the subframes stopped early or '')."""
    length = len(data) - start
    if length <= 24:
        raise PacketDecodeError(frame, f"802.11 frame of {length} bytes is too short for its header")
    control, flags = data[start], data[start + 1]
    if not control & 0x08:
        return _WLAN_NOT_DATA
    if control & 0x40:
        return _WLAN_NO_DATA                   # the null-data subtypes
    header = 24 + (6 if flags & 0x03 == 0x03 else 0)
    if header >= length:
        raise PacketDecodeError(frame, f"802.11 frame of {length} bytes is too short for its header")
    amsdu = False
    if control & 0x80:                         # QoS data: a 2-byte QoS control after the addresses
        amsdu = data[start + header] & 0x80 != 0
        if flags & 0x40:
            return _WLAN_PROTECTED
        header += 2
        if header >= length:
            raise PacketDecodeError(frame, f"802.11 frame of {length} bytes is too short for its header")
    at, end = start + header, len(data)
    if not amsdu:
        return [(at, end)], False, ""
    payloads = []
    while at < end:
        if end - at < 14:
            return payloads, True, "802.11 A-MSDU subframe header cut off"
        size = (data[at + 12] << 8) | data[at + 13]
        if end - at < 14 + size:
            return payloads, True, f"802.11 A-MSDU subframe of {size} bytes cut off"
        payloads.append((at + 14, at + 14 + size))
        at += 14 + size
        if end - at >= size % 4:
            at += size % 4                     # Zeek's padding (see the module's rules)
    return payloads, True, ""


def _llc_snap(data: bytes, start: int, end: int, frame: int) -> Tuple[int, int]:
    if end - start < 8:
        raise PacketDecodeError(frame, "802.11 frame ends inside its LLC/SNAP header")
    if data[start:start + 6] != _SNAP_OUI_0:
        return _WLAN_NOT_SNAP, start
    return (data[start + 6] << 8) | data[start + 7], start + 8


def _link_type_field(data: bytes, type_at: int, offset: int, header: str, frame: int) -> Tuple[int, int]:
    if len(data) < offset:
        raise PacketDecodeError(frame, f"frame of {len(data)} bytes is too short for the "
                                       f"{header} header ({offset} bytes)")
    return (data[type_at] << 8) | data[type_at + 1], offset


def _ppp(data: bytes, at: int, frame: int) -> Tuple[int, int]:
    """A PPP protocol field at `at`: one byte when compressed (RFC 1661 section 6.5: its low bit set)."""
    if len(data) <= at:
        raise PacketDecodeError(frame, "frame ends before its PPP protocol field")
    if data[at] & 1:
        return _PPP_TO_ETHERTYPE.get(data[at], 0), at + 1
    if len(data) < at + 2:
        raise PacketDecodeError(frame, "frame ends inside its PPP protocol field")
    return _PPP_TO_ETHERTYPE.get((data[at] << 8) | data[at + 1], 0), at + 2


def _mpls(data: bytes, offset: int, frame: int) -> Tuple[int, int]:
    """Step over an MPLS label stack (RFC 3032: 4 bytes a label, bit 8 of the third byte ends it)."""
    while True:
        if len(data) < offset + 4:
            raise PacketDecodeError(frame, "frame ends inside its MPLS label stack")
        bottom = data[offset + 2] & 1
        offset += 4
        if bottom:
            break
    version = data[offset] >> 4 if len(data) > offset else 0
    return (ETHERTYPE_IPV4 if version == 4 else ETHERTYPE_IPV6 if version == 6 else 0), offset


def decode(record, frame: int, verify_checksums: bool = False) -> Optional[Packet]:
    """The TCP/UDP header fields of a capture record, or None if it is not TCP/UDP over IP.

    `record` is a pcapfile.Record (of which linktype, time_ns, origlen and data are used);
    `frame` is its 1-based number in the capture. With verify_checksums, a bad IPv4 header checksum
    raises BadIPChecksum and a bad TCP/UDP checksum BadTransportChecksum (see the module's rules).
    """
    linktype, time_ns, _caplen, origlen, data, _offset, _comments = record
    if origlen < len(data):
        raise PacketDecodeError(frame, f"original length {origlen} is less than the {len(data)} bytes captured "
                                       f"(a corrupt record header)")
    if linktype == LINKTYPE_ETHERNET and len(data) >= _ETHERNET_IPV4_TCP_SIZE and not verify_checksums:
        # Fast path for almost everything a loopback or LAN capture holds: untagged Ethernet, IPv4
        # without options, TCP. One unpack reads both headers; a frame that passes every check below
        # decodes exactly as _decode_layers would (tests/unit/test_decode_fast_path.py holds it to that),
        # and anything else, malformed or not, is left to _decode_layers.
        (ethertype, version_ihl, total_length, fragment, proto, addresses, sport, dport, seq, ack, data_offset,
         flags, window) = _ETHERNET_IPV4_TCP(data, 0)
        header_len = (data_offset >> 4) * 4
        if (ethertype == ETHERTYPE_IPV4 and version_ihl == 0x45 and proto == TCP and not fragment & 0x1FFF
                and 40 <= total_length <= origlen - 14 and 20 <= header_len <= total_length - 20):
            src, dst = _address_pairs.get(addresses) or _address_pair(addresses)
            payload_start = 34 + header_len
            payload_len = total_length - 20 - header_len
            mss = wscale = None
            if flags & SYN and header_len > 20:
                mss, wscale = _syn_options(data, 54, min(payload_start, len(data)))
            return _new_packet(Packet, (frame, time_ns, src, dst, TCP, sport, dport, payload_len,
                                        data[payload_start:payload_start + payload_len],
                                        seq, ack, flags, window, mss, wscale, total_length,
                                        data[54:payload_start] if header_len > 20 else b""))
    return _decode_layers(linktype, time_ns, origlen, data, frame, verify_checksums)


def _decode_layers(linktype: int, time_ns: int, origlen: int, data: bytes, frame: int,
                   verify_checksums: bool = False) -> Optional[Packet]:
    """decode() for any frame, one layer at a time."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 14 and data[12] == 0x08 and data[13] == 0x00:
        ethertype, offset = ETHERTYPE_IPV4, 14
    else:
        ethertype, offset = _network_layer(linktype, data, frame)
    if ethertype == ETHERTYPE_IPV4:
        found = _ipv4(data, offset, origlen - offset, frame, verify_checksums)
    elif ethertype == ETHERTYPE_IPV6:
        found = _ipv6(data, offset, origlen - offset, frame)
    else:
        return None
    if found is None:
        return None
    proto, src, dst, start, length, first_fragment, addresses, ip_len = found
    # A first fragment is not the whole segment, so its checksum cannot be checked.
    checked = addresses if verify_checksums and not first_fragment else None
    if proto == TCP:
        return _tcp(data, start, length, frame, time_ns, src, dst, ip_len, checked)
    return _udp(data, start, length, frame, time_ns, src, dst, first_fragment, ip_len, checked, origlen <= len(data))


def _ipv4(data: bytes, offset: int, wire_len: int, frame: int, verify_checksums: bool = False):
    """(proto, src, dst, transport offset, transport length, is first fragment, raw addresses, IP length
    field) or None."""
    header_len, total_length, fragment, proto, ip_len = _ipv4_header(data, offset, wire_len, frame, verify_checksums)
    if proto != TCP and proto != UDP:
        return None
    if fragment & 0x1FFF:
        raise NonFirstFragment(frame, f"IPv4 fragment at offset {(fragment & 0x1FFF) * 8} has no "
                                      f"{'TCP' if proto == TCP else 'UDP'} header (not decodable)")
    if len(data) < offset + header_len:
        raise PacketDecodeError(frame, "IPv4 options cut off by the capture")
    addresses = data[offset + 12:offset + 20]
    src, dst = _address_pairs.get(addresses) or _address_pair(addresses)
    return (proto, src, dst, offset + header_len, total_length - header_len, fragment & 0x2000 != 0, addresses,
            ip_len)


def _ipv4_header(data: bytes, offset: int, wire_len: int, frame: int, verify_checksums: bool):
    """The IPv4 header's checks, for _ipv4 and _ipv4_layer alike: (header length, total length as
    read, fragment field, protocol, total length as the header says it)."""
    if len(data) < offset + 20:
        raise PacketDecodeError(frame, f"captured only {len(data) - offset} bytes of the IPv4 header")
    version_ihl, total_length, fragment, proto = _IPV4_FIXED(data, offset)
    ip_len = total_length
    if version_ihl >> 4 != 4:
        raise PacketDecodeError(frame, f"IPv4 packet with IP version {version_ihl >> 4}")
    header_len = (version_ihl & 0x0F) * 4
    if header_len < 20:
        raise PacketDecodeError(frame, f"IPv4 header length {header_len} is less than 20")
    if total_length == 0:
        if verify_checksums:
            raise BadIPChecksum(frame, "IPv4 total length 0 (segmentation offload): its checksums cannot hold, "
                                       "and Zeek drops it when it verifies them")
        total_length = wire_len      # segmentation offload leaves it 0
    if total_length < header_len:
        raise PacketDecodeError(frame, f"IPv4 total length {total_length} is less than its header length {header_len}")
    if total_length > wire_len:
        raise PacketDecodeError(frame, f"IPv4 total length {total_length} exceeds the {wire_len} bytes "
                                       f"the frame has after its link header")
    if verify_checksums and len(data) >= offset + header_len:
        _check_ipv4_header(data, offset, header_len, frame)
    return header_len, total_length, fragment, proto, ip_len


def _ipv6_header(data: bytes, offset: int, wire_len: int, frame: int):
    """The IPv6 fixed header's checks, for _ipv6 and _ipv6_layer alike: (payload length as read,
    next header, payload length + 40 as the header says it)."""
    if len(data) < offset + 40:
        raise PacketDecodeError(frame, f"captured only {len(data) - offset} bytes of the IPv6 header")
    if data[offset] >> 4 != 6:
        raise PacketDecodeError(frame, f"IPv6 packet with IP version {data[offset] >> 4}")
    payload_len, next_header = _IPV6_FIXED(data, offset)
    ip_len = payload_len + 40
    if payload_len == 0:
        payload_len = wire_len - 40  # jumbogram or segmentation offload
    if 40 + payload_len > wire_len:
        raise PacketDecodeError(frame, f"IPv6 payload length {payload_len} exceeds the {wire_len - 40} bytes "
                                       f"the frame has after the IPv6 header")
    return payload_len, next_header, ip_len


def _check_ipv4_header(data: bytes, offset: int, header_len: int, frame: int) -> None:
    header = data[offset:offset + header_len]
    if not ipv4_header_valid(header):
        expected = internet_checksum(header[:10], b"\x00\x00", header[12:])
        raise BadIPChecksum(frame, f"bad IPv4 header checksum 0x{_U16(header, 10)[0]:04x} "
                                   f"(0x{expected:04x} expected)")


def _ipv6(data: bytes, offset: int, wire_len: int, frame: int):
    payload_len, next_header, ip_len = _ipv6_header(data, offset, wire_len, frame)
    start = offset + 40
    end = start + payload_len
    first_fragment = False
    final_destination = None
    while next_header != TCP and next_header != UDP:
        if next_header in _IPV6_SKIPPABLE or next_header == _IPV6_AH or next_header == _IPV6_FRAGMENT:
            if start + 8 > len(data) or start + 8 > end:
                raise PacketDecodeError(frame, f"IPv6 extension header {next_header} cut off")
            if next_header == _IPV6_FRAGMENT:
                fragment_field = _U16(data, start + 2)[0]
                if fragment_field >> 3:
                    if data[start] != TCP and data[start] != UDP:
                        return None
                    raise NonFirstFragment(frame, f"IPv6 fragment at offset {(fragment_field >> 3) * 8} has no "
                                                  f"{'TCP' if data[start] == TCP else 'UDP'} header (not decodable)")
                first_fragment = fragment_field & 1 == 1
                ext_len = 8
            elif next_header == _IPV6_AH:
                ext_len = (data[start + 1] + 2) * 4
            else:
                ext_len = (data[start + 1] + 1) * 8
                if next_header == _IPV6_ROUTING and final_destination is None:
                    final_destination = _routing_destination(data, start, ext_len)
            next_header = data[start]
            start += ext_len
            if start > end:
                raise PacketDecodeError(frame, "IPv6 extension headers run past the payload length")
        else:
            return None
    src, dst = _address_pair(data[offset + 8:offset + 40])
    addresses = data[offset + 8:offset + 24] + (final_destination or data[offset + 24:offset + 40])
    return next_header, src, dst, start, end - start, first_fragment, addresses, ip_len


def _routing_destination(data: bytes, start: int, ext_len: int) -> Optional[bytes]:
    """The final destination a routing header names, which the TCP/UDP pseudo-header uses (RFC 8200
    section 8.1), for the types Zeek reads it from: 0 (with an even length) and 2, segments left."""
    kind, segments_left, units = data[start + 2], data[start + 3], data[start + 1]
    if start + ext_len > len(data) or not segments_left:
        return None
    if (kind == 0 and units >= 2 and units % 2 == 0) or (kind == 2 and units == 2):
        return data[start + ext_len - 16:start + ext_len]
    return None


def _tcp(data: bytes, start: int, length: int, frame: int, time_ns: int, src: str, dst: str, ip_len: int,
         addresses: Optional[bytes] = None) -> Packet:
    """`addresses`: the raw source and destination, when the checksum is to be verified."""
    if length < 20:
        raise PacketDecodeError(frame, f"TCP segment of {length} bytes is shorter than a TCP header")
    if len(data) < start + 20:
        raise PacketDecodeError(frame, f"captured only {len(data) - start} bytes of the TCP header")
    sport, dport, seq, ack, data_offset, flags, window = _TCP_FIXED(data, start)
    header_len = (data_offset >> 4) * 4
    if header_len < 20:
        raise PacketDecodeError(frame, f"TCP data offset {header_len} is less than 20")
    if header_len > length:
        raise PacketDecodeError(frame, f"TCP header length {header_len} exceeds the {length}-byte segment")
    payload_start = start + header_len
    mss = wscale = None
    if flags & SYN and header_len > 20:
        # A short snaplen (tcpdump's old 68) cuts a SYN's options; the fixed header is all
        # the conversation needs, so read the options that were captured and keep the SYN.
        mss, wscale = _syn_options(data, start + 20, min(payload_start, len(data)))
    payload_len = length - header_len
    packet = _new_packet(Packet, (frame, time_ns, src, dst, TCP, sport, dport, payload_len,
                                  data[payload_start:payload_start + payload_len],
                                  seq, ack, flags, window, mss, wscale, ip_len,
                                  data[start + 20:payload_start] if header_len > 20 else b""))
    if addresses is not None and len(data) >= start + length:
        _check_transport(TCP, addresses, data[start:start + length], 16, frame, packet)
    return packet


def _check_transport(proto: int, addresses: bytes, segment: bytes, field_at: int, frame: int, packet: Packet) -> None:
    half = len(addresses) // 2
    src, dst = addresses[:half], addresses[half:]
    if transport_valid(proto, src, dst, segment):
        return
    expected = internet_checksum(pseudo_header(proto, src, dst, len(segment)), segment[:field_at], b"\x00\x00",
                                 segment[field_at + 2:])
    name = "TCP" if proto == TCP else "UDP"
    raise BadTransportChecksum(frame, f"bad {name} checksum 0x{_U16(segment, field_at)[0]:04x} "
                                      f"(0x{expected:04x} expected)", packet)


def _syn_options(data: bytes, pos: int, end: int) -> Tuple[Optional[int], Optional[int]]:
    mss = wscale = None
    while pos < end:
        kind = data[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= end:
            break
        size = data[pos + 1]
        if size < 2 or pos + size > end:
            break
        if kind == 2 and size == 4:
            mss = _U16(data, pos + 2)[0]
        elif kind == 3 and size == 3:
            wscale = data[pos + 2]
        pos += size
    return mss, wscale


def _udp(data: bytes, start: int, length: int, frame: int, time_ns: int, src: str, dst: str,
         fragmented: bool, ip_len: int, addresses: Optional[bytes] = None, frame_whole: bool = True) -> Packet:
    """`addresses`: the raw source and destination, when the checksum is to be verified; `frame_whole`:
    the record was captured whole (Zeek verifies a UDP checksum only then)."""
    if length < 8:
        raise PacketDecodeError(frame, f"UDP datagram of {length} bytes is shorter than a UDP header")
    if len(data) < start + 8:
        raise PacketDecodeError(frame, f"captured only {len(data) - start} bytes of the UDP header")
    sport, dport, udp_len = _UDP_FIXED(data, start)
    if udp_len == 0 and not fragmented:
        udp_len = length             # jumbogram (RFC 2675) or offload
    if udp_len < 8:
        raise PacketDecodeError(frame, f"UDP length {udp_len} is less than 8")
    if udp_len > length and not fragmented:
        raise PacketDecodeError(frame, f"UDP length {udp_len} exceeds the {length} bytes of IP payload")
    payload_len = udp_len - 8
    payload_end = start + 8 + min(payload_len, length - 8)
    packet = _new_packet(Packet, (frame, time_ns, src, dst, UDP, sport, dport, payload_len,
                                  data[start + 8:payload_end], 0, 0, 0, 0, None, None, ip_len, b""))
    if addresses is not None and frame_whole and len(data) >= start + length:
        segment = data[start:start + length]
        vxlan_unchecked = (segment[6] == 0 and segment[7] == 0 and dport in VXLAN_PORTS and length > 8 + 8 + 14
                           and segment[8] & 0x08)
        if not vxlan_unchecked:
            _check_transport(UDP, addresses, segment, 6, frame, packet)
    return packet


def describe_other(record) -> str:
    """What a record that is not TCP or UDP over IP carries, in a word or two ("ARP", "ICMPv6",
    "IPv4 protocol 253", "ethertype 0x88b5"), for the tally of what a capture held. Never raises."""
    linktype, data = record[0], record[4]
    try:
        ethertype, offset = _network_layer(linktype, data, 0)
    except (PacketDecodeError, UnsupportedLinkType):
        return "undecodable frames"
    try:
        if ethertype == ETHERTYPE_IPV4:
            if data[offset] >> 4 != 4:
                return "malformed IPv4"
            proto = data[offset + 9]
            return _IP_PROTOCOL_NAMES.get(proto, f"IPv4 protocol {proto}")
        if ethertype == ETHERTYPE_IPV6:
            next_header, at = data[offset + 6], offset + 40
            while next_header in _IPV6_SKIPPABLE or next_header == _IPV6_FRAGMENT:
                next_header, at = data[at], at + (8 if next_header == _IPV6_FRAGMENT else (data[at + 1] + 1) * 8)
            return _IP_PROTOCOL_NAMES.get(next_header, f"IPv6 next header {next_header}")
    except IndexError:
        return "IPv4 cut off" if ethertype == ETHERTYPE_IPV4 else "IPv6 cut off"
    if ethertype == 0:
        return "non-IP frames"
    if ethertype < 0x0600:
        return "802.3 LLC frames"     # a length field, not an ethertype
    return _ETHERTYPE_NAMES.get(ethertype, f"ethertype 0x{ethertype:04x}")


def decode_icmp_unreachable(record) -> Optional[UnreachableQuote]:
    """If the record is an ICMP port unreachable (v4 type 3 code 3, v6 type 1 code 4)
    quoting a UDP datagram, the quoted datagram's addresses and ports; else None.

    Never raises for malformed packets: anything that does not parse is simply not one.
    """
    try:
        ethertype, offset = _network_layer(record[0], record[4], 0)
    except PacketDecodeError:
        return None
    data = record[4]
    try:
        if ethertype == ETHERTYPE_IPV4:
            header_len = (data[offset] & 0x0F) * 4
            if data[offset + 9] != IPPROTO_ICMP or header_len < 20 or _U16(data, offset + 6)[0] & 0x1FFF:
                return None
            icmp = offset + header_len
            if data[icmp] != 3 or data[icmp + 1] != 3:
                return None
            quoted = icmp + 8
            quoted_len = (data[quoted] & 0x0F) * 4
            if data[quoted] >> 4 != 4 or quoted_len < 20 or data[quoted + 9] != UDP:
                return None
            addresses = data[quoted + 12:quoted + 20]
            udp = quoted + quoted_len
        elif ethertype == ETHERTYPE_IPV6:
            if data[offset + 6] != IPPROTO_ICMPV6:
                return None   # ICMPv6 behind extension headers is not worth the code here
            icmp = offset + 40
            if data[icmp] != 1 or data[icmp + 1] != 4:
                return None
            quoted = icmp + 8
            if data[quoted] >> 4 != 6:
                return None
            next_header = data[quoted + 6]
            udp = quoted + 40
            while next_header in _IPV6_SKIPPABLE:
                next_header = data[udp]
                udp += (data[udp + 1] + 1) * 8
            if next_header != UDP:
                return None
            addresses = data[quoted + 8:quoted + 40]
        else:
            return None
        if len(data) < udp + 4:
            return None
        sport, dport = _U16(data, udp)[0], _U16(data, udp + 2)[0]
    except IndexError:
        return None
    if len(addresses) not in (8, 32):
        return None
    src, dst = _address_pair(addresses)
    return UnreachableQuote(src, dst, UDP, sport, dport)


# -- everything a record holds ------------------------------------------------------------------------

def decode_all(record, frame: int, verify_checksums: bool = False, fragments: Optional[Reassembler] = None,
               tunnels: Optional[TunnelSessions] = None) -> List[Packet]:
    """Every TCP/UDP Packet the record holds, outer first (see unwrap); raises the first PacketDecodeError
    unwrap() finds, as decode() would for the outer packet."""
    packets = []
    for found in unwrap(record, frame, verify_checksums, fragments, tunnels):
        if isinstance(found, PacketDecodeError):
            raise found
        if isinstance(found, Packet):
            packets.append(found)
    return packets


def unwrap(record, frame: int, verify_checksums: bool = False, fragments: Optional[Reassembler] = None,
           tunnels: Optional[TunnelSessions] = None) -> List[Found]:
    """What a record holds, in order, outer first: each TCP/UDP Packet, an Other for each thing that is
    not TCP/UDP and is not read further, and each PacketDecodeError (not raised) where a part would not
    decode. `fragments` reassembles IP fragments, `tunnels` keeps what outer UDP flows taught (both
    optional; see the module's rules). A record decode() reads as one TCP/UDP packet that is neither a
    tunnel nor a fragment gives exactly that packet."""
    data = record[4]
    if (not verify_checksums and record[0] == LINKTYPE_ETHERNET and len(data) >= _ETHERNET_IPV4_TCP_SIZE
            and data[12] == 0x08 and data[13] == 0x00 and data[23] == TCP and not (data[20] & 0x3F or data[21])):
        # Untagged Ethernet, IPv4, TCP, no fragment: decode() reads all there is, for TCP opens no tunnel.
        try:
            packet = decode(record, frame)
        except PacketDecodeError as error:
            return [error]
        return [packet] if packet is not None else [_other(record, ())]
    found: List[Found] = []
    _unwrap(record, frame, (), verify_checksums, fragments, tunnels, found)
    return found


def _unwrap(record, frame: int, around: Tuple[str, ...], verify: bool, fragments: Optional[Reassembler],
            tunnels: Optional[TunnelSessions], found: List[Found]) -> None:
    linktype, time_ns, origlen, data = record[0], record[1], record[3], record[4]
    try:
        if origlen < len(data):
            raise PacketDecodeError(frame, f"original length {origlen} is less than the {len(data)} bytes captured "
                                           f"(a corrupt record header)")
        if linktype == LINKTYPE_IEEE802_11 or linktype == LINKTYPE_IEEE802_11_RADIOTAP:
            if _unwrap_amsdu(record, frame, around, verify, fragments, tunnels, found):
                return
        ethertype, offset = _network_layer(linktype, data, frame)
        if ethertype == ETHERTYPE_IPV4:
            ip = _ipv4_layer(data, offset, origlen - offset, frame, verify, fragments is not None)
        elif ethertype == ETHERTYPE_IPV6:
            ip = _ipv6_layer(data, offset, origlen - offset, frame, fragments is not None)
        else:
            ip = None
        if ip is None:
            found.append(_other(record, around))
            return
        proto, src, dst, addresses, start, length, first_fragment, fragment, ip_len = ip
        if fragment is not None:
            ident, fragment_offset, more, header, naming_at, following, payload = fragment
            version = 4 if ethertype == ETHERTYPE_IPV4 else 6
            done = fragments.add(Fragment(version, src, dst, ident, fragment_offset, more, header, naming_at,
                                          following, payload, frame, time_ns))
            if done is None:
                found.append(Other(f"IPv{version} fragments" + _in(around), None))
                return
            datagram = done.datagram
            whole = Record(LINKTYPE_RAW, time_ns, len(datagram), len(datagram), datagram, record[5], ())
            _unwrap(whole, frame, around, verify, fragments, tunnels, found)
            return
        # A first fragment is not the whole segment, so its checksum cannot be checked.
        checked = addresses if verify and not first_fragment else None
        if proto == TCP:
            found.append(_tcp(data, start, length, frame, time_ns, src, dst, ip_len, checked))
            return
        if proto == UDP:
            packet = _udp(data, start, length, frame, time_ns, src, dst, first_fragment, ip_len, checked,
                          origlen <= len(data))
            found.append(packet)
            if first_fragment:
                return
            inner = udp_tunnel(data, start + 8, min(len(data), start + length), src, packet.sport, dst, packet.dport,
                               around, tunnels, time_ns, origlen)
        elif proto in _READ_FURTHER and not first_fragment:
            inner = ip_tunnel(proto, data, start, min(len(data), start + length), len(around))
        else:
            found.append(_other(record, around))
            return
    except PacketDecodeError as error:
        found.append(_inside(error, around))
        return
    if inner is None:
        return
    if isinstance(inner, NotRead):
        found.append(Other(inner.what + _in(around), None))
        return
    inner_data = data[inner.start:inner.end]
    inner_record = Record(inner.linktype, time_ns, len(inner_data), max(inner.wire_len, len(inner_data)), inner_data,
                          record[5], ())
    _unwrap(inner_record, frame, around + (inner.tunnel,), verify, fragments, tunnels, found)


def _unwrap_amsdu(record, frame: int, around: Tuple[str, ...], verify: bool, fragments: Optional[Reassembler],
                  tunnels: Optional[TunnelSessions], found: List[Found]) -> bool:
    """An 802.11 A-MSDU's subframes, each as a record of its own; False if the frame is no A-MSDU."""
    data = record[4]
    start = _radiotap_length(data, frame) if record[0] == LINKTYPE_IEEE802_11_RADIOTAP else 0
    payloads = _wlan_payloads(data, start, frame)
    if isinstance(payloads, int) or not payloads[1]:
        return False
    subframes, _amsdu, cut = payloads
    for low, high in subframes:
        subframe = Record(_LINK_LLC_SNAP, record[1], high - low, high - low, data[low:high], record[5], ())
        before = len(found)
        _unwrap(subframe, frame, around, verify, fragments, tunnels, found)
        ethertype = (data[low + 6] << 8) | data[low + 7] if high - low >= 8 else 0
        # Zeek stops at a subframe it cannot hand on: not LLC/SNAP, not IP or ARP, or one that failed.
        if (data[low:low + 6] != _SNAP_OUI_0 or ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6, 0x0806, 0x8035)
                or any(isinstance(item, PacketDecodeError) for item in found[before:])):
            return True
    if cut:
        found.append(_inside(PacketDecodeError(frame, cut), around))
    return True


def _ipv4_layer(data: bytes, offset: int, wire_len: int, frame: int, verify: bool, reassembling: bool):
    """_ipv4 for unwrap(): every check and message of _ipv4, for TCP, UDP, tunnels and (reassembling)
    every fragment: (proto, src, dst, raw addresses, transport offset, transport length, is an unreassembled
    first fragment, fragment to reassemble or None, IP length field), or None for what is read no further."""
    header_len, total_length, fragment, proto, ip_len = _ipv4_header(data, offset, wire_len, frame, verify)
    fragment_offset = (fragment & 0x1FFF) * 8
    is_fragment = fragment & 0x3FFF != 0
    # Zeek reassembles only fragments captured whole (incompletely_captured_fragment).
    reassemble = reassembling and is_fragment and len(data) >= offset + total_length
    if proto not in _READ_FURTHER and not reassemble:
        return None
    if fragment_offset and not reassemble:
        if proto != TCP and proto != UDP:
            return None
        raise NonFirstFragment(frame, f"IPv4 fragment at offset {fragment_offset} has no "
                                      f"{'TCP' if proto == TCP else 'UDP'} header (not decodable)")
    if len(data) < offset + header_len:
        raise PacketDecodeError(frame, "IPv4 options cut off by the capture")
    addresses = data[offset + 12:offset + 20]
    src, dst = _address_pairs.get(addresses) or _address_pair(addresses)
    held = None
    if reassemble:
        held = (_U16(data, offset + 4)[0], fragment_offset, fragment & 0x2000 != 0, data[offset:offset + header_len],
                9, proto, data[offset + header_len:offset + total_length])
    return (proto, src, dst, addresses, offset + header_len, total_length - header_len, fragment & 0x2000 != 0,
            held, ip_len)


def _ipv6_layer(data: bytes, offset: int, wire_len: int, frame: int, reassembling: bool):
    """_ipv6 for unwrap(), as _ipv4_layer is _ipv4's."""
    payload_len, next_header, ip_len = _ipv6_header(data, offset, wire_len, frame)
    start = offset + 40
    end = start + payload_len
    naming = offset + 6           # the byte that names the header at `start`
    first_fragment = False
    final_destination = None
    while next_header in _IPV6_SKIPPABLE or next_header == _IPV6_AH or next_header == _IPV6_FRAGMENT:
        if start + 8 > len(data) or start + 8 > end:
            raise PacketDecodeError(frame, f"IPv6 extension header {next_header} cut off")
        if next_header == _IPV6_FRAGMENT:
            fragment_field = _U16(data, start + 2)[0]
            following = data[start]
            if reassembling and len(data) >= end:
                src, dst = _address_pair(data[offset + 8:offset + 40])
                held = (_U32(data, start + 4)[0], (fragment_field >> 3) * 8, fragment_field & 1 == 1,
                        data[offset:start], naming - offset, following, data[start + 8:end])
                return following, src, dst, None, start + 8, end - start - 8, False, held, ip_len
            if fragment_field >> 3:
                if following != TCP and following != UDP:
                    return None
                raise NonFirstFragment(frame, f"IPv6 fragment at offset {(fragment_field >> 3) * 8} has no "
                                              f"{'TCP' if following == TCP else 'UDP'} header (not decodable)")
            first_fragment = fragment_field & 1 == 1
            ext_len = 8
        elif next_header == _IPV6_AH:
            ext_len = (data[start + 1] + 2) * 4
        else:
            ext_len = (data[start + 1] + 1) * 8
            if next_header == _IPV6_ROUTING and final_destination is None:
                final_destination = _routing_destination(data, start, ext_len)
        naming = start
        next_header = data[start]
        start += ext_len
        if start > end:
            raise PacketDecodeError(frame, "IPv6 extension headers run past the payload length")
    if next_header not in _READ_FURTHER:
        return None
    src, dst = _address_pair(data[offset + 8:offset + 40])
    addresses = data[offset + 8:offset + 24] + (final_destination or data[offset + 24:offset + 40])
    return next_header, src, dst, addresses, start, end - start, first_fragment, None, ip_len


def _in(around: Tuple[str, ...]) -> str:
    """' in GRE in VXLAN' for a packet inside GRE inside VXLAN (`around` is outermost first)."""
    return "".join(f" in {tunnel}" for tunnel in reversed(around))


def _other(record, around: Tuple[str, ...]) -> Other:
    kind = describe_other(record)
    if around and around[-1] == TEREDO and kind == "IPv6 no next header":
        return Other("Teredo bubbles" + _in(around[:-1]), record)
    return Other(kind + _in(around), record)


def _inside(error: PacketDecodeError, around: Tuple[str, ...]) -> PacketDecodeError:
    if around:
        error.message = f"{error.message} (inside {' in '.join(reversed(around))})"
        error.args = (error.frame, error.message)
    return error
