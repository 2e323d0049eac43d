"""Cut a live pcapng byte stream into whole blocks, and the few block edits the capture makes.

dumpcap writes pcapng to its standard output one block at a time. The capture passes the blocks
through to the saved file unchanged, except that probe packets are left out and the Section
Header Block gains a comment saying how the capture was made.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterator, List, Tuple

SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 0x00000001
ENHANCED_PACKET = 0x00000006
SIMPLE_PACKET = 0x00000003
INTERFACE_STATISTICS = 0x00000005
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_OSDROP = 7

MAX_BLOCK = 256 << 20


class StreamError(ValueError):
    pass


class BlockSplitter:
    """Feed bytes as they arrive; take out whole blocks as (type, bytes)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.endian = "<"

    def feed(self, data: bytes) -> Iterator[Tuple[int, bytes]]:
        self._buffer += data
        start = 0
        while len(self._buffer) - start >= 12:
            block_type = struct.unpack_from(self.endian + "I", self._buffer, start)[0]
            if block_type == SECTION_HEADER:
                magic = struct.unpack_from("<I", self._buffer, start + 8)[0]
                self.endian = "<" if magic == BYTE_ORDER_MAGIC else ">"
            length = struct.unpack_from(self.endian + "I", self._buffer, start + 4)[0]
            if length < 12 or length % 4 or length > MAX_BLOCK:
                raise StreamError(f"impossible pcapng block length {length} in the capture stream")
            if len(self._buffer) - start < length:
                break
            yield block_type, bytes(self._buffer[start:start + length])
            start += length
        del self._buffer[:start]

    @property
    def pending(self) -> int:
        return len(self._buffer)


def _options(block: bytes, endian: str, body_start: int) -> List[Tuple[int, bytes]]:
    options = []
    at, end = body_start, len(block) - 4
    while at + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", block, at)
        if code == OPT_ENDOFOPT:
            break
        options.append((code, block[at + 4:at + 4 + length]))
        at += 4 + length + (-length % 4)
    return options


def _encode_options(options: List[Tuple[int, bytes]], endian: str) -> bytes:
    out = bytearray()
    for code, value in options:
        out += struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
    return bytes(out + struct.pack(endian + "HH", OPT_ENDOFOPT, 0))


def add_section_comments(block: bytes, endian: str, comments: List[str]) -> bytes:
    """The Section Header Block with comments added after its own options."""
    fixed = block[8:24]  # byte-order magic, version, section length
    options = _options(block, endian, 24) + [(OPT_COMMENT, c.encode("utf-8")) for c in comments]
    body = fixed + _encode_options(options, endian)
    length = len(body) + 12
    return struct.pack(endian + "II", SECTION_HEADER, length) + body + struct.pack(endian + "I", length)


def interface_statistics(block: bytes, endian: str) -> Dict[str, int]:
    """Received and dropped counters of an Interface Statistics Block, where present."""
    names = {ISB_IFRECV: "received", ISB_IFDROP: "dropped", ISB_OSDROP: "os_dropped"}
    stats = {}
    for code, value in _options(block, endian, 20):
        if code in names and len(value) == 8:
            stats[names[code]] = struct.unpack(endian + "Q", value)[0]
    return stats
