"""Zeek's conn_state and history, one close form or failure at a time (pure, no capture)."""
import pytest

from harness.analysis.tracker import conversations
from harness.analysis.summary import summarize

from support.packets import (CLIENT_FIRST, FOUR_WAY_SERVER_FIRST, HANDSHAKE, LAB_DATA, THREE_WAY_SERVER_FIRST,
                  hole_filled_after, renumber, tcp, udp)

SYN, SYN_ACK, ACK = HANDSHAKE


def summary_of(packets):
    (conv,) = conversations(renumber(packets))
    return summarize(conv)


@pytest.mark.parametrize("steps, conn_state, history", [
    ([SYN], "S0", "S"),
    ([SYN, ("C", "S", b"", {"seq": 1000})], "S0", "S"),        # a SYN retransmission is not a new S
    ([SYN, ("S", "RA", b"")], "REJ", "Sr"),                    # refused
    (HANDSHAKE + LAB_DATA, "S1", "ShADad"),
    (HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST, "SF", "ShADadfF"),
    (HANDSHAKE + LAB_DATA + THREE_WAY_SERVER_FIRST, "SF", "ShADadfF"),
    (HANDSHAKE + LAB_DATA + CLIENT_FIRST, "SF", "ShADadFf"),
    (HANDSHAKE + LAB_DATA + [("C", "FA", b"")], "S2", "ShADadF"),
    (HANDSHAKE + LAB_DATA + [("S", "FA", b"")], "S3", "ShADadf"),
    (HANDSHAKE + [("C", "PA", b"yp"), ("C", "RA", b"")], "RSTO", "ShADR"),
    (HANDSHAKE + [("C", "PA", b"yp"), ("S", "A", b""), ("S", "RA", b"")], "RSTR", "ShADar"),
    ([SYN, ("C", "R", b"")], "RSTOS0", "SR"),
    ([SYN, ("C", "FA", b"")], "SH", "SF"),
    (HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST[:1] + [("C", "RA", b"")], "RSTO", "ShADadfR"),
])
def test_conn_state_and_history(steps, conn_state, history):
    record = summary_of(tcp(steps))
    assert (record["conn_state"], record["history"]) == (conn_state, history)


def test_a_capture_that_begins_with_the_syn_ack_flips_roles():
    record = summary_of(tcp([SYN_ACK, ("S", "RA", b"")]))
    assert record["id.orig_p"] == 40000 and record["history"] == "^hr" and record["conn_state"] == "RSTRH"
    record = summary_of(tcp([SYN_ACK, ("S", "FA", b"")]))
    assert record["history"] == "^hf" and record["conn_state"] == "SHR"


def test_midstream_traffic_is_oth_until_closed_then_sf():
    midstream = tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST)[3:]
    assert summary_of(midstream[:4])["conn_state"] == "OTH"
    assert summary_of(midstream)["conn_state"] == "SF"


def test_a_fin_then_rst_after_the_peers_fin_stays_sf():
    packets = tcp(HANDSHAKE + LAB_DATA + [("S", "FA", b""), ("C", "FA", b""), ("S", "A", b""), ("S", "R", b"")])
    assert summary_of(packets)["conn_state"] == "SF"


def test_counts_bytes_by_sequence_space_and_retransmissions_once():
    data = [("C", "PA", b"a" * 100), ("C", "PA", b"a" * 100, {"seq": 1001}), ("C", "PA", b"b" * 50)]
    record = summary_of(tcp(HANDSHAKE + data))
    assert record["orig_bytes"] == 150 and record["orig_payloads"] == [100, 100, 50]
    assert record["retransmissions"] == 1 and record["history"] == "ShADT"
    assert record["orig_pkts"] == 5 and record["resp_pkts"] == 1


def test_retransmissions_are_recorded_logarithmically():
    again = [("C", "PA", b"x" * 10, {"seq": 1001})] * 10
    record = summary_of(tcp(HANDSHAKE + [("C", "PA", b"x" * 10)] + again))
    assert record["retransmissions"] == 10 and record["history"] == "ShADTT"


