"""Example: the lab's TCP scenario under capture, judged by its expectation, in one line.

`lab.run` starts the lab's server and client, captures loopback with the start and end of the
capture proven, and fails the test with expected-against-wire and the ladder if the wire differs.
"""
import pytest


@pytest.mark.capture
def test_the_tcp_lab_on_the_wire(lab):
    result = lab.run("tcp-lab")
    assert result.capture.dropped == 0
    assert result.conversation.zeek.conn_state == "SF"      # Zeek's name for a normal open and close
