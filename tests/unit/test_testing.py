"""harness.testing's assertions on conversations, on the lab's saved captures: each passes on the wire
that meets it, and fails with the cause first, the problems, the ladder and the pcap."""
import pytest

import harness
from harness.testing import ConversationCheck, ExpectationFailed
from support import REPO

LAB = REPO / "captures" / "lab"


def check(name: str) -> ConversationCheck:
    path = LAB / f"{name}.pcapng"
    (conversation,) = harness.analyse(path).conversations
    return ConversationCheck(conversation, path)


def test_the_lab_capture_meets_every_assertion_it_should():
    tcp = check("tcp-lab")
    tcp.should_match("tcp_lab").should_close_gracefully().should_handshake().should_have_no_rst()
    tcp.should_carry(client=[2], server=[11]).should_send(client=2, server=11).should_get_reply()
    tcp.should_match("C>S SYN\nS>C SYN,ACK\n...\n")            # inline text
    assert (tcp.client_sent, tcp.server_sent, tcp.conn_state, tcp.history) == (2, 11, "SF", "ShADadfF")
    check("udp-lab").should_match("udp_lab").should_carry(client=[2, 5], server=[11, 11]).should_get_reply()


def test_a_failure_gives_the_cause_first_then_the_problems_the_ladder_and_the_pcap():
    broken = check("tcp-broken-server")
    with pytest.raises(ExpectationFailed) as failed:
        broken.should_close_gracefully()
    lines = str(failed.value).splitlines()
    assert lines[0] == ("the server reset the connection (RST) after the client's 2 bytes, without replying: "
                        "it closed the socket with data unread, or its program died")
    assert lines[1] == "expected (graceful close) against what the wire showed:"
    assert "  - graceful-close: server sent RST at frame 6 (an abortive close, not a graceful one)" in lines
    assert f"pcap: {LAB / 'tcp-broken-server.pcapng'}" in lines
    assert any("<--- RST, ACK" in line for line in lines)
    assert failed.value.diagnosis == lines[0] and failed.value.pcap == LAB / "tcp-broken-server.pcapng"


@pytest.mark.parametrize("assertion, cause", [
    (lambda c: c.should_have_no_rst(), "the server reset the connection (RST) after the client's 2 bytes"),
    (lambda c: c.should_get_reply(), "the server reset the connection (RST)"),
    (lambda c: c.should_send(server=11), "the server reset the connection (RST)"),
    (lambda c: c.should_carry(client=[3]), "the server reset the connection (RST)"),
])
def test_each_assertion_fails_on_the_broken_server_naming_the_reset(assertion, cause):
    with pytest.raises(ExpectationFailed, match=cause.replace("(", r"\(").replace(")", r"\)")):
        assertion(check("tcp-broken-server"))


def test_payloads_that_differ_are_said_field_by_field():
    with pytest.raises(ExpectationFailed) as failed:
        check("udp-lab").should_carry(server=[11, 12])
    assert "the server sent payloads of [11, 11] bytes, expected [11, 12]" in str(failed.value)
