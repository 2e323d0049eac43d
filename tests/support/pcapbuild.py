"""Byte builders for test captures: pcap and pcapng files, and the frames inside them.

Every length field can be overridden so tests can build exactly the damage they check.
Frames are plain bytes, checksums zero (the decoder looks at them only when asked to verify them;
checksummed() fills them in).
"""
from __future__ import annotations

import socket
import struct
from typing import Iterable, Optional, Sequence, Tuple

# -- frames -----------------------------------------------------------------------------


def tcp(sport: int = 1234, dport: int = 80, seq: int = 0, ack: int = 0, flags: int = 0x10,
        window: int = 65535, options: bytes = b"", payload: bytes = b"",
        data_offset: Optional[int] = None) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    words = data_offset if data_offset is not None else 5 + len(options) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, words << 4, flags, window, 0, 0) + options + payload


def udp(sport: int = 5353, dport: int = 53, payload: bytes = b"", length: Optional[int] = None) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def ipv4(src: str = "10.0.0.1", dst: str = "10.0.0.2", proto: int = 6, payload: bytes = b"",
         total_length: Optional[int] = None, ihl: Optional[int] = None, options: bytes = b"",
         fragment_offset: int = 0, more_fragments: bool = False, version: int = 4) -> bytes:
    options += b"\x00" * (-len(options) % 4)
    words = ihl if ihl is not None else 5 + len(options) // 4
    length = 20 + len(options) + len(payload) if total_length is None else total_length
    fragment = (fragment_offset // 8) | (0x2000 if more_fragments else 0)
    return (struct.pack("!BBHHHBBH4s4s", (version << 4) | words, 0, length, 1, fragment, 64, proto, 0,
                        socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
            + options + payload)


def ipv6(src: str = "2001:db8::1", dst: str = "2001:db8::2", next_header: int = 6, payload: bytes = b"",
         payload_length: Optional[int] = None, extensions: Sequence[Tuple[int, bytes]] = ()) -> bytes:
    """`extensions`: (header type, header bytes without its next-header byte) in order;
    next_header is the protocol after the last one."""
    chain = b""
    types = [t for t, _ in extensions] + [next_header]
    for (_kind, body), following in zip(extensions, types[1:]):
        chain += bytes([following]) + body
    first = types[0]
    length = len(chain) + len(payload) if payload_length is None else payload_length
    return (struct.pack("!IHBB16s16s", 6 << 28, length, first, 64,
                        socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))
            + chain + payload)


def ipv6_option_header(length_units: int = 0) -> bytes:
    """Body of a hop-by-hop / destination options / routing header of (length_units+1)*8 bytes."""
    return bytes([length_units]) + b"\x01\x04\x00\x00\x00\x00" + b"\x00" * (8 * length_units)


def ipv6_fragment_header(offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return struct.pack("!BHI", 0, (offset // 8) << 3 | (1 if more else 0), ident)


MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"


def ether(payload: bytes, ethertype: int = 0x0800, vlans: Sequence[Tuple[int, int]] = ()) -> bytes:
    """`vlans`: (tag protocol id, vlan id) outermost first."""
    types = [tpid for tpid, _ in vlans] + [ethertype]
    header = MAC_B + MAC_A + struct.pack("!H", types[0])
    for (_, vid), following in zip(vlans, types[1:]):
        header += struct.pack("!HH", vid, following)
    return header + payload


def sll(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, MAC_A + b"\x00\x00", protocol) + payload


def sll2(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 772, 0, 6, MAC_A + b"\x00\x00") + payload


def null(payload: bytes, family: int = 2, order: str = "<") -> bytes:
    return struct.pack(order + "I", family) + payload


# -- pcap -------------------------------------------------------------------------------


def pcap(records: Iterable[tuple], linktype: int = 1, order: str = "<", nano: bool = False,
         snaplen: int = 65535, version: Tuple[int, int] = (2, 4)) -> bytes:
    """`records`: (seconds, fraction in micro/nanoseconds, data[, origlen[, caplen]])."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for rec in records:
        sec, frac, data = rec[:3]
        origlen = rec[3] if len(rec) > 3 and rec[3] is not None else len(data)
        caplen = rec[4] if len(rec) > 4 else len(data)
        out.append(struct.pack(order + "IIII", sec, frac, caplen, origlen) + data)
    return b"".join(out)


# -- pcapng -----------------------------------------------------------------------------


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def options(pairs: Sequence[Tuple[int, bytes]], order: str = "<") -> bytes:
    if not pairs:
        return b""
    return b"".join(option(code, value, order) for code, value in pairs) + struct.pack(order + "HH", 0, 0)


def block(block_type: int, body: bytes, order: str = "<", length: Optional[int] = None,
          trailing_length: Optional[int] = None) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = 12 + len(body)
    return (struct.pack(order + "II", block_type, total if length is None else length) + body
            + struct.pack(order + "I", total if trailing_length is None else trailing_length))


def shb(order: str = "<", opts: Sequence[Tuple[int, bytes]] = (), major: int = 1, minor: int = 0) -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1) + options(opts, order),
                 order)


def idb(linktype: int = 1, snaplen: int = 262144, opts: Sequence[Tuple[int, bytes]] = (),
        order: str = "<") -> bytes:
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(opts, order), order)


def epb(interface: int, timestamp: int, data: bytes, origlen: Optional[int] = None,
        opts: Sequence[Tuple[int, bytes]] = (), order: str = "<", caplen: Optional[int] = None) -> bytes:
    """`timestamp` in the interface's units (if_tsresol)."""
    head = struct.pack(order + "IIIII", interface, timestamp >> 32, timestamp & 0xFFFFFFFF,
                       len(data) if caplen is None else caplen, len(data) if origlen is None else origlen)
    return block(6, head + data + b"\x00" * (-len(data) % 4) + options(opts, order), order)


def spb(data: bytes, origlen: Optional[int] = None, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(data) if origlen is None else origlen) + data, order)


def packet_block(interface: int, timestamp: int, data: bytes, order: str = "<") -> bytes:
    head = struct.pack(order + "HHIIII", interface, 0, timestamp >> 32, timestamp & 0xFFFFFFFF,
                       len(data), len(data))
    return block(2, head + data, order)


def tsresol(exponent: int) -> Tuple[int, bytes]:
    return 9, bytes([exponent])


def tsoffset(seconds: int, order: str = "<") -> Tuple[int, bytes]:
    return 14, struct.pack(order + "q", seconds)


# -- checksums and tunnels ---------------------------------------------------------------

def _ones_complement(data: bytes) -> int:
    """Word by word, as RFC 1071 writes it (harness.wire.checksum sums another way)."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksummed(packet: bytes) -> bytes:
    """An IPv4 or IPv6 packet (IPv6 without extension headers) with its IPv4 header checksum and its TCP
    or UDP checksum filled in (a UDP checksum that computes to 0 is sent as 0xFFFF, RFC 768)."""
    packet = bytearray(packet)
    if packet[0] >> 4 == 4:
        header_len = (packet[0] & 0x0F) * 4
        proto, src, dst = packet[9], bytes(packet[12:16]), bytes(packet[16:20])
        packet[10:12] = b"\x00\x00"
        packet[10:12] = struct.pack("!H", ~_ones_complement(bytes(packet[:header_len])) & 0xFFFF)
        start = header_len
        end = struct.unpack_from("!H", packet, 2)[0]
    else:
        proto, src, dst, start = packet[6], bytes(packet[8:24]), bytes(packet[24:40]), 40
        end = 40 + struct.unpack_from("!H", packet, 4)[0]
    if proto not in (6, 17):
        return bytes(packet)
    at = start + (16 if proto == 6 else 6)
    packet[at:at + 2] = b"\x00\x00"
    segment = bytes(packet[start:end])
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    value = ~_ones_complement(pseudo + segment) & 0xFFFF
    packet[at:at + 2] = struct.pack("!H", value or (0xFFFF if proto == 17 else 0))
    return bytes(packet)


def gre(payload: bytes, protocol: int = 0x0800, key: Optional[int] = None, sequence: Optional[int] = None,
        checksum: bool = False, version: int = 0, ack: Optional[int] = None, flags: int = 0) -> bytes:
    """A GRE header (RFC 2784/2890; PPTP's version 1 with `ack`) and its payload."""
    bits = flags | version | (0x8000 if checksum else 0) | (0x2000 if key is not None else 0)
    bits |= (0x1000 if sequence is not None else 0) | (0x0080 if ack is not None else 0)
    header = struct.pack("!HH", bits, protocol)
    if checksum:
        header += b"\x00\x00\x00\x00"
    for field in (key, sequence, ack):
        if field is not None:
            header += struct.pack("!I", field)
    return header + payload


def vxlan(frame: bytes, vni: int = 42, flags: int = 0x08) -> bytes:
    return struct.pack("!B3xI", flags, vni << 8) + frame


def geneve(payload: bytes, protocol: int = 0x6558, options: bytes = b"", vni: int = 7, version: int = 0) -> bytes:
    return struct.pack("!BBHI", (version << 6) | (len(options) // 4), 0, protocol, vni << 8) + options + payload
