"""The harness's summary agrees with tshark's two-pass dissection on every reference capture
(what is compared: tests/support/tshark_view.py)."""

import pytest

from harness.wire.packet import SEQ_MODULO
from support.tshark_view import assert_frames_agree_with_tshark, assert_summary_agrees_with_tshark
from support.packets import HANDSHAKE, START_NS, hole_filled_after, renumber, tcp, to_pcap
from support import REPO

CAPTURES = REPO / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
                   and "runs" not in p.parts)
# Zeek's traces where tshark's rules, not harness's, make the two differ: harness follows Zeek there
# (and agrees with Zeek's own conn.log on each: tests/unit/test_zeek_conformance.py).
TSHARK_DIFFERS = {
    "zeek/traces/llc.pcap": "1333 identical RSTs a minute apart: a connection each in Zeek, one tcp.stream in tshark",
    "zeek/traces/pop3/pop3.pcap": "SYNs reusing the ISN after a RST start new connections in Zeek (IsReuse); "
                                  "tshark calls them retransmissions",
    "zeek/traces/modbus/modbus-and-non-modbus-p502.pcap": "a SYN 15.6 s after a RST: a new connection in Zeek",
    "zeek/traces/ssh/ssh.client-side-half-duplex.pcap": "unanswered SYNs expire after tcp_attempt_delay (5 s) in "
                                                        "Zeek; tshark has no timers",
    "zeek/traces/tcp/retransmit-timeout.pcapng": "300 s of silence passes Zeek's inactivity timeout",
    "zeek/traces/tunnels/Teredo.pcap": "packets more than tcp_close_delay after a FIN or RST start new connections",
    "zeek/traces/pppoe-over-qinq.pcap": "six frames whose PPPoE length says 42 and IP length 46: tshark trusts "
                                        "PPPoE and sees no payload, Zeek and harness read the IP length",
    "zeek/traces/cisco-fabric-path.pcap": "tshark's FabricPath dissector takes each frame's last 4 bytes for a "
                                          "checksum trailer these frames lack, and cuts the packet inside",
}


@pytest.mark.parametrize("path", REFERENCE, ids=[str(p.relative_to(CAPTURES)) for p in REFERENCE])
def test_summary_agrees_with_tshark(path):
    name = str(path.relative_to(CAPTURES))
    if name in TSHARK_DIFFERS:
        with pytest.raises(AssertionError):     # it still differs, for the reason given
            assert_summary_agrees_with_tshark(path)
        return
    assert_summary_agrees_with_tshark(path)


def test_every_trace_tshark_differs_on_is_in_the_corpus():
    assert all((CAPTURES / name).is_file() for name in TSHARK_DIFFERS)


# Built packet by packet: each sits on a line that tshark draws to the nanosecond or by the order
# of its tests, where the harness once disagreed with it on a live capture.
EDGES = {
    "out-of-order 1 ns inside the initial RTT": hole_filled_after(68_664),
    "retransmission exactly at the initial RTT": hole_filled_after(68_665),
    "spurious before out-of-order": hole_filled_after(1_000, acked_by_server=1301),
    "out-of-order when the ACK does not cover it": hole_filled_after(1_000, acked_by_server=1151),
}


@pytest.mark.parametrize("name", EDGES)
def test_summary_agrees_with_tshark_on_the_edges_of_its_rules(name, tmp_path):
    path = tmp_path / "edge.pcap"
    path.write_bytes(to_pcap(EDGES[name]))
    assert_summary_agrees_with_tshark(path)


# Found by the differential test (tests/unit/test_tshark_differential.py), each the smallest capture
# where the harness and tshark 4.0 once disagreed on a frame; harness/analysis/tshark.py names the rules.
def _within_the_initial_rtt(steps):
    """The steps after the handshake (its initial RTT: 2 ms) 100 us apart, so a resend is out of
    order unless it is a retransmission of another kind."""
    return [step if n < 3 else (*step[:3], {**(step[3] if len(step) > 3 else {}),
                                            "time_ns": START_NS + 3_000_000 + 100_000 * n})
            for n, step in enumerate(steps)]


