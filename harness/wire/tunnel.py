"""Tunnels: the packet a decoded IP or UDP packet carries inside it, found as Zeek finds it by default.

    inner = ip_tunnel(proto, data, start, end, depth)               # IP protocol 4, 41 or 47
    inner = udp_tunnel(data, start, end, src, sport, dst, dport, around, sessions, time_ns)
    # -> Inner (where the inner packet is and how it begins), NotRead (what it is and why Zeek
    #    reads no further), or None (udp_tunnel only: the datagram is no tunnel)

harness.wire.decode calls these for every packet it decodes (an IP payload or a UDP payload, its
bounds in `data` already limited to what the IP length says and what was captured) and decodes each
Inner in turn, so a record can hold an outer packet and inner ones. Rules, from Zeek's packet
analyzers (src/packet_analysis/protocol/<name>/) and scripts/base/packet-protocols/:

* Depth: at most TUNNEL_MAX_DEPTH tunnels are opened around one packet (Zeek's Tunnel::max_depth,
  4 since Zeek 6.1; it was 2); a tunnel deeper than that is not read (Zeek: exceeded_tunnel_max_depth,
  and history X on the outer connection).
* IP in IP (protocols 4 and 41, iptunnel/IPTunnel.cc): the payload is an IP packet, IPv4 or IPv6 by
  its version nibble whichever protocol number said. Its wire length is what was captured of it: an
  outer packet cut by the snapshot length leaves the inner one short, and it is then not read (Zeek
  builds the inner packet with wire length = captured length, and its IP analyzer drops it).
* GRE (protocol 47, or UDP port 4754; gre/GRE.cc): RFC 2784/2890's checksum, key and sequence
  fields and PPTP's acknowledgement field (flag 0x0080) are stepped over; a routing field (flag
  0x4000), reserved flags (0x0078) or a version other than 0 and 1 are not read. Version 0 by
  protocol type: 0x6558 transparent Ethernet bridging and 0x88BE ERSPAN type I (type II when the
  sequence flag is set: an 8-byte ERSPAN header) carry Ethernet, as does 0x22EB ERSPAN type III
  (a 12-byte header, 20 with its optional subheader); Aruba's types (0x8200-0x82F0, 0x8300-0x8370
  in steps of 0x10, and 0x9000) carry 802.11; every other type is read as IP by its version nibble,
  as Zeek hands it to its IP analyzer (0x0800 and 0x86DD are the ones that are). Version 1 (PPTP's
  enhanced GRE, RFC 2637) must be type 0x880B and carry PPP with address and control (FF 03) and a
  two-byte protocol 0x0021 (IPv4) or 0x0057 (IPv6), whose packet must fill the GRE payload exactly.
* UDP tunnels are found by the outer connection's responder port (Zeek forwards by it, so replies
  from the tunnel port are opened too): VXLAN 4789, Geneve 6081, Teredo 3544, AYIYA 5072, GTPv1
  2152 and 2123, GRE 4754. On any other port AYIYA (second and third bytes 0x52 0x11) and Teredo
  (Zeek's DPD pattern: an IPv6 header whose source or destination starts 2001:0000, or one behind an
  origin indication or authentication header) are recognised by their payload, AYIYA first.
* VXLAN (vxlan/VXLAN.cc): 8-byte header with its I flag set, then Ethernet. Geneve (geneve/Geneve.cc):
  version 0, an 8-byte header and its options, then by protocol type Ethernet (0x6558), IP (0x0800,
  0x86DD) or ARP (0x0806); nothing else is read. AYIYA (ayiya/AYIYA.cc): an 8-byte header, its
  identity and signature; only opcode 1 (forward) carries a packet, IPv4 or IPv6 by next header
  4 or 41. Teredo (teredo/Teredo.cc): optional origin indication and authentication headers, then an
  IPv6 packet that must fill the datagram exactly, except a bubble (no next header, no payload),
  whose trailing bytes Zeek lets pass. GTPv1 (gtpv1/*.pac): version 1 with its protocol-type flag, its
  optional sequence/N-PDU/next-extension word and extension headers; only message type 255 (G-PDU,
  the user-plane T-PDU) carries a packet, an IPv4 or IPv6 one that must fill the rest exactly; GTP
  directly inside GTP is not read.
* A VXLAN, Geneve, Teredo or AYIYA datagram that is malformed marks the outer connection (Zeek's
  AnalyzerViolation): no later datagram of that connection is opened by that analyzer. TunnelSessions
  keeps that, and each connection's responder port, per outer UDP flow until it has been idle longer
  than the UDP idle timeout it is given (when the connection would have ended); without one each
  datagram is judged alone, by its destination port, else its source port.
* The inner packet's wire length is the outer record's less the bytes before the inner packet and
  after it (Zeek's build_inner_packet), for UDP tunnels; for IP in IP and GRE see above.

Pure: nothing here reads a clock, a file or a socket; TunnelSessions is state the caller keeps.
"""
from __future__ import annotations

