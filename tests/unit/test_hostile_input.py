"""Hostile input through the command line, in process: every kind of damage gives one line naming
the file and the byte, after the summary of what came before it, and never a traceback or a hang.

The damaged files are made from the reference captures (`captures/lab`, `captures/corpus`) and
from `pcapbuild`. The oracle for "what came before" is the same command on the clean prefix: the
capture cut at the reported byte, which must read without a word on stderr.

Fatal damage: exit 2, exactly one stderr line `harness COMMAND: FILE: WHAT at byte N ...`.
Damage inside packets only: each such packet is skipped with a `warning:` line; the rest reads
as if the packet had never been captured.
Files that are not files (a directory, a FIFO, a device, no permission): exit 2 and one line
`harness COMMAND: FILE: WHAT`, refused before any read.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import struct
import threading
import zlib
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import pytest

from support import pcapbuild as pb
from harness.cli import main
from harness.wire.reader import MAX_BLOCK, NotARegularFile, open_capture
from harness.analysis.pipeline import WARNING_LIMIT
from support import REPO

ROOT = REPO
TCP_LAB = ROOT / "captures" / "lab" / "tcp-lab.pcapng"
IPV6_HTTP = ROOT / "captures" / "corpus" / "ipv6-http.pcapng"
UDP_UNREACHABLE = ROOT / "captures" / "corpus" / "udp-unreachable.pcapng"

COMMANDS = {
    "summary": lambda path: ["summary", "--json", str(path)],
    "show": lambda path: ["show", str(path)],
    "check": lambda path: ["check", str(path), "--expect", "tcp_graceful"],
}


# -- building damaged captures ------------------------------------------------------------

def pcapng_blocks(data: bytes) -> List[Tuple[int, int, int]]:
    """(offset, block type, length) of every block of a well-formed little-endian pcapng file."""
    blocks, pos = [], 0
    while pos < len(data):
        block_type, length = struct.unpack_from("<II", data, pos)
        blocks.append((pos, block_type, length))
        pos += length
    return blocks


def records_of(path: Path) -> List[Tuple[int, int, bytes]]:
    with open_capture(path) as capture:
        return [(record.time_ns // 10**9, record.time_ns % 10**9 // 1000, record.data) for record in capture]


def pcap_record_offsets(data: bytes) -> List[int]:
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def patched(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


LAB_NG = TCP_LAB.read_bytes()
LAB_BLOCKS = pcapng_blocks(LAB_NG)
SHB_AT, IDB_AT = 0, LAB_BLOCKS[1][0]
EPB_AT = {frame: offset for frame, (offset, _, _) in enumerate(LAB_BLOCKS[2:-1], 1)}
ISB_AT = LAB_BLOCKS[-1][0]
ETHERNET = 14
IP_IN_EPB = 28 + ETHERNET            # from the start of an EPB to its IPv4 header
TCP_IN_EPB = IP_IN_EPB + 20

LAB_RECORDS = records_of(TCP_LAB)
LAB_PCAP = pb.pcap(LAB_RECORDS)
PCAP_AT = pcap_record_offsets(LAB_PCAP)

# A pcapng with every kind of block the reader knows, so each can be cut: SHB, IDB, EPB, SPB
# (no timestamp), the obsolete PB, and two it skips (a Name Resolution Block, an ISB).
_frames = [data for _, _, data in LAB_RECORDS]
EVERY_BLOCK = (pb.shb(opts=[(1, b"every kind of block")]) + pb.idb(1, opts=[pb.tsresol(6)])
               + b"".join(pb.epb(0, 1000 * n, frame) for n, frame in enumerate(_frames[:3]))
               + pb.spb(_frames[3]) + pb.packet_block(0, 4000, _frames[4])
               + pb.block(4, b"\x00" * 4)
               + b"".join(pb.epb(0, 1000 * n, frame) for n, frame in enumerate(_frames[5:], 5))
               + pb.block(5, b"\x00" * 12))
_BLOCK_NAMES = {0x0A0D0D0A: "Section Header Block", 1: "Interface Description Block", 6: "Enhanced Packet Block",
                3: "Simple Packet Block", 2: "Packet Block", 4: "Name Resolution Block",
                5: "Interface Statistics Block"}


class Fatal(NamedTuple):
    name: str
    data: bytes
    offset: int                  # the byte the one error line must name
    what: Optional[str]          # a fragment of the message; None when random bytes decide it
    prefix: Optional[bytes] = None   # the clean capture before the damage; default data[:offset]


def _truncations() -> List[Fatal]:
    cases = []
    for offset, block_type, length in pcapng_blocks(EVERY_BLOCK):
        name = _BLOCK_NAMES[block_type]
        slug = f"{name.lower().replace(' ', '-')}-at-{offset}"
        cases.append(Fatal(f"{slug}-cut-in-header", EVERY_BLOCK[:offset + 5], offset, "truncated block header"))
        cases.append(Fatal(f"{slug}-cut-in-body", EVERY_BLOCK[:offset + length // 2], offset, f"truncated {name}"))
        cases.append(Fatal(f"{slug}-cut-in-trailing-length", EVERY_BLOCK[:offset + length - 2], offset,
                           f"truncated {name}"))
    # The Section Header Block's first 4 bytes are the magic: cut after them and before its length.
    cases[0] = cases[0]._replace(data=EVERY_BLOCK[:4])
    cases += [
        Fatal("pcap-cut-in-file-header", LAB_PCAP[:10], 0, "truncated pcap file header"),
        Fatal("pcap-cut-in-record-header", LAB_PCAP[:PCAP_AT[3] + 10], PCAP_AT[3], "truncated pcap record header"),
        Fatal("pcap-cut-in-record-data", LAB_PCAP[:PCAP_AT[3] + 30], PCAP_AT[3], "truncated pcap record"),
        Fatal("pcap-big-endian-cut-in-record-data", pb.pcap(LAB_RECORDS, order=">")[:PCAP_AT[6] + 20], PCAP_AT[6],
              "truncated pcap record"),
    ]
    return cases


def _absurd_lengths() -> List[Fatal]:
    cases = []
    for length in (0, 3, 2**31, 2**32 - 1):
        for at, name in ((SHB_AT, "Section Header Block"), (IDB_AT, "Interface Description Block"),
                         (EPB_AT[5], "Enhanced Packet Block"), (ISB_AT, "Interface Statistics Block")):
            cases.append(Fatal(f"{name.lower().replace(' ', '-')}-length-{length}", patched(LAB_NG, at + 4, u32(length)),
                               at, f"bad length {length} in {name}"))
    # pcap's snaplen here is 65535, so anything over 262144 is refused before it is read.
    for caplen in (262145, MAX_BLOCK + 1, 2**31, 2**32 - 1):
        cases.append(Fatal(f"pcap-caplen-{caplen}", patched(LAB_PCAP, PCAP_AT[4] + 8, u32(caplen)), PCAP_AT[4],
                           f"pcap record length {caplen} is absurd"))
    # With snaplen 2^32-1 a caplen of MAX_BLOCK is allowed: then the file is too short for it.
    huge_snaplen = patched(LAB_PCAP, 16, u32(2**32 - 1))
    cases.append(Fatal("pcap-caplen-max-block-claims-256-mib", patched(huge_snaplen, PCAP_AT[4] + 8, u32(MAX_BLOCK)),
                       PCAP_AT[4], f"truncated pcap record at byte {PCAP_AT[4]} (needs {MAX_BLOCK + 16} bytes"))
    return cases


def _gzip_cut_in_the_middle() -> Fatal:
    compressed = gzip.compress(LAB_NG)
    cut = compressed[:len(compressed) // 2]
    readable = len(zlib.decompressobj(wbits=31).decompress(cut))
    boundary = max(offset for offset, _, _ in LAB_BLOCKS + [(len(LAB_NG), 0, 0)] if offset <= readable)
    return Fatal("gzip-cut-in-the-middle", cut, readable, "truncated gzip stream", LAB_NG[:boundary])


def _gzip_with_a_wrong_crc() -> Fatal:
    plain = UDP_UNREACHABLE.read_bytes()
    compressed = bytearray(gzip.compress(plain))
    compressed[-8] ^= 0xFF          # the trailer's CRC-32: found only after the last byte inflated
    return Fatal("gzip-with-a-wrong-crc", bytes(compressed), len(plain), "corrupt gzip data", plain)


def _gzip_corrupt_in_the_middle() -> bytes:
    plain = UDP_UNREACHABLE.read_bytes() * 3     # three sections, so the damage has a past
    compressed = bytearray(gzip.compress(plain))
    compressed[len(compressed) * 2 // 3] ^= 0xFF
    return bytes(compressed)


SEEDED = random.Random(20261125)

FATAL_CASES = _truncations() + _absurd_lengths() + [
    Fatal("zero-length-file", b"", 0, "empty file (0 bytes)"),
    Fatal("three-byte-file", LAB_NG[:3], 0, "file too short to be a capture (3 bytes: 0a 0d 0d)"),
    Fatal("wrong-magic-gif", b"GIF89a" + LAB_NG[6:], 0, "not a capture file: starts with 47 49 46 38 ('GIF8')"),
    Fatal("wrong-magic-pcap-off-by-one", b"\xd5\xc3\xb2\xa1" + LAB_PCAP[4:], 0, "not a capture file: starts with d5"),
    Fatal("pcap-version-1", patched(LAB_PCAP, 4, b"\x01\x00"), 4, "unsupported pcap version 1.4", b""),
    Fatal("pcapng-version-2", patched(LAB_NG, 12, b"\x02\x00"), 0, "unsupported pcapng version 2.0"),
    Fatal("bad-byte-order-magic", patched(LAB_NG, 8, b"\x00\x11\x22\x33"), 8, "bad byte-order magic", b""),
    Fatal("trailing-length-disagrees", patched(LAB_NG, EPB_AT[5] + 96, u32(104)), EPB_AT[5],
          "Enhanced Packet Block trailing length 104 does not match its length 100"),
    Fatal("leading-length-disagrees", patched(LAB_NG, EPB_AT[5] + 4, u32(104)), EPB_AT[5],
          "Enhanced Packet Block trailing length 6 does not match its length 104"),
    Fatal("epb-caplen-claims-256-mib", patched(LAB_NG, EPB_AT[5] + 20, u32(MAX_BLOCK + 1)), EPB_AT[5],
          f"Enhanced Packet Block captured length {MAX_BLOCK + 1} overruns the block"),
    Fatal("epb-unknown-interface", patched(LAB_NG, EPB_AT[5] + 8, u32(5)), EPB_AT[5],
          "Enhanced Packet Block refers to interface 5"),
    Fatal("random-bytes-after-pcapng-header", LAB_NG[:EPB_AT[1]] + SEEDED.randbytes(3000), EPB_AT[1], None),
    Fatal("random-bytes-after-four-packets", LAB_NG[:EPB_AT[5]] + SEEDED.randbytes(3000), EPB_AT[5], None),
    Fatal("random-bytes-after-pcap-header", LAB_PCAP[:24] + SEEDED.randbytes(3000), 24, None),
    _gzip_cut_in_the_middle(),
    _gzip_with_a_wrong_crc(),
]


# -- running the command line ---------------------------------------------------------------

class Run(NamedTuple):
    status: int
    out: str
    err: str


def run(argv: List[str], capsys) -> Run:
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    assert isinstance(status, int)
    assert "Traceback" not in out + err
    return Run(status, out, err)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- fatal damage ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", FATAL_CASES, ids=[case.name for case in FATAL_CASES])
def test_fatal_damage_is_one_line_naming_file_and_byte_after_what_came_before(case, command, tmp_path, capsys):
    path = write(tmp_path, f"{case.name}.pcapng", case.data)
    damaged = run(COMMANDS[command](path), capsys)

    assert damaged.status == 2
    assert damaged.err.count("\n") == 1, damaged.err
    line = damaged.err.rstrip("\n")
    assert line.startswith(f"harness {command}: {path}: ")
    if case.what is not None:
        assert case.what in line
    offset = case.offset
    prefix = case.prefix if case.prefix is not None else case.data[:offset]
    assert f" at byte {offset}" in line and line.count(" at byte ") == 1

    clean_path = write(tmp_path, "clean-prefix.pcapng", prefix)
    expected = run(COMMANDS["summary"](clean_path), capsys) if prefix else Run(0, "[]", "")
    assert expected.status == 0 and expected.err == ""
    expected_records = json.loads(expected.out)
    if command == "summary":
        assert json.loads(damaged.out) == expected_records
    elif command == "show":
        # The ladders of what came before; without any, what was read before the damage, or (when
        # nothing was) only the one line on stderr: never a claim that contradicts the damage.
        shown = run(COMMANDS["show"](clean_path), capsys).out.replace(str(clean_path), "FILE") if prefix else ""
        if not expected_records:
            nothing_read = not shown or " in its 0 packets" in shown
            shown = "" if nothing_read else shown.replace(" conversations in its ", " conversations before the damage in its ")
        assert damaged.out.replace(str(path), "FILE") == shown
    else:
        assert damaged.out == ""    # no verdict on a damaged capture
    assert line.endswith("; what came before the damage is shown") == bool(expected_records)


@pytest.mark.parametrize("case", [c for c in FATAL_CASES if c.name.endswith("256-mib") or "caplen-2147483648" in c.name],
                         ids=lambda case: case.name)
def test_length_fields_claiming_gigabytes_cost_kilobytes(case, tmp_path, capsys):
    import tracemalloc
    path = write(tmp_path, "claims.pcapng", case.data)
    tracemalloc.start()
    try:
        status = main(COMMANDS["summary"](path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 2 and peak < 8 * 1024 * 1024, f"peak {peak} bytes"


def test_a_claimed_block_of_max_block_bytes_in_a_small_file_costs_a_chunk_not_the_claim(tmp_path):
    """Regression: read(need) on a buffered file allocated the full claimed 256 MiB up front."""
    import tracemalloc
    data = LAB_NG[:EPB_AT[5]] + patched(LAB_NG[EPB_AT[5]:EPB_AT[5] + 100], 4, u32(MAX_BLOCK))
    path = write(tmp_path, "claims-max-block.pcapng", data)
    tracemalloc.start()
    try:
        with open_capture(path) as capture:
            with pytest.raises(Exception, match=f"truncated Enhanced Packet Block at byte {EPB_AT[5]}"):
                for _ in capture:
                    pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"


def test_corrupt_gzip_still_shows_what_came_before_the_corruption(tmp_path, capsys):
    """Regression: one zlib call inflated the whole small file, and its error threw all of it away."""
    damaged = run(COMMANDS["summary"](write(tmp_path, "corrupt.pcapng.gz", _gzip_corrupt_in_the_middle())), capsys)
    # Inflating garbage may give bytes before zlib notices, so the line may name those instead.
    assert damaged.status == 2 and damaged.err.count("\n") == 1 and " at byte " in damaged.err
    assert len(json.loads(damaged.out)) >= 1


# -- damage only inside packets: skipped with a warning -----------------------------------

class Skipped(NamedTuple):
    name: str
    source: bytes
    block_at: int                # the damaged packet's block
    patch_at: int                # from the block's start
    patch: bytes
    warning: str


def _without_block(data: bytes, at: int) -> bytes:
    return data[:at] + data[at + struct.unpack_from("<I", data, at + 4)[0]:]


IPV6_NG = IPV6_HTTP.read_bytes()
IPV6_FRAME_4 = pcapng_blocks(IPV6_NG)[5][0]

SKIPPED_CASES = [
    Skipped("ipv4-ihl-4", LAB_NG, EPB_AT[4], IP_IN_EPB, b"\x44", "frame 4: IPv4 header length 16 is less than 20"),
    Skipped("ipv4-total-length-past-the-packet", LAB_NG, EPB_AT[4], IP_IN_EPB + 2, b"\x05\xdc",
            "frame 4: IPv4 total length 1500 exceeds the 54 bytes"),
    Skipped("tcp-data-offset-4", LAB_NG, EPB_AT[5], TCP_IN_EPB + 12, b"\x40", "frame 5: TCP data offset 16 is less than 20"),
    Skipped("tcp-data-offset-past-the-packet", LAB_NG, EPB_AT[5], TCP_IN_EPB + 12, b"\xf0",
            "frame 5: TCP header length 60 exceeds the 32-byte segment"),
    Skipped("caplen-over-origlen", LAB_NG, EPB_AT[5], 24, u32(20),
            "frame 5: original length 20 is less than the 66 bytes captured"),
    Skipped("ipv6-payload-length-past-the-packet", IPV6_NG, IPV6_FRAME_4, 28 + ETHERNET + 4, b"\x13\x88",
            "frame 4: IPv6 payload length 5000 exceeds"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", SKIPPED_CASES, ids=[case.name for case in SKIPPED_CASES])
def test_a_damaged_packet_is_skipped_with_a_warning_and_the_rest_reads(case, command, tmp_path, capsys):
    path = write(tmp_path, f"{case.name}.pcapng", patched(case.source, case.block_at + case.patch_at, case.patch))
    damaged = run(COMMANDS[command](path), capsys)
    without = run(COMMANDS[command](write(tmp_path, "without.pcapng", _without_block(case.source, case.block_at))),
                  capsys)

    (warning,) = damaged.err.splitlines()
    assert warning.startswith(f"warning: {path}: {case.warning}") and warning.endswith("; skipped")
    assert without.err == ""
    assert damaged.status == without.status
    if command == "summary":
        assert damaged.status == 0
        assert json.loads(damaged.out) == json.loads(without.out)


def test_thousands_of_broken_frames_warn_a_hundred_times_then_count(tmp_path, capsys):
    """Regression: every skipped frame kept a warning line, so a gzip of zeros grew memory without bound."""
    path = write(tmp_path, "zeros.pcap.gz", gzip.compress(pb.pcap([]) + b"\x00" * 16 * 5000))
    result = run(COMMANDS["summary"](path), capsys)
    lines = result.err.splitlines()
    assert result.status == 0 and json.loads(result.out) == []
    assert len(lines) == WARNING_LIMIT + 1
    assert lines[0] == f"warning: {path}: frame 1: frame of 0 bytes is too short for the Ethernet header (14 bytes); skipped"
    assert lines[-1] == (f"warning: {path}: {5000 - WARNING_LIMIT} more undecodable frames skipped "
                         f"(a warning each for the first {WARNING_LIMIT} only)")


# -- snaplen-truncated captures read like whole ones -----------------------------------------

SNAPLEN = 68    # tcpdump's old default: every SYN's options are cut


def _snapped_pcap() -> bytes:
    return pb.pcap([(sec, usec, data[:SNAPLEN], len(data)) for sec, usec, data in LAB_RECORDS], snaplen=SNAPLEN)


def _snapped_pcapng() -> bytes:
    return (pb.shb() + pb.idb(1, snaplen=SNAPLEN)
            + b"".join(pb.epb(0, sec * 10**6 + usec, data[:SNAPLEN], origlen=len(data))
                       for sec, usec, data in LAB_RECORDS))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("snapped, whole", [(_snapped_pcap(), LAB_PCAP),
                                            (_snapped_pcapng(), pb.shb() + pb.idb(1) + b"".join(
                                                pb.epb(0, s * 10**6 + u, d) for s, u, d in LAB_RECORDS))],
                         ids=["pcap", "pcapng"])
def test_snaplen_truncated_packets_read_like_the_whole_capture(snapped, whole, command, tmp_path, capsys):
    """Regression (SYNs): a SYN whose options the snaplen cut was skipped, so no conversation had its
    handshake. Payload the snaplen cut is Zeek's content gap."""
    cut = run(COMMANDS[command](write(tmp_path, "snapped.pcap", snapped)), capsys)
    full = run(COMMANDS[command](write(tmp_path, "whole.pcap", whole)), capsys)
    assert cut.err == full.err == "" and cut.status == full.status == 0
    if command == "summary":
        (cut_record,), (full_record,) = json.loads(cut.out), json.loads(full.out)
        assert cut_record["orig_payloads"] == [2] and cut_record["resp_payloads"] == [11]   # from the IP lengths
        # The server's 11 bytes were cut: acknowledged but never delivered, Zeek's content gap (missed
        # bytes, history g). Everything else reads as in the whole capture.
        assert (cut_record["missed_bytes"], full_record["missed_bytes"]) == (11, 0)
        assert (cut_record["history"], full_record["history"]) == ("ShADadgfF", "ShADadfF")
        differ = {"missed_bytes", "history"}
        assert {k: v for k, v in cut_record.items() if k not in differ} == \
            {k: v for k, v in full_record.items() if k not in differ}


