"""The dumpcap backend keeps its promises: proven start and end, no probes, no drops, nothing half-written."""
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from harness.run.capture import CaptureIncomplete, CaptureUnavailable, make_capture, partial_paths
from harness.run.capture.dumpcap import probe_dumpcap
from harness.wire.reader import open_capture
from harness.pytest_plugin import require_capture
from harness.analysis.pipeline import analyse, read_packets

pytestmark = pytest.mark.capture
ROUNDS = 10


@pytest.fixture(scope="module", autouse=True)
def dumpcap_can_capture():
    require_capture("dumpcap")


@pytest.fixture
def udp_pair():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield server, client
    server.close()
    client.close()


def udp_payloads(path):
    return [p.payload for p in read_packets(path) if p.proto == 17]


def test_a_datagram_sent_the_moment_start_returns_is_captured(tmp_path, udp_pair):
    server, client = udp_pair
    port = server.getsockname()[1]
    for round_number in range(ROUNDS):
        path = tmp_path / f"start-{round_number}.pcapng"
        capture = make_capture("dumpcap", path, bpf=f"udp port {port}").start()
        client.sendto(b"first %d" % round_number, ("127.0.0.1", port))
        capture.stop()
        assert udp_payloads(path) == [b"first %d" % round_number], f"round {round_number}"


def test_a_datagram_sent_just_before_stop_is_captured(tmp_path, udp_pair):
    server, client = udp_pair
    port = server.getsockname()[1]
    for round_number in range(ROUNDS):
        path = tmp_path / f"stop-{round_number}.pcapng"
        capture = make_capture("dumpcap", path, bpf=f"udp port {port}").start()
        for i in range(50):
            client.sendto(b"burst %d" % i, ("127.0.0.1", port))
        capture.stop()
        assert udp_payloads(path) == [b"burst %d" % i for i in range(50)], f"round {round_number}"


def test_probes_are_left_out_and_the_file_says_how_it_was_made(tmp_path, udp_pair):
    server, client = udp_pair
    port = server.getsockname()[1]
    path = tmp_path / "made.pcapng"
    with make_capture("dumpcap", path, bpf=f"udp port {port}") as capture:
        client.sendto(b"hello", ("127.0.0.1", port))
    result = capture.result
    assert result.complete and result.packets == 1 and result.dropped == 0
    assert result.probes_removed >= 2 and result.received >= result.packets + result.probes_removed - 10
    assert not partial_paths(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with open_capture(path) as saved:
        records = list(saved)
        comments = " ".join(c for section in saved.sections for c in section.comments)
        filters = [i.filter for i in saved.interfaces]
    assert len(records) == 1
    assert f"filter='udp port {port}'" in comments and capture.prober.token.decode() in comments
    assert filters == [f"(udp port {port}) or (udp dst port {capture.prober.port})"]
    tshark = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "udp.dstport", "-e", "data.len"],
                            capture_output=True, text=True, check=True)
    assert tshark.stdout.split() == [str(port), "5"]