from typing import Dict, FrozenSet, NamedTuple, Optional, Set, Tuple, Union

__all__ = ["Inner", "NotRead", "TunnelSessions", "ip_tunnel", "udp_tunnel", "TUNNEL_MAX_DEPTH", "UDP_TUNNEL_PORTS",
           "VXLAN_PORTS", "IP_IN_IP", "GRE", "VXLAN", "GENEVE", "TEREDO", "AYIYA", "GTP"]

TUNNEL_MAX_DEPTH = 4

IP_IN_IP = "IP-in-IP"
GRE = "GRE"
VXLAN = "VXLAN"
GENEVE = "Geneve"
TEREDO = "Teredo"
AYIYA = "AYIYA"
GTP = "GTPv1"

VXLAN_PORTS: FrozenSet[int] = frozenset((4789,))
UDP_TUNNEL_PORTS: Dict[int, str] = {4789: VXLAN, 6081: GENEVE, 3544: TEREDO, 5072: AYIYA, 2152: GTP, 2123: GTP,
                                    4754: GRE}
# The analyzers that stop opening a connection's datagrams once one was malformed (AnalyzerViolated).
_REMEMBER_VIOLATIONS = frozenset((VXLAN, GENEVE, TEREDO, AYIYA))

# How the inner bytes begin: the pcap link types harness.wire.decode reads.
LINK_ETHERNET = 1
LINK_RAW_IP = 101
LINK_IEEE802_11 = 105

_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_TEREDO_PREFIX = b"\x20\x01\x00\x00"


class Inner(NamedTuple):
    """An inner packet: data[start:end] of the outer record, beginning as `linktype` says."""
    tunnel: str
    linktype: int
    start: int
    end: int
    wire_len: int


class NotRead(NamedTuple):
    """What a tunnel holds that Zeek reads no further, in words for the tally ("ARP in Geneve")."""
    what: str


Found = Union[Inner, NotRead]


def _be16(data: bytes, at: int) -> int:
    return (data[at] << 8) | data[at + 1]


def _too_deep(depth: int) -> Optional[NotRead]:
    if depth >= TUNNEL_MAX_DEPTH:
        return NotRead(f"tunnels nested deeper than {TUNNEL_MAX_DEPTH}")
    return None


def _ip_fit(data: bytes, start: int, end: int, version: Optional[int] = None) -> str:
    """'' if data[start:end] is exactly one IP packet (Zeek's IP::ParsePacket OK), else what is wrong.
    `version`: the one the tunnel says; None: whichever the version nibble says."""
    length = end - start
    if length < 1:
        return "truncated"
    found = data[start] >> 4
    if version is None:
        version = found if found in (4, 6) else 4
    if version == 6:
        if length < 40:
            return "truncated"
        if found != 6:
            return "not IP"
        total = 40 + _be16(data, start + 4)
    else:
        if length < 20 or found != 4:
            return "not IP"
        total = _be16(data, start + 2)
    if length < total:
        return "truncated"
    if length > total:
        return "longer than its IP packet"
    return ""


def ip_tunnel(proto: int, data: bytes, start: int, end: int, depth: int) -> Found:
    """The packet IP protocol 4 or 41 (IP in IP) or 47 (GRE) carries at data[start:end]."""
    if proto == 47:
        return _gre(data, start, end, depth)
    return _too_deep(depth) or Inner(IP_IN_IP, LINK_RAW_IP, start, end, end - start)


def _is_aruba(proto: int) -> bool:
    return (((proto & 0x8200) == 0x8200 and (proto & 0x0F) == 0)
            or ((proto & 0x8300) == 0x8300 and (proto & 0x0F) == 0 and proto <= 0x8370) or proto == 0x9000)