def test_zero_window_is_w():
    record = summary_of(tcp(HANDSHAKE + [("S", "A", b"", {"window": 0})]))
    assert record["history"] == "ShAaw"


def test_fin_and_rst_together_is_i_and_syn_fin_is_q():
    assert summary_of(tcp([SYN, ("C", "FR", b"")]))["history"] == "SI"
    assert summary_of(tcp([("C", "SF", b"")]))["history"] == "Q"


def test_repeated_fin_with_a_new_sequence_number_is_recorded_again():
    packets = tcp(HANDSHAKE + [("C", "FA", b""), ("C", "FA", b"", {"seq": 1001}), ("C", "FA", b"", {"seq": 1005})])
    assert summary_of(packets)["history"] == "ShAFF"


@pytest.mark.parametrize("datagrams, conn_state, history", [
    ([("C", b"YP"), ("S", b"thank you !")], "SF", "Dd"),
    ([("C", b"YP"), ("C", b"nihao")], "S0", "D"),
])
def test_udp(datagrams, conn_state, history):
    record = summary_of(udp(datagrams))
    assert (record["conn_state"], record["history"], record["proto"]) == (conn_state, history, "udp")


def test_udp_bytes_are_summed():
    record = summary_of(udp([("C", b"YP"), ("S", b"thank you !"), ("C", b"nihao"), ("S", b"thank you !")]))
    assert (record["orig_bytes"], record["resp_bytes"]) == (7, 22)
    assert (record["orig_payloads"], record["resp_payloads"]) == ([2, 5], [11, 11])


def test_uids_are_zeek_shaped_stable_and_distinct():
    first = summary_of(tcp(HANDSHAKE))["uid"]
    assert first == summary_of(tcp(HANDSHAKE))["uid"]
    assert first.startswith("C") and len(first) == 18 and first.isalnum()
    assert first != summary_of(tcp(HANDSHAKE, client=("10.0.0.1", 40001)))["uid"]


def test_a_segment_filling_a_hole_is_out_of_order_not_new_data_nor_a_retransmission():
    # 100 bytes, then a jump of 100 (a segment the capture missed), then the missing one arrives late.
    data = [("C", "PA", b"a" * 100), ("C", "PA", b"c" * 100, {"seq": 1201}), ("C", "PA", b"b" * 100, {"seq": 1101})]
    record = summary_of(tcp(HANDSHAKE + data))
    assert (record["out_of_order"], record["retransmissions"], record["orig_bytes"]) == (1, 0, 300)
    assert record["missed_bytes"] == 0 and record["history"] == "ShADT"


def test_bytes_the_capture_never_saw_are_missed_bytes_once_acknowledged():
    # Zeek's content gap: the reassembler learns of the hole when the peer's ACK goes past it.
    data = [("C", "PA", b"a" * 100), ("C", "PA", b"c" * 100, {"seq": 1201})]
    record = summary_of(tcp(HANDSHAKE + data))
    assert (record["missed_bytes"], record["orig_bytes"], record["history"]) == (0, 300, "ShAD")
    record = summary_of(tcp(HANDSHAKE + data + [("S", "A", b"", {"ack": 1301})]))
    assert (record["missed_bytes"], record["orig_bytes"], record["history"]) == (100, 300, "ShADaG")


def test_duplicate_acks_are_counted():
    data = [("C", "PA", b"a" * 100), ("C", "PA", b"b" * 100), ("C", "PA", b"c" * 100),
            ("S", "A", b"", {"ack": 1101}), ("S", "A", b"", {"ack": 1101}), ("S", "A", b"", {"ack": 1101})]
    record = summary_of(tcp(HANDSHAKE + data))
    assert record["duplicate_acks"] == 2 and record["retransmissions"] == 0


