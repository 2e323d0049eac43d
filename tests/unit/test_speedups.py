"""harness.analysis._speedups (the summary path's per-packet work in C) ends exactly the conversations
the pure-Python tracker ends, with exactly the facts their records are made of (summary.FACTS), in the
same order, with the same packet and frame counts, warnings, damage and tally of other frames, on
every reference capture, on thousands of random conversations (tests/support/tcpgen.py) interleaved and spread over the tracker's timers, on input
damaged at random, and on timestamps at and past the edge of 64 bits.

Without a C compiler at install time the module is absent and harness runs in pure Python; these
tests then skip saying so, and fail instead under HARNESS_REQUIRE_SPEEDUPS=1 (CI sets it).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import pcapbuild as pb
from support import tcpgen
from harness.analysis import pipeline
from harness.analysis.summary import FACTS, facts, record, record_json, summarize
from harness.analysis import zeek
from harness.analysis.zeek import ZeekSettings
from support.packets import to_pcap
from support import REPO

REQUIRE_ENV = "HARNESS_REQUIRE_SPEEDUPS"
CAPTURES = REPO / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz") and "runs" not in p.parts)
SECOND = 10**9


@pytest.fixture(autouse=True)
def speedups():
    if pipeline._speedups is None:
        reason = "harness.analysis._speedups is not compiled (no C compiler when harness was installed?)"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason}, and {REQUIRE_ENV} is set")
        pytest.skip(reason)


def _run(path, in_c: bool, settings: ZeekSettings = ZeekSettings(), as_json: bool = False):
    """Every ended conversation's facts (with as_json, in C: its record's JSON text), in order, with
    the packet count, frames, warnings and damage; or what was raised (the same exception either way
    is part of the agreement)."""
    ended = []
    try:
        if in_c:
            result = pipeline.stream_facts(path, ended.append, settings, as_json=as_json)
        else:
            result = pipeline.stream_conversations(path, lambda conversation: ended.append(facts(conversation)),
                                                   settings)
    except Exception as error:
        return "raised", type(error).__name__, str(error), ended
    return ended, result.packets, result.frames, result.warnings, str(result.damage), result.others


def assert_same_both_ways(path, monkeypatch=None, settings: ZeekSettings = ZeekSettings()):
    in_python, in_c = _run(path, False, settings), _run(path, True, settings)
    if in_python[0] != "raised" and in_c[0] != "raised":
        for number, (expected, got) in enumerate(zip(in_python[0], in_c[0]), 1):
            assert got == expected, f"{path}: conversation {number} differs"
        assert len(in_c[0]) == len(in_python[0]), f"{path}: {len(in_c[0])} conversations in C, {len(in_python[0])}"
    assert in_c == in_python, path
    # The JSON text the scanner writes for `summary --json` is summary.record_json of the same facts.
    if in_python[0] == "raised":
        expected = in_python[:3] + ([record_json(found) for found in in_python[3]],)
    else:
        expected = ([record_json(found) for found in in_python[0]],) + in_python[1:]
    assert _run(path, True, settings, as_json=True) == expected, f"{path}: the JSON records differ"


@pytest.mark.parametrize("path", REFERENCE, ids=[str(p.relative_to(CAPTURES)) for p in REFERENCE])
def test_every_reference_capture(path, monkeypatch):
    assert_same_both_ways(path, monkeypatch)


def _as_pcap(source: Path, order: str, nano: bool) -> bytes:
    """A capture's records rewritten as classic pcap, the format the C scanner reads in bulk."""
    from harness.wire.reader import open_capture
    with open_capture(source) as capture:
        records = [(r.time_ns // SECOND, r.time_ns % SECOND // (1 if nano else 1000), r.data, r.origlen)
                   for r in capture]
        linktype = capture.linktype
    return pb.pcap(records, linktype=linktype, order=order, nano=nano, snaplen=262144)


# Bulk reading from the pcap buffer: records split across the reader's 1 MiB reads (the lossy
# download is 3 MB), UDP, ICMP errors and IPv6 that go to the Python decoder mid-walk, both byte
# orders, micro- and nanoseconds.
AS_PCAP = [(CAPTURES / "corpus" / name, order, nano)
           for name in ("lossy-router.pcapng", "udp-unreachable.pcapng", "ipv6-http.pcapng")
           for order, nano in (("<", False), (">", True))]


@pytest.mark.parametrize("source, order, nano", AS_PCAP, ids=[f"{s.stem}-{o}-{'ns' if n else 'us'}"
                                                              for s, o, n in AS_PCAP])
def test_captures_read_in_bulk_as_classic_pcap(source, order, nano, tmp_path, monkeypatch):
    path = tmp_path / "as.pcap"
    path.write_bytes(_as_pcap(source, order, nano))
    assert_same_both_ways(path, monkeypatch)


def _interleaved(seed: int, count: int) -> list:
    """tcpgen conversations started at random moments, overlapping one another, with pauses across
    the tracker's timers (attempt and close 5 s, expiry every 6 s, idle 60 s / 300 s), and ports reused."""
    rng = random.Random(seed)
    packets = []
    start = 1_700_000_000 * SECOND
    for index in range(count):
        start += rng.choice((0, 1_000, SECOND // 2, SECOND, 5 * SECOND, 61 * SECOND, 301 * SECOND))
        one = tcpgen.conversation(rng, index % 7, start)     # index % 7: ports come round again
        packets.extend(one)
    packets.sort(key=lambda p: p.time_ns)
    return [p._replace(frame=number) for number, p in enumerate(packets, 1)]


@pytest.mark.parametrize("seed", range(4))
def test_random_conversations_one_after_another(seed, tmp_path, monkeypatch):
    path = tmp_path / "random.pcap"
    path.write_bytes(to_pcap(tcpgen.capture(seed, 400)))
    assert_same_both_ways(path, monkeypatch)


@pytest.mark.parametrize("seed", range(4))
def test_random_conversations_interleaved_across_the_timers(seed, tmp_path, monkeypatch):
    path = tmp_path / "interleaved.pcap"
    path.write_bytes(to_pcap(_interleaved(seed, 300)))
    assert_same_both_ways(path, monkeypatch)


def test_conversations_that_end_while_their_timers_are_pending(tmp_path, monkeypatch):
    # 1,500 conversations 10 ms apart: each ends (closed, reset, attempted) long before its 300 s
    # inactivity timer, so the scanner drops such timers from its queue again and again; every
    # timer still due must fire in the same order as in Python.
    rng = random.Random(11)
    packets = []
    for index in range(1500):
        packets.extend(tcpgen.conversation(rng, index % 7, tcpgen.START_NS + index * 10**7))
    packets.sort(key=lambda p: p.time_ns)
    path = tmp_path / "many.pcap"
    path.write_bytes(to_pcap([p._replace(frame=number) for number, p in enumerate(packets, 1)]))
    assert_same_both_ways(path, monkeypatch)


def test_timestamps_at_the_edge_of_64_bits(tmp_path, monkeypatch):
    # if_tsoffset puts the last packet within a second of 2262: the times fill int64 and both
    # paths carry them exactly.
    records = _pcap_frames(to_pcap(tcpgen.capture(5, 20)))
    last_second = max(time_ns for time_ns, _frame in records) // SECOND
    offset = ((1 << 63) - 1) // SECOND - last_second - 1
    data = (pb.shb() + pb.idb(1, 262144, [pb.tsresol(9), pb.tsoffset(offset)])
            + b"".join(pb.epb(0, time_ns, frame) for time_ns, frame in records))
    path = tmp_path / "far.pcapng"
    path.write_bytes(data)
    in_c = _run(path, True)
    assert in_c[0] != "raised" and in_c[0][0]["first_time_ns"] > 9 * 10**18 and in_c[4] == "None"
    assert_same_both_ways(path, monkeypatch)


def test_timestamps_past_64_bits_are_damage_both_ways(tmp_path, monkeypatch):
    # An if_tsoffset that takes every time past 2262: an input error at the first packet, never a
    # wrapped time, in C as in Python.
    records = _pcap_frames(to_pcap(tcpgen.capture(5, 20)))
    data = (pb.shb() + pb.idb(1, 262144, [pb.tsresol(9), pb.tsoffset((1 << 63) - 1)])
            + b"".join(pb.epb(0, time_ns, frame) for time_ns, frame in records))
    path = tmp_path / "beyond.pcapng"
    path.write_bytes(data)
    in_c = _run(path, True)
    assert in_c[0] == [] and in_c[1] == 0 and "timestamp out of range" in in_c[4], in_c
    assert "if_tsresol or if_tsoffset is wrong" in in_c[4]
    assert_same_both_ways(path, monkeypatch)


@pytest.mark.parametrize("damage", ["captured length overruns the block", "unknown interface", "comment",
                                    "a second section", "trailing length"])
def test_enhanced_packet_blocks_the_bulk_reader_must_leave_to_the_reader(damage, tmp_path, monkeypatch):
    # Blocks around, between and instead of plain EPBs: the C walk stops before each, and the reader
    # reads it (or reports it) exactly as it does without the walk.
    frames = _pcap_frames(to_pcap(tcpgen.capture(6, 3)))
    good = [pb.epb(0, time_ns, frame) for time_ns, frame in frames]
    time_ns, frame = frames[len(frames) // 2]
    odd = {
        "captured length overruns the block": pb.epb(0, time_ns, frame, caplen=len(frame) + 400),
        "unknown interface": pb.epb(3, time_ns, frame),
        "comment": pb.epb(0, time_ns, frame, opts=[(1, b"a packet comment")]),
        "a second section": pb.shb() + pb.idb(1, 262144, [pb.tsresol(9)]) + pb.epb(0, time_ns, frame),
        "trailing length": pb.epb(0, time_ns, frame)[:-4] + (1 << 20).to_bytes(4, "little"),
    }[damage]
    middle = len(good) // 2
    data = pb.shb() + pb.idb(1, 262144, [pb.tsresol(9)]) + b"".join(good[:middle]) + odd + b"".join(good[middle:])
    path = tmp_path / "odd.pcapng"
    path.write_bytes(data)
    assert_same_both_ways(path, monkeypatch)


def _pcap_frames(data: bytes) -> list:
    """(time_ns, frame) of a little-endian nanosecond pcap from wire.to_pcap."""
    out, position = [], 24
    while position < len(data):
        seconds = int.from_bytes(data[position:position + 4], "little")
        fraction = int.from_bytes(data[position + 4:position + 8], "little")
        caplen = int.from_bytes(data[position + 8:position + 12], "little")
        out.append((seconds * SECOND + fraction, data[position + 16:position + 16 + caplen]))
        position += 16 + caplen
    return out


SEED_FILES = [CAPTURES / "lab" / "tcp-lab.pcapng", CAPTURES / "corpus" / "udp-unreachable.pcapng",
              CAPTURES / "corpus" / "closed-port.pcapng", "tcp-lab as pcap", "udp-unreachable as big-endian pcap"]


def _seed_bytes(source) -> bytes:
    if source == "tcp-lab as pcap":
        return _as_pcap(CAPTURES / "lab" / "tcp-lab.pcapng", "<", False)
    if source == "udp-unreachable as big-endian pcap":
        return _as_pcap(CAPTURES / "corpus" / "udp-unreachable.pcapng", ">", True)
    return source.read_bytes()


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(SEED_FILES), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8), cut=st.floats(0.3, 1.0))
def test_damaged_input(source, edits, cut, tmp_path_factory, monkeypatch):
    data = bytearray(_seed_bytes(source))
    for where, value in edits:
        data[int(where * (len(data) - 1))] = value
    path = tmp_path_factory.mktemp("damaged") / "damaged.pcapng"
    path.write_bytes(bytes(data[:max(1, int(len(data) * cut))]))
    assert_same_both_ways(path, monkeypatch)


def test_the_facts_are_the_same_names_both_ways_and_make_the_same_records():
    in_c = _run(CAPTURES / "lab" / "tcp-lab.pcapng", True)[0]
    assert [tuple(f) for f in in_c] == [FACTS], "the C scanner hands over exactly summary.FACTS"
    (conversation,) = pipeline.analyse(CAPTURES / "lab" / "tcp-lab.pcapng").conversations
    assert record(in_c[0]) == summarize(conversation)


def test_the_scanner_takes_its_limits_from_python():
    # The C scanner has no number of its own: each comes from the module that defines it.
    limits = pipeline.scanner_limits()
    assert (limits["tcp_close_delay"], limits["tcp_inactivity_timeout"]) == (zeek.TCP_CLOSE_DELAY,
                                                                           zeek.TCP_INACTIVITY_TIMEOUT)
    assert sorted(limits["likely_server_ports"]) == sorted(ZeekSettings().likely_server_ports)
    with pytest.raises(KeyError, match="Scanner limits lack tcp_close_delay"):
        pipeline._speedups.Scanner({k: v for k, v in limits.items() if k != "tcp_close_delay"}, print)
    with pytest.raises(ValueError, match="out of range"):
        pipeline._speedups.Scanner(dict(limits, history_scale=1), print)


ZEEK_TRACES = sorted((CAPTURES / "zeek" / "traces").rglob("*.pcap*"))


@pytest.mark.parametrize("settings", [
    ZeekSettings(likely_server_ports=frozenset()),
    ZeekSettings(report_gaps_for_partial=True, tcp_excessive_data_without_further_acks=0),
    ZeekSettings(tcp_max_initial_window=0, tcp_max_above_hole_without_any_acks=0),
], ids=["no-likely-server-ports", "gaps-for-partial-no-excess-limit", "no-window-limits"])
def test_settings_change_both_ways_alike(settings, monkeypatch):
    # Settings other than the defaults reach the scanner as they reach the pure tracker.
    for path in ZEEK_TRACES[::7] + [CAPTURES / "corpus" / "lossy-router.pcapng"]:
        assert_same_both_ways(path, monkeypatch, settings)