# -- things that are not capture files ------------------------------------------------------

@contextlib.contextmanager
def unprivileged():
    """Root reads any file; drop the effective uid so permissions apply, and take it back."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def _directory(tmp_path: Path) -> Tuple[Path, str]:
    path = tmp_path / "a-directory.pcapng"
    path.mkdir()
    return path, "a directory, not a capture file"


def _fifo(tmp_path: Path) -> Tuple[Path, str]:
    path = tmp_path / "a-fifo.pcapng"
    os.mkfifo(path)
    return path, "a FIFO (named pipe), not a regular file"


def _device(tmp_path: Path) -> Tuple[Path, str]:
    return Path(os.devnull), "a character device, not a regular file"


def _unreadable(tmp_path: Path) -> Tuple[Path, str]:
    path = write(tmp_path, "unreadable.pcapng", LAB_NG)
    path.chmod(0)
    return path, "Permission denied"


def _missing(tmp_path: Path) -> Tuple[Path, str]:
    return tmp_path / "missing.pcapng", "no such file"


def finish_or_unblock(action: Callable[[], object], fifo: Optional[Path], seconds: float = 20.0):
    """action(), run in a thread so that a reader blocked in open() on a FIFO (waiting for a writer
    that never comes) fails the test instead of hanging it: we become that writer to let it go."""
    outcome: Dict[str, object] = {}

    def target():
        try:
            outcome["value"] = action()
        except BaseException as error:      # re-raised in the test's own thread
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(seconds)
        pytest.fail(f"still blocked after {seconds} s instead of refusing the file")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("make", [_directory, _fifo, _device, _unreadable, _missing],
                         ids=["directory", "fifo", "dev-null", "unreadable", "missing"])
def test_what_is_not_a_capture_file_is_refused_up_front_in_one_line(make, command, tmp_path, capsys):
    """Regression (FIFO): opening one with no writer blocked for ever; (permissions, directories):
    the line read `[Errno 13] Permission denied: '<the path again>'`."""
    path, what = make(tmp_path)

    def attempt() -> Run:
        with unprivileged() if make is _unreadable else contextlib.nullcontext():
            return run(COMMANDS[command](path), capsys)

    result = finish_or_unblock(attempt, path if make is _fifo else None)
    assert result.status == 2
    assert result.err == f"harness {command}: {path}: {what}\n"
    if command == "summary":
        assert json.loads(result.out) == []


def test_open_capture_refuses_a_fifo_by_path_but_reads_a_pipe_handed_to_it(tmp_path):
    fifo = _fifo(tmp_path)[0]
    with pytest.raises(NotARegularFile) as caught:
        finish_or_unblock(lambda: open_capture(fifo), fifo)
    assert caught.value.filename == str(fifo) and caught.value.strerror == "a FIFO (named pipe), not a regular file"

    read_end, write_end = os.pipe()
    os.write(write_end, LAB_NG)     # smaller than a pipe's buffer: no writer thread needed
    os.close(write_end)
    with open(read_end, "rb") as stream, open_capture(stream, name="a pipe") as capture:
        assert len(list(capture)) == len(LAB_RECORDS)


# -- found by fuzzing, in code this suite does not own ----------------------------------------

def test_check_when_the_last_segment_matches_the_last_step_but_the_path_fails(tmp_path, capsys):
    syn, syn_ack, ack = _frames[0], _frames[1], _frames[2]
    stray = patched(ack, ETHERNET + 20 + 8, b"\x00\x00\x00\x3a")    # the ACK's ack number, now 58 off
    path = write(tmp_path, "stray.pcap", pb.pcap([(1, n, frame) for n, frame in enumerate([syn, syn_ack, stray, ack])]))
    result = run(COMMANDS["check"](path), capsys)
    assert result.status == 1
