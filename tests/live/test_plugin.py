"""The pytest plugin, tested the way its users meet it: through pytest runs of their own test files."""
import pytest

from support.procfs import running_with

LAB_TEST = """
import pytest

@pytest.mark.capture
def test_tcp_lab(lab):
    lab.run("tcp-lab")
"""


@pytest.fixture
def no_requirement(monkeypatch):
    monkeypatch.delenv("HARNESS_REQUIRE_CAPTURE", raising=False)


def test_the_capture_marker_is_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.capture: the test captures live traffic*"])


def test_minus_m_capture_selects_only_capture_tests(pytester, no_requirement, monkeypatch):
    monkeypatch.setenv("HARNESS_DUMPCAP", "/nonexistent/dumpcap")
    pytester.makepyfile(LAB_TEST + "\ndef test_plain():\n    pass\n")
    result = pytester.runpytest("-m", "capture")
    result.assert_outcomes(skipped=1, deselected=1)


def test_without_dumpcap_capture_tests_skip_saying_how_to_fix_it(pytester, no_requirement, monkeypatch):
    monkeypatch.setenv("HARNESS_DUMPCAP", "/nonexistent/dumpcap")
    pytester.makepyfile(LAB_TEST)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*cannot capture: HARNESS_DUMPCAP=/nonexistent/dumpcap is not an executable "
                                 "dumpcap: fix the variable or unset it*"])


def test_when_capture_is_required_they_fail_instead(pytester, monkeypatch):
    monkeypatch.setenv("HARNESS_DUMPCAP", "/nonexistent/dumpcap")
    monkeypatch.setenv("HARNESS_REQUIRE_CAPTURE", "1")
    pytester.makepyfile(LAB_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*HARNESS_REQUIRE_CAPTURE is set but capture is unavailable: HARNESS_DUMPCAP*"])


@pytest.mark.capture
def test_pcaps_are_named_after_the_test_and_kept_by_default(pytester, capture_backend):
    pytester.makepyfile(test_lab=LAB_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert (pytester.path / "captures/runs/test_lab__test_tcp_lab.pcapng").stat().st_size > 0
    assert not list(pytester.path.glob("captures/runs/*.partial"))


@pytest.mark.capture
def test_keep_failed_removes_passing_pcaps_and_keeps_failing_ones(pytester, capture_backend):
    pytester.makepyfile(test_keep=LAB_TEST + """

@pytest.mark.capture
def test_wrong_expectation(lab):
    from dataclasses import replace
    from harness.lab.scenarios import LAB_SCENARIOS
    lab.run(replace(LAB_SCENARIOS["udp-lab"], expectation="tcp_lab"))
""")
    result = pytester.runpytest("--keep-pcaps", "failed", "--pcap-dir", "out")
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == ["test_keep__test_wrong_expectation.pcapng"]
    # The failure shows expected against wire, and the ladder with the pcap's path.
    result.stdout.fnmatch_lines(["*FAIL udp-lab: * (tcp_lab against *test_keep__test_wrong_expectation.pcapng)*",
                                 "*protocol: expected TCP*",
                                 "*pcap: *out/test_keep__test_wrong_expectation.pcapng*",
                                 "*---- UDP len=2 b'YP'*"])


@pytest.mark.capture
def test_live_capture_fixture_captures_your_own_traffic(pytester, capture_backend):
    pytester.makepyfile(test_own="""
import socket
import pytest
from harness.analysis.pipeline import analyse

@pytest.mark.capture
def test_own_server(live_capture):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with live_capture(f"udp port {port}") as capture:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"ping", ("127.0.0.1", port))
    (conversation,) = analyse(capture.result.path).conversations
    assert [s.payload for s in conversation.segments] == [b"ping"]
""")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.capture
def test_two_live_captures_in_one_test_save_two_pcaps(pytester, capture_backend):
    pytester.makepyfile(test_twice="""
import socket
import pytest
from harness.analysis.pipeline import analyse

@pytest.mark.capture
def test_twice(live_capture):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    results = []
    for payload in (b"first", b"second"):
        with live_capture(f"udp port {port}") as capture:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(payload, ("127.0.0.1", port))
        results.append(capture.result.path)
    assert results[0] != results[1]
    assert [[s.payload for s in analyse(path).conversations[0].segments] for path in results] == [
        [b"first"], [b"second"]]
""")
    pytester.runpytest().assert_outcomes(passed=1)
    assert sorted(p.name for p in (pytester.path / "captures/runs").iterdir()) == [
        "test_twice__test_twice-2.pcapng", "test_twice__test_twice.pcapng"]
    pytester.runpytest("--keep-pcaps", "failed").assert_outcomes(passed=1)
    assert not list((pytester.path / "captures/runs").iterdir()), "both are removed after a pass"


def test_a_pcap_dir_that_cannot_be_written_fails_in_one_line(pytester):
    pytester.makepyfile(test_lab=LAB_TEST)
    (pytester.path / "a-file").write_text("")
    result = pytester.runpytest("--pcap-dir", "a-file/pcaps")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*harness: cannot write pcaps to */a-file/pcaps: Not a directory; choose another "
                                 "--pcap-dir (or ini harness_pcap_dir)*"])
    assert "Traceback" not in result.stdout.str()


