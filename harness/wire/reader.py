"""Streaming readers for capture files: pcap, pcapng, and either one gzip-compressed.

    with open_capture("captures/run.pcapng") as capture:
        for record in capture:          # Record(linktype, time_ns, caplen, origlen, data, offset, comments)
            ...
        capture.comments, capture.interfaces   # pcapng metadata, filled in as blocks are read

Rules:

* The format is sniffed from the first bytes, never from the file name. Gzip (1f 8b) is
  streamed through `gzip`; offsets in records and errors count bytes of the decompressed
  stream, which is what a reader of the file format needs to find the damage.
* Reading is streaming and constant-memory: the file is consumed in CHUNK-sized reads and
  every record's `data` is a copy of just its own bytes, so keeping a record does not pin
  a chunk. No length read from the file is trusted before it is checked against
  MAX_BLOCK (256 MiB), so a corrupt length field can never cause a huge allocation.
* Memory follows the bytes really there, not the lengths claimed: the reader asks the
  stream for CHUNK bytes at a time, so a 100-byte file whose block claims 255 MiB costs
  one CHUNK, not 255 MiB (a buffered read(n) allocates n before it reads). A block that
  really is that long is held once, plus once more while its pieces are joined.
* Bad input raises only CaptureFormatError (unreadable files raise OSError). Its str is
  one line: "<file>: <what> at byte <offset> (<detail>)". Records before the damage have
  already been yielded, so a caller can report what it got and then warn.
* By path, only regular files are read. A FIFO, socket or device is refused with
  NotARegularFile (an OSError) before any read: opening a FIFO that has no writer
  blocks forever, and a device may never end. The check is made on the opened file
  descriptor (opened non-blocking), so nothing can be swapped in between. A stream
  passed in (a pipe's, say) is read as it is.
* `time_ns` is integer nanoseconds since the epoch, exact for microsecond and nanosecond
  resolutions (finer ones are truncated to the nanosecond, as Wireshark's nstime is). Not
  a float: at today's dates a float has 0.24 us of resolution, and the analysis compares
  time differences to the nanosecond, as tshark does. It always fits in a signed 64-bit
  integer (years 1677 to 2262): a pcapng timestamp that would not (a wrong if_tsresol or
  if_tsoffset) is damage, reported like any other.
* pcap records longer than the header's snaplen are accepted up to
  max(snaplen, 262144) bytes: scapy writes snaplen 65535 while writing whole 65550-byte
  loopback frames, and libpcap tolerates the same.
* pcapng: every Section Header Block starts over (byte order, interfaces). Each interface
  has its own link type, if_tsresol and if_tsoffset. Simple Packet Blocks carry no
  timestamp, so they get the previous record's time (timelines stay monotonic); their
  captured length is bounded by the interface snaplen as the spec says. Interface
  Statistics Blocks are read into `statistics`. Other blocks are skipped.
* What is read can be bounded: `max_bytes` (counted in decompressed bytes) stops the reading
  with ReadLimitReached, a CaptureFormatError, once the stream goes past it. By default a gzip'd
  capture is bounded at INFLATE_RATIO times its compressed size, and at least INFLATE_FLOOR:
  a few MB that inflate to gigabytes of empty records (a decompression bomb) are refused in
  seconds, not read for minutes. Real captures compress some 2-10 times. `max_bytes=0`, or
  MAX_BYTES_ENV set to 0, reads everything; MAX_BYTES_ENV set to N bounds every capture at N.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import struct
import zlib
from typing import BinaryIO, Dict, Iterator, List, NamedTuple, Optional, Protocol, Tuple, Union

from harness.errors import InputError
from harness.wire import pcapng

__all__ = [
    "BulkConsumer", "CaptureFile", "CaptureFormatError", "InterfaceInfo", "InterfaceStatistics", "NotARegularFile", "Record",
    "SectionInfo",
    "open_capture", "open_decompressed", "MAX_BLOCK",
]

MAX_BLOCK = 256 * 1024 * 1024
CHUNK = 1 << 20
INFLATE_RATIO = 64
INFLATE_FLOOR = 64 << 20
MAX_BYTES_ENV = "HARNESS_MAX_BYTES"
PCAP_MAX_RECORD = 262144    # the largest snaplen libpcap and Wireshark use for any link type
NANOSECONDS = 10**9
# Times are int64 nanoseconds since the epoch (years 1677 to 2262), as in Wireshark's and Zeek's
# own arithmetic; a pcapng timestamp beyond them is damage, never a silently wrapped time.
TIME_NS_MIN, TIME_NS_MAX = -(1 << 63), (1 << 63) - 1
MAX_TICKS = (1 << 64) - 1

PCAP_MICRO = 0xA1B2C3D4
PCAP_NANO = 0xA1B23C4D
PCAPNG_SHB = pcapng.SECTION_HEADER
PCAPNG_BYTE_ORDER_MAGIC = pcapng.BYTE_ORDER_MAGIC
GZIP_MAGIC = b"\x1f\x8b"

BLOCK_IDB = pcapng.INTERFACE_DESCRIPTION
BLOCK_PB = pcapng.PACKET
BLOCK_SPB = pcapng.SIMPLE_PACKET
BLOCK_ISB = pcapng.INTERFACE_STATISTICS
BLOCK_EPB = pcapng.ENHANCED_PACKET

OPT_ENDOFOPT = pcapng.OPT_ENDOFOPT
OPT_COMMENT = pcapng.OPT_COMMENT
SHB_HARDWARE = pcapng.SHB_HARDWARE
SHB_OS = pcapng.SHB_OS
SHB_USERAPPL = pcapng.SHB_USERAPPL
IF_NAME = pcapng.IF_NAME
IF_DESCRIPTION = pcapng.IF_DESCRIPTION
IF_TSRESOL = pcapng.IF_TSRESOL
IF_FILTER = pcapng.IF_FILTER
IF_TSOFFSET = pcapng.IF_TSOFFSET
_STATISTICS_OPTIONS = {pcapng.ISB_IFRECV: "received", pcapng.ISB_IFDROP: "dropped",
                       pcapng.ISB_FILTERACCEPT: "filter_accepted", pcapng.ISB_OSDROP: "os_dropped",
                       pcapng.ISB_USRDELIV: "delivered"}

ACCEPTED_FORMATS = ("pcap (magic a1b2c3d4 or a1b23c4d, either byte order), "
                    "pcapng (0a0d0d0a), or either of them gzip-compressed (1f 8b)")


class Record(NamedTuple):
    linktype: int
    time_ns: int            # nanoseconds since the epoch
    caplen: int             # bytes captured, == len(data)
    origlen: int            # bytes on the wire
    data: bytes
    offset: int             # byte offset of the record/block in the (decompressed) stream
    comments: Tuple[str, ...]  # pcapng opt_comment strings of the packet, () when none


class InterfaceInfo(NamedTuple):
    section: int            # index of the pcapng section (0 for pcap)
    index: int              # interface id within its section, as EPBs refer to it
    linktype: int
    snaplen: int
    name: Optional[str] = None
    description: Optional[str] = None
    filter: Optional[str] = None    # if_filter when it is a filter string (type 0)
    tsresol: int = 1000000          # timestamp units per second
    tsoffset: int = 0               # seconds added to every timestamp
    comments: Tuple[str, ...] = ()


class InterfaceStatistics(NamedTuple):
    """An Interface Statistics Block: the capture's own counters (dumpcap writes one per interface
    at the end), the file's evidence of whether it lost packets. Counters it did not give are absent."""
    section: int
    interface: int
    counters: Dict[str, int]    # received, dropped, os_dropped, filter_accepted, delivered


