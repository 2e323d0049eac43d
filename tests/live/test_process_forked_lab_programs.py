"""Lab programs forked from the harness (ForkedLabProgram) behave as `python -u -m harness.lab.X` does:
same output, same exit statuses, stdin, a session of their own, stopped whole."""
import os
import sys

from harness.lab.scenarios import lab_program
from harness.run.process import ForkedLabProgram, Subject, lab_module_of, program_subject
from harness.run.scenario import READY_LINE, fill

TIMEOUT = 10.0


def lab_argv(module, *arguments, port=0):
    return fill(lab_program(module, *arguments), host="127.0.0.1", port=port)


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def started_server(*arguments):
    server = ForkedLabProgram("server", lab_argv("harness.lab.tcp_server", *arguments)).start()
    port = int(server.wait_for_line(READY_LINE, TIMEOUT).group("port"))
    return server, port


def test_only_a_lab_programs_command_line_as_lab_program_writes_it_is_forked():
    assert lab_module_of(lab_argv("harness.lab.tcp_server")) == "harness.lab.tcp_server"
    assert lab_module_of(["/usr/bin/python3.9", "-u", "-m", "harness.lab.tcp_server"]) is None
    assert lab_module_of([sys.executable, "-u", "-m", "http.server"]) is None
    assert lab_module_of([sys.executable, "-u", "-m", "harness.lab.sub.module"]) is None
    assert lab_module_of([sys.executable, "-c", "import harness.lab.tcp_server"]) is None
    assert isinstance(program_subject("s", lab_argv("harness.lab.tcp_server")), ForkedLabProgram)
    other = program_subject("s", [sys.executable, "-c", "pass"])
    assert type(other) is Subject
    in_a_namespace = program_subject("s", lab_argv("harness.lab.tcp_server"), netns="elsewhere")
    assert type(in_a_namespace) is Subject and in_a_namespace.argv[1:4] == ["netns", "exec", "elsewhere"]


def test_a_forked_server_and_client_exchange_and_exit_by_themselves(tmp_path):
    server, port = started_server("--count", "1")
    try:
        assert os.getsid(server.pid) == server.pid
        client = ForkedLabProgram("client", lab_argv("harness.lab.tcp_client", "yp", port=port)).start()
        assert client.wait(TIMEOUT) == 0
        assert client.stdout_lines == ["client received 'thank you !'"]
        assert server.wait(TIMEOUT) == 0
        assert "server received 'yp' (2 bytes)" in server.stdout_lines
    finally:
        server.stop()
        client.stop()
    assert not server.stopped_by_harness and server.survivors == []
    assert children_of(os.getpid()) == []


def test_a_forked_programs_exit_status_and_error_line_are_its_own():
    client = ForkedLabProgram("client", lab_argv("harness.lab.tcp_client", "yp", port=0)).start()
    try:
        assert client.wait(TIMEOUT) == 2          # argparse's status for a usage error
    finally:
        client.stop()
    assert "--port 0 only makes sense for a server" in client.last_error_line()
    assert client.crashed()


def test_a_forked_client_reads_the_scenarios_stdin():
    server, port = started_server("--count", "1")
    try:
        client = ForkedLabProgram("client", lab_argv("harness.lab.tcp_client", port=port),
                                  stdin_text="from stdin\n").start()
        assert client.wait(TIMEOUT) == 0
        assert server.wait(TIMEOUT) == 0
    finally:
        server.stop()
        client.stop()
    assert "server received 'from stdin' (10 bytes)" in server.stdout_lines


def test_a_forked_server_serving_forever_is_stopped_with_its_session():
    server, _port = started_server()
    session = server.pid
    assert server.returncode is None
    assert server.stop() == 0                     # SIGTERM is the lab programs' normal way out
    assert server.stopped_by_harness and server.survivors == []
    assert server.session_members() == [] and session not in children_of(os.getpid())