def _gre(data: bytes, start: int, end: int, depth: int) -> Found:
    available = end - start
    if available < 4:
        return NotRead("truncated GRE headers")
    flags = _be16(data, start)
    proto = _be16(data, start + 2)
    version = flags & 0x0007
    header = 4 + 4 * ((flags & 0x8000 != 0) + (flags & 0x2000 != 0) + (flags & 0x1000 != 0) + (flags & 0x0080 != 0))
    if version not in (0, 1):
        return NotRead(f"GRE version {version}")
    linktype, ethernet, erspan, ppp = LINK_RAW_IP, 0, 0, 0
    if version == 0:
        if proto == 0x6558:
            if available <= header + 14:
                return NotRead("truncated GRE headers")
            ethernet, linktype = 14, LINK_ETHERNET
        elif proto == 0x88BE:
            if available <= header + 14:
                return NotRead("truncated GRE headers")
            ethernet, linktype = 14, LINK_ETHERNET
            if flags & 0x1000:
                erspan = 8                      # ERSPAN type II; type I has no header of its own
        elif proto == 0x22EB:
            if available <= header + 14 + 12:
                return NotRead("truncated GRE headers")
            ethernet, linktype, erspan = 14, LINK_ETHERNET, 12
            if data[start + header + erspan - 1] & 0x01:
                if available <= header + erspan + 8 + ethernet:
                    return NotRead("truncated GRE headers")
                erspan += 8                     # the optional platform-specific subheader
        elif _is_aruba(proto):
            if available <= header:
                return NotRead("truncated GRE headers")
            linktype = LINK_IEEE802_11
    elif proto != 0x880B:
        return NotRead(f"enhanced GRE protocol 0x{proto:04x}")
    else:
        ppp = 4
    if flags & 0x4000:
        return NotRead("GRE with a routing field")
    if flags & 0x0078:
        return NotRead("GRE with reserved flags set")
    if available < header + ppp + ethernet + erspan:
        return NotRead("truncated GRE headers")
    payload = start + header + ppp + erspan
    inner_version = None
    if version == 1:
        ppp_proto = _be16(data, start + header + 2)
        if ppp_proto not in (0x0021, 0x0057):
            return NotRead(f"PPP protocol 0x{ppp_proto:04x} in PPTP's GRE")
        inner_version = 4 if ppp_proto == 0x0021 else 6
    elif linktype == LINK_RAW_IP and proto not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        if payload >= end or data[payload] >> 4 not in (4, 6):
            return NotRead(f"GRE protocol 0x{proto:04x}")
    deep = _too_deep(depth)
    if deep:
        return deep
    if version == 1:
        wrong = _ip_fit(data, payload, end, inner_version)
        if wrong:
            return NotRead(f"PPTP's GRE payload {wrong}")
    return Inner(GRE, linktype, payload, end, end - payload)


# -- UDP tunnels ------------------------------------------------------------------------------------

class _Flow:
    __slots__ = ("responder_port", "violated", "last_ns")

    def __init__(self, responder_port: int, now: int) -> None:
        self.responder_port = responder_port
        self.violated: Set[str] = set()
        self.last_ns = now


class TunnelSessions:
    """Per outer UDP flow, what Zeek's connection remembers that decides how its later datagrams are
    opened: its responder port, and the tunnel analyzers it has violated. A flow idle longer than
    `idle_timeout_ns` starts afresh (its connection would have ended); at most `limit` flows are kept,
    the least recently started going first."""

    def __init__(self, idle_timeout_ns: int, limit: int = 1 << 16) -> None:
        self.idle_timeout_ns, self.limit = idle_timeout_ns, limit
        self._flows: Dict[Tuple, _Flow] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def flow(self, src: str, sport: int, dst: str, dport: int, time_ns: int) -> _Flow:
        key = (src, sport, dst, dport) if (src, sport) <= (dst, dport) else (dst, dport, src, sport)
        flow = self._flows.get(key)
        if flow is None or time_ns - flow.last_ns > self.idle_timeout_ns:
            if flow is not None:
                del self._flows[key]
            elif len(self._flows) >= self.limit:
                del self._flows[next(iter(self._flows))]
            flow = self._flows[key] = _Flow(_responder_port(sport, dport), time_ns)
        flow.last_ns = max(flow.last_ns, time_ns)
        return flow


