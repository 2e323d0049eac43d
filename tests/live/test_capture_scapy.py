"""The scapy backend end to end on loopback: what it writes, that nothing is doubled or lost,
and that its Python filter matches exactly what libpcap's compiled filter would."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from support import needs
from harness.run import tools
from harness.run.capture import CaptureError, CaptureUnavailable
from harness.run.capture import packet_socket
from harness.wire.pcapng import INTERFACE_STATISTICS, BlockSplitter, statistics
from harness.run.capture.packet_socket import PacketSocketCapture, probe_packet_socket
from harness.wire.decode import decode
from harness.wire.packet import ACK, FIN, RST, SYN, TCP, UDP, Packet
from harness.wire.reader import open_capture
from harness.run.settle import wait_tcp_settled

LOOPBACK = "127.0.0.1"
SOCKET_TIMEOUT_SECONDS = 5.0
START_PROVEN_BOUND_SECONDS = 5.0   # generous: proves the marker came out, not how fast
BULK_BYTES = 8 << 20


@pytest.fixture
def lo_capture() -> None:
    reason = probe_packet_socket("lo")
    if reason:
        pytest.skip(reason)


@pytest.fixture
def without_libpcap(monkeypatch) -> None:
    def missing(*_args, **_kwargs):
        raise packet_socket._LibpcapMissing("Cannot find libpcap.so library (simulated)")
    monkeypatch.setattr(packet_socket, "compile_with_libpcap", missing)


# --- traffic ---------------------------------------------------------------------------------------

def udp_pair() -> Tuple[socket.socket, socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((LOOPBACK, 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((LOOPBACK, 0))
    for sock in (server, client):
        sock.settimeout(SOCKET_TIMEOUT_SECONDS)
    return server, client


def udp_exchange(server: socket.socket, client: socket.socket, count: int, tag: bytes) -> List[Tuple[int, int, bytes]]:
    """Request/answer datagrams; returns (sport, dport, payload) of each, in the order they were sent."""
    server_port, client_port = server.getsockname()[1], client.getsockname()[1]
    sent = []
    for number in range(count):
        request = b"%s request %d" % (tag, number)
        client.sendto(request, (LOOPBACK, server_port))
        received, address = server.recvfrom(4096)
        assert received == request
        answer = b"%s answer %d" % (tag, number)
        server.sendto(answer, address)
        assert client.recv(4096) == answer
        sent += [(client_port, server_port, request), (server_port, client_port, answer)]
    return sent


def tcp_listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(1)
    listener.settimeout(SOCKET_TIMEOUT_SECONDS)
    return listener


def receive_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tcp_conversation(listener: socket.socket, request: bytes, answer: bytes) -> None:
    """Connect, send, answer, close both ends, and wait until the kernel has nothing left to send."""
    port = listener.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT_SECONDS)
    server, _ = listener.accept()
    server.settimeout(SOCKET_TIMEOUT_SECONDS)
    with client, server:
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        assert receive_all(server) == request
        server.sendall(answer)
        server.shutdown(socket.SHUT_WR)
        assert receive_all(client) == answer
    wait_tcp_settled(port, SOCKET_TIMEOUT_SECONDS)


def tcp_bulk(listener: socket.socket, data: bytes) -> None:
    """Send `data` one way as fast as loopback takes it, then close and settle."""
    port = listener.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port), timeout=SOCKET_TIMEOUT_SECONDS)
    server, _ = listener.accept()
    server.settimeout(SOCKET_TIMEOUT_SECONDS)
    failures: List[BaseException] = []

    def send() -> None:
        try:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except BaseException as error:
            failures.append(error)

    sender = threading.Thread(target=send, name="bulk-sender", daemon=True)
    with client, server:
        sender.start()
        assert receive_all(server) == data
        sender.join(timeout=SOCKET_TIMEOUT_SECONDS)
        assert not sender.is_alive(), f"the bulk sender did not finish within {SOCKET_TIMEOUT_SECONDS:g} s"
        assert not failures, failures
    wait_tcp_settled(port, SOCKET_TIMEOUT_SECONDS)


# --- reading the file back -------------------------------------------------------------------------

def packets_of(path: Path) -> List[Packet]:
    with open_capture(path) as capture:
        return [packet for frame, record in enumerate(capture, 1)
                for packet in [decode(record, frame)] if packet is not None]


def statistics_of(path: Path) -> List[Dict[str, int]]:
    splitter = BlockSplitter()
    blocks = list(splitter.feed(path.read_bytes()))
    assert splitter.pending == 0, f"{path} ends inside a block"
    return [statistics(block, splitter.endian) for kind, block in blocks if kind == INTERFACE_STATISTICS]


def tshark_frame_lengths(path: Path) -> List[int]:
    done = subprocess.run([needs.tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.len"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    problems = [line for line in done.stderr.splitlines() if "Running as user" not in line and line.strip()]
    assert not problems, problems
    return [int(line) for line in done.stdout.split()]


def assert_well_formed(capture: PacketSocketCapture, expected_filter_clause: str) -> None:
    """What every capture file of this backend must say about itself."""
    result = capture.result
    assert result.complete and result.path.exists()
    assert result.start_proven_after < START_PROVEN_BOUND_SECONDS
    with open_capture(result.path) as reader:
        records = list(reader)
        comments, interfaces = reader.comments, reader.interfaces
    assert len(records) == result.packets
    assert any("backend=scapy interface=lo" in comment for comment in comments), comments
    assert any(capture.prober.token.decode() in comment and str(capture.prober.port) in comment
               for comment in comments), comments
    [interface] = interfaces
    assert (interface.linktype, interface.name, interface.tsresol) == (1, "lo", 10**9)
    assert expected_filter_clause in (interface.filter or ""), interface.filter
    times = [record.time_ns for record in records]
    assert times == sorted(times), "timestamps go backwards"
    assert all(record.caplen == record.origlen for record in records), "a frame was cut short"
    assert not any(capture.prober.token in record.data for record in records), "a probe reached the file"
    # A real retransmission differs from its original at least in the IPv4 ID; a copy made by
    # the capture is identical to the byte.
    assert len({record.data for record in records}) == len(records), "a frame appears twice"
    [statistics] = statistics_of(result.path)
    assert statistics["dropped"] == 0 and result.dropped == 0
    assert statistics["received"] == result.received >= result.packets + result.probes_removed
    assert tshark_frame_lengths(result.path) == [record.origlen for record in records]


# --- tests -----------------------------------------------------------------------------------------

def test_probe_names_a_missing_interface() -> None:
    reason = probe_packet_socket("no-such-interface")
    assert reason and "no-such-interface" in reason and "\n" not in reason


@pytest.mark.capture
def test_probe_accepts_loopback(lo_capture) -> None:
    assert probe_packet_socket("lo") is None


def run_udp_scenario(tmp_path: Path) -> Tuple[PacketSocketCapture, List[Tuple[int, int, bytes]]]:
    """Datagrams on a filtered UDP port, with a TCP conversation beside them that the filter keeps out."""
    server, client = udp_pair()
    listener = tcp_listener()
    with server, client, listener:
        capture = PacketSocketCapture(tmp_path / "udp.pcapng", bpf=f"udp port {server.getsockname()[1]}")
        capture.start()
        sent = udp_exchange(server, client, 4, b"first")
        tcp_conversation(listener, b"not in the filter", b"nor this")
        sent += udp_exchange(server, client, 4, b"second")
        capture.stop()
    return capture, sent


@pytest.mark.capture
def test_udp_datagrams_are_captured_once_each_and_nothing_else(lo_capture, tmp_path) -> None:
    capture, sent = run_udp_scenario(tmp_path)
    assert_well_formed(capture, f"udp port {sent[0][1]}")
    assert [(p.proto, p.sport, p.dport, p.payload) for p in packets_of(capture.result.path)] == \
        [(UDP, *datagram) for datagram in sent]


@pytest.mark.capture
def test_python_filter_captures_the_same_when_libpcap_is_missing(lo_capture, without_libpcap, tmp_path) -> None:
    capture, sent = run_udp_scenario(tmp_path)
    assert capture.filtered_in_python
    assert_well_formed(capture, f"udp port {sent[0][1]}")
    assert [(p.proto, p.sport, p.dport, p.payload) for p in packets_of(capture.result.path)] == \
        [(UDP, *datagram) for datagram in sent]


def assert_one_clean_conversation(packets: List[Packet], request: bytes, answer: bytes) -> None:
    client_port = next(p.sport for p in packets if p.flags & SYN and not p.flags & ACK)
    assert all(p.proto == TCP for p in packets)
    assert [p.flags & (SYN | ACK) for p in packets if p.flags & SYN] == [SYN, SYN | ACK]
    assert sum(1 for p in packets if p.flags & FIN) == 2
    assert not any(p.flags & RST for p in packets)
    assert b"".join(p.payload for p in packets if p.sport == client_port) == request
    assert b"".join(p.payload for p in packets if p.sport != client_port) == answer


@pytest.mark.capture
@pytest.mark.parametrize("python_filter", [False, True], ids=["libpcap-filter", "python-filter"])
def test_tcp_conversation_is_captured_once_each(lo_capture, tmp_path, request, python_filter) -> None:
    if python_filter:
        request.getfixturevalue("without_libpcap")
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        with PacketSocketCapture(tmp_path / "tcp.pcapng", bpf=f"tcp port {port}") as capture:
            tcp_conversation(listener, b"hello over tcp", b"and back again")
    assert capture.filtered_in_python == python_filter
    assert_well_formed(capture, f"tcp port {port}")
    assert_one_clean_conversation(packets_of(capture.result.path), b"hello over tcp", b"and back again")


@pytest.mark.capture
def test_without_a_filter_each_loopback_packet_appears_once(lo_capture, tmp_path) -> None:
    server, client = udp_pair()
    tag = os.urandom(8).hex().encode()
    with server, client:
        with PacketSocketCapture(tmp_path / "all.pcapng", bpf="") as capture:
            sent = udp_exchange(server, client, 5, tag)
    with open_capture(capture.result.path) as reader:
        ours = [record.data for record in reader if tag in record.data]
        assert reader.interfaces[0].filter is None
    assert len(ours) == len(sent)
    for _sport, _dport, payload in sent:
        assert sum(frame.endswith(payload) for frame in ours) == 1, payload


def assert_stream_captured(packets: List[Packet], data: bytes) -> None:
    """Every byte the client sent is in the capture, at its place, with nothing missing in between.

    Loopback TCP does retransmit now and then (a tail loss probe when the receiver is slow); such
    a segment is real traffic and is counted apart, so the first transmissions must add up to
    exactly the bytes sent.
    """
    syn = next(p for p in packets if p.flags & SYN and not p.flags & ACK)
    first_byte = syn.seq + 1
    captured_up_to = 0
    first_transmission_bytes = 0
    resent_bytes = 0
    for segment in (p for p in packets if p.sport == syn.sport and p.payload_len):
        offset = (segment.seq - first_byte) % (1 << 32)
        assert segment.payload == data[offset:offset + segment.payload_len], \
            f"frame {segment.frame} differs from what was sent"
        assert offset <= captured_up_to, f"bytes {captured_up_to}-{offset} are missing before frame {segment.frame}"
        new_bytes = max(0, offset + segment.payload_len - captured_up_to)
        first_transmission_bytes += new_bytes
        resent_bytes += segment.payload_len - new_bytes
        captured_up_to = max(captured_up_to, offset + segment.payload_len)
    assert first_transmission_bytes == len(data), \
        f"{first_transmission_bytes} of {len(data)} bytes captured ({resent_bytes} more retransmitted)"


@pytest.mark.capture
def test_bulk_transfer_of_64k_frames_loses_nothing(lo_capture, tmp_path) -> None:
    data = os.urandom(BULK_BYTES)
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        with PacketSocketCapture(tmp_path / "bulk.pcapng", bpf=f"tcp port {port}") as capture:
            tcp_bulk(listener, data)
    assert_well_formed(capture, f"tcp port {port}")
    with open_capture(capture.result.path) as reader:
        largest_frame = max(record.origlen for record in reader)
    assert largest_frame > 65000, f"no 64 KiB frame in the transfer (largest {largest_frame} bytes)"
    assert_stream_captured(packets_of(capture.result.path), data)


@pytest.mark.capture
def test_a_filter_python_cannot_match_exactly_needs_libpcap(lo_capture, without_libpcap, tmp_path) -> None:
    capture = PacketSocketCapture(tmp_path / "x.pcapng", bpf="tcp port 1 and host 127.0.0.1")
    with pytest.raises(CaptureUnavailable) as raised:
        capture.start()
    assert tools.tool("libpcap").install in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.capture
def test_a_filter_libpcap_rejects_is_an_error_not_a_skip(lo_capture, tmp_path) -> None:
    capture = PacketSocketCapture(tmp_path / "x.pcapng", bpf="tcp port 70000")
    with pytest.raises(CaptureError) as raised:
        capture.start()
    assert not isinstance(raised.value, CaptureUnavailable)
    assert "70000" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.capture
def test_tcp_lab_scenario_passes_twenty_times_in_a_row(lo_capture, tmp_path) -> None:
    from harness.lab.scenarios import LAB_SCENARIOS
    from harness.run.runner import run_scenario
    for attempt in range(20):
        result = run_scenario(LAB_SCENARIOS["tcp-lab"], tmp_path / f"tcp-lab-{attempt}.pcapng", backend="scapy")
        assert result.ok, f"run {attempt + 1} of 20: {result.report()}"
        assert result.capture.start_proven_after < START_PROVEN_BOUND_SECONDS


# --- the Python filter against libpcap's own -------------------------------------------------------

class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PcapPkthdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


def libpcap_matcher(expression: str) -> Callable[[bytes], bool]:
    """libpcap's compiled filter, run by libpcap's own BPF interpreter."""
    library = ctypes.CDLL(needs.tool("libpcap"))
    library.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PcapPkthdr), ctypes.c_char_p]
    library.pcap_offline_filter.restype = ctypes.c_int
    instructions = packet_socket.compile_with_libpcap(expression, 1)
    array = (_BpfInsn * len(instructions))(*[_BpfInsn(*ins) for ins in instructions])
    program = _BpfProgram(len(instructions), ctypes.cast(array, ctypes.POINTER(_BpfInsn)))

    def matches(frame: bytes) -> bool:
        header = _PcapPkthdr(_Timeval(0, 0), len(frame), len(frame))
        return library.pcap_offline_filter(ctypes.byref(program), ctypes.byref(header), frame) != 0

    matches.keep_alive = array   # the program points into it
    return matches


def ethernet(ethertype: int, payload: bytes) -> bytes:
    return b"\x00" * 12 + struct.pack("!H", ethertype) + payload


def ipv4(proto: int, transport: bytes, fragment: int = 0, options: bytes = b"", ihl: int = 0) -> bytes:
    words = ihl or 5 + len(options) // 4
    return struct.pack("!BBHHHBBH4s4s", 0x40 | words, 0, 20 + len(options) + len(transport), 1, fragment, 64,
                       proto, 0, b"\x7f\0\0\1", b"\x7f\0\0\1") + options + transport


def ipv6(next_header: int, rest: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(rest), next_header, 64, b"\0" * 15 + b"\1",
                       b"\0" * 15 + b"\1") + rest


def transport(sport: int, dport: int) -> bytes:
    return struct.pack("!HH", sport, dport) + b"\0" * 16


def corpus() -> List[bytes]:
    """Frames around every decision the filters make, each also cut at every length."""
    ports = (80, 53, 4242)
    frames = [ethernet(0x0806, b"\0" * 28), ethernet(0x86DD, b"")]
    for proto in (TCP, UDP, 1):
        for sport in ports:
            for dport in ports:
                segment = transport(sport, dport)
                frames += [
                    ethernet(0x0800, ipv4(proto, segment)),
                    ethernet(0x0800, ipv4(proto, segment, options=b"\x01" * 8)),
                    ethernet(0x0800, ipv4(proto, segment, fragment=0x2000)),      # first fragment, more follow
                    ethernet(0x0800, ipv4(proto, segment, fragment=185)),         # a later fragment
                    ethernet(0x0800, ipv4(proto, segment, ihl=2)),                # nonsense IHL, as libpcap reads it
                    ethernet(0x86DD, ipv6(proto, segment)),
                    ethernet(0x86DD, ipv6(0, bytes([proto, 0, 1, 4, 0, 0, 0, 0]) + segment)),   # hop-by-hop first
                    ethernet(0x8100, struct.pack("!HH", 5, 0x0800) + ipv4(proto, segment)),     # tag still inline
                ]
    return [frame[:cut] for frame in frames for cut in range(len(frame) + 1)]


@pytest.mark.parametrize("expression", [
    "(tcp port 80) or (udp dst port 53)",
    "(udp port 80) or (udp dst port 53)",
    "(udp dst port 80) or (udp src port 53)",
    "(tcp src port 53) or (tcp port 80) or (udp port 4242)",
    "(udp port 0) or (udp dst port 65535)",
])
def test_python_filter_agrees_with_libpcap_frame_by_frame(expression) -> None:
    oracle = libpcap_matcher(expression)
    ours = packet_socket.python_filter(expression)
    assert ours is not None
    disagreements = [frame.hex() for frame in corpus() if ours(frame) != oracle(frame)]
    assert not disagreements, f"{len(disagreements)} frames differ, first {disagreements[0]}"
    assert any(oracle(frame) for frame in corpus()), "the corpus never matches: it proves nothing"


@pytest.mark.parametrize("expression", [
    "tcp port 80", "(tcp port 80) and (udp dst port 53)", "(tcp port 080) or (udp dst port 53)",
    "(port 80) or (udp dst port 53)", "(tcp port 70000) or (udp dst port 53)",
    "(tcp port 80 and host 127.0.0.1) or (udp dst port 53)", "(sctp port 80) or (udp dst port 53)",
])
def test_python_filter_refuses_what_it_cannot_match_exactly(expression) -> None:
    assert packet_socket.python_filter(expression) is None
