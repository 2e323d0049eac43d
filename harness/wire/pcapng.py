"""The pcapng block format, written once: its constants, options, and every block harness writes.

    block(ENHANCED_PACKET, body)                    # any block: type, length, body, length
    enhanced_packet_block(interface, ticks, data, original_length, options=[(OPT_COMMENT, b"...")])
    with_options(raw_block, [(OPT_COMMENT, b"...")])  # a block as it was, with options added after its own
    splitter = BlockSplitter(); splitter.feed(chunk)  # a byte stream cut into whole blocks

Rules (the pcapng specification, draft-ietf-opsawg-pcapng):

* A block is: type (u32), total length (u32), body, total length again; lengths are multiples of 4.
* Options follow a block's fixed part: code (u16), length (u16), value, padding to 4 bytes, ending
  with opt_endofopt (code 0, length 0). A block without options may end right after its fixed part.
* A Section Header Block's byte-order magic (1a2b3c4d) says the byte order of its whole section.
* Blocks written here are little-endian, and their timestamps are ticks of the interface's
  if_tsresol (the caller converts): nothing here knows about clocks or Records.

Pure code: bytes in, bytes out.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from harness.errors import InputError

# Block types
SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 0x00000001
PACKET = 0x00000002                 # obsolete, still read
SIMPLE_PACKET = 0x00000003
NAME_RESOLUTION = 0x00000004
INTERFACE_STATISTICS = 0x00000005
ENHANCED_PACKET = 0x00000006
DECRYPTION_SECRETS = 0x0000000A
PACKET_BLOCKS = frozenset((PACKET, SIMPLE_PACKET, ENHANCED_PACKET))
BYTE_ORDER_MAGIC = 0x1A2B3C4D

BLOCK_NAMES = {
    SECTION_HEADER: "Section Header Block", INTERFACE_DESCRIPTION: "Interface Description Block",
    PACKET: "Packet Block", SIMPLE_PACKET: "Simple Packet Block", NAME_RESOLUTION: "Name Resolution Block",
    INTERFACE_STATISTICS: "Interface Statistics Block", ENHANCED_PACKET: "Enhanced Packet Block",
    DECRYPTION_SECRETS: "Decryption Secrets Block",
}

# Where each block's options begin (after the 8-byte head and the fixed part), where it has them.
FIXED_LENGTH = {SECTION_HEADER: 16, INTERFACE_DESCRIPTION: 8, INTERFACE_STATISTICS: 12}
EPB_FIXED_LENGTH = 20               # then the packet data, padded, then options (PB alike)

# Option codes
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_FILTER = 11
IF_TSOFFSET = 14
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_FILTERACCEPT = 6
ISB_OSDROP = 7
ISB_USRDELIV = 8

SECTION_LENGTH_UNKNOWN = -1         # what every streaming writer (dumpcap included) says
MAX_BLOCK = 256 << 20

Option = Tuple[int, bytes]
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


class StreamError(InputError, ValueError):
    """A byte stream that cannot be pcapng (an impossible block length)."""


def block_name(block_type: int) -> str:
    return BLOCK_NAMES.get(block_type) or f"block of type 0x{block_type:08x}"


# --- options -------------------------------------------------------------------------------------

def encode_options(options: Sequence[Option], endian: str = "<") -> bytes:
    """Options and their end marker; nothing at all for no options (the spec allows either)."""
    if not options:
        return b""
    head = struct.Struct(endian + "HH").pack
    out = bytearray()
    for code, value in options:
        out += head(code, len(value)) + value + _PAD[len(value) & 3]
    return bytes(out + head(OPT_ENDOFOPT, 0))


def decode_options(raw: bytes, endian: str, start: int, end: int) -> List[Option]:
    """The (code, value) options in raw[start:end], up to opt_endofopt; a malformed tail ends them."""
    head = struct.Struct(endian + "HH").unpack_from
    options = []
    at = start
    while at + 4 <= end:
        code, length = head(raw, at)
        if code == OPT_ENDOFOPT or at + 4 + length > end:
            break
        options.append((code, raw[at + 4:at + 4 + length]))
        at += 4 + length + (-length % 4)
    return options


def text_option(code: int, text: str) -> Option:
    return code, text.encode("utf-8", "surrogatepass")


# --- blocks --------------------------------------------------------------------------------------

def block(block_type: int, body: bytes, endian: str = "<") -> bytes:
    length = 12 + len(body)
    head = struct.pack(endian + "II", block_type, length)
    return head + body + struct.pack(endian + "I", length)


def section_header_block(options: Sequence[Option] = ()) -> bytes:
    return block(SECTION_HEADER, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, SECTION_LENGTH_UNKNOWN)
                 + encode_options(options))


def interface_description_block(linktype: int, snaplen: int, options: Sequence[Option] = ()) -> bytes:
    return block(INTERFACE_DESCRIPTION, struct.pack("<HHI", linktype, 0, snaplen) + encode_options(options))


def enhanced_packet_block(interface: int, ticks: int, data: bytes, original_length: int,
                          options: Sequence[Option] = (), captured_length: Optional[int] = None) -> bytes:
    """`ticks` in units of the interface's if_tsresol."""
    fixed = struct.pack("<IIIII", interface, (ticks >> 32) & 0xFFFFFFFF, ticks & 0xFFFFFFFF,
                        len(data) if captured_length is None else captured_length, original_length)
    return block(ENHANCED_PACKET, fixed + data + _PAD[len(data) & 3] + encode_options(options))


