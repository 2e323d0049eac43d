"""Property tests of the readers and the decoder on hostile bytes (hypothesis).

For any input, reading it with `open_capture` and decoding every record either completes or
raises CaptureFormatError / UnsupportedLinkType (and PacketDecodeError for single packets),
never anything else; unwrap() (tunnels opened, fragments reassembled, checksums verified) gives
only Packets, Others and one-line PacketDecodeErrors for the same records; within a deadline; and without allocating for what a length field claims,
only for the bytes really there. The inputs: arbitrary bytes, arbitrary bytes behind a valid
header, and the reference captures (and pcapbuild ones, for the other link types and block
kinds) with bytes flipped, length fields set to awkward values, cut, grown and gzip-compressed.

The budget is small by default (HARNESS_FUZZ_EXAMPLES, default 200 per property: a few seconds);
`bench/fuzz.py` runs these same properties for as long as you like.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import struct
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import pcapbuild as pb
from harness.cli import main
from harness.wire.decode import (Other, PacketDecodeError, UnsupportedLinkType, check_linktype, decode,
                                 decode_icmp_unreachable, unwrap)
from harness.wire.fragments import Reassembler
from harness.wire.tunnel import TunnelSessions
from harness.wire.packet import TCP, UDP, Packet
from harness.wire.reader import CHUNK, MAX_BLOCK, CaptureFormatError, open_capture
from support import REPO

ROOT = REPO
EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "200"))
DEADLINE = timedelta(seconds=2)     # a seed is at most tens of KiB: anything slower is a hang in the making

EXPECTED = (CaptureFormatError, UnsupportedLinkType)


# -- what every input must satisfy ---------------------------------------------------------

class Outcome(NamedTuple):
    records: int
    packets: int
    skipped: int                     # records decode refused with PacketDecodeError
    error: Optional[Exception]       # CaptureFormatError or UnsupportedLinkType that ended the read


def read_everything(data: bytes, name: str = "fuzzed.pcap") -> Outcome:
    """Read and decode every record of `data`, checking each invariant; raise on anything unexpected."""
    return read_everything_from(io.BytesIO(data), data, name)


def read_everything_from(stream, data: bytes, name: str) -> Outcome:
    records = packets = skipped = 0
    plain = data[:2] != b"\x1f\x8b"
    last_offset = -1
    fragments, tunnels = Reassembler(), TunnelSessions(60 * 10**9)
    try:
        with open_capture(stream, name=name) as capture:
            for frame, record in enumerate(capture, 1):
                records += 1
                assert record.caplen == len(record.data) <= MAX_BLOCK
                assert record.offset > last_offset and (not plain or record.offset < len(data))
                last_offset = record.offset
                check_linktype(record.linktype)
                _check_unwrapped(unwrap(record, frame, frame % 2 == 0, fragments, tunnels), frame)
                try:
                    packet = decode(record, frame)
                except PacketDecodeError as error:
                    _check_one_line(str(error), f"frame {frame}: ")
                    skipped += 1
                    continue
                if packet is None:
                    decode_icmp_unreachable(record)     # documented never to raise
                else:
                    _check_packet(packet, frame)
                    packets += 1
    except EXPECTED as error:
        if isinstance(error, CaptureFormatError):
            _check_one_line(str(error), f"{name}: ")
            assert f" at byte {error.offset}" in str(error)
            assert 0 <= error.offset and (not plain or error.offset <= len(data))
        return Outcome(records, packets, skipped, error)
    return Outcome(records, packets, skipped, None)


def _check_unwrapped(found, frame: int) -> None:
    assert found
    for item in found:
        if isinstance(item, Packet):
            _check_packet(item, frame)
        elif isinstance(item, Other):
            _check_one_line(item.kind, "")
            if item.record is not None:
                decode_icmp_unreachable(item.record)
        else:
            assert isinstance(item, PacketDecodeError), item
            _check_one_line(str(item), f"frame {frame}: ")


def _check_one_line(message: str, start: str) -> None:
    assert message.startswith(start) and "\n" not in message and "\r" not in message, message


def _check_packet(packet: Packet, frame: int) -> None:
    assert packet.frame == frame and packet.proto in (TCP, UDP)
    assert 0 <= packet.sport <= 0xFFFF and 0 <= packet.dport <= 0xFFFF
    assert 0 <= len(packet.payload) <= packet.payload_len


# -- seeds: real captures, and pcapbuild ones for what the real ones lack ------------------------

def _records(path: Path):
    with open_capture(path) as capture:
        records = [(r.time_ns // 10**9, r.time_ns % 10**9 // 1000, r.data) for r in capture]
        return capture.linktype, records    # known once the interface block has been read


def _synthetic() -> Dict[str, bytes]:
    syn = pb.tcp(flags=0x02, options=b"\x02\x04\x05\xb4\x01\x03\x03\x07", payload=b"")
    udp = pb.udp(payload=b"hello")
    ip4, ip6 = pb.ipv4(payload=syn), pb.ipv6(payload=syn, extensions=[(0, pb.ipv6_option_header(0)),
                                                                       (44, pb.ipv6_fragment_header())])
    unreachable = pb.ipv4(proto=1, payload=bytes([3, 3, 0, 0, 0, 0, 0, 0]) + pb.ipv4(proto=17, payload=udp))
    frames = {
        "ethernet-vlan-ipv6": (1, pb.ether(ip6, 0x86DD, vlans=[(0x8100, 7), (0x88A8, 9)])),
        "sll-udp": (113, pb.sll(pb.ipv4(proto=17, payload=udp))),
        "sll2-tcp": (276, pb.sll2(ip4)),
        "null-tcp": (0, pb.null(ip4)),
        "raw-ipv6": (101, ip6),
        "icmp-unreachable": (1, pb.ether(unreachable)),
        "ipv4-fragment": (1, pb.ether(pb.ipv4(proto=17, payload=udp, more_fragments=True))),
        "ipv4-later-fragment": (1, pb.ether(pb.ipv4(proto=17, payload=udp, fragment_offset=8))),
        "gre-pptp": (1, pb.ether(pb.ipv4(proto=47, payload=pb.gre(b"\xff\x03\x00\x21" + ip4, 0x880B, key=0,
                                                                     version=1)))),
        "gre-ethernet": (1, pb.ether(pb.ipv4(proto=47, payload=pb.gre(pb.ether(ip4), 0x6558, key=1, sequence=2)))),
        "vxlan": (1, pb.ether(pb.ipv4(proto=17, payload=pb.udp(1, 4789, pb.vxlan(pb.ether(unreachable)))))),
        "geneve": (1, pb.ether(pb.ipv4(proto=17, payload=pb.udp(1, 6081, pb.geneve(ip6, 0x86DD, bytes(4)))))),
        "teredo": (1, pb.ether(pb.ipv4(proto=17, payload=pb.udp(1, 3544, b"\x00\x00" + bytes(6) + ip6)))),
        "gtp": (1, pb.ether(pb.ipv4(proto=17, payload=pb.udp(2152, 2152, bytes([0x32, 255, 0, 0]) + bytes(8) + ip4)))),
        "wlan-amsdu": (105, b"\x88\x01" + bytes(22) + b"\x80\x00" + (pb.MAC_A * 2 + struct.pack("!H", len(ip4) + 8)
                                                                      + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip4) * 2),
        "radiotap": (127, b"\x00\x00\x08\x00" + bytes(4) + b"\x08\x02" + bytes(22) + b"\xaa\xaa\x03\x00\x00\x00\x86\xdd"
                     + ip6),
    }
    seeds = {}
    for name, (linktype, frame) in frames.items():
        seeds[f"{name}.pcap"] = pb.pcap([(1, 0, frame), (2, 5, frame, len(frame) + 100)], linktype=linktype,
                                        nano=linktype == 113, order=">" if linktype == 0 else "<")
        seeds[f"{name}.pcapng"] = (pb.shb(opts=[(1, b"seed")]) + pb.idb(linktype, opts=[pb.tsresol(9), pb.tsoffset(3)])
                                   + pb.epb(0, 10**9, frame, opts=[(1, b"a comment")]) + pb.spb(frame)
                                   + pb.packet_block(0, 2 * 10**9, frame) + pb.block(5, b"\x00" * 12))
    seeds["two-sections.pcapng"] = (pb.shb() + pb.idb(1) + pb.epb(0, 1, frames["icmp-unreachable"][1])
                                    + pb.shb(">") + pb.idb(101, order=">") + pb.epb(0, 2, ip6, order=">"))
    return seeds


def _seeds() -> Dict[str, bytes]:
    seeds = {}
    for path in sorted((ROOT / "captures" / "lab").glob("*.pcapng")) + sorted((ROOT / "captures" / "corpus").glob("*.pcapng")):
        if path.stat().st_size > 64 * 1024:
            continue        # big ones cost time per example and add no kind of structure
        seeds[path.name] = path.read_bytes()
        linktype, records = _records(path)
        seeds[path.stem + ".pcap"] = pb.pcap(records, linktype=linktype)
    seeds.update(_synthetic())
    return seeds


SEEDS = _seeds()
SEED_NAMES = sorted(SEEDS)


def length_fields(data: bytes) -> List[int]:
    """Offsets of the u32 fields a reader trusts or checks: block and record lengths, captured and
    original lengths, snaplen. Walks only as far as the structure is intact."""
    fields: List[int] = []
    if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        order = "<" if data[0] in (0xD4, 0x4D) else ">"
        fields.append(16)
        pos = 24
        while pos + 16 <= len(data):
            fields += [pos + 8, pos + 12]
            pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
    elif data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, order = 0, "<"
        while pos + 12 <= len(data):
            block_type = struct.unpack_from(order + "I", data, pos)[0]
            if block_type == 0x0A0D0D0A:
                order = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack_from(order + "I", data, pos + 4)[0]
            if length < 12:
                break
            fields += [pos + 4, pos + length - 4]
            if block_type == 6:
                fields += [pos + 20, pos + 24]
            elif block_type == 3:
                fields.append(pos + 8)
            elif block_type == 1:
                fields.append(pos + 12)
            pos += length
    return [offset for offset in fields if offset + 4 <= len(data)]


# -- strategies ------------------------------------------------------------------------------

AWKWARD_U32 = (0, 1, 3, 4, 8, 11, 12, 16, 20, 27, 28, 32, 0x7F, 0xFF, 0xFFFF, 0x10000, 262144, 262145,
               MAX_BLOCK - 4, MAX_BLOCK, MAX_BLOCK + 4, 2**31 - 1, 2**31, 2**32 - 4, 2**32 - 1)


class Mutation(NamedTuple):
    kind: str           # flip, u32, field, truncate, insert, delete
    at: int             # a position, taken modulo the length (or the field list's length)
    value: object


byte_mutations = st.one_of(
    st.builds(Mutation, st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
    st.builds(Mutation, st.just("u32"), st.integers(0, 2**20), st.sampled_from(AWKWARD_U32)),
    st.builds(Mutation, st.just("truncate"), st.integers(0, 2**20), st.none()),
    st.builds(Mutation, st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=32)),
    st.builds(Mutation, st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
)
mutations = st.one_of(
    byte_mutations,
    st.builds(Mutation, st.just("field"), st.integers(0, 2**10),
              st.one_of(st.sampled_from(AWKWARD_U32), st.integers(0, 2**32 - 1))),
)


def mutate(seed: bytes, changes: List[Mutation], order: str = "<") -> bytes:
    data = bytearray(seed)
    for change in changes:
        if change.kind == "field":
            fields = length_fields(bytes(data))
            if fields:
                at = fields[change.at % len(fields)]
                data[at:at + 4] = struct.pack(order + "I", change.value)
            continue
        at = change.at % (len(data) + 1)
        if change.kind == "flip" and at < len(data):
            data[at] ^= change.value
        elif change.kind == "u32":
            data[at:at + 4] = struct.pack(order + "I", change.value)
        elif change.kind == "truncate":
            del data[at:]
        elif change.kind == "insert":
            data[at:at] = change.value
        elif change.kind == "delete":
            del data[at:at + change.value]
    return bytes(data)


class Mutated(NamedTuple):
    seed: str
    changes: Tuple[Mutation, ...]
    gzipped: bool
    data: bytes


@st.composite
def mutated_captures(draw) -> Mutated:
    seed = draw(st.sampled_from(SEED_NAMES))
    changes = tuple(draw(st.lists(mutations, min_size=1, max_size=6)))
    gzipped = draw(st.booleans())
    data = mutate(SEEDS[seed], list(changes))
    if gzipped:
        data = gzip.compress(data, 1)
        if draw(st.booleans()):     # and sometimes damage the compressed stream itself
            data = mutate(data, [draw(byte_mutations)])
    return Mutated(seed, changes, gzipped, data)


VALID_HEADERS = (
    pb.pcap([]), pb.pcap([], order=">", nano=True), pb.pcap([], linktype=113, snaplen=2**32 - 1),
    pb.pcap([], linktype=276), pb.pcap([], linktype=0), pb.pcap([], linktype=101, snaplen=0),
    pb.shb() + pb.idb(1), pb.shb(">") + pb.idb(113, order=">"), pb.shb(), pb.shb() + pb.idb(0, snaplen=0),
)
arbitrary_bytes = st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda head, tail: head + tail, st.sampled_from(VALID_HEADERS), st.binary(max_size=4096)),
    st.builds(lambda head, tail: gzip.compress(head + tail, 1), st.sampled_from(VALID_HEADERS),
              st.binary(max_size=2048)),
)


# -- the properties, as plain checks so bench/fuzz.py can run them for longer -------------------

class LengthClaim(NamedTuple):
    seed: str
    which: int          # which length field, modulo how many the seed has
    claim: int
    gzipped: bool


length_claims = st.builds(LengthClaim, st.sampled_from(SEED_NAMES), st.integers(0, 2**10),
                          st.one_of(st.integers(2**22, MAX_BLOCK), st.integers(MAX_BLOCK, 2**32 - 1),
                                    st.sampled_from(AWKWARD_U32)),
                          st.booleans())


def claimed(case: LengthClaim) -> bytes:
    data = SEEDS[case.seed]
    fields = length_fields(data)
    at = fields[case.which % len(fields)]
    data = data[:at] + struct.pack("<I", case.claim) + data[at + 4:]
    return gzip.compress(data, 1) if case.gzipped else data


def check_arbitrary(data: bytes) -> Outcome:
    return read_everything(data)


def check_mutated(case: Mutated) -> Outcome:
    return read_everything(case.data, name=case.seed)


def check_length_claim(case: LengthClaim) -> Outcome:
    """Read from a real file: a buffered read(n) allocates n before it knows the file is shorter."""
    data = claimed(case)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / case.seed
        path.write_bytes(data)
        peak = peak_bytes_reading(path)
    # One CHUNK of read-ahead, the block being read twice while its pieces are joined, and change.
    assert peak < CHUNK + 2 * len(SEEDS[case.seed]) + 256 * 1024, (case, peak)
    return read_everything(data, case.seed)


def peak_bytes_reading(path: Path) -> int:
    """Peak bytes allocated while the reader alone goes through the file (decode's caches would blur it)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with contextlib.suppress(CaptureFormatError), open_capture(path) as capture:
            for _ in capture:
                pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


CLI_COMMANDS = (("summary", "--json"), ("show",))


def check_cli(case: Mutated, commands=CLI_COMMANDS) -> Tuple[int, ...]:
    """The whole command, in process: an exit status of 0, 1 or 2, and a stderr of `warning:`
    lines and `harness ...: note:` lines plus at most one other `harness` line (the error);
    summary's stdout is JSON whatever happened."""
    statuses = []
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / case.seed
        path.write_bytes(case.data)
        for command in commands:
            out, err = io.StringIO(), io.StringIO()
            argv = [*command, str(path)] if command[0] != "check" else [command[0], str(path), *command[1:]]
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
            assert status in (0, 1, 2), (argv, status)
            lines = err.getvalue().splitlines()
            assert all(line.startswith(("warning: ", "harness")) for line in lines), lines
            errors = [line for line in lines if not line.startswith("warning: ") and ": note: " not in line]
            assert len(errors) <= 1, lines
            if command[0] == "summary":
                json.loads(out.getvalue())
            statuses.append(status)
    return tuple(statuses)


# name: (strategy, check, share of the example budget)
PROPERTIES: Dict[str, Tuple[st.SearchStrategy, Callable, float]] = {
    "arbitrary": (arbitrary_bytes, check_arbitrary, 1.0),
    "mutated": (mutated_captures(), check_mutated, 1.0),
    "claims": (length_claims, check_length_claim, 0.25),
    "cli": (mutated_captures(), check_cli, 0.25),
}

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=DEADLINE,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def budget(name: str) -> int:
    return max(int(EXAMPLES * PROPERTIES[name][2]), 10)


@settings(FUZZ_SETTINGS, max_examples=budget("arbitrary"))
@given(arbitrary_bytes)
def test_arbitrary_bytes_read_or_fail_with_a_capture_error(data):
    check_arbitrary(data)


@settings(FUZZ_SETTINGS, max_examples=budget("mutated"))
@given(mutated_captures())
def test_damaged_captures_read_or_fail_with_a_capture_error(case):
    check_mutated(case)


@settings(FUZZ_SETTINGS, max_examples=budget("claims"))
@given(length_claims)
def test_a_length_field_claiming_gigabytes_costs_only_the_bytes_present(case):
    check_length_claim(case)


@settings(FUZZ_SETTINGS, max_examples=budget("cli"))
@given(mutated_captures())
def test_damaged_captures_through_the_command_line(case):
    check_cli(case)


# -- regressions found by these properties, pinned ------------------------------------------------

def test_every_seed_reads_cleanly():
    """The seeds themselves are good captures: any error the properties see comes from the damage."""
    for name, data in SEEDS.items():
        outcome = read_everything(data, name)
        assert outcome.error is None and outcome.records > 0, (name, outcome)


def test_length_fields_are_found_in_both_formats():
    assert len(length_fields(SEEDS["tcp-lab.pcapng"])) > 20 and len(length_fields(SEEDS["tcp-lab.pcap"])) > 20


def _bench_fuzz():
    spec = importlib.util.spec_from_file_location("bench_fuzz_under_test", ROOT / "bench" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fuzz_runs_these_properties_with_its_own_budget(tmp_path, capsys):
    assert _bench_fuzz().main(["--examples", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in PROPERTIES:
        assert f"== hypothesis {name}: 20 inputs in " in out
    assert out.count("no failure") == len(PROPERTIES) and "distinct ways inputs ended" in out


def test_bench_fuzz_replays_a_saved_input(tmp_path, capsys):
    saved = tmp_path / "saved.bin"
    saved.write_bytes(SEEDS["tcp-lab.pcapng"][:1000])
    assert _bench_fuzz().main(["--replay", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "readers: Outcome(records=4" in out and "cli: (2, 2, 2)" in out