def test_half_close_with_data_still_flowing_then_closed_is_sf():
    half_close = [("C", "PA", b"request"), ("C", "FA", b""), ("S", "A", b""), ("S", "PA", b"x" * 500),
                  ("C", "A", b""), ("S", "PA", b"y" * 500), ("C", "A", b""), ("S", "FA", b""), ("C", "A", b"")]
    (conv,) = conversations(tcp(HANDSHAKE + half_close))
    record = summarize(conv)
    assert (record["conn_state"], record["history"]) == ("SF", "ShADFadf")
    assert (record["orig_bytes"], record["resp_bytes"], record["retransmissions"]) == (7, 1000, 0)
    from harness.analysis.expect import CHECKS
    assert CHECKS["graceful-close"](conv) == [] and CHECKS["sequence-consistent"](conv) == []


def test_simultaneous_close_is_sf():
    simultaneous = [("C", "FA", b""), ("S", "FA", b"", {"ack": 1004}), ("C", "A", b""), ("S", "A", b"")]
    record = summary_of(tcp(HANDSHAKE + LAB_DATA + simultaneous))
    assert record["conn_state"] == "SF" and record["history"].endswith("Ff")


def test_a_window_update_does_not_end_a_run_of_duplicate_acks_but_a_new_ack_does():
    # Segment 2 is lost before the capture (it sees 1 and 3). The server repeats ACK 1101, once with
    # a new window, and segment 2 comes again within the initial RTT of segment 3. After two duplicate
    # ACKs for its sequence number it is a fast retransmission; without such a run, out of order.
    def resent_quickly(server_acks):
        steps = [("C", "PA", b"a" * 100), ("C", "PA", b"c" * 100, {"seq": 1201}), *server_acks,
                 ("C", "PA", b"b" * 100, {"seq": 1101})]
        packets = tcp(HANDSHAKE + steps)
        third = packets[4].time_ns   # the initial RTT here is 2 ms: the rest come within it
        return [p._replace(time_ns=third + 100_000 * n) if i > 4 else p for n, (i, p) in enumerate(
            enumerate(packets))]

    dup = {"ack": 1101}
    window_update = [("S", "A", b"", dup), ("S", "A", b"", dup), ("S", "A", b"", {**dup, "window": 1000}),
                     ("S", "A", b"", {**dup, "window": 1000})]
    record = summary_of(resent_quickly(window_update))
    assert (record["duplicate_acks"], record["retransmissions"], record["out_of_order"]) == (2, 1, 0)
    # (The new ACK must not cover segment 2, or segment 2 would be a spurious retransmission.)
    new_ack = [("S", "A", b"", dup), ("S", "A", b"", dup), ("S", "A", b"", dup), ("S", "A", b"", {"ack": 1151})]
    record = summary_of(resent_quickly(new_ack))
    assert (record["duplicate_acks"], record["retransmissions"], record["out_of_order"]) == (2, 0, 1)


def _hole_filled_after(delay_ns, acked_by_server=None):
    record = summary_of(hole_filled_after(delay_ns, acked_by_server=acked_by_server))
    return record["retransmissions"], record["out_of_order"]


def test_out_of_order_is_judged_to_the_nanosecond_against_the_initial_rtt():
    # tshark compares integer nanoseconds: 68664 ns after the segment that advanced next_seq is
    # within an initial RTT of 68665 ns, 68665 ns is not. A float of today's epoch seconds cannot
    # tell the two apart (its step is 238 ns there).
    assert _hole_filled_after(68_664) == (0, 1)
    assert _hole_filled_after(68_665) == (1, 0)


def test_a_segment_the_peer_already_acknowledged_is_a_spurious_retransmission_even_when_quick():
    # tshark tests for a spurious retransmission before it tests for out of order.
    assert _hole_filled_after(1_000, acked_by_server=1301) == (1, 0)
    assert _hole_filled_after(1_000, acked_by_server=1151) == (0, 1)


