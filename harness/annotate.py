"""A capture rewritten as pcapng with verdicts as packet comments, for reading in Wireshark.

    annotate("run.pcapng", "run.annotated.pcapng", {4: ["ok: step 4"], 6: ["FAIL: ..."]},
             section_comments=["harness check --expect tcp_lab: FAIL"])

Rules:

* Any capture `open_capture` reads (pcap, pcapng, either gzip'd) goes in; pcapng comes out, every
  packet in order with its bytes, caplen, origlen and existing comments unchanged. Comments are
  keyed by 1-based frame number, as Wireshark numbers frames, and are added after the packet's own.
* The output mirrors the source's structure: one Section Header Block per source section (with
  its comments, hardware, OS and application), one Interface Description Block per source
  interface (link type, snaplen, name, description, filter, comments, if_tsoffset), so packets
  keep their interface. `section_comments` go on the first Section Header Block. Blocks the
  reader does not surface (name resolution, statistics, decryption secrets, EPB flags) are dropped.
* Timestamps are written with if_tsresol=9 (nanoseconds), from the reader's integer
  nanoseconds: microsecond and nanosecond sources come out with exactly the same times (ticks
  finer than a nanosecond are truncated to it, as Wireshark reads them).
* Streaming, constant memory. The file is written as OUT.partial and renamed over OUT only once
  complete and synced, so OUT is never half-written; on any error the .partial is removed.
* Comments for frames the capture does not have are an error (ValueError), not silently lost.
"""
from __future__ import annotations

import gzip
import os
import stat
import struct
from typing import BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from harness.capture.pcapng_stream import (
    BYTE_ORDER_MAGIC, ENHANCED_PACKET, INTERFACE_DESCRIPTION, OPT_COMMENT, SECTION_HEADER, SIMPLE_PACKET,
    _encode_options,
)
from harness.pcapfile import (IF_DESCRIPTION, IF_FILTER, IF_NAME, IF_TSOFFSET, IF_TSRESOL, SHB_HARDWARE, SHB_OS,
                              SHB_USERAPPL, CaptureFile, InterfaceInfo, Record, SectionInfo, open_capture)

