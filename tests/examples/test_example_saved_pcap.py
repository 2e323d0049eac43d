"""Example: judge a pcap saved earlier (here the lab's reference capture) without capturing anything."""
import harness
from support import REPO


def test_a_saved_capture_matches_the_lab_expectation():
    analysis = harness.analyse(REPO / "captures" / "lab" / "tcp-lab.pcapng")
    (conversation,) = analysis.conversations
    assert harness.load_expectation("tcp_lab").problems(conversation) == []
    record = harness.summarize(conversation)                      # one conn.log row
    assert (record["history"], record["orig_bytes"], record["resp_bytes"]) == ("ShADadfF", 2, 11)     # the server's FIN (f) first