def test_a_keep_alives_ack_and_a_probes_repeat_are_not_duplicate_acks_but_a_pure_ack_at_the_probe_is():
    # tshark: the peer's ACK of a keep-alive is a keep-alive ACK; a zero-window probe does not move
    # next_seq, so the prober's pure ACKs at the probe's sequence number repeat its previous segment.
    keep_alive = [("C", "PA", b"a" * 10), ("S", "A", b""), ("C", "A", b"", {"seq": 1010}), ("S", "A", b"")]
    assert summary_of(tcp(HANDSHAKE + keep_alive))["duplicate_acks"] == 0
    probe = [("S", "A", b"", {"window": 0}), ("C", "A", b"p"), ("C", "A", b"", {"seq": 1001}),
             ("C", "A", b"", {"seq": 1001})]
    assert summary_of(tcp(HANDSHAKE + probe))["duplicate_acks"] == 2


# -- Zeek's own rules, one class of the conformance issue at a time (captures/zeek/ holds them to Zeek) --

from harness.analysis.conversation import SECOND                      # noqa: E402
from harness.analysis.zeek import ZeekSettings                         # noqa: E402
from support.packets import START_NS                                   # noqa: E402


def records_of(packets, settings=ZeekSettings()):
    return [summarize(conv) for conv in conversations(renumber(packets), settings=settings)]


def at(packets, seconds):
    return [p._replace(time_ns=p.time_ns + int(seconds * SECOND)) for p in packets]


def test_a_syn_after_a_reset_or_a_close_is_a_new_connection_even_with_the_same_isn():
    refused = tcp([SYN, ("S", "RA", b"")])
    assert [r["conn_state"] for r in records_of(refused + at(refused, 1) + at(refused, 2))] == ["REJ"] * 3
    closed = tcp(HANDSHAKE + LAB_DATA + CLIENT_FIRST)
    assert [r["conn_state"] for r in records_of(closed + at(closed[:1], 1))] == ["SF", "S0"]


def test_an_unanswered_syn_ends_its_connection_after_the_attempt_delay():
    attempt = tcp([SYN])
    # SYNs 5 s apart: the first attempt is over (Zeek's tcp_attempt_delay) when the next comes.
    assert [r["history"] for r in records_of(attempt + at(attempt, 5))] == ["S", "S"]
    assert [r["history"] for r in records_of(attempt + at(attempt, 4.9))] == ["S"]


def test_inactivity_ends_a_connection_once_idle_for_the_whole_timeout_not_more():
    established = tcp(HANDSHAKE + LAB_DATA)
    later = tcp([("C", "PA", b"again")])
    for idle, count in ((300, 2), (299.999, 1)):
        gap = established[-1].time_ns - later[0].time_ns + int(idle * SECOND)
        assert len(records_of(established + at(later, gap / SECOND))) == count, idle


def test_udp_inactivity_is_a_minute_inclusive():
    first, second = udp([("C", b"a")]), udp([("C", b"b")])
    assert len(records_of(first + at(second, 60))) == 2
    assert len(records_of(first + at(second, 59.999))) == 1


def test_duration_ends_when_both_sides_have_closed():
    packets = tcp(HANDSHAKE + LAB_DATA + THREE_WAY_SERVER_FIRST + [("C", "A", b"", {"time_ns": START_NS + 3 * SECOND})])
    (record,) = records_of(packets)
    closed_at = packets[-3].time_ns            # the second FIN
    assert record["duration"] == (closed_at - packets[0].time_ns) / SECOND
    assert record["orig_pkts"] == 6            # the late ACK still counts as a packet


