"""harness.testing's servers: ready when the kernel's table shows them listening, stopped whole."""
import os
import socket
import sys
import threading

import pytest

from harness.run import sockets
from harness.run.process import SubjectError
from harness.testing import serve, serve_callable, serve_program
from support.procfs import running_with


def threaded_echo(host, port):
    """A server with a thread per connection, as many users write one."""
    server = socket.create_server((host, port))

    def answer(connection):
        with connection:
            connection.sendall(connection.recv(1024)[::-1])

    while True:
        connection, _ = server.accept()
        threading.Thread(target=answer, args=(connection,)).start()


def forking(host, port):
    """The callable forks a worker that holds the socket; the parent waits for it."""
    server = socket.create_server((host, port))
    if os.fork() == 0:
        while True:
            connection, _ = server.accept()
            connection.sendall(b"from the worker")
            connection.close()
    os.wait()


def talk(port: int, data: bytes = b"abc") -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(data)
        return connection.recv(1024)


def test_a_threaded_callable_server_serves_and_is_stopped():
    with serve_callable(threaded_echo) as server:
        assert talk(server.port) == b"cba"
    assert server.subject.session_members() == [] and sockets.bound("tcp", server.port) == []
    assert server.subject.returncode is not None


def test_a_worker_forked_by_the_server_goes_with_it():
    server = serve_callable(forking)
    assert talk(server.port) == b"from the worker"
    members = server.subject.session_members()
    assert len(members) == 2, "the callable's process and its worker"
    server.stop()
    assert server.subject.session_members() == [] and sockets.bound("tcp", server.port) == []


def test_a_command_on_a_free_port_and_a_shell_string():
    marker = "serve-test-marker"
    with serve(f"{sys.executable} -m harness.lab.tcp_server --host {{host}} --port {{port}} --count 5") as server:
        assert talk(server.port, b"yp") == b"thank you !"
    with serve_program([sys.executable, "-c", "import socket, time; s = socket.socket(socket.AF_INET, "
                        "socket.SOCK_DGRAM); s.bind(('{host}', {port})); time.sleep(60)", marker],
                       proto="udp") as server:
        assert [s.local.port for s in sockets.bound("udp", server.port)] == [server.port]
    assert running_with(marker) == []


def test_a_server_that_dies_before_listening_says_so_with_its_last_error():
    with pytest.raises(SubjectError, match=r"exited \(exit 1\) before it would listen on port \d+; "
                                           r"its last error line: ValueError: no config"):
        serve_program([sys.executable, "-c", "raise ValueError('no config')"])


def test_a_port_already_held_is_refused_naming_the_holder():
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(SubjectError, match=rf"port {port} \(tcp\) is already in use by pid {os.getpid()} "):
            serve_program([sys.executable, "-c", "pass"], port=port)