_SERVER_DATA = [("S", "PA", b"x" * 100), ("S", "PA", b"y" * 100)]
_ACK_LOST_THEN_RESENT = _within_the_initial_rtt(HANDSHAKE + _SERVER_DATA + [
    ("C", "A", b"", {"ack": 900001}),                            # a duplicate ACK of the client
    ("S", "A", b"", {"ack": 1005, "seq": 900201}),               # ACKs client bytes never captured
    ("S", "PA", b"x" * 100, {"seq": 900001})])                   # fast retransmission, not out of order
_GAP_ACKED_THEN_RESENT = _within_the_initial_rtt(HANDSHAKE + _SERVER_DATA + [
    ("C", "PA", b"a" * 100, {"ack": 900001}), ("C", "PA", b"c" * 100, {"seq": 1201, "ack": 900001}),
    ("C", "A", b"", {"ack": 900001}),                            # a duplicate ACK of the client
    ("S", "A", b"", {"ack": 1301, "seq": 900201}),               # ACKs across the client's gap
    ("S", "PA", b"x" * 100, {"seq": 900001, "ack": 1301})])      # out of order
_WRAP = SEQ_MODULO - 101                       # the client's next sequence number wraps to exactly 0
EDGES.update({
    "a keep-alive's ACK is not a duplicate ACK": renumber(tcp(HANDSHAKE + [
        ("C", "PA", b"a" * 10), ("S", "A", b""), ("C", "A", b"", {"seq": 1010}), ("S", "A", b"")])),
    "the ACK field of a segment without the ACK flag counts": renumber(tcp(HANDSHAKE + [
        ("C", "A", b""), ("C", "S", b"", {"seq": 1000}), ("C", "A", b"", {"seq": 1001})])),
    "spurious before next_seq is known": renumber(tcp([
        ("S", "A", b"", {"ack": 2000}), ("C", "PA", b"a" * 100, {"seq": 1500})])),
    "a zero-window probe leaves next_seq": renumber(tcp(HANDSHAKE + [
        ("S", "A", b"", {"window": 0}), ("C", "A", b"p"), ("C", "A", b"", {"seq": 1001}),
        ("C", "A", b"", {"seq": 1001})])),
    "an ACK of an unseen segment makes the peer's duplicate ACKs many": renumber(tcp(_ACK_LOST_THEN_RESENT)),
    "an ACK across a gap moves the peer's gap-free point instead": renumber(tcp(_GAP_ACKED_THEN_RESENT)),
    "the initial RTT runs from the last SYN": renumber(tcp([
        ("C", "S", b"", {"time_ns": START_NS}), ("C", "S", b"", {"seq": 1000, "time_ns": START_NS + 10**9}),
        ("S", "SA", b"", {"time_ns": START_NS + 10**9 + 500_000}), ("C", "A", b"", {"time_ns": START_NS + 10**9 + 1_000_000}),
        ("C", "PA", b"a" * 100, {"time_ns": START_NS + 10**9 + 2_000_000}),
        ("C", "PA", b"c" * 100, {"seq": 1201, "time_ns": START_NS + 10**9 + 3_000_000}),
        ("C", "PA", b"b" * 100, {"seq": 1101, "time_ns": START_NS + 10**9 + 5_000_000})])),
    "next_seq wrapped to exactly 0 is unknown to tshark": renumber(tcp([
        ("C", "S", b""), ("S", "SA", b""), ("C", "A", b""), ("C", "PA", b"a" * 100),
        ("C", "PA", b"a" * 100, {"seq": _WRAP + 1})], isn=(_WRAP, 900000))),
})


@pytest.mark.parametrize("name", EDGES)
def test_frames_agree_with_tshark_on_the_edges_of_its_rules(name, tmp_path):
    path = tmp_path / "edge.pcap"
    path.write_bytes(to_pcap(EDGES[name]))
    assert_frames_agree_with_tshark(path, EDGES[name])
