"""A capture rewritten as pcapng with verdicts as packet comments, for reading in Wireshark.

    annotate("run.pcapng", "run.annotated.pcapng", {4: ["ok: step 4"], 6: ["FAIL: ..."]},
             section_comments=["harness check --expect tcp_lab: FAIL"])

Rules:

* Any capture `open_capture` reads (pcap, pcapng, either gzip'd) goes in; pcapng comes out.
  Comments are keyed by 1-based frame number, as Wireshark numbers frames, and are added after
  the packet's own options; `section_comments` go on the first Section Header Block.
* A pcapng source is copied block by block, and every block that gains nothing is written back
  byte for byte: interfaces, name resolution, decryption secrets, and the Interface Statistics
  Blocks with the capture's received/dropped counters (a saved capture's own evidence that it is
  complete) all survive, in their section's byte order. A packet block that gains comments keeps
  its fields and options; a Simple Packet Block, which cannot carry options, becomes an Enhanced
  Packet Block on interface 0 with the time the reader gives it.
* A pcap source becomes one section with one interface of its link type, snaplen and timestamp
  resolution (micro- or nanoseconds), so every time is kept exactly.
* The source is read by the reader alongside the copy, so damage is reported exactly as every
  other command reports it (CaptureFormatError), and nothing damaged is ever written out.
* Streaming, constant memory. The file is written as OUT.partial and renamed over OUT only once
  complete and synced, so OUT is never half-written; on any error the .partial is removed.
* Comments for frames the capture does not have are an error (ValueError), not silently lost.
"""
from __future__ import annotations

import os
import stat
from typing import BinaryIO, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple, Union

from harness.wire import pcapng
from harness.wire.reader import CHUNK, NANOSECONDS, CaptureFile, InterfaceInfo, Record, open_capture, open_decompressed

__all__ = ["annotate", "PARTIAL_SUFFIX"]

PARTIAL_SUFFIX = ".partial"
WRITER_APPLICATION = "harness annotate"


def _comment_lists(comments: Mapping[int, Union[str, Iterable[str]]]) -> Dict[int, List[str]]:
    lists = {}
    for frame, texts in comments.items():
        if not isinstance(frame, int) or isinstance(frame, bool) or frame < 1:
            raise ValueError(f"comment key {frame!r} is not a frame number (1-based int)")
        lists[frame] = [texts] if isinstance(texts, str) else [str(t) for t in texts]
    return lists


def _comment_options(texts: Sequence[str]) -> List[pcapng.Option]:
    return [pcapng.text_option(pcapng.OPT_COMMENT, text) for text in texts]


def _ticks(time_ns: int, interface: InterfaceInfo) -> int:
    """A reader's time back in the interface's own units."""
    return (time_ns - interface.tsoffset * NANOSECONDS) * interface.tsresol // NANOSECONDS


def _blocks(stream: BinaryIO) -> Iterator[Tuple[int, bytes, str]]:
    """(type, raw block, byte order) of a pcapng stream; the reader judges the framing alongside."""
    splitter = pcapng.BlockSplitter()
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            if splitter.pending:
                raise pcapng.StreamError(f"the file ends inside a block ({splitter.pending} bytes)")
            return
        for block_type, raw in splitter.feed(chunk):
            yield block_type, raw, splitter.endian


def _copy_pcapng(source: str, capture: CaptureFile, records: Iterator[Record], out: BinaryIO,
                 wanted: Dict[int, List[str]], section_comments: Sequence[str]) -> int:
    frame = 0
    sections = 0
    with open_decompressed(source) as stream:
        try:
            for block_type, raw, endian in _blocks(stream):
                if block_type in pcapng.PACKET_BLOCKS:
                    record = next(records, None)     # the reader reads (and checks) up to this packet
                    if record is None:
                        raise ValueError(f"{source}: the copy found a packet the reader did not")
                    frame += 1
                    added = wanted.get(frame)
                    if added and block_type == pcapng.SIMPLE_PACKET:
                        if endian == ">":
                            raise ValueError(f"{source}: a comment on a Simple Packet Block in a big-endian "
                                             f"section (frame {frame}) is not supported")
                        interface = next(i for i in reversed(capture.interfaces) if i.index == 0)
                        raw = pcapng.enhanced_packet_block(0, _ticks(record.time_ns, interface), record.data,
                                                           record.origlen, _comment_options(added))
                    elif added:
                        raw = pcapng.with_options(raw, endian, _comment_options(added))
                elif block_type == pcapng.SECTION_HEADER:
                    sections += 1
                    if sections == 1:
                        raw = pcapng.with_options(raw, endian, _comment_options(section_comments))
                out.write(raw)
        except pcapng.StreamError as error:
            for _ in records:   # the reader names the damage in its own words, if it sees it
                pass
            raise ValueError(f"{source}: {error}") from None
    for _ in records:      # whatever the reader has left to check (and, if damaged, raise)
        raise ValueError(f"{source}: the reader found a packet the copy did not")
    return frame


def _copy_pcap(capture: CaptureFile, records: Iterator[Record], out: BinaryIO, wanted: Dict[int, List[str]],
               section_comments: Sequence[str]) -> int:
    (interface,) = capture.interfaces
    out.write(pcapng.section_header_block([*_comment_options(section_comments),
                                           pcapng.text_option(pcapng.SHB_USERAPPL, WRITER_APPLICATION)]))
    out.write(pcapng.interface_description_block(
        interface.linktype, interface.snaplen, [(pcapng.IF_TSRESOL, bytes([9 if capture.nanosecond else 6]))]))
    frame = 0
    for frame, record in enumerate(records, 1):
        out.write(pcapng.enhanced_packet_block(0, _ticks(record.time_ns, interface), record.data, record.origlen,
                                               _comment_options(wanted.get(frame, ()))))
    return frame


def annotate(source_path: Union[str, "os.PathLike[str]"], out_path: Union[str, "os.PathLike[str]"],
             comments: Mapping[int, Union[str, Iterable[str]]],
             section_comments: Sequence[str] = ()) -> int:
    """Copy a capture to a pcapng at out_path with comments added to frames; return packets written.

    `comments` maps 1-based frame numbers to comment strings (a list, or one string) added as
    opt_comment options after the packet's own. Raises CaptureFormatError / OSError as
    open_capture does, and ValueError for comments on frames the capture does not have; in
    every failure no file is left under out_path + ".partial", and out_path is untouched.
    """
    source_path, out_path = os.fspath(source_path), os.fspath(out_path)
    partial = out_path + PARTIAL_SUFFIX
    if os.path.exists(source_path) and os.path.realpath(partial) == os.path.realpath(source_path):
        raise ValueError(f"{source_path}: the source cannot be the output's {PARTIAL_SUFFIX} file")
    wanted = _comment_lists(comments)
    if isinstance(section_comments, str):
        section_comments = [section_comments]
    try:
        # The copy is never more readable than its source: a capture written 0600 stays 0600.
        mode = stat.S_IMODE(os.stat(source_path).st_mode) if os.path.isfile(source_path) else 0o666
        if os.path.lexists(partial):
            os.unlink(partial)   # a stale one would keep its old mode
        with open_capture(source_path) as capture, \
                os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as out:
            records = iter(capture)
            if capture.format == "pcapng":
                written = _copy_pcapng(source_path, capture, records, out, wanted, section_comments)
            else:
                written = _copy_pcap(capture, records, out, wanted, section_comments)
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
        except OSError:
            pass    # none was made (a read-only disk, a file for a directory): the error above says why
        raise
    return written