class SectionInfo(NamedTuple):
    offset: int
    byte_order: str         # "little" or "big"
    version: Tuple[int, int]
    comments: Tuple[str, ...] = ()
    hardware: Optional[str] = None
    os: Optional[str] = None
    application: Optional[str] = None


class CaptureFormatError(InputError):
    """The capture file is malformed or truncated at `offset` (decompressed stream bytes)."""

    def __init__(self, path: str, offset: int, message: str, detail: Optional[str] = None):
        self.path = path
        self.offset = offset
        self.message = message
        self.detail = detail
        super().__init__(path, offset, message, detail)

    def __str__(self) -> str:
        text = f"{self.path}: {self.message} at byte {self.offset}"
        return f"{text} ({self.detail})" if self.detail else text


class ReadLimitReached(CaptureFormatError):
    """The capture goes on past the bound on what may be read (max_bytes, or gzip's default)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.detail})"


class NotARegularFile(OSError, InputError):
    """A path that names a directory, FIFO, socket or device: refused before anything is read.

    Its strerror says what the path is, e.g. "a FIFO (named pipe), not a regular file".
    """


_new_tuple = tuple.__new__

_PCAP_RECORD = {"<": struct.Struct("<IIII"), ">": struct.Struct(">IIII")}
_PCAP_FILE_HEADER = {"<": struct.Struct("<HHiIII"), ">": struct.Struct(">HHiIII")}
_U32 = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_BLOCK_HEAD = {"<": struct.Struct("<II"), ">": struct.Struct(">II")}
_SHB_FIXED = {"<": struct.Struct("<IHHq"), ">": struct.Struct(">IHHq")}
_IDB_FIXED = {"<": struct.Struct("<HHI"), ">": struct.Struct(">HHI")}
_EPB_FIXED = {"<": struct.Struct("<IIIII"), ">": struct.Struct(">IIIII")}
_PB_FIXED = {"<": struct.Struct("<HHIIII"), ">": struct.Struct(">HHIIII")}
_OPTION_HEAD = {"<": struct.Struct("<HH"), ">": struct.Struct(">HH")}
_I64 = {"<": struct.Struct("<q"), ">": struct.Struct(">q")}


def _text(raw: bytes) -> str:
    # Writers sometimes NUL-terminate option strings although the spec says not to.
    return raw.rstrip(b"\x00").decode("utf-8", "replace")


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


class BulkConsumer(Protocol):
    """Takes whole records straight from the reader's buffer, for a consumer (harness's C scanner)
    to which one Record object per packet would cost more than the packet's own work. The reader
    hands it the buffer and the format's parameters; it takes what it can and returns where it
    stopped, and the reader reads, yields or reports the rest itself. Offsets are base + position.
    """

    def pcap_records(self, buf: bytes, pos: int, linktype: int, ns_per_tick: int, max_caplen: int,
                     big_endian: bool, base: int) -> int:
        """Consume the whole, sane classic-pcap records from buf[pos:] (each header checked as the
        reader checks it); return where it stopped (a record split across reads, or damaged)."""

    def pcapng_packets(self, buf: bytes, pos: int, big_endian: bool, interfaces: list,
                       base: int) -> Tuple[int, Optional[int]]:
        """The same for a pcapng section's Enhanced Packet Blocks without options (interfaces: the
        section's (linktype, scale, divisor, offset ns, snaplen, may overflow) each); return (where
        it stopped, the last packet's time_ns or None if it took none)."""