def test_report_header_names_backend_and_pcap_dir(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest("--capture-backend", "scapy", "--pcap-dir", "elsewhere")
    result.stdout.fnmatch_lines(["harness: capture backend scapy*, pcaps in elsewhere"])


NEVER_CLOSES = '''
import socket, sys, pytest

SERVER = [sys.executable, "-u", "-c", """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready to serve, never to close")
kept = []
while True:
    connection, _ = server.accept()
    connection.recv(1024)
    connection.sendall(b"thank you !")
    kept.append(connection)
""", "{host}", "{port}"]

@pytest.mark.capture
def test_my_server_closes_gracefully(serve, wire):
    server = serve(SERVER)
    with wire(server.port) as capture:
        with socket.create_connection((server.host, server.port)) as connection:
            connection.sendall(b"yp")
            assert connection.recv(1024) == b"thank you !"
    capture.conversation().should_match("tcp_graceful")
'''


@pytest.mark.capture
def test_your_own_server_test_fails_with_the_cause_first_the_ladder_and_its_output(pytester, capture_backend):
    pytester.makepyfile(test_mine=NEVER_CLOSES)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E*ExpectationFailed: the server never sent FIN: it did not close the connection",
        "E*expected (*tcp_graceful.txt) against what the wire showed:",
        "E*- graceful-close: the server never sent FIN",
        "E*pcap: *test_mine__test_my_server_closes_gracefully.pcapng",
        "E*---- PSH, ACK*b'yp'*",
        "*harness: output of the server*",
        "ready to serve, never to close",
    ])
    assert running_with("ready to serve, never to close") == [], "the server was stopped after the test"


SERVE_TWO = """
import sys
from harness.run import process

FOREVER = [sys.executable, "-u", "-c",
           "import signal, socket; s = socket.create_server(('{host}', {port})); signal.pause()"]
started = []

def test_two_servers(monkeypatch, serve):
    real_stop = process.Subject.stop
    failed = []

    def stop_then_fail(subject, *args, **kwargs):
        code = real_stop(subject, *args, **kwargs)
        if not failed:
            failed.append(subject.name)
            raise RuntimeError("the first stop failed, once it was done")
        return code

    started.extend([serve(FOREVER), serve(FOREVER)])
    monkeypatch.setattr(process.Subject, "stop", stop_then_fail)

def test_both_servers_were_stopped():
    assert [server.pid for server in started if server.subject.returncode is None] == []
"""


def test_every_server_a_test_started_is_stopped_even_when_one_stop_fails(pytester):
    """Issue 15 item 6: the first stop to raise (a Ctrl-C landing in it, survivors) skipped the rest."""
    pytester.makepyfile(SERVE_TWO)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
