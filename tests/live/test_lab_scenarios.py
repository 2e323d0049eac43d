"""The lab on the wire: each scenario run live with capture, judged, and cross-checked with tshark."""
import subprocess
from dataclasses import replace

import pytest

from harness.analysis.expect import CHECKS
from harness.lab.scenarios import LAB_SCENARIOS, lab_program
from harness.run.scenario import ScenarioFailed
from harness.run.runner import run_scenario

pytestmark = pytest.mark.capture


def tshark_fields(path, *fields, display_filter=None):
    command = ["tshark", "-2", "-r", str(path), "-T", "fields", "-E", "separator=,"]
    if display_filter:
        command += ["-Y", display_filter]
    for field in fields:
        command += ["-e", field]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.split()


def test_tcp_lab_shows_the_reports_eleven_segments(lab):
    result = lab.run("tcp-lab")
    assert result.ok and len(result.conversation.segments) == 11
    # The same sequence, as Wireshark's dissector reads the saved file: flags, payload length, relative ACK.
    assert tshark_fields(result.capture.path, "tcp.flags.str", "tcp.len", "tcp.ack") == [
        "··········S·,0,0", "·······A··S·,0,1", "·······A····,0,1",
        "·······AP···,2,1", "·······A····,0,3", "·······AP···,11,3", "·······A····,0,12",
        "·······A···F,0,3", "·······A····,0,13", "·······A···F,0,13", "·······A····,0,4"]
    assert tshark_fields(result.capture.path, "tcp.completeness") == ["31"] * 11  # SYN, SYN-ACK, ACK, DATA, FIN


def test_udp_lab_shows_four_alternating_datagrams(lab):
    result = lab.run("udp-lab")
    assert result.ok
    port = str(result.port)
    rows = subprocess.run(["tshark", "-r", str(result.capture.path), "-o", "data.show_as_text:TRUE", "-T", "fields",
                           "-E", "separator=|", "-e", "udp.dstport", "-e", "udp.length", "-e", "data.text"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    to_server = [row.split("|")[0] == port for row in rows]
    assert to_server == [True, False, True, False]
    assert [int(row.split("|")[1]) - 8 for row in rows] == [2, 11, 5, 11]
    assert [row.split("|")[2] for row in rows] == ["YP", "thank you !", "nihao", "thank you !"]


def test_broken_server_resets_after_the_request_and_fails_graceful_close(lab):
    result = lab.run("tcp-broken-server")
    assert result.ok
    assert any("AttributeError" in line for line in result.server.stderr_lines)
    problems = [str(problem) for problem in CHECKS["graceful-close"](result.conversation)]
    assert problems[0].startswith("server sent RST at frame ")
    assert "the server never sent FIN" in problems


def test_a_three_segment_close_is_still_graceful(lab):
    immediate = replace(LAB_SCENARIOS["tcp-lab"], name="tcp-lab-immediate-close",
                        client=lab_program("harness.lab.tcp_client", "--close", "immediate", "yp"),
                        expectation="tcp_graceful")
    assert lab.run(immediate).ok


def test_an_aborting_client_fails_graceful_close_with_a_readable_reason(lab):
    abort = replace(LAB_SCENARIOS["tcp-lab"], name="tcp-lab-abort",
                    client=lab_program("harness.lab.tcp_client", "--close", "abort", "yp"), expectation="tcp_graceful")
    result = lab.run(abort, check=False)
    assert not result.ok
    assert any(str(p).startswith("graceful-close: client sent RST at frame") for p in result.problems)


def test_a_failing_scenario_reports_expected_against_wire_with_the_ladder(capture_backend, tmp_path):
    wrong = replace(LAB_SCENARIOS["tcp-lab"], expectation="tcp_broken_server")
    result = run_scenario(wrong, tmp_path / "wrong.pcapng", backend=capture_backend)
    report = str(ScenarioFailed(result))
    first = report.splitlines()[0]
    # The cause first, then what was held to what.
    assert first.startswith("FAIL tcp-lab: the wire does not match the expectation: no segment left for step "
                            "`S>C RST|RST,ACK`") and first.endswith(f"(tcp_broken_server against {tmp_path / 'wrong.pcapng'})")
    assert "expected (" in report and "no-data-from-server: the server sent 11 bytes at frame 6" in report
    assert " frame      time  client 127.0.0.1:" in report and "<--- PSH, ACK" in report
    assert f"pcap: {tmp_path / 'wrong.pcapng'}" in report


def test_phases_are_timed(lab):
    result = lab.run("udp-lab")
    assert list(result.phases) == ["capture launched", "server ready", "capture start proven", "traffic",
                                   "capture end proven", "server stopped", "capture closed", "analysis", "assertions",
                                   "annotation"]
    assert all(seconds >= 0 for seconds in result.phases.values())


def test_the_saved_pcap_carries_the_verdicts_as_comments(lab):
    result = lab.run("tcp-lab")
    comments = tshark_fields(result.capture.path, "frame.comment")
    assert len([c for c in comments if c == "ok:"]) == 11, comments
    done = subprocess.run(["capinfos", str(result.capture.path)], capture_output=True, text=True, check=True)
    assert f"harness capture: backend={result.capture.backend}" in done.stdout
    assert "PASS tcp-lab: tcp_lab against" in done.stdout


def test_the_annotated_pcap_stays_private(lab):
    import stat
    result = lab.run("udp-lab")
    assert stat.S_IMODE(result.capture.path.stat().st_mode) == 0o600


def test_the_saved_pcap_keeps_dumpcaps_statistics_through_the_annotation(lab, capture_backend):
    # The Interface Statistics Block is the file's own proof that nothing was dropped: annotating
    # the verdicts into the pcap must keep it, with the counters the capture itself reported.
    from harness.wire.reader import open_capture
    result = lab.run("tcp-lab")
    with open_capture(result.capture.path) as saved:
        records = list(saved)
        statistics = saved.statistics
    assert any(record.comments for record in records), "the verdicts were annotated"
    assert len(statistics) == 1, statistics
    counters = statistics[0].counters
    assert counters["dropped"] == result.capture.dropped == 0
    assert counters["received"] == result.capture.received >= len(records)


@pytest.mark.parametrize("name", ["tcp-lab", "udp-lab"])
def test_the_lab_runs_over_ipv6_loopback(name, capture_backend, tmp_path):
    """Issue 15 item 9: on ::1 the lab's client could not resolve the address, which surfaced 10 s later as
    the server not exiting; its programs now take the address family from the address."""
    result = run_scenario(LAB_SCENARIOS[name], tmp_path / f"{name}.pcapng", capture_backend, host="::1")
    assert result.ok, result.report()
    conversation = result.conversation
    assert (conversation.orig.host, conversation.resp.host) == ("::1", "::1")