class CaptureFile:
    """An open capture. Iterate once for Records; metadata attributes fill in as it reads.

    Attributes: `path`, `format` ("pcap" or "pcapng"), `compressed`, `sections`
    (SectionInfo list, one per pcapng section), `comments` (all Section Header comments),
    `interfaces` (InterfaceInfo list over all sections, in file order), `statistics`
    (InterfaceStatistics list, from the Interface Statistics Blocks), `linktypes`
    (set of link types seen so far), and for pcap `snaplen` / `nanosecond`.

    `bulk`, a BulkConsumer set before iterating, takes records straight from the read buffer
    instead of one Record at a time; whatever it leaves is read, yielded or reported as usual.
    """

    def __init__(self, stream: BinaryIO, path: str, *, close_stream: bool = False,
                 max_bytes: Optional[int] = None, compressed_size: Optional[int] = None):
        self.path = path
        self._max_bytes = max_bytes             # None: the default, decided once the format is sniffed
        self._compressed_size = compressed_size
        self.compressed = False
        self.sections: List[SectionInfo] = []
        self.comments: List[str] = []
        self.interfaces: List[InterfaceInfo] = []
        self.statistics: List[InterfaceStatistics] = []
        self.linktypes: set = set()
        self.snaplen: Optional[int] = None
        self.nanosecond = False
        self._stream = stream
        self._to_close: List[BinaryIO] = [stream] if close_stream else []
        self._buf = b""
        self._pos = 0
        self._base = 0          # stream offset of self._buf[0]
        self._records: Optional[Iterator[Record]] = None
        self.bulk: Optional[BulkConsumer] = None
        self.format = self._sniff()

    # -- plumbing ---------------------------------------------------------------------

    def _error(self, offset: int, message: str, detail: Optional[str] = None) -> CaptureFormatError:
        return CaptureFormatError(self.path, offset, message, detail)

    def _fill(self, buf: bytes, pos: int, base: int, need: int) -> Tuple[bytes, int, int]:
        """Return (buf, 0, base) holding at least `need` bytes from pos, fewer only at EOF."""
        buf = buf[pos:]
        base += pos
        have = len(buf)
        if have >= need:
            return buf, 0, base
        # Never read(need): `need` comes from a length field, and a buffered read allocates
        # all of it before finding out how much the file holds.
        pieces = [buf]
        read = self._stream.read
        limit = self._read_limit()
        while have < need:
            if limit and base + have > limit:
                raise ReadLimitReached(self.path, base + have, f"stopped reading after {limit:,} bytes",
                                       self._limit_detail(limit))
            try:
                more = read(CHUNK)
            except zlib.error as exc:
                raise self._error(base + have, "corrupt gzip data",
                                  f"{exc}; offsets count decompressed bytes") from None
            if not more:
                if self.compressed and self._stream.truncated:
                    raise self._error(base + have, "truncated gzip stream",
                                      "the compressed file ends before its end marker; "
                                      "offsets count decompressed bytes")
                break
            pieces.append(more)
            have += len(more)
        return b"".join(pieces), 0, base

    def _read_limit(self) -> int:
        """The bound on what is read (0: none): max_bytes, else MAX_BYTES_ENV, else the gzip default."""
        if self._max_bytes is not None:
            return self._max_bytes
        configured = os.environ.get(MAX_BYTES_ENV)
        if configured:
            return parse_size(configured)
        if self.compressed and self._compressed_size is not None:
            return max(INFLATE_FLOOR, INFLATE_RATIO * self._compressed_size)
        return 0

    def _limit_detail(self, limit: int) -> str:
        if self._max_bytes is None and not os.environ.get(MAX_BYTES_ENV) and self.compressed:
            return (f"the gzip'd file inflates past {INFLATE_RATIO}x its {self._compressed_size:,} bytes, which no "
                    f"real capture does: a decompression bomb? To read it all: --max-bytes 0")
        return "the bound set by --max-bytes; raise it to read more"

    def _take(self, need: int) -> Tuple[int, bytes]:
        """Header parsing only: consume `need` bytes (or fewer at EOF); return (offset, bytes)."""
        self._buf, self._pos, self._base = self._fill(self._buf, self._pos, self._base, need)
        chunk = self._buf[:need]
        self._pos = len(chunk)
        return self._base, chunk

    # -- format detection -------------------------------------------------------------

    def _sniff(self) -> str:
        if self._peek_raw(2) == GZIP_MAGIC:
            self.compressed = True
            self._stream = _Gunzip(self._stream)
        self._buf, self._pos, self._base = self._fill(b"", 0, 0, 4)
        head = self._buf[:4]
        if not head:
            what = "empty gzip stream" if self.compressed else "empty file (0 bytes)"
            raise self._error(0, what, f"expected {ACCEPTED_FORMATS}")
        if len(head) < 4:
            raise self._error(0, f"file too short to be a capture ({len(head)} bytes: {_hex(head)})",
                              f"expected {ACCEPTED_FORMATS}")
        if head in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d", b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            self._open_pcap()
            return "pcap"
        if head == b"\x0a\x0d\x0d\x0a":
            return "pcapng"
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in head)
        raise self._error(0, f"not a capture file: starts with {_hex(head)} ('{printable}')",
                          f"accepted: {ACCEPTED_FORMATS}")

    def _peek_raw(self, size: int) -> bytes:
        """The first bytes of the raw stream, leaving them unread."""
        stream = self._stream
        if hasattr(stream, "peek"):
            return stream.peek(size)[:size]
        if getattr(stream, "seekable", lambda: False)():
            start = stream.tell()
            head = stream.read(size)
            stream.seek(start)
            return head
        self._stream = io.BufferedReader(_RawAdapter(stream))
        return self._stream.peek(size)[:size]

    def _open_pcap(self) -> None:
        offset, header = self._take(24)
        if len(header) < 24:
            raise self._error(offset, "truncated pcap file header",
                              f"needs 24 bytes, {len(header)} left")
        order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        magic = _U32[order].unpack_from(header, 0)[0]
        major, minor, _zone, _sigfigs, snaplen, linktype_field = _PCAP_FILE_HEADER[order].unpack_from(header, 4)
        if major != 2:
            raise self._error(offset + 4, f"unsupported pcap version {major}.{minor}", "expected 2.x")
        self._pcap_order = order
        self.nanosecond = magic == PCAP_NANO
        self.snaplen = snaplen
        # The upper 16 bits carry FCS length and reserved bits, not the link type.
        linktype = linktype_field & 0xFFFF
        self.linktypes.add(linktype)
        self.interfaces.append(InterfaceInfo(0, 0, linktype, snaplen,
                                             tsresol=10**9 if self.nanosecond else 10**6))

    # -- iteration --------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        if self._records is None:
            self._records = self._pcap_records() if self.format == "pcap" else self._pcapng_records()
        return self._records

    def __enter__(self) -> "CaptureFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._records is not None:
            self._records.close()
        while self._to_close:
            self._to_close.pop().close()

    @property
    def linktype(self) -> Optional[int]:
        """The link type of a pcap file, or of the first pcapng interface seen."""
        return self.interfaces[0].linktype if self.interfaces else None

    def _pcap_records(self) -> Iterator[Record]:
        linktype = self.interfaces[0].linktype
        scale = NANOSECONDS // self.interfaces[0].tsresol
        limit = min(max(self.snaplen or 0, PCAP_MAX_RECORD), MAX_BLOCK)
        unpack_header = _PCAP_RECORD[self._pcap_order].unpack_from
        fill = self._fill
        new = _new_tuple
        no_comments = ()
        buf, pos, base = self._buf, self._pos, self._base
        self._buf = b""    # the generator owns the buffer from here on
        size = len(buf)
        bulk = self.bulk.pcap_records if self.bulk is not None else None
        big_endian = self._pcap_order == ">"
        while True:
            if bulk is not None and size - pos >= 16:
                pos = bulk(buf, pos, linktype, scale, limit, big_endian, base)
            if size - pos < 16:
                buf, pos, base = fill(buf, pos, base, 16)
                size = len(buf)
                if size == 0:
                    return
                if size < 16:
                    raise self._error(base, "truncated pcap record header",
                                      f"needs 16 bytes, {size} left")
            sec, frac, caplen, origlen = unpack_header(buf, pos)
            if caplen > limit:
                raise self._error(base + pos, f"pcap record length {caplen} is absurd",
                                  f"snaplen is {self.snaplen}, limit {limit}")
            end = pos + 16 + caplen
            if end > size:
                buf, pos, base = fill(buf, pos, base, 16 + caplen)
                size = len(buf)
                end = 16 + caplen
                if end > size:
                    raise self._error(base, "truncated pcap record",
                                      f"needs {16 + caplen} bytes, {size} left")
            yield new(Record, (linktype, sec * NANOSECONDS + frac * scale, caplen, origlen,
                               buf[pos + 16:end], base + pos, no_comments))
            pos = end

    def _pcapng_records(self) -> Iterator[Record]:
        fill = self._fill
        new = _new_tuple
        no_comments = ()
        buf, pos, base = self._buf, self._pos, self._base
        self._buf = b""
        size = len(buf)
        # Per-section state, reset by every Section Header Block.
        order = "<"
        block_head = _BLOCK_HEAD[order].unpack_from
        u32 = _U32[order].unpack_from
        epb_fixed = _EPB_FIXED[order].unpack_from
        # Per interface: (linktype, ticks-to-ns scale, divisor, offset ns, snaplen, may overflow), as
        # _interface returns
        ifaces: List[Tuple[int, int, int, int, int, bool]] = []
        section = -1
        last_time_ns = 0
        bulk = self.bulk.pcapng_packets if self.bulk is not None else None
        while True:
            if bulk is not None and ifaces and size - pos >= 32:
                pos, bulk_time_ns = bulk(buf, pos, order == ">", ifaces, base)
                if bulk_time_ns is not None:
                    last_time_ns = bulk_time_ns
            if size - pos < 8:
                buf, pos, base = fill(buf, pos, base, 8)
                size = len(buf)
                if size == 0:
                    return
                if size < 8:
                    raise self._error(base, "truncated block header", f"needs 8 bytes, {size} left")
            btype, blen = block_head(buf, pos)
            if btype == PCAPNG_SHB:
                if size - pos < 12:
                    buf, pos, base = fill(buf, pos, base, 12)
                    size = len(buf)
                    if size < 12:
                        raise self._error(base, "truncated Section Header Block",
                                          f"needs 12 bytes, {size} left")
                bom = buf[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise self._error(base + pos + 8, "bad byte-order magic in Section Header Block",
                                      f"found {_hex(bom)}, expected 1a 2b 3c 4d in either order")
                block_head = _BLOCK_HEAD[order].unpack_from
                u32 = _U32[order].unpack_from
                epb_fixed = _EPB_FIXED[order].unpack_from
                blen = u32(buf, pos + 4)[0]
                minimum = 28
            elif section < 0:
                raise self._error(base + pos, f"pcapng file does not start with a Section Header Block "
                                  f"(block type 0x{btype:08x})")
            elif btype == BLOCK_EPB:
                minimum = 32
            elif btype == BLOCK_IDB:
                minimum = 20
            elif btype == BLOCK_SPB:
                minimum = 16
            elif btype == BLOCK_PB:
                minimum = 32
            elif btype == BLOCK_ISB:
                minimum = 24
            else:
                minimum = 12
            if blen < minimum or blen > MAX_BLOCK or blen & 3:
                raise self._error(base + pos, f"bad length {blen} in {_block_name(btype)}",
                                  f"must be a multiple of 4 between {minimum} and {MAX_BLOCK}")
            end = pos + blen
            if end > size:
                buf, pos, base = fill(buf, pos, base, blen)
                size = len(buf)
                end = blen
                if end > size:
                    raise self._error(base, f"truncated {_block_name(btype)}",
                                      f"needs {blen} bytes, {size} left")
            if u32(buf, end - 4)[0] != blen:
                raise self._error(base + pos, f"{_block_name(btype)} trailing length "
                                  f"{u32(buf, end - 4)[0]} does not match its length {blen}")

            if btype == BLOCK_EPB or btype == BLOCK_PB:
                # The same layout but for the first word: interface id (32 bits), or id and drops (16 each).
                if btype == BLOCK_EPB:
                    iface, ts_high, ts_low, caplen, origlen = epb_fixed(buf, pos + 8)
                else:
                    iface, _drops, ts_high, ts_low, caplen, origlen = _PB_FIXED[order].unpack_from(buf, pos + 8)
                data_end = pos + 28 + caplen
                options = pos + 28 + ((caplen + 3) & ~3)
                if options > end - 4:
                    raise self._error(base + pos, f"{_block_name(btype)} captured length {caplen} "
                                      f"overruns the block", f"block length {blen}")
                if iface >= len(ifaces):
                    raise self._error(base + pos, f"{_block_name(btype)} refers to interface {iface}",
                                      f"section {section} has {len(ifaces)} interfaces")
                linktype, scale, divisor, offset_ns, _snaplen, may_overflow = ifaces[iface]
                last_time_ns = ((ts_high << 32) | ts_low) * scale // divisor + offset_ns
                if may_overflow and not TIME_NS_MIN <= last_time_ns <= TIME_NS_MAX:
                    raise self._error(base + pos, f"{_block_name(btype)} timestamp out of range",
                                      f"{(ts_high << 32) | ts_low} ticks of interface {iface} is "
                                      f"{last_time_ns} ns since 1970, outside 64-bit nanoseconds "
                                      f"(years 1677 to 2262): its if_tsresol or if_tsoffset is wrong")
                yield new(Record, (linktype, last_time_ns, caplen, origlen, buf[pos + 28:data_end], base + pos,
                                   no_comments if options == end - 4
                                   else self._packet_comments(buf, options, end - 4, order, base)))
            elif btype == BLOCK_SPB:
                if not ifaces:
                    raise self._error(base + pos, "Simple Packet Block before any Interface Description Block")
                linktype, _scale, _divisor, _offset_ns, snaplen, _may_overflow = ifaces[0]
                origlen = u32(buf, pos + 8)[0]
                caplen = min(origlen, blen - 16, snaplen or origlen)
                yield new(Record, (linktype, last_time_ns, caplen, origlen, buf[pos + 12:pos + 12 + caplen],
                                   base + pos, no_comments))
            elif btype == BLOCK_IDB:
                ifaces.append(self._interface(buf, pos, end, order, base, section, len(ifaces)))
            elif btype == PCAPNG_SHB:
                section += 1
                ifaces = []
                self._section(buf, pos, end, order, base)
            elif btype == BLOCK_ISB:
                self._statistics(buf, pos, end, order, base, section)
            pos = end

    # -- pcapng block bodies ----------------------------------------------------------

    def _options(self, buf: bytes, start: int, end: int, order: str, base: int):
        """Yield (code, value bytes) for the options in buf[start:end]."""
        head = _OPTION_HEAD[order].unpack_from
        pos = start
        while pos + 4 <= end:
            code, length = head(buf, pos)
            if code == OPT_ENDOFOPT:
                return
            value_end = pos + 4 + length
            if value_end > end:
                raise self._error(base + pos, f"option {code} overruns its block",
                                  f"length {length}, {end - pos - 4} bytes left")
            yield code, buf[pos + 4:value_end]
            pos = pos + 4 + ((length + 3) & ~3)

    def _packet_comments(self, buf: bytes, start: int, end: int, order: str, base: int) -> Tuple[str, ...]:
        return tuple(_text(value) for code, value in self._options(buf, start, end, order, base)
                     if code == OPT_COMMENT)

    def _section(self, buf: bytes, pos: int, end: int, order: str, base: int) -> None:
        _bom, major, minor, _length = _SHB_FIXED[order].unpack_from(buf, pos + 8)
        if major != 1:
            raise self._error(base + pos, f"unsupported pcapng version {major}.{minor}", "expected 1.x")
        comments = []
        fields = {}
        for code, value in self._options(buf, pos + 24, end - 4, order, base):
            if code == OPT_COMMENT:
                comments.append(_text(value))
            elif code in (SHB_HARDWARE, SHB_OS, SHB_USERAPPL):
                fields[code] = _text(value)
        self.comments.extend(comments)
        self.sections.append(SectionInfo(base + pos, "little" if order == "<" else "big", (major, minor),
                                         tuple(comments), fields.get(SHB_HARDWARE), fields.get(SHB_OS),
                                         fields.get(SHB_USERAPPL)))

    def _statistics(self, buf: bytes, pos: int, end: int, order: str, base: int, section: int) -> None:
        interface = _U32[order].unpack_from(buf, pos + 8)[0]
        counters = {_STATISTICS_OPTIONS[code]: int.from_bytes(value, "little" if order == "<" else "big")
                    for code, value in self._options(buf, pos + 20, end - 4, order, base)
                    if code in _STATISTICS_OPTIONS and len(value) == 8}
        self.statistics.append(InterfaceStatistics(section, interface, counters))

    def _interface(self, buf: bytes, pos: int, end: int, order: str, base: int,
                   section: int, index: int) -> Tuple[int, int, int, int, int, bool]:
        """Record the interface; returns what its packet blocks need: the link type, ticks to
        nanoseconds as (scale, divisor), if_tsoffset in nanoseconds, the snaplen, and whether a
        timestamp could fall outside 64-bit nanoseconds (then each is checked)."""
        linktype, _reserved, snaplen = _IDB_FIXED[order].unpack_from(buf, pos + 8)
        units = 10**6
        tsoffset = 0
        info = {}
        comments = []
        for code, value in self._options(buf, pos + 16, end - 4, order, base):
            if code == IF_TSRESOL and value:
                exponent = value[0]
                if exponent & 0x7F > 63:
                    raise self._error(base + pos, f"absurd if_tsresol 0x{exponent:02x} in Interface Description Block")
                units = 1 << (exponent & 0x7F) if exponent & 0x80 else 10 ** exponent
            elif code == IF_TSOFFSET and len(value) >= 8:
                tsoffset = _I64[order].unpack_from(value, 0)[0]
            elif code == IF_NAME:
                info["name"] = _text(value)
            elif code == IF_DESCRIPTION:
                info["description"] = _text(value)
            elif code == IF_FILTER and value and value[0] == 0:
                info["filter"] = _text(value[1:])
            elif code == OPT_COMMENT:
                comments.append(_text(value))
        self.linktypes.add(linktype)
        self.interfaces.append(InterfaceInfo(section, index, linktype, snaplen, tsresol=units,
                                             tsoffset=tsoffset, comments=tuple(comments), **info))
        if NANOSECONDS % units == 0:
            scale, divisor = NANOSECONDS // units, 1
        else:
            scale, divisor = NANOSECONDS, units
        offset_ns = tsoffset * NANOSECONDS
        may_overflow = not (TIME_NS_MIN <= offset_ns and MAX_TICKS * scale // divisor + offset_ns <= TIME_NS_MAX)
        return linktype, scale, divisor, offset_ns, snaplen, may_overflow


def _block_name(btype: int) -> str:
    return pcapng.block_name(btype)


class _Gunzip:
    """Streaming gunzip (all members) that hands out everything decodable before damage.

    gzip.GzipFile would drop the data decompressed in the read that hits a truncation;
    here a truncated stream ends like a normal one with `truncated` set, and corrupt data
    raises zlib.error only after the good data before it was returned.
    """

    RAW_CHUNK = 1 << 16
    FEED = 1 << 14          # compressed bytes per inflate call; bounds a replay's output too

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._inflater = zlib.decompressobj(wbits=31)   # 31: expect a gzip wrapper
        self._input = b""       # read from the raw stream; fed to the inflater from _fed on
        self._fed = 0
        self._failure: Optional[zlib.error] = None
        self.truncated = False
        self._members = 1           # the member being read, counted from 1
        self._member_output = 0     # bytes it has given so far

    def read(self, size: int) -> bytes:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._inflater.eof:
                rest = self._inflater.unused_data + self._input[self._fed:]
                while not rest.strip(b"\x00"):
                    # Zero padding after a member is tolerated, as gzip(1) does.
                    rest = self._raw.read(self.RAW_CHUNK)
                    if not rest:
                        self._input, self._fed = b"", 0
                        return b""
                self._inflater = zlib.decompressobj(wbits=31)
                self._input, self._fed = rest.lstrip(b"\x00"), 0
                self._members += 1
                self._member_output = 0
            if self._fed == len(self._input):
                self._input, self._fed = self._raw.read(self.RAW_CHUNK), 0
                if not self._input:
                    self.truncated = True
                    return b""
            piece = self._input[self._fed:self._fed + self.FEED]
            checkpoint = self._inflater.copy()
            try:
                out = self._inflater.decompress(piece, size)
            except zlib.error as exc:
                # The error takes the whole call's output with it. Replay the piece from the
                # checkpoint a byte at a time to hand out all that came before the damage
                # (once per file, so the cost does not matter); the next read raises. Nothing
                # before it is no end of file: the loop raises at once.
                self._failure = exc
                if self._members > 1 and not self._member_output:
                    self._failure = zlib.error(f"what follows gzip member {self._members - 1} is not a valid "
                                               f"gzip member ({exc})")
                good = self._replay(checkpoint, piece)
                if good:
                    return good
                continue
            self._fed += len(piece) - len(self._inflater.unconsumed_tail)
            if out:
                self._member_output += len(out)
                return out

    @staticmethod
    def _replay(inflater, piece: bytes) -> bytes:
        good = []
        for start in range(len(piece)):
            try:
                good.append(inflater.decompress(piece[start:start + 1]))
            except zlib.error:
                break
        return b"".join(good)


class _RawAdapter:
    """Lets io.BufferedReader wrap a file-like object that only has read()."""

    def __init__(self, stream):
        self._stream = stream
        self.closed = False

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self._stream.read(len(target))
        target[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.closed = True

    def flush(self) -> None:
        pass


def open_decompressed(path: Union[str, "os.PathLike[str]"]) -> BinaryIO:
    """A capture file's bytes as the reader sees them: decompressed when gzip'd (all members), from a
    regular file only (as open_capture refuses anything else). Offsets into it are the reader's."""
    raw = _open_regular_file(os.fspath(path))
    try:
        if raw.peek(2)[:2] == GZIP_MAGIC:
            return _GunzipFile(raw)
    except BaseException:
        raw.close()
        raise
    return raw


class _GunzipFile(_Gunzip):
    """_Gunzip as a closable file."""

    def __enter__(self) -> "_GunzipFile":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()


def parse_size(text: str) -> int:
    """A size as a user writes it: 1000000, 200M, 4G (powers of 1024), 0 for no bound."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper()
    if text.endswith("B"):
        text = text[:-1]
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (a number of bytes, or one with K, M or G)") from None


def open_capture(source: Union[str, "os.PathLike[str]", BinaryIO], name: Optional[str] = None,
                 max_bytes: Optional[int] = None) -> CaptureFile:
    """Open a pcap/pcapng capture (plain or gzip) by path, or wrap a binary stream.

    Raises CaptureFormatError if the header is bad, OSError if the file cannot be read, and
    NotARegularFile (an OSError) for a directory, FIFO, socket or device, without blocking.
    `name` is what error messages call the file (defaults to the path); `max_bytes` bounds what is
    read (see the module's rules: by default only gzip'd files are bounded).
    """
    if hasattr(source, "read"):
        return CaptureFile(source, name or getattr(source, "name", None) or "<stream>", max_bytes=max_bytes)
    path = os.fspath(source)
    raw = _open_regular_file(path)
    try:
        return CaptureFile(raw, name or path, close_stream=True, max_bytes=max_bytes,
                           compressed_size=os.fstat(raw.fileno()).st_size)
    except BaseException:
        raw.close()
        raise


_NOT_REGULAR = ((stat.S_ISDIR, errno.EISDIR, "a directory, not a capture file"),
                (stat.S_ISFIFO, errno.EINVAL, "a FIFO (named pipe), not a regular file"),
                (stat.S_ISSOCK, errno.EINVAL, "a socket, not a regular file"),
                (stat.S_ISCHR, errno.EINVAL, "a character device, not a regular file"),
                (stat.S_ISBLK, errno.EINVAL, "a block device, not a regular file"))


def _open_regular_file(path: str) -> BinaryIO:
    return open(path, "rb", opener=_open_regular_fd)


def _open_regular_fd(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, possibly forever.
    # It changes nothing for a regular file, and is cleared before any read.
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            code, what = next(((code, what) for test, code, what in _NOT_REGULAR if test(mode)),
                              (errno.EINVAL, "not a regular file"))
            raise NotARegularFile(code, what, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