def test_byte_counts_do_not_wrap_at_4_gib():
    # A 5 GB transfer seen by its handshake, its first segment, a 100-byte segment every gigabyte,
    # each acknowledged, and the FINs: sequence space wraps (here once), bytes keep counting, and the
    # bytes never seen are content gaps. (Had nothing been acknowledged before the first jump, Zeek
    # would have given up reassembling that side: tcp_max_above_hole_without_any_acks. And the
    # server's ISN is just below a wrap: Zeek's get_relative_seq takes any sequence number 2 to 4 GiB
    # past the ISN before the first wrap for one before it, an underflow, as harness does.)
    total, isn = 5_000_000_000, 2**32 - 1000
    first = isn + 1
    data = [("S", "PA", b"x" * 100, {"seq": first}), ("C", "A", b"", {"ack": first + 100})]
    for offset in (10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9, total - 100):
        data += [("S", "PA", b"x" * 100, {"seq": (first + offset - 100) % 2**32}),
                 ("C", "A", b"", {"ack": (first + offset) % 2**32})]
    end = (first + total) % 2**32
    steps = HANDSHAKE + data + [("S", "FA", b"", {"seq": end}), ("C", "FA", b"", {"ack": (end + 1) % 2**32}),
                                ("S", "A", b"", {"seq": (end + 1) % 2**32})]
    (record,) = records_of(tcp(steps, isn=(1000, isn)))
    assert record["resp_bytes"] == total and record["missed_bytes"] == total - 600


def test_data_shown_only_by_a_fins_sequence_number_counts_as_bytes():
    # The server's last 500 bytes never reach the capture; its FIN's sequence number says they were sent.
    steps = HANDSHAKE + [("C", "PA", b"get"), ("S", "PA", b"x" * 100), ("C", "A", b""),
                         ("S", "FA", b"", {"seq": 900001 + 600}), ("C", "FA", b"", {"ack": 900001 + 601}),
                         ("S", "A", b"", {"seq": 900001 + 601})]
    (record,) = records_of(tcp(steps))
    assert (record["resp_bytes"], record["missed_bytes"]) == (600, 500) and "g" in record["history"]


def test_payload_on_a_rst_is_listed_but_not_counted_as_bytes():
    steps = HANDSHAKE + [("C", "PA", b"yp"), ("S", "RA", b"oops")]
    (record,) = records_of(tcp(steps))
    assert record["resp_payloads"] == [4] and record["resp_bytes"] == 0 and record["conn_state"] == "RSTR"


def test_a_first_packet_from_a_likely_server_port_makes_its_peer_the_originator():
    midstream = tcp(HANDSHAKE + LAB_DATA)[5:]            # starts with the server's (8080's) data
    (record,) = records_of(midstream)
    assert (record["id.orig_p"], record["history"][0]) == (40000, "^")
    (unflipped,) = records_of(midstream, ZeekSettings(likely_server_ports=frozenset()))
    assert unflipped["id.orig_p"] == 8080 and not unflipped["history"].startswith("^")
    dhcp_reply_first = udp([("S", b"offer"), ("C", b"request")], client=("10.0.0.9", 68), server=("10.0.0.1", 67))
    (record,) = records_of(dhcp_reply_first)
    assert (record["id.orig_p"], record["id.resp_p"], record["history"]) == (68, 67, "^dD")


def test_a_syn_ack_first_flips_only_once_the_connection_is_productive():
    syn_ack_only = tcp([SYN_ACK], server=("10.0.0.2", 4242))
    (record,) = records_of(syn_ack_only)
    assert (record["id.orig_p"], record["history"]) == (4242, "H")       # perhaps a stealth scan
    (record,) = records_of(tcp([SYN_ACK, ACK], server=("10.0.0.2", 4242)))
    assert (record["id.orig_p"], record["history"]) == (40000, "^hA")


def test_an_isn_of_2_32_minus_1_counts_bytes_from_the_peers_acks_as_zeek_does():
    # Zeek's InitLastSeq does not count the wrap the SYN itself makes; its ACK side does. What the
    # client sent past the server's last ACK is then not counted: conn.log says the same.
    steps = HANDSHAKE + [("C", "PA", b"a" * 100), ("S", "A", b""), ("C", "PA", b"b" * 50)]
    (record,) = records_of(tcp(steps, isn=(2**32 - 1, 900000)))
    assert record["orig_bytes"] == 100
    (record,) = records_of(tcp(steps, isn=(2**32 - 2, 900000)))
    assert record["orig_bytes"] == 150