def interface_statistics_block(interface: int, ticks: int, options: Sequence[Option] = ()) -> bytes:
    return block(INTERFACE_STATISTICS, struct.pack("<III", interface, (ticks >> 32) & 0xFFFFFFFF,
                                                   ticks & 0xFFFFFFFF) + encode_options(options))


def u64_option(code: int, value: int) -> Option:
    return code, struct.pack("<Q", value)


def timestamp_option(code: int, ticks: int) -> Option:
    return code, struct.pack("<II", (ticks >> 32) & 0xFFFFFFFF, ticks & 0xFFFFFFFF)


def options_start(raw_block: bytes, endian: str) -> int:
    """Where a block's options begin (its length minus 4 when it can have none)."""
    block_type, length = struct.unpack_from(endian + "II", raw_block, 0)
    if block_type in (ENHANCED_PACKET, PACKET):
        captured = struct.unpack_from(endian + "I", raw_block, 20)[0]
        return 28 + ((captured + 3) & ~3)
    fixed = FIXED_LENGTH.get(block_type)
    return length - 4 if fixed is None else 8 + fixed


def with_options(raw_block: bytes, endian: str, added: Sequence[Option]) -> bytes:
    """The block as it was, in its own byte order, with `added` after its own options."""
    if not added:
        return raw_block
    block_type, length = struct.unpack_from(endian + "II", raw_block, 0)
    start = options_start(raw_block, endian)
    own = decode_options(raw_block, endian, start, length - 4)
    return block(block_type, raw_block[8:start] + encode_options(own + list(added), endian), endian)


def statistics(raw_block: bytes, endian: str) -> Dict[str, int]:
    """The counters of an Interface Statistics Block, by name, where present."""
    names = {ISB_IFRECV: "received", ISB_IFDROP: "dropped", ISB_OSDROP: "os_dropped",
             ISB_FILTERACCEPT: "filter_accepted", ISB_USRDELIV: "delivered"}
    found = {}
    length = struct.unpack_from(endian + "I", raw_block, 4)[0]
    for code, value in decode_options(raw_block, endian, 20, length - 4):
        if code in names and len(value) == 8:
            found[names[code]] = struct.unpack(endian + "Q", value)[0]
    return found


class BlockSplitter:
    """Feed bytes as they arrive; take out whole blocks as (type, bytes). `endian` follows the
    latest Section Header Block ("<" or ">")."""

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
