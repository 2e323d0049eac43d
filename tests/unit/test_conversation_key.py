"""ConversationTracker.feed writes the conversation key out (it runs for every packet); _key is what
ICMP errors are looked up by. The two must agree for any endpoints, in either direction."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.analysis.tracker import ConversationTracker, _key
from harness.wire.decode import UnreachableQuote
from harness.wire.packet import TCP, UDP, Packet

hosts = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.10", "9.0.0.1", "::1", "2001:db8::1", "fe80::1"])
ports = st.sampled_from([0, 1, 9, 10, 80, 443, 65535])


@given(hosts, ports, hosts, ports, st.sampled_from([TCP, UDP]), st.booleans())
def test_a_quote_finds_the_conversation_of_the_datagram_it_quotes(src, sport, dst, dport, proto, quoted_backwards):
    tracker = ConversationTracker(keep_segments=False, on_finished=lambda conversation: None)
    packet = Packet(1, 10**9, src, dst, proto, sport, dport, 0, b"", 0, 0, 0x10 if proto == TCP else 0, 1)
    conversation = tracker.feed(packet)
    quote = (UnreachableQuote(dst, src, proto, dport, sport) if quoted_backwards
             else UnreachableQuote(src, dst, proto, sport, dport))
    assert _key(quote) == _key(packet)
    assert tracker.feed_unreachable(quote, 2, 1.5) is conversation
    assert tracker.feed(packet._replace(frame=3, src=dst, dst=src, sport=dport, dport=sport)) is conversation