def _responder_port(sport: int, dport: int) -> int:
    # Zeek flips a new UDP connection when only its source port is a likely server port; every tunnel
    # port is one (register_for_ports adds them), and only tunnel ports matter here.
    if dport not in UDP_TUNNEL_PORTS and sport in UDP_TUNNEL_PORTS:
        return sport
    return dport


def _looks_like_ayiya(data: bytes, start: int, end: int) -> bool:
    return end - start >= 3 and data[start + 1] == 0x52 and data[start + 2] == 0x11


def _looks_like_teredo(data: bytes, start: int, end: int) -> bool:
    """Zeek's TeredoAnalyzer::DetectProtocol, check for check."""
    length = end - start
    first = data[start] if length else 0
    if length < 40 or (length > 8 and first >> 4 != 6 and (first != 0 or data[start + 1] not in (0, 1))):
        return False
    if 0x60 <= first <= 0x6F and (data[start + 8:start + 12] == _TEREDO_PREFIX
                                  or data[start + 24:start + 28] == _TEREDO_PREFIX):
        return True
    value = data[start + 1]
    at = start
    if value == 1:
        skip = 13 + data[start + 2] + data[start + 3]
        if length < skip or length - skip < 40:
            return False
        at += skip
        value = _be16(data, at)
    if value == 0:
        if end - at < 8 + 40:
            return False
        return data[at + 8] >> 4 == 6
    return False


def udp_tunnel(data: bytes, start: int, end: int, src: str, sport: int, dst: str, dport: int,
               around: Tuple[str, ...], sessions: Optional[TunnelSessions], time_ns: int,
               outer_wire_len: int) -> Optional[Found]:
    """What the payload data[start:end] of a UDP datagram carries, if it is a tunnel; `around` names
    the tunnels the datagram itself is inside (outermost first); `outer_wire_len` is the wire length
    of the record `data` is."""
    if sessions is not None:
        flow = sessions.flow(src, sport, dst, dport, time_ns)
        responder = flow.responder_port
    else:
        flow = None
        responder = dport if dport in UDP_TUNNEL_PORTS else sport
    name = UDP_TUNNEL_PORTS.get(responder)
    if name is None:
        if _looks_like_ayiya(data, start, end):
            name = AYIYA
        elif _looks_like_teredo(data, start, end):
            name = TEREDO
        else:
            return None
    if name == GRE:
        return _gre(data, start, end, len(around))
    if flow is not None and name in flow.violated:
        return NotRead(f"{name} on a flow where it was malformed before")
    found = _OPENERS[name](data, start, end, len(around), around)
    if isinstance(found, _Violation):
        if flow is not None and name in _REMEMBER_VIOLATIONS:
            flow.violated.add(name)
        return NotRead(found.what)
    if isinstance(found, Inner):
        # Zeek's build_inner_packet: the inner wire length keeps what the capture cut from the outer one.
        consumed = len(data) - (found.end - found.start)
        return found._replace(wire_len=outer_wire_len - consumed)
    return found


class _Violation(NamedTuple):
    """Malformed for this analyzer: Zeek's AnalyzerViolation, which it remembers for the connection."""
    what: str


def _vxlan(data: bytes, start: int, end: int, depth: int, around: Tuple[str, ...]):
    deep = _too_deep(depth)
    if deep:
        return deep
    if end - start < 8:
        return _Violation("truncated VXLAN headers")
    if not data[start] & 0x08:
        return _Violation("VXLAN headers without the I flag")
    if end - start == 8:
        return NotRead("empty VXLAN datagrams")
    return Inner(VXLAN, LINK_ETHERNET, start + 8, end, 0)


def _geneve(data: bytes, start: int, end: int, depth: int, around: Tuple[str, ...]):
    deep = _too_deep(depth)
    if deep:
        return deep
    if end - start < 8:
        return _Violation("truncated Geneve headers")
    version = data[start] >> 6
    if version != 0:
        return NotRead(f"Geneve version {version}")
    header = 8 + (data[start] & 0x3F) * 4
    if end - start < header:
        return _Violation("truncated Geneve options")
    proto = _be16(data, start + 2)
    if end - start == header:
        return NotRead("empty Geneve datagrams")
    if proto == 0x6558:
        return Inner(GENEVE, LINK_ETHERNET, start + header, end, 0)
    if proto in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return Inner(GENEVE, LINK_RAW_IP, start + header, end, 0)
    if proto == 0x0806:
        return NotRead("ARP in Geneve")
    return NotRead(f"Geneve protocol 0x{proto:04x}")


