"""Internet checksums (RFC 1071) of IPv4 headers and of TCP and UDP over IPv4 and IPv6, as Zeek checks them.

    ipv4_header_valid(header)                          # the IPv4 header, options included
    transport_valid(proto, src, dst, segment)          # raw addresses (4 or 16 bytes), header + payload
    internet_checksum(*chunks)                         # the value a sender puts in the field

Rules:

* A checksum is valid when the ones' complement sum of everything it covers, the checksum field
  included, is 0xFFFF (RFC 1071; Zeek's in_cksum(...) == 0xffff, src/net_util.cc).
* TCP and UDP cover a pseudo-header and the whole segment: over IPv4 the source and destination
  addresses, a zero byte, the protocol and the 16-bit segment length (RFC 793, RFC 768); over IPv6
  the addresses, the 32-bit length, three zero bytes and the next header (RFC 8200 section 8.1).
* A UDP checksum of 0 over IPv4 means the sender computed none, so it is valid (RFC 768); over IPv6
  it is computed like any other (RFC 8200 makes it mandatory there; Zeek checks it).
* Only whole segments can be checked: a caller holding a segment cut by the capture's snapshot
  length must not ask (Zeek verifies nothing it has not captured entirely; harness.wire.decode
  follows it).

Pure functions of bytes; nothing here reads a clock, a file or a socket.
"""
from __future__ import annotations

import struct

__all__ = ["ipv4_header_valid", "transport_valid", "internet_checksum", "ones_complement_sum", "pseudo_header"]

TCP = 6
UDP = 17
_FOLD = 0xFFFF


def ones_complement_sum(*chunks: bytes) -> int:
    """The folded 16-bit ones' complement sum of the chunks read as one run of big-endian 16-bit words
    (a last odd byte padded with zero). Every chunk but the last must have even length."""
    data = b"".join(chunks)
    if len(data) & 1:
        data += b"\x00"
    # 2**16 is 1 modulo 0xFFFF, so the sum of the words is the whole run's value modulo 0xFFFF; the
    # end-around carry makes that 0xFFFF rather than 0 unless every word is 0.
    folded = int.from_bytes(data, "big") % _FOLD
    if folded == 0 and any(data):
        return _FOLD
    return folded


def internet_checksum(*chunks: bytes) -> int:
    """The checksum field that makes the chunks (with that field as zeros) sum to 0xFFFF."""
    return ~ones_complement_sum(*chunks) & _FOLD


def pseudo_header(proto: int, src: bytes, dst: bytes, length: int) -> bytes:
    """The pseudo-header TCP and UDP checksums cover, for raw IPv4 (4-byte) or IPv6 (16-byte) addresses."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length & 0xFFFF)
    return src + dst + struct.pack("!I3xB", length, proto)


def ipv4_header_valid(header: bytes) -> bool:
    return ones_complement_sum(header) == _FOLD


def transport_valid(proto: int, src: bytes, dst: bytes, segment: bytes) -> bool:
    """Whether a whole TCP or UDP segment (header and payload) carries a valid checksum."""
    if proto == UDP and len(src) == 4 and len(segment) >= 8 and segment[6] == 0 and segment[7] == 0:
        return True
    return ones_complement_sum(pseudo_header(proto, src, dst, len(segment)), segment) == _FOLD