def test_a_bulk_transfer_of_64k_frames_is_captured_without_drops(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    total = 8 << 20
    received = []

    def drain():
        connection, _ = listener.accept()
        with connection:
            while chunk := connection.recv(1 << 20):
                received.append(len(chunk))

    path = tmp_path / "bulk.pcapng"
    with make_capture("dumpcap", path, bpf=f"tcp port {port}") as capture:
        reader = threading.Thread(target=drain)
        reader.start()
        with socket.create_connection(("127.0.0.1", port)) as sender:
            sender.sendall(b"x" * total)
        reader.join(timeout=30)
        assert not reader.is_alive(), "the bulk receiver did not finish within 30 s"
        from harness.run.settle import wait_tcp_settled
        wait_tcp_settled(port, 5)
    listener.close()
    (conversation,) = analyse(path).conversations
    # By sequence space: a loopback retransmission under load must not count twice.
    assert sum(received) == total and conversation.zeek.orig.payload_bytes == total
    assert max(s.length for s in conversation.segments) > 32768, "loopback should have carried large frames"
    assert capture.result.dropped == 0


def test_abort_leaves_only_a_partial_file_and_no_dumpcap(tmp_path):
    path = tmp_path / "aborted.pcapng"
    capture = make_capture("dumpcap", path, bpf="udp port 9").start()
    pid = capture._process.pid
    capture.abort()
    assert not path.exists() and capture.partial.exists()
    assert capture._process.poll() is not None
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_drops_fail_the_capture_and_keep_it_partial(tmp_path, udp_pair, monkeypatch):
    from harness.wire import pcapng
    monkeypatch.setattr(pcapng, "statistics", lambda block, endian: {"received": 9, "dropped": 3})
    path = tmp_path / "dropped.pcapng"
    capture = make_capture("dumpcap", path, bpf="udp port 9").start()
    with pytest.raises(CaptureIncomplete, match=r"dumpcap dropped 3 packets on lo \(pcap:\d+/dumpcap:\d+/flushed:\d+/"
                                                r"ps_ifdrop:\d+\); the partial capture is .*\.partial"):
        capture.stop()
    assert capture.partial.exists() and not path.exists()


def test_missing_dumpcap_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DUMPCAP", "/nonexistent/dumpcap")
    reason = probe_dumpcap()
    assert reason == "HARNESS_DUMPCAP=/nonexistent/dumpcap is not an executable dumpcap: fix the variable or unset it"
    with pytest.raises(CaptureUnavailable, match="HARNESS_DUMPCAP"):
        make_capture("dumpcap", tmp_path / "x.pcapng").start()
    assert not (tmp_path / "x.pcapng").exists()


def test_a_bad_interface_is_reported_in_dumpcaps_words(tmp_path):
    with pytest.raises(CaptureUnavailable) as error:
        make_capture("dumpcap", tmp_path / "x.pcapng", interface="no-such-if0").start()
    assert str(error.value).startswith("dumpcap failed: ") and "\n" not in str(error.value)
    assert "no-such-if0" in str(error.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_no_capture_permission_says_how_to_grant_it():
    script = "from harness.run.capture.dumpcap import probe_dumpcap; print(probe_dumpcap())"
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd="/", env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dumpcap may not capture here (")
    assert "setcap cap_net_raw,cap_net_admin+eip" in done.stdout


def test_after_the_end_is_proven_nothing_more_is_captured_and_the_name_waits_for_finish(tmp_path, udp_pair):
    server, client = udp_pair
    port = server.getsockname()[1]
    path = tmp_path / "split.pcapng"
    capture = make_capture("dumpcap", path, bpf=f"udp port {port}").start()
    client.sendto(b"inside", ("127.0.0.1", port))
    capture.prove_ended()
    # What a server's stop makes the kernel send comes here: after the end, never in the file.
    client.sendto(b"after the end", ("127.0.0.1", port))
    assert not path.exists() and capture.partial.exists()
    result = capture.finish()
    assert result.complete and result.dropped == 0
    assert udp_payloads(path) == [b"inside"]
    assert not partial_paths(path)


def test_a_capture_begun_and_discarded_before_its_start_is_proven_leaves_no_file(tmp_path):
    path = tmp_path / "discarded.pcapng"
    capture = make_capture("dumpcap", path, bpf="udp port 9").begin()
    capture.abort(discard=True)
    assert list(tmp_path.iterdir()) == []
    assert capture._process.returncode is not None


def test_a_start_proven_after_begin_catches_the_first_datagram(tmp_path, udp_pair):
    server, client = udp_pair
    port = server.getsockname()[1]
    for round_number in range(ROUNDS):
        path = tmp_path / f"begun-{round_number}.pcapng"
        capture = make_capture("dumpcap", path, bpf=f"udp port {port}").begin().prove_started()
        client.sendto(b"first %d" % round_number, ("127.0.0.1", port))
        capture.stop()
        assert udp_payloads(path) == [b"first %d" % round_number], f"round {round_number}"