__all__ = ["annotate", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"
NANOSECONDS = 10**9
WRITER_APPLICATION = "harness annotate"

PACKET_BLOCK = 0x00000002
TSRESOL_NANOSECONDS = bytes([9])

_ENDIAN = "<"
_BLOCK_HEAD = struct.Struct("<II")
_U32 = struct.Struct("<I")
_EPB_FIXED = struct.Struct("<IIIII")
_SHB_FIXED = struct.Struct("<IHHq")
_IDB_FIXED = struct.Struct("<HHI")
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _options_bytes(options: List[tuple]) -> bytes:
    return _encode_options(options, _ENDIAN) if options else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return _BLOCK_HEAD.pack(block_type, length) + body + _U32.pack(length)


def _section_header(comments: Sequence[str], hardware: Optional[str], os_name: Optional[str],
                    application: Optional[str]) -> bytes:
    options = [(OPT_COMMENT, _utf8(c)) for c in comments]
    options += [(code, _utf8(value)) for code, value in
                ((SHB_HARDWARE, hardware), (SHB_OS, os_name), (SHB_USERAPPL, application)) if value]
    # Section length -1: unknown, as every streaming writer (dumpcap included) says.
    return _block(SECTION_HEADER, _SHB_FIXED.pack(BYTE_ORDER_MAGIC, 1, 0, -1) + _options_bytes(options))


def _interface_description(interface: InterfaceInfo) -> bytes:
    options = [(OPT_COMMENT, _utf8(c)) for c in interface.comments]
    if interface.name is not None:
        options.append((IF_NAME, _utf8(interface.name)))
    if interface.description is not None:
        options.append((IF_DESCRIPTION, _utf8(interface.description)))
    options.append((IF_TSRESOL, TSRESOL_NANOSECONDS))
    if interface.filter is not None:
        options.append((IF_FILTER, b"\0" + _utf8(interface.filter)))
    if interface.tsoffset:
        options.append((IF_TSOFFSET, struct.pack(_ENDIAN + "q", interface.tsoffset)))
    return _block(INTERFACE_DESCRIPTION, _IDB_FIXED.pack(interface.linktype, 0, interface.snaplen)
                  + _options_bytes(options))


def _enhanced_packet(interface_id: int, nanoseconds: int, record: Record, comments: Sequence[str]) -> bytes:
    fixed = _EPB_FIXED.pack(interface_id, (nanoseconds >> 32) & 0xFFFFFFFF, nanoseconds & 0xFFFFFFFF,
                            record.caplen, record.origlen)
    options = _options_bytes([(OPT_COMMENT, _utf8(c)) for c in comments])
    return _block(ENHANCED_PACKET, fixed + record.data + _PAD[len(record.data) & 3] + options)


def _nanoseconds(time_ns: int, interface: InterfaceInfo) -> int:
    """Nanoseconds since the interface's if_tsoffset, the unit the copy's interfaces use."""
    return time_ns - interface.tsoffset * NANOSECONDS


class _SourcePeek:
    """Reads the interface id of a packet block straight from the source file, by its offset.

    Needed only when a section has several interfaces of the same link type, since a Record
    says its link type but not its interface. Offsets only grow, so a gzip'd source is read
    forward once, alongside the reader: still constant memory.
    """

    def __init__(self, path: str, compressed: bool):
        self._path = path
        self._compressed = compressed
        self._stream: Optional[BinaryIO] = None

    def interface_id(self, offset: int, byte_order: str) -> int:
        if self._stream is None:
            self._stream = gzip.open(self._path, "rb") if self._compressed else open(self._path, "rb")
        self._stream.seek(offset)
        head = self._stream.read(12)
        order = "<" if byte_order == "little" else ">"
        block_type = struct.unpack_from(order + "I", head, 0)[0]
        if block_type == ENHANCED_PACKET:
            return struct.unpack_from(order + "I", head, 8)[0]
        if block_type == PACKET_BLOCK:
            return struct.unpack_from(order + "H", head, 8)[0]
        if block_type == SIMPLE_PACKET:
            return 0
        raise ValueError(f"{self._path}: no packet block at byte {offset} (type 0x{block_type:08x})")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class _StructureMirror:
    """Writes the source's sections and interfaces as the reader discovers them, in file order."""

    def __init__(self, capture: CaptureFile, out: BinaryIO, section_comments: Sequence[str]):
        self._capture = capture
        self._out = out
        self._section_comments = list(section_comments)
        self._sections_written = 0
        self._interfaces_written = 0
        # Interfaces of the current section by their id, and ids by link type.
        self._section_interfaces: List[InterfaceInfo] = []
        self._ids_by_linktype: Dict[int, List[int]] = {}
        self._peek = _SourcePeek(capture.path, capture.compressed)

    def catch_up(self) -> None:
        capture = self._capture
        if capture.format == "pcap":
            if not self._sections_written:
                self._write_section(SectionInfo(0, "little", (1, 0), application=WRITER_APPLICATION))
            self._write_interfaces(len(capture.interfaces))
            return
        while self._sections_written < len(capture.sections):
            # A section's trailing interfaces belong before the next section's header.
            starts_at = self._sections_written
            self._write_interfaces(sum(1 for i in capture.interfaces if i.section < starts_at))
            self._write_section(capture.sections[starts_at])
        self._write_interfaces(len(capture.interfaces))

    def interface_for(self, record: Record) -> InterfaceInfo:
        ids = self._ids_by_linktype.get(record.linktype, ())
        if len(ids) == 1:
            return self._section_interfaces[ids[0]]
        byte_order = self._capture.sections[-1].byte_order
        return self._section_interfaces[self._peek.interface_id(record.offset, byte_order)]

    def close(self) -> None:
        self._peek.close()

    def _write_section(self, section: SectionInfo) -> None:
        comments = list(section.comments)
        if not self._sections_written:
            comments += self._section_comments
        self._out.write(_section_header(comments, section.hardware, section.os, section.application))
        self._sections_written += 1
        self._section_interfaces = []
        self._ids_by_linktype = {}

    def _write_interfaces(self, up_to: int) -> None:
        for interface in self._capture.interfaces[self._interfaces_written:up_to]:
            self._out.write(_interface_description(interface))
            self._ids_by_linktype.setdefault(interface.linktype, []).append(len(self._section_interfaces))
            self._section_interfaces.append(interface)
        self._interfaces_written = max(self._interfaces_written, up_to)


def _comment_lists(comments: Mapping[int, Union[str, Iterable[str]]]) -> Dict[int, List[str]]:
    lists = {}
    for frame, texts in comments.items():
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
            raise ValueError(f"comment key {frame!r} is not a frame number (1-based int)")
        lists[frame] = [texts] if isinstance(texts, str) else [str(t) for t in texts]
    return lists


def annotate(source_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"],
             comments: Mapping[int, Union[str, Iterable[str]]],
             section_comments: Sequence[str] = ()) -> int:
    """Copy a capture to a pcapng at out_path with comments added to frames; return packets written.

    `comments` maps 1-based frame numbers to comment strings (a list, or one string) added as
    opt_comment options after the packet's own. Raises CaptureFormatError / OSError as
    open_capture does, and ValueError for comments on frames the capture does not have; in
    every failure no file is left under out_path or out_path + ".partial".
    """
    source_path, out_path = os.fspath(source_path), os.fspath(out_path)
    partial = out_path + PARTIAL_SUFFIX
    if os.path.exists(source_path) and os.path.realpath(partial) == os.path.realpath(source_path):
        raise ValueError(f"{source_path}: the source cannot be the output's {PARTIAL_SUFFIX} file")
    wanted = _comment_lists(comments)
    if isinstance(section_comments, str):
        section_comments = [section_comments]
    written = 0
    try:
        # The copy is never more readable than its source: a capture written 0600 stays 0600.
        mode = stat.S_IMODE(os.stat(source_path).st_mode) if os.path.isfile(source_path) else 0o666
        if os.path.lexists(partial):
            os.unlink(partial)   # a stale one would keep its old mode
        with open_capture(source_path) as capture, \
                os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            mirror = _StructureMirror(capture, out, section_comments)
            try:
                for frame, record in enumerate(capture, 1):
                    mirror.catch_up()
                    interface = mirror.interface_for(record)
                    added = wanted.get(frame, ())
                    out.write(_enhanced_packet(interface.index,
                                               _nanoseconds(record.time_ns, interface), record,
                                               record.comments + tuple(added) if added else record.comments))
                    written = frame
                mirror.catch_up()   # sections and interfaces after the last packet
            finally:
                mirror.close()
            beyond = sorted(frame for frame in wanted if frame > written)
            if beyond:
                raise ValueError(f"{source_path} has {written} packets; comments for frame"
                                 f"{'s' if len(beyond) > 1 else ''} {', '.join(map(str, beyond))} have no packet")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, out_path)
    except BaseException:
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise
    return written