def _ayiya(data: bytes, start: int, end: int, depth: int, around: Tuple[str, ...]):
    deep = _too_deep(depth)
    if deep:
        return deep
    if end - start < 8:
        return _Violation("truncated AYIYA headers")
    header = 8 + (1 << (data[start] >> 4)) + (data[start + 1] >> 4) * 4
    if end - start < header:
        return _Violation("truncated AYIYA headers")
    if data[start + 2] & 0x0F != 1:
        return None          # not "forward": no packet in it, and no error (Zeek's words)
    next_header = data[start + 3]
    if end - start == header:
        return NotRead("empty AYIYA datagrams")
    if next_header not in (4, 41):
        return NotRead(f"AYIYA next header {next_header}")
    return Inner(AYIYA, LINK_RAW_IP, start + header, end, 0)


def _teredo(data: bytes, start: int, end: int, depth: int, around: Tuple[str, ...]):
    deep = _too_deep(depth)
    if deep:
        return deep
    at, origin, authentication = start, False, False
    while True:
        if end - at < 2:
            return _Violation("malformed Teredo headers")
        tag = _be16(data, at)
        if tag == 0 and not origin:
            if end - at < 8:
                return _Violation("malformed Teredo headers")
            at, origin = at + 8, True
        elif tag == 1 and not (origin or authentication):
            if end - at < 4 or end - at < 13 + data[at + 2] + data[at + 3]:
                return _Violation("malformed Teredo headers")
            at, authentication = at + 13 + data[at + 2] + data[at + 3], True
        elif tag >> 12 == 6:
            if end - at < 40:
                return _Violation("malformed Teredo headers")
            break
        else:
            return _Violation("malformed Teredo headers")
    wrong = _ip_fit(data, at, end, 6)
    if wrong == "longer than its IP packet" and data[at + 6] == 59 and _be16(data, at + 4) == 0:
        wrong = ""        # a bubble with bytes after it: Zeek lets it pass (Teredo_bubble_with_payload)
    if wrong:
        return _Violation(f"Teredo payload {wrong}")
    return Inner(TEREDO, LINK_RAW_IP, at, end, 0)


def _gtp(data: bytes, start: int, end: int, depth: int, around: Tuple[str, ...]):
    if depth >= TUNNEL_MAX_DEPTH:
        return NotRead(f"tunnels nested deeper than {TUNNEL_MAX_DEPTH}")
    if around and around[-1] == GTP:
        return NotRead("GTPv1 datagrams")
    length = end - start
    if length < 8:
        return NotRead("truncated GTPv1 headers")
    flags, message = data[start], data[start + 1]
    at = start + 8
    if flags & 0x07:
        at += 4
        if at > end:
            return NotRead("truncated GTPv1 headers")
    if flags & 0x04:
        # Extension headers, each `length` 4-byte words with its next type last, until a next type of 0.
        while True:
            if at >= end or data[at] == 0 or at + data[at] * 4 > end:
                return NotRead("truncated GTPv1 headers")
            at += data[at] * 4
            if data[at - 1] == 0:
                break
    version = flags >> 5
    if version != 1:
        return NotRead(f"GTP version {version} on a GTPv1 port")
    if not flags & 0x10:
        return None                       # GTP' (charging): no packet in it
    if message != 255:
        return None                       # signalling; only a G-PDU carries a user's packet
    if end - at < 20:
        return NotRead("truncated GTPv1 G-PDUs")
    if data[at] >> 4 not in (4, 6):
        return NotRead("non-IP packets in GTPv1")
    wrong = _ip_fit(data, at, end)
    if wrong:
        return NotRead(f"GTPv1 G-PDUs {wrong}")
    return Inner(GTP, LINK_RAW_IP, at, end, 0)


_OPENERS = {VXLAN: _vxlan, GENEVE: _geneve, AYIYA: _ayiya, TEREDO: _teredo, GTP: _gtp}
