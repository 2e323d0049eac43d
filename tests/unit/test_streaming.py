"""pipeline.stream_analysis hands over exactly the conversations analyse() holds, segment for segment,
whichever way it runs: one pass of the tracker keeping only what is asked for, or (C scanner compiled,
only some conversations asked for) the scanner's pass that finds them and a Replay that rebuilds them.
On every reference capture, on random conversations interleaved across the tracker's timers, and on
damaged input; and the first pass decides alone which frames the second must read."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.analysis import pipeline
from harness.analysis.pipeline import Wanted, analyse, stream_analysis
from harness.analysis.summary import facts
from support import tcpgen
from support.packets import to_pcap
from support import REPO

CAPTURES = REPO / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz") and "runs" not in p.parts)


def _seen(conversation):
    """Everything a ladder, an expectation or explain reads of a conversation."""
    segments = [(s.packet.frame, s.packet.time_ns, s.is_orig, s.rel_seq, s.rel_ack, s.retransmitted, s.flags,
                 s.length, s.payload) for s in conversation.segments]
    return (facts(conversation), str(conversation.orig), str(conversation.resp), conversation.began_mid_stream,
            list(conversation.unreachable), conversation.zeek.conn_state, segments)


def _expected(path, wanted: Wanted):
    held = analyse(path)
    chosen = [c for c in held.conversations
              if wanted.takes(c.index, c.proto, (c.orig.port, c.resp.port))]
    if wanted.first:
        chosen = chosen[:1]
    return [_seen(c) for c in chosen], len(held.conversations), held.packets, held.frames, str(held.damage)


def _streamed(path, wanted: Wanted):
    handed = []
    result = stream_analysis(path, lambda c: handed.append(_seen(c)), wanted)
    return handed, result.conversation_count, result.packets, result.frames, str(result.damage)


def _wanted_for(path):
    """Every way a command asks: all, each number, the first, a port, a protocol."""
    held = analyse(path).conversations
    asks = [Wanted(), Wanted(first=True), Wanted(proto="udp"), Wanted(proto="tcp", first=True)]
    asks += [Wanted(number=c.index) for c in held[:6]] + [Wanted(number=len(held) + 1)]
    asks += [Wanted(port=port) for port in sorted({c.resp.port for c in held})[:3]]
    return asks


@pytest.fixture(params=["c", "python"])
def path_taken(request, monkeypatch):
    if request.param == "c":
        if pipeline._speedups is None:
            if os.environ.get("HARNESS_REQUIRE_SPEEDUPS"):
                pytest.fail("harness.analysis._speedups is not compiled, and HARNESS_REQUIRE_SPEEDUPS is set")
            pytest.skip("harness.analysis._speedups is not compiled")
        monkeypatch.delenv(pipeline.PURE_PYTHON_ENV, raising=False)
    else:
        monkeypatch.setenv(pipeline.PURE_PYTHON_ENV, "1")
    return request.param


def assert_streams_as_held(path: Path) -> None:
    for wanted in _wanted_for(path):
        assert _streamed(path, wanted) == _expected(path, wanted), f"{path}: {wanted}"


@pytest.mark.parametrize("path", REFERENCE, ids=[str(p.relative_to(CAPTURES)) for p in REFERENCE])
def test_every_reference_capture(path, path_taken):
    assert_streams_as_held(path)


def _interleaved(seed: int, count: int) -> list:
    """tcpgen conversations started at random moments, overlapping one another, with pauses across the
    tracker's timers, and ports reused (as test_speedups builds them)."""
    import random
    second = 10**9
    rng = random.Random(seed)
    packets = []
    start = 1_700_000_000 * second
    for index in range(count):
        start += rng.choice((0, 1_000, second // 2, second, 5 * second, 61 * second, 301 * second))
        packets.extend(tcpgen.conversation(rng, index % 7, start))
    packets.sort(key=lambda p: p.time_ns)
    return [p._replace(frame=number) for number, p in enumerate(packets, 1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_conversations_interleaved_across_the_timers(seed, tmp_path, path_taken):
    path = tmp_path / "interleaved.pcap"
    path.write_bytes(to_pcap(_interleaved(seed, 200)))
    assert_streams_as_held(path)


def test_damaged_capture_streams_what_came_before(tmp_path, path_taken):
    whole = to_pcap(tcpgen.capture(3, 30))
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:len(whole) * 2 // 3] + b"\x01\x02\x03")
    assert _streamed(path, Wanted())[4] != "None", "the cut file must read as damaged"
    assert_streams_as_held(path)


def test_conversations_are_handed_over_as_they_end_not_all_at_the_end(tmp_path, path_taken):
    """Flat memory: with conversations one after another, each is handed over while later ones are read."""
    import random
    rng, packets = random.Random(4), []
    for index in range(60):     # 400 s apart: past every timer of the tracker's, so each ends before the next
        packets.extend(tcpgen.conversation(rng, index % 7, (1_700_000_000 + 400 * index) * 10**9))
    path = tmp_path / "sequential.pcap"
    path.write_bytes(to_pcap([p._replace(frame=number) for number, p in enumerate(packets, 1)]))
    total = len(analyse(path).conversations)
    open_when_handed = []
    from harness.analysis import tracker as tracker_module
    created = []
    original = tracker_module.new_conversation

    def counting(*args, **kwargs):
        conversation = original(*args, **kwargs)
        created.append(conversation.index)
        return conversation

    tracker_module.new_conversation = counting
    try:
        stream_analysis(path, lambda c: open_when_handed.append((c.index, len(created))), Wanted(proto="tcp"))
    finally:
        tracker_module.new_conversation = original
    assert len(open_when_handed) == total
    late = [(index, begun) for index, begun in open_when_handed if begun > index + 1]
    assert not late, f"(conversation, conversations begun when it was handed over): {late[:5]}"


@pytest.mark.parametrize("seed", [4, 5])
def test_dropping_ended_conversations_timers_changes_nothing(seed, tmp_path, monkeypatch):
    """The tracker drops the queued timers of ended conversations (so the queue follows what is open);
    dropping them at every end must leave the facts the C scanner, which never drops, hands over."""
    if pipeline._speedups is None:
        pytest.skip("harness.analysis._speedups is not compiled")
    from harness.analysis import tracker
    path = tmp_path / "interleaved.pcap"
    path.write_bytes(to_pcap(_interleaved(seed, 200)))
    in_c = []
    pipeline.stream_facts(path, in_c.append)
    monkeypatch.setattr(tracker, "TIMER_QUEUE_SLACK", 0)
    in_python = []
    pipeline.stream_conversations(path, lambda conversation: in_python.append(facts(conversation)))
    assert in_python == in_c


def test_a_second_pass_that_disagrees_with_the_first_says_so():
    """Replay trusts the first pass's frames only as far as it can check them: a conversation that begins
    elsewhere than the first pass said is an error, never a conversation numbered wrongly."""
    from harness.analysis.tracker import Frames, Replay, ReplayMismatch
    from harness.wire.reader import open_capture
    from harness.wire.decode import decode
    path = REPO / "captures" / "lab" / "tcp-lab.pcapng"
    frames = Frames()
    frames.add(1, 2, 11, None, True)            # the first pass is made to say frame 2, not 1
    replay = Replay(frames, lambda conversation: None)
    with open_capture(path) as capture:
        first = decode(next(iter(capture)), 1)
    with pytest.raises(ReplayMismatch, match="frame 1 begins conversation 1 on the second pass; the first pass had "
                                             "it begin at frame 2"):
        replay.feed(first)
