"""`harness run` and `harness grade` on programs written outside the project (tests/support/programs):
fixed ports, serving forever, no readiness line, a worker forked off, a wrapper, a crash, a server
that never closes, one that closes with data unread, UDP servers that answer and that do not.
Each is judged right, the cause said first, and nothing of it is left running afterwards."""
from __future__ import annotations

import os
import socket
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from harness.cli import main
from harness.run import sockets
from support import REPO
from support.procfs import running_with

pytestmark = pytest.mark.capture

PROGRAMS = REPO / "tests" / "support" / "programs"
LAB_CLIENT = f"{sys.executable} -m harness.lab.tcp_client --host {{host}} --port {{port}} yp"


def program(name: str) -> str:
    return f"{sys.executable} {PROGRAMS / name}.py"


@pytest.fixture(scope="module")
def namespaces():
    from harness.run.topology import topology_unavailable_reason
    from harness.pytest_plugin import capture_required
    reason = topology_unavailable_reason(loopback_only=True)
    if reason:
        if capture_required():
            pytest.fail(f"network namespaces are needed for fixed-port programs: {reason}", pytrace=False)
        pytest.skip(reason)


def run(capsys, tmp_path, *arguments) -> tuple:
    status = main(["run", "--pcap", str(tmp_path / "run.pcapng"), *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("server, client, stdin, expectation, status, first_line", [
    ("tcp_server_report", None, None, "tcp_lab", 0, "PASS run: tcp_lab against "),
    ("tcp_server_report", "tcp_client_report", "yp", "tcp_graceful", 0, "PASS run: tcp_graceful against "),
    ("tcp_server_forks", None, None, "tcp_lab", 0, "PASS run: tcp_lab against "),
    ("tcp_server_never_closes", None, None, "tcp_graceful", 1,
     "FAIL run: the server never sent FIN: it did not close the connection"),
    ("tcp_server_unread", None, None, "tcp_graceful", 1,
     "FAIL run: the server reset the connection (RST) after replying (11 bytes): it closed the socket with data unread"),
    ("tcp_server_crash", "tcp_client_report", "yp", "tcp_graceful", 1,
     "FAIL run: the server crashed before replying (exit 1: AttributeError: 'tuple' object has no attribute 'recvfrom')"),
    ("udp_server_report", "udp_client_report", "YP\nnihao\n", "udp_lab", 0, "PASS run: udp_lab against "),
    ("udp_server_silent", "udp_client_report", "YP\nnihao\n", "udp_lab", 1,
     "FAIL run: the server never answered (1 datagram sent, none answered)"),
])
def test_programs_of_the_reports_kind_are_judged_right(namespaces, capsys, tmp_path, server, client, stdin,
                                                         expectation, status, first_line):
    port = "8081" if server.startswith("udp") else "8080"
    arguments = ["--isolate", "--port", port, "--server", program(server),
                 "--client", program(client) if client else LAB_CLIENT, "--expect", expectation, "--timeout", "3"]
    if stdin:
        arguments += ["--stdin", stdin]
    got, out, err = run(capsys, tmp_path, *arguments)
    assert (got, out.splitlines()[0][:len(first_line)]) == (status, first_line), out + err
    assert not running_with(str(PROGRAMS / server)), "nothing of the server may be left running"
    if status:
        assert "the last of its output" in out or "expected (" in out


def test_a_wrapper_starting_the_server_as_a_grandchild_is_stopped_whole(capsys, tmp_path):
    # The false PASS of old: `sh -c "server & ..."`, sh stopped and its server left on the port.
    marker = "wrapped-server-marker"
    wrapper = (f"sh -c '{sys.executable} -m harness.lab.tcp_server --host {{host}} --port {{port}} & "
               f"exec {sys.executable} -c \"import time; time.sleep(600)\" {marker}'")
    status, out, err = run(capsys, tmp_path, "--server", wrapper, "--client", LAB_CLIENT, "--expect", "tcp_lab")
    assert status == 0, out + err
    port = int(out.split("server 127.0.0.1:")[1].split()[0])
    assert not running_with(marker) and not running_with(f"--port {port}")
    assert sockets.bound("tcp", port) == [], f"port {port} is free again"


def test_a_port_already_taken_is_one_line_naming_its_holder(capsys, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        status, out, err = run(capsys, tmp_path, "--port", str(port), "--server", program("tcp_server_report"),
                               "--client", LAB_CLIENT, "--expect", "tcp_lab")
    assert status == 2 and out == ""
    assert err == (f"harness run: port {port} (tcp) is already in use by pid {os.getpid()} "
                   f"({sockets.describe_process(os.getpid())[len(f'pid {os.getpid()} ('):-1]}): stop it, "
                   f"or choose another port\n")


def test_a_folder_of_submissions_is_graded_in_parallel_with_junit_and_html(namespaces, capsys, tmp_path):
    kinds = {"alice": "tcp_server_report", "bob": "tcp_server_never_closes", "carol": "tcp_server_crash",
             "dave": "tcp_server_forks"}
    for student, kind in kinds.items():
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "TCPServer.py").write_text((PROGRAMS / f"{kind}.py").read_text())
    junit, html = tmp_path / "junit.xml", tmp_path / "report.html"
    status = main(["grade", str(tmp_path / "class"), "--server", f"{sys.executable} {{file}}", "--client", LAB_CLIENT,
                   "--expect", "tcp_lab", "--port", "8080", "-j", "2", "--pcap-dir", str(tmp_path / "pcaps"),
                   "--junit", str(junit), "--html", str(html)])
    out = capsys.readouterr().out
    assert status == 1, out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] and line.split()[0] in kinds}
    assert "PASS" in rows["alice"] and "PASS" in rows["dave"]
    assert "FAIL" in rows["bob"] and "the server never sent FIN" in rows["bob"]
    assert "FAIL" in rows["carol"] and "the server crashed before replying" in rows["carol"]
    assert "2 of 4 submissions pass tcp_lab" in out and "(each in a network namespace of its own)" in out
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    failed = {case.get("name"): case.find("failure").get("message") for case in suite if case.find("failure") is not None}
    assert sorted(failed) == ["bob", "carol"]
    page = html.read_text()
    assert page.count("<svg") == 4 and page.count("class='entry'") == 4
    assert "http" not in page.replace("http://www.w3.org/2000/svg", ""), "the page loads nothing from elsewhere"
    for student in kinds:
        assert (tmp_path / "pcaps" / f"{student}.pcapng").exists()


def test_run_writes_one_page_with_the_verdict_ladder_and_walk_through(capsys, tmp_path):
    page = tmp_path / "run.html"
    server = f"{sys.executable} -m harness.lab.tcp_server --host {{host}} --port {{port}} --count 1"
    status, out, err = run(capsys, tmp_path, "--server", server, "--client", LAB_CLIENT, "--expect", "tcp_lab",
                           "--html", str(page), "--lang", "zh")
    assert status == 0 and out.splitlines()[-1] == f"html: {page}", out + err
    text = page.read_text(encoding="utf-8")
    assert "<html lang=\"zh\">" in text and text.count("<svg") == 1
    assert "第 1 帧：客户端生成一个 SYN 为 1 的 TCP 包" in text and "PASS" in text
