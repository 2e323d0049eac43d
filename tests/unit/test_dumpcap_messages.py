"""dumpcap's stderr, read into one line (issue 15 item 9: 'dumpcap failed: Packets: 18' read its progress
counter as its complaint and never named the signal that killed it)."""
import signal

from harness.run.capture.dumpcap import PERMISSION_HINT, explain_dumpcap_error

PROGRESS = "Capturing on 'Loopback: lo'\nFile: -\nPackets: 18 \nPackets captured: 18\n"


def test_a_dumpcap_killed_by_a_signal_is_said_to_be_by_its_name():
    assert explain_dumpcap_error(PROGRESS, -signal.SIGKILL) == (
        "dumpcap was killed by SIGKILL: something outside harness stopped it; run again")


def test_its_counters_are_no_complaint():
    assert explain_dumpcap_error(PROGRESS, 1) == "dumpcap failed: it exited with status 1 without saying why"
    assert explain_dumpcap_error(PROGRESS + "dumpcap: There is no device named \"x\".\n", 1) == (
        'dumpcap failed: dumpcap: There is no device named "x".')


def test_no_permission_says_how_to_grant_it():
    said = explain_dumpcap_error("You don't have permission to capture on that device\n", 1)
    assert said.startswith("dumpcap may not capture here (You don't have permission") and said.endswith(PERMISSION_HINT)
