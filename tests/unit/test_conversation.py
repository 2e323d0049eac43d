"""Packets to conversations: orientation, relative numbers, port reuse (pure, no capture)."""
from harness.analysis.conversation import SECOND, Endpoint
from harness.analysis.tracker import conversations
from harness.wire.packet import TCP, UDP

from support.packets import CLIENT, FOUR_WAY_SERVER_FIRST, HANDSHAKE, LAB_DATA, SERVER, renumber, tcp, udp


def test_lab_exchange_has_wireshark_relative_numbers():
    (conv,) = conversations(tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST))
    assert conv.proto == TCP and conv.orig == Endpoint(*CLIENT) and conv.resp == Endpoint(*SERVER)
    numbers = [(s.is_orig, s.rel_seq, s.rel_ack, s.length) for s in conv.segments]
    assert numbers == [
        (True, 0, None, 0), (False, 0, 1, 0), (True, 1, 1, 0),
        (True, 1, 1, 2), (False, 1, 3, 0), (False, 1, 3, 11), (True, 3, 12, 0),
        (False, 12, 3, 0), (True, 3, 13, 0), (True, 3, 13, 0), (False, 13, 4, 0),
    ]


def test_relative_numbers_survive_sequence_wraparound():
    (conv,) = conversations(tcp(HANDSHAKE + LAB_DATA, isn=(2**32 - 2, 2**32 - 1)))
    assert [s.rel_seq for s in conv.segments][-4:] == [1, 1, 1, 3]
    assert conv.segments[-1].rel_ack == 12


def test_originator_is_the_syn_sender_even_when_the_syn_ack_comes_first():
    packets = tcp(HANDSHAKE)
    (conv,) = conversations(renumber(packets[1:]))
    assert conv.orig == Endpoint(*CLIENT) and not conv.began_mid_stream
    assert conv.segments[0].rel_ack == 1


def test_capture_begun_mid_stream_takes_the_first_sender_as_originator():
    packets = tcp(HANDSHAKE + LAB_DATA, server=("10.0.0.2", 4242))[5:]
    (conv,) = conversations(renumber(packets))
    assert conv.began_mid_stream
    assert conv.orig == Endpoint("10.0.0.2", 4242)
    assert conv.segments[0].rel_seq == 1


def test_capture_begun_mid_stream_from_a_likely_server_port_makes_its_peer_the_originator():
    # Zeek's likely_server_ports: 8080 is HTTP's, 40000 nobody's; the first packet comes from 8080.
    packets = tcp(HANDSHAKE + LAB_DATA)[5:]
    (conv,) = conversations(renumber(packets))
    assert conv.began_mid_stream and conv.zeek.history.startswith("^")
    assert conv.orig == Endpoint(*CLIENT) and conv.resp == Endpoint(*SERVER)
    assert [segment.is_orig for segment in conv.segments] == [False, True]


def test_port_reuse_starts_a_new_conversation_but_a_syn_retransmission_does_not():
    # Zeek's IsReuse: while neither side has closed, a SYN with the initial sequence number is a
    # retransmission; another ISN, or any SYN once a side has closed or reset, is a new connection.
    syn_twice = tcp([("C", "S", b""), ("C", "S", b"", {"seq": 1000})] + HANDSHAKE[1:], isn=(1000, 5000))
    assert [len(c.segments) for c in conversations(renumber(syn_twice))] == [4]
    first = tcp(HANDSHAKE + FOUR_WAY_SERVER_FIRST, isn=(1000, 5000))
    second = tcp(HANDSHAKE, isn=(777777, 888888))
    convs = conversations(renumber(first + second))
    assert [len(c.segments) for c in convs] == [7, 3]
    assert convs[1].segments[0].rel_seq == 0 and convs[1].index == 2
    same_isn_after_the_close = conversations(renumber(first + first[:1]))
    assert [len(c.segments) for c in same_isn_after_the_close] == [7, 1]
    open_with_another_isn = conversations(renumber(tcp(HANDSHAKE[:1], isn=(1000, 5000)) + second))
    assert [len(c.segments) for c in open_with_another_isn] == [1, 3]


def test_a_refused_connection_retried_is_one_conversation_per_attempt():
    refused = [HANDSHAKE[0], ("S", "RA", b"")]
    convs = conversations(renumber(tcp(refused) * 3))
    assert [(c.zeek.conn_state, len(c.segments)) for c in convs] == [("REJ", 2)] * 3


def test_udp_conversation_is_oriented_by_its_first_datagram():
    (conv,) = conversations(udp([("C", b"YP"), ("S", b"thank you !")]))
    assert conv.proto == UDP and conv.orig == Endpoint(*CLIENT)
    assert [(s.is_orig, s.length, s.rel_seq) for s in conv.segments] == [(True, 2, None), (False, 11, None)]


def test_separate_pairs_are_separate_conversations_in_order_of_first_packet():
    a = udp([("C", b"x")], client=("10.0.0.1", 1))
    b = tcp(HANDSHAKE, client=("10.0.0.1", 2))
    c = udp([("S", b"y")], client=("10.0.0.1", 1))
    convs = conversations(renumber(a + b + c))
    assert [(c.proto, len(c.segments)) for c in convs] == [(UDP, 2), (TCP, 3)]


def test_udp_exchanges_a_minute_apart_are_two_conversations_as_zeek_counts_them():
    first = udp([("C", b"YP"), ("S", b"thank you !")])
    second = udp([("C", b"nihao"), ("S", b"thank you !")])
    a_minute_later = [p._replace(time_ns=p.time_ns + 61 * SECOND) for p in second]
    assert [len(c.segments) for c in conversations(renumber(first + a_minute_later))] == [2, 2]
    within_the_minute = [p._replace(time_ns=p.time_ns + 59 * SECOND) for p in second]
    assert [len(c.segments) for c in conversations(renumber(first + within_the_minute))] == [4]


def test_a_packet_long_after_a_close_starts_a_new_conversation_but_a_straggler_does_not():
    from support.packets import FOUR_WAY_SERVER_FIRST, LAB_DATA
    closed = tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST)
    last_ack = closed[-1]
    straggler = last_ack._replace(time_ns=last_ack.time_ns + 1 * SECOND)
    assert [len(c.segments) for c in conversations(renumber(closed + [straggler]))] == [12]
    much_later = last_ack._replace(time_ns=last_ack.time_ns + 6 * SECOND)
    assert [len(c.segments) for c in conversations(renumber(closed + [much_later]))] == [11, 1]


def test_a_streaming_tracker_hands_over_ended_conversations_and_keeps_none():
    from harness.analysis.tracker import ConversationTracker
    finished = []
    tracker = ConversationTracker(keep_segments=False, on_finished=finished.append)
    for number in range(50):
        for packet in tcp(HANDSHAKE + LAB_DATA, client=("10.0.0.1", 40000 + number)):
            tracker.feed(packet._replace(time_ns=packet.time_ns + number * 10 * SECOND))
    assert tracker.conversations == [] and len(tracker._current) < 50
    assert len(finished) == 50 - len(tracker._current) and finished[0].index == 1
    tracker.finish()
    assert [c.index for c in finished] == list(range(1, 51)) and not tracker._current
