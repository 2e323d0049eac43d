"""Benchmark: harness summary against scapy, dpkt, pyshark and tshark on generated captures, show,
check and explain against tshark's flow graph, summary and check with -j over many files, then one
TCP lab scenario end to end. It prints its figures with their targets; it never fails on them.

    .venv/bin/python bench/bench.py [--packets 200000] [--workload lab|bulk|both] [--repeat 3]
                                    [--skip-scenario] [--skip-stages] [--skip-commands] [--skip-jobs]
                                    [--scenario-runs 20] [--pyshark-packets 5000] [--out-dir DIR]
                                    [--tools harness,scapy,dpkt,pyshark,tshark]

Two workloads, each measured in turn. lab: N/11 copies of the lab's TCP conversation
(captures/lab/tcp-lab.pcapng: handshake with options, "yp", ACK, "thank you !", ACK, server FIN,
ACK, client FIN, ACK), each with its own client address, port, ISNs and TCP timestamps. bulk: long
transfers (about 1,000 packets each) with loss, duplicates and reordering, as captured at the
receiver. Both are written as classic microsecond pcap (Ethernet), as `dumpcap -P` writes, and as
pcapng, and cached in --out-dir by size. For -j, the lab workload is also cut into 30 files.

Every tool runs as its own subprocess, so its peak RSS (from wait4) is its own; the figures are the
median of --repeat runs, taken round-robin so a noisy moment does not land on one tool. pyshark runs
on the first --pyshark-packets packets and its time is scaled to the full size. A harness command
that argparse refuses (an option not there yet) is shown as not available.

Exit status: 0 whatever the figures say; 1 when a tool or the scenario could not be run.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

GENERATOR_VERSION = 1           # part of the cache key: bump when the bytes written change
PACKETS_PER_CONVERSATION = 11
RSS_TARGET_PACKETS = 1_000_000

# -- the workload ---------------------------------------------------------------------------

LAB_SERVER_IP = 0x7F000001
LAB_SERVER_PORT = 41119
# Linux's default ephemeral range, less the server's own port so no conversation talks to itself.
CLIENT_PORTS = tuple(port for port in range(32768, 61000) if port != LAB_SERVER_PORT)
FIRST_CLIENT_IP = 0x7F000001
START_SECONDS = 1795567162      # the second tcp-lab.pcapng was captured in

ETHERNET_HEADER = bytes(12) + b"\x08\x00"     # loopback: zero MACs, IPv4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144                # dumpcap's default
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10

IP_TCP_FIELDS = "!BBHHHBBHIIHHIIBBHHH"
# SYN options as Linux sends them: MSS 65495, SACK permitted, timestamps, NOP, window scale 10.
SYN_SEGMENT = struct.Struct(IP_TCP_FIELDS + "IIIII")
SYN_OPTION_WORDS = (0x0204FFD7, 0x0402080A, 0x0103030A)
# Every later segment: NOP, NOP, timestamps.
TIMESTAMP_SEGMENT = struct.Struct(IP_TCP_FIELDS + "III")
TIMESTAMP_OPTION_WORD = 0x0101080A
PCAP_RECORD = struct.Struct("<IIII")
PCAPNG_EPB_HEAD = struct.Struct("<IIIIIII")
PCAPNG_BLOCK_TAIL = struct.Struct("<I")


@dataclass(frozen=True)
class LabSegment:
    from_client: bool
    flags: int
    window: int
    seq: int                    # relative to the sender's ISN
    ack: Optional[int]          # relative to the receiver's ISN; None: no ACK flag, field 0
    payload: bytes
    tsval: int                  # sender's TSval = its base + this
    tsecr: Optional[int]        # receiver's base + this; None: 0 (the SYN has nothing to echo)
    ip_id: Optional[int]        # sender's IP ID base + this; None: 0, as Linux sends outside a flow
    micros: int                 # time since the SYN in tcp-lab.pcapng
    # The TIME-WAIT ACK is built by the kernel outside the socket, with its checksum complete.
    full_checksum: bool = False


# The eleven frames of captures/lab/tcp-lab.pcapng, field for field.
LAB_SEGMENTS: Tuple[LabSegment, ...] = (
    LabSegment(True, SYN, 65495, 0, None, b"", 0, None, 0, 0),
    LabSegment(False, SYN | ACK, 65483, 0, 1, b"", 0, 0, None, 13),
    LabSegment(True, ACK, 64, 1, 1, b"", 0, 0, 1, 27),
    LabSegment(True, PSH | ACK, 64, 1, 1, b"yp", 1, 0, 2, 194),
    LabSegment(False, ACK, 64, 1, 3, b"", 1, 1, 0, 202),
    LabSegment(False, PSH | ACK, 64, 1, 3, b"thank you !", 1, 1, 1, 360),
    LabSegment(True, ACK, 64, 3, 12, b"", 1, 1, 3, 368),
    LabSegment(False, FIN | ACK, 64, 12, 3, b"", 1, 1, 2, 468),
    LabSegment(True, ACK, 64, 3, 13, b"", 1, 1, 4, 495),
    LabSegment(True, FIN | ACK, 64, 3, 13, b"", 1, 1, 5, 516),
    LabSegment(False, ACK, 64, 13, 4, b"", 1, 1, None, 523, full_checksum=True),
)
assert len(LAB_SEGMENTS) == PACKETS_PER_CONVERSATION


def _fold(total: int) -> int:
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


def _with_tcp_checksum(ip_packet: bytes, pseudo_header_sum: int) -> bytes:
    segment = ip_packet[20:] + b"\0" * (len(ip_packet) % 2)
    total = pseudo_header_sum + sum(struct.unpack(f"!{len(segment) // 2}H", segment))
    return ip_packet[:36] + struct.pack("!H", ~_fold(total) & 0xFFFF) + ip_packet[38:]


@dataclass(frozen=True)
class LabConversation:
    client_ip: int
    client_port: int
    client_isn: int
    server_isn: int
    client_tsval: int
    server_tsval: int
    client_ip_id: int
    server_ip_id: int
    server_ip: int = LAB_SERVER_IP
    server_port: int = LAB_SERVER_PORT


def lab_frames(conversation: LabConversation) -> List[bytes]:
    """The eleven Ethernet frames of one lab conversation.

    IP header checksums are real. TCP checksums are what a loopback capture shows: the kernel
    leaves the pseudo-header sum there for "hardware" that never runs (CHECKSUM_PARTIAL), except
    in the TIME-WAIT ACK. Byte for byte tcp-lab.pcapng given its addresses, ISNs, TSvals and IP IDs.
    """
    c = conversation
    addresses = _fold((c.client_ip >> 16) + (c.client_ip & 0xFFFF) + (c.server_ip >> 16) + (c.server_ip & 0xFFFF))
    frames = []
    for segment in LAB_SEGMENTS:
        if segment.from_client:
            src, dst, sport, dport = c.client_ip, c.server_ip, c.client_port, c.server_port
            own_isn, peer_isn, own_ts, peer_ts, own_id = (c.client_isn, c.server_isn, c.client_tsval,
                                                          c.server_tsval, c.client_ip_id)
        else:
            src, dst, sport, dport = c.server_ip, c.client_ip, c.server_port, c.client_port
            own_isn, peer_isn, own_ts, peer_ts, own_id = (c.server_isn, c.client_isn, c.server_tsval,
                                                          c.client_tsval, c.server_ip_id)
        is_syn = bool(segment.flags & SYN)
        tcp_length = (40 if is_syn else 32) + len(segment.payload)
        ip_length = 20 + tcp_length
        ip_id = 0 if segment.ip_id is None else (own_id + segment.ip_id) & 0xFFFF
        ip_checksum = ~_fold(0x4500 + 0x4000 + 0x4006 + ip_length + ip_id + addresses) & 0xFFFF
        tcp_checksum = 0 if segment.full_checksum else _fold(addresses + 6 + tcp_length)
        seq = (own_isn + segment.seq) & 0xFFFFFFFF
        ack = 0 if segment.ack is None else (peer_isn + segment.ack) & 0xFFFFFFFF
        tsval = (own_ts + segment.tsval) & 0xFFFFFFFF
        tsecr = 0 if segment.tsecr is None else (peer_ts + segment.tsecr) & 0xFFFFFFFF
        header = (0x45, 0, ip_length, ip_id, 0x4000, 64, 6, ip_checksum, src, dst,
                  sport, dport, seq, ack, (tcp_length - len(segment.payload)) << 2, segment.flags,
                  segment.window, tcp_checksum, 0)
        if is_syn:
            packed = SYN_SEGMENT.pack(*header, SYN_OPTION_WORDS[0], SYN_OPTION_WORDS[1], tsval, tsecr,
                                      SYN_OPTION_WORDS[2])
        else:
            packed = TIMESTAMP_SEGMENT.pack(*header, TIMESTAMP_OPTION_WORD, tsval, tsecr)
        packed += segment.payload
        if segment.full_checksum:
            packed = _with_tcp_checksum(packed, addresses + 6 + tcp_length)
        frames.append(ETHERNET_HEADER + packed)
    return frames


def lab_conversations(count: int, seed: int = 1) -> Iterator[Tuple[int, LabConversation, float]]:
    """(start in microseconds since START_SECONDS, the conversation, its pace) for `count` conversations.

    Deterministic, and every conversation's draws come in order, so a smaller workload is exactly
    the start of a larger one. Conversations follow one another without overlapping, at the lab's
    pace give or take, so timestamps only increase.
    """
    rng = random.Random(seed)
    start = 0
    for index in range(count):
        block, port_index = divmod(index, len(CLIENT_PORTS))
        conversation = LabConversation(
            client_ip=FIRST_CLIENT_IP + block, client_port=CLIENT_PORTS[port_index],
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32),
            client_tsval=rng.getrandbits(31), server_tsval=rng.getrandbits(32),
            client_ip_id=rng.getrandbits(16), server_ip_id=rng.getrandbits(16))
        pace = rng.uniform(0.8, 1.6)
        yield start, conversation, pace
        start += int(LAB_SEGMENTS[-1].micros * pace) + rng.randrange(200, 2000)


def pcap_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)


def pcapng_header() -> bytes:
    section = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    if_name = struct.pack("<HH", 2, 2) + b"lo\0\0"          # microsecond if_tsresol is the default
    options = if_name + struct.pack("<HH", 0, 0)
    interface_length = 20 + len(options)
    interface = struct.pack("<IIHHI", 1, interface_length, LINKTYPE_ETHERNET, 0, SNAPLEN) + options + \
        PCAPNG_BLOCK_TAIL.pack(interface_length)
    return section + interface


@dataclass(frozen=True)
class Workload:
    kind: str                   # "lab" or "bulk"
    pcap: Path
    pcapng: Path
    conversations: int
    packets: int


def conversations_for(packets: int) -> int:
    return max(1, math.ceil(packets / PACKETS_PER_CONVERSATION))


def _write_capture(pcap_path: Path, pcapng_path: Path, frames: Iterator[Tuple[int, bytes]]) -> int:
    """Write (microseconds since the epoch, frame) as classic pcap and as pcapng; the packets written.
    Written beside the final names and renamed, so an interrupted run never leaves a short cached file."""
    pcap_path.parent.mkdir(parents=True, exist_ok=True)
    partial_pcap = pcap_path.with_suffix(".pcap.partial")
    partial_pcapng = pcapng_path.with_suffix(".pcapng.partial")
    written = 0
    with open(partial_pcap, "wb") as pcap, open(partial_pcapng, "wb") as pcapng:
        pcap.write(pcap_header())
        pcapng.write(pcapng_header())
        pcap_chunk: List[bytes] = []
        pcapng_chunk: List[bytes] = []
        for micros, frame in frames:
            length = len(frame)
            seconds, fraction = divmod(micros, 1_000_000)
            pcap_chunk.append(PCAP_RECORD.pack(seconds, fraction, length, length))
            pcap_chunk.append(frame)
            padding = -length % 4
            block_length = 32 + length + padding
            pcapng_chunk.append(PCAPNG_EPB_HEAD.pack(6, block_length, 0, micros >> 32, micros & 0xFFFFFFFF,
                                                     length, length))
            pcapng_chunk.append(frame + bytes(padding) + PCAPNG_BLOCK_TAIL.pack(block_length))
            written += 1
            if len(pcap_chunk) >= 100_000:
                pcap.write(b"".join(pcap_chunk))
                pcapng.write(b"".join(pcapng_chunk))
                pcap_chunk.clear()
                pcapng_chunk.clear()
        pcap.write(b"".join(pcap_chunk))
        pcapng.write(b"".join(pcapng_chunk))
    partial_pcap.rename(pcap_path)
    partial_pcapng.rename(pcapng_path)
    return written


def write_workload(out_dir: Path, packets: int) -> Workload:
    """The lab workload of at least `packets` packets, from the cache when it is there."""
    conversations = conversations_for(packets)
    stem = f"lab-tcp-{conversations * PACKETS_PER_CONVERSATION}-v{GENERATOR_VERSION}"
    workload = Workload("lab", out_dir / f"{stem}.pcap", out_dir / f"{stem}.pcapng", conversations,
                        conversations * PACKETS_PER_CONVERSATION)
    if workload.pcap.exists() and workload.pcapng.exists():
        return workload

    def frames() -> Iterator[Tuple[int, bytes]]:
        for start, conversation, pace in lab_conversations(conversations):
            for segment, frame in zip(LAB_SEGMENTS, lab_frames(conversation)):
                yield START_SECONDS * 1_000_000 + start + int(segment.micros * pace), frame

    _write_capture(workload.pcap, workload.pcapng, frames())
    return workload


# -- the long-flow workload -----------------------------------------------------------------------
# Bulk transfers: the client sends ~660 full segments, the server acknowledges every second one
# (delayed ACK) and at once when data is out of order, as Linux does. The capture is taken at the
# receiver, so a segment lost on the way is missing where it was sent; the three segments after it
# each draw a duplicate ACK, and its fast retransmission comes after the third. Some segments are
# seen twice (a spurious retransmission), some swapped with the next (reordering on the path).

BULK_GENERATOR_VERSION = 1
BULK_SERVER_PORT = 5201         # iperf3's
BULK_MSS = 1448                 # Ethernet's 1500 less IPv4, TCP and the timestamp option
BULK_SEGMENTS = (600, 720)      # data segments per transfer: about 1,000 packets with the ACKs
BULK_LOSS, BULK_DUPLICATE, BULK_REORDER = 0.01, 0.005, 0.005
BULK_PAYLOAD = bytes(range(256)) * (BULK_MSS // 256 + 1)


@dataclass(frozen=True)
class BulkPacket:
    from_client: bool
    flags: int
    seq: int                    # relative to the sender's ISN
    ack: int                    # relative to the receiver's ISN
    length: int                 # payload bytes
    micros: int                 # since the transfer's SYN


def bulk_plan(rng: random.Random) -> List[BulkPacket]:
    """One transfer's packets in capture order, drawn from rng: handshake, data with loss, teardown."""
    plan = [BulkPacket(True, SYN, 0, 0, 0, 0), BulkPacket(False, SYN | ACK, 0, 1, 0, 30),
            BulkPacket(True, ACK, 1, 1, 0, 60)]
    now = 60
    count = rng.randint(*BULK_SEGMENTS)
    order: List[int] = []               # the client's segments as the capture sees them
    pending: List[Tuple[int, int]] = []     # (lost segment, segments still to pass before its retransmission)
    index = 0
    while index < count or pending:
        if index < count:
            draw = rng.random()
            if draw < BULK_LOSS:
                pending.append((index, 3))
            elif draw < BULK_LOSS + BULK_DUPLICATE:
                order += [index, index]
            elif draw < BULK_LOSS + BULK_DUPLICATE + BULK_REORDER and index + 1 < count:
                order += [index + 1, index]
                index += 1
            else:
                order.append(index)
            index += 1
            passed = 1
        else:
            passed = 3                  # nothing left to send: the retransmission timer fires instead
        due = [lost for lost, left in pending if left <= passed]
        pending = [(lost, left - passed) for lost, left in pending if left > passed]
        order += due
    received = set()
    next_expected = 0                   # in segments
    unacked = 0
    last_segment = count * BULK_MSS
    for segment in order:
        now += rng.randint(8, 20)
        plan.append(BulkPacket(True, ACK | (PSH if segment == count - 1 else 0), 1 + segment * BULK_MSS, 1,
                               BULK_MSS, now))
        filled_hole = segment == next_expected and any(s > segment for s in received)
        received.add(segment)
        if segment == next_expected:
            while next_expected in received:
                next_expected += 1
            unacked += 1
            if not filled_hole and unacked < 2 and next_expected < count:
                continue
        unacked = 0
        now += rng.randint(3, 6)
        plan.append(BulkPacket(False, ACK, 1, 1 + min(next_expected * BULK_MSS, last_segment), 0, now))
    end = 1 + last_segment
    for from_client, flags, seq, ack in ((True, FIN | ACK, end, 1), (False, ACK, 1, end + 1),
                                         (False, FIN | ACK, 1, end + 1), (True, ACK, end + 1, 2)):
        now += rng.randint(20, 60)
        plan.append(BulkPacket(from_client, flags, seq, ack, 0, now))
    return plan


def bulk_frames(conversation: LabConversation, plan: Sequence[BulkPacket]) -> Iterator[Tuple[int, bytes]]:
    """(micros since the transfer's SYN, Ethernet frame) for each packet of the plan; checksums as in
    lab_frames: real IP header checksums, loopback's partial TCP checksums."""
    c = conversation
    addresses = _fold((c.client_ip >> 16) + (c.client_ip & 0xFFFF) + (c.server_ip >> 16) + (c.server_ip & 0xFFFF))
    ip_ids = [c.server_ip_id, c.client_ip_id]
    for packet in plan:
        if packet.from_client:
            src, dst, sport, dport = c.client_ip, c.server_ip, c.client_port, c.server_port
            own_isn, peer_isn, own_ts, peer_ts = c.client_isn, c.server_isn, c.client_tsval, c.server_tsval
        else:
            src, dst, sport, dport = c.server_ip, c.client_ip, c.server_port, c.client_port
            own_isn, peer_isn, own_ts, peer_ts = c.server_isn, c.client_isn, c.server_tsval, c.client_tsval
        is_syn = bool(packet.flags & SYN)
        tcp_length = (40 if is_syn else 32) + packet.length
        ip_length = 20 + tcp_length
        ip_id = ip_ids[packet.from_client]
        ip_ids[packet.from_client] = (ip_id + 1) & 0xFFFF
        ip_checksum = ~_fold(0x4500 + 0x4000 + 0x4006 + ip_length + ip_id + addresses) & 0xFFFF
        tcp_checksum = _fold(addresses + 6 + tcp_length)
        seq = (own_isn + packet.seq) & 0xFFFFFFFF
        ack = 0 if packet.flags == SYN else (peer_isn + packet.ack) & 0xFFFFFFFF
        milliseconds = packet.micros // 1000
        tsval = (own_ts + milliseconds) & 0xFFFFFFFF
        tsecr = 0 if packet.flags == SYN else (peer_ts + milliseconds) & 0xFFFFFFFF
        window = (65495 if packet.from_client else 65483) if is_syn else 64 if packet.from_client else 2048
        header = (0x45, 0, ip_length, ip_id, 0x4000, 64, 6, ip_checksum, src, dst,
                  sport, dport, seq, ack, (tcp_length - packet.length) << 2, packet.flags,
                  window, tcp_checksum, 0)
        if is_syn:
            packed = SYN_SEGMENT.pack(*header, SYN_OPTION_WORDS[0], SYN_OPTION_WORDS[1], tsval, tsecr,
                                      SYN_OPTION_WORDS[2])
        else:
            packed = TIMESTAMP_SEGMENT.pack(*header, TIMESTAMP_OPTION_WORD, tsval, tsecr)
        yield packet.micros, ETHERNET_HEADER + packed + BULK_PAYLOAD[:packet.length]


def bulk_transfers(packets: int, seed: int = 2) -> Iterator[Tuple[int, LabConversation, List[BulkPacket]]]:
    """(start in microseconds since START_SECONDS, the conversation, its plan) until at least `packets`
    packets. Deterministic, draws in order, so a smaller workload is the start of a larger one;
    transfers follow one another, so time only increases."""
    rng = random.Random(seed)
    start = total = index = 0
    while total < packets:
        block, port_index = divmod(index, len(CLIENT_PORTS))
        conversation = LabConversation(
            client_ip=FIRST_CLIENT_IP + block, client_port=CLIENT_PORTS[port_index],
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32),
            client_tsval=rng.getrandbits(31), server_tsval=rng.getrandbits(32),
            client_ip_id=rng.getrandbits(16), server_ip_id=rng.getrandbits(16), server_port=BULK_SERVER_PORT)
        plan = bulk_plan(rng)
        yield start, conversation, plan
        total += len(plan)
        index += 1
        start += plan[-1].micros + rng.randrange(1000, 5000)


def write_bulk_workload(out_dir: Path, packets: int) -> Workload:
    """The long-flow workload of at least `packets` packets, from the cache when it is there. Cached by
    the size asked for, with its counts beside it: planning a million packets again only to name the
    file would take seconds."""
    stem = f"bulk-tcp-{packets}-v{BULK_GENERATOR_VERSION}"
    counts = out_dir / f"{stem}.json"
    pcap, pcapng = out_dir / f"{stem}.pcap", out_dir / f"{stem}.pcapng"
    if pcap.exists() and pcapng.exists() and counts.exists():
        known = json.loads(counts.read_text())
        return Workload("bulk", pcap, pcapng, known["conversations"], known["packets"])
    transfers = 0

    def frames() -> Iterator[Tuple[int, bytes]]:
        nonlocal transfers
        for start, conversation, plan in bulk_transfers(packets):
            transfers += 1
            base = START_SECONDS * 1_000_000 + start
            for micros, frame in bulk_frames(conversation, plan):
                yield base + micros, frame

    written = _write_capture(pcap, pcapng, frames())
    partial = counts.with_suffix(".json.partial")
    partial.write_text(json.dumps({"packets": written, "conversations": transfers}))
    partial.rename(counts)
    return Workload("bulk", pcap, pcapng, transfers, written)


WORKLOADS = {"lab": write_workload, "bulk": write_bulk_workload}


# -- the peers' analyses, each run in its own process (bench.py --worker TOOL FILE) ---------------

class NotInstalled(Exception):
    pass


WORKER_NOT_INSTALLED = 3
INSTALL_HINTS = {"dpkt": "pip install dpkt", "scapy": "pip install scapy", "pyshark": "pip install pyshark"}


def _tally(conversations: dict, src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int,
           length: int) -> None:
    """Group a TCP segment into its conversation: what every peer does with what it extracted."""
    a, b = (src, sport), (dst, dport)
    key = (a, b) if a <= b else (b, a)
    record = conversations.get(key)
    if record is None:
        # originator, packets each way, payload bytes each way, flags seen, last seq/ack each way
        record = conversations[key] = [a, [0, 0], [0, 0], 0, [None, None], [None, None]]
    side = 0 if a == record[0] else 1
    record[1][side] += 1
    record[2][side] += length
    record[3] |= flags
    record[4][side] = seq
    record[5][side] = ack


def analyse_with_scapy(path: str) -> Tuple[int, dict]:
    try:
        from scapy.layers.inet import IP, TCP
        from scapy.utils import rdpcap
    except ImportError as error:
        raise NotInstalled(str(error)) from None
    conversations: dict = {}
    packets = rdpcap(path)
    count = 0
    for packet in packets:
        if TCP not in packet:
            continue
        ip, tcp = packet[IP], packet[TCP]
        _tally(conversations, ip.src, tcp.sport, ip.dst, tcp.dport, int(tcp.flags), tcp.seq, tcp.ack,
               len(tcp.payload))
        count += 1
    return count, conversations


def analyse_with_dpkt(path: str) -> Tuple[int, dict]:
    try:
        import dpkt
    except ImportError as error:
        raise NotInstalled(str(error)) from None
    import socket
    conversations: dict = {}
    count = 0
    with open(path, "rb") as file:
        pcapng = file.read(4) == b"\x0a\x0d\x0d\x0a"
        file.seek(0)
        reader = dpkt.pcapng.Reader(file) if pcapng else dpkt.pcap.Reader(file)
        for _ts, frame in reader:
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            _tally(conversations, socket.inet_ntoa(ip.src), tcp.sport, socket.inet_ntoa(ip.dst), tcp.dport,
                   tcp.flags, tcp.seq, tcp.ack, len(tcp.data))
            count += 1
    return count, conversations


def analyse_with_pyshark(path: str) -> Tuple[int, dict]:
    try:
        import pyshark
    except ImportError as error:
        raise NotInstalled(str(error)) from None
    conversations: dict = {}
    count = 0
    capture = pyshark.FileCapture(path, use_json=True, keep_packets=False)
    try:
        for packet in capture:
            if "TCP" not in packet:
                continue
            ip, tcp = packet.ip, packet.tcp
            _tally(conversations, str(ip.src), int(tcp.srcport), str(ip.dst), int(tcp.dstport), int(tcp.flags, 16),
                   int(tcp.seq_raw), int(tcp.ack_raw), int(tcp.len))
            count += 1
    finally:
        capture.close()
    return count, conversations


ANALYSES = {"scapy": analyse_with_scapy, "dpkt": analyse_with_dpkt, "pyshark": analyse_with_pyshark}


# -- where harness summary's time goes ------------------------------------------------------------
# Each harness stage does what the one before it does, and more; each runs in its own process, like
# the tools. The last, not the harness, shows what pure Python costs for the least work per packet.

def stage_floor(path: str) -> Tuple[int, dict]:
    """The least per-packet work pure Python can do for a conversation summary: one unpack of the
    record header, one of the Ethernet/IPv4/TCP fields (harness.wire.decode's fast-path layout), and a
    direction-independent dict key. Little-endian microsecond pcap of Ethernet/IPv4/TCP only: the
    workload, nothing else."""
    import mmap
    record_header = struct.Struct("<IIII").unpack_from
    fields = struct.Struct("!12xHBxHxxHxB2x4s4sHHIIBBH").unpack_from
    counts: dict = {}
    packets = 0
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position, size = 24, len(data)
        while position + 16 <= size:
            caplen = record_header(data, position)[2]
            (_ethertype, _version, _length, _fragment, _proto, src, dst, sport, dport, _seq, _ack, _offset,
             _flags, _window) = fields(data, position + 16)
            a, b = (src, sport), (dst, dport)
            key = (a, b) if a <= b else (b, a)
            counts[key] = counts.get(key, 0) + 1
            packets += 1
            position += 16 + caplen
    return packets, counts


def stage_scan(path: str) -> Tuple[int, list]:
    """The file through the C scanner alone, as stream_summaries runs it: records read from the
    reader's buffer, decoded, conversations and their state machines, each ended conversation's
    facts handed over and dropped."""
    from harness.analysis import pipeline
    if pipeline._speedups is None:
        raise NotInstalled("harness.analysis._speedups is not compiled: bash scripts/setup.sh (needs gcc, python3-dev)")
    ended: list = []
    analysis = pipeline.stream_facts(path, lambda facts: ended.append(None))
    return analysis.packets, ended


def stage_summaries(path: str) -> Tuple[int, list]:
    """As `summary --json` runs it: each record's JSON text, written by the scanner (pure Python: by
    summary.record_json)."""
    from harness.analysis.pipeline import stream_summaries
    records: list = []
    trace = stream_summaries(path, records.append, as_json=True)
    return trace.packets, records


def stage_pure_python(path: str) -> Tuple[int, list]:
    from harness.analysis.pipeline import PURE_PYTHON_ENV
    os.environ[PURE_PYTHON_ENV] = "1"
    return stage_summaries(path)


STAGES = {
    "scan": ("harness: records to conversations (C)", stage_scan),
    "summaries": ("harness: + JSON summary records", stage_summaries),
    "pure": ("harness, pure Python: JSON summary records", stage_pure_python),
    "floor": ("for comparison: unpack and group only", stage_floor),
}
ANALYSES.update({f"stage-{name}": analyse for name, (_label, analyse) in STAGES.items()})


def worker(tool: str, path: str) -> int:
    """Run one peer's analysis and print one JSON line: what it found, so the parent can check it."""
    try:
        began = time.process_time()
        packets, conversations = ANALYSES[tool](path)
        analysis_cpu = time.process_time() - began
    except NotInstalled as error:
        print(json.dumps({"not_installed": str(error)}))
        return WORKER_NOT_INSTALLED
    found = {"packets": packets, "analysis_cpu": analysis_cpu}
    if conversations is not None:        # reading and decoding alone do not group conversations
        found["conversations"] = len(conversations)
    print(json.dumps(found))
    return 0


# -- timing -------------------------------------------------------------------------------------

@dataclass
class Run:
    wall: float
    cpu: float                  # user + system, the child's and its reaped descendants'
    peak_rss_mb: float          # decimal MB: ru_maxrss of the child, or of its largest reaped descendant
    status: int
    stdout: str
    stderr: str
    analysis_cpu: Optional[float] = None    # a --worker's own CPU seconds for the analysis alone


# Linux gives a child the parent's peak RSS at fork (its memory map is a copy, high-water mark and all,
# and exec keeps the larger), so a command run straight from this process, which may hold hundreds of
# MB of workload, would report at least that. A small launcher forks the command instead, and reports
# its wait4 figures and wall time on a pipe: its own 10 MB or so is the floor of every peak RSS.
LAUNCHER = """
import os, sys, time
began = time.perf_counter()
child = os.fork()
if child == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(child, 0)
wall = time.perf_counter() - began
os.write(int(sys.argv[1]), ("%r %r %d %d" % (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                                            os.waitstatus_to_exitcode(status))).encode())
"""


def run_measured(argv: Sequence[str], keep_stdout: bool, keep_stderr: bool = True) -> Run:
    """Run argv to completion through LAUNCHER; wall time and the peak RSS of that command alone (wait4,
    not RUSAGE_CHILDREN, which would be the maximum over every child so far)."""
    report_read, report_write = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            process = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, str(report_write), *argv],
                                       stdin=subprocess.DEVNULL, stdout=out if keep_stdout else subprocess.DEVNULL,
                                       stderr=err if keep_stderr else subprocess.DEVNULL, pass_fds=(report_write,))
        finally:
            os.close(report_write)
        with os.fdopen(report_read, "rb") as report:
            figures = report.read().decode().split()
        process.wait()
        if len(figures) != 4:
            raise RuntimeError(f"the bench launcher ended with {process.returncode} and no figures for {argv[0]}")
        wall, cpu, maxrss_kb, status = float(figures[0]), float(figures[1]), int(figures[2]), int(figures[3])
        out.seek(0)
        err.seek(0)
        return Run(wall, cpu, maxrss_kb * 1024 / 1e6, status, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"))


@dataclass
class Tool:
    name: str                   # the key for --tools
    label: str                  # the table's first column
    argv: List[str]
    checks_output: bool = False     # a --worker that prints what it found
    runs: List[Run] = field(default_factory=list)
    file_packets: int = 0       # packets in the file it ran on
    file_conversations: int = 0     # and conversations (what a --worker must find)
    ok_statuses: Tuple[int, ...] = (0,)     # `check` exits 1 for a mismatch: a run all the same
    keep_stderr: bool = True    # tshark's flow graph writes GLib criticals by the 100,000: not kept
    scale: float = 1.0          # full workload / what it ran on
    note: str = ""              # why there are no figures
    failure: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs) * self.scale

    @property
    def cpu(self) -> float:
        return statistics.median(run.cpu for run in self.runs) * self.scale

    @property
    def peak_rss_mb(self) -> float:
        return statistics.median(run.peak_rss_mb for run in self.runs)

    @property
    def analysis_cpu(self) -> Optional[float]:
        measured = [run.analysis_cpu for run in self.runs if run.analysis_cpu is not None]
        return statistics.median(measured) * self.scale if measured else None

    @property
    def usable(self) -> bool:
        return bool(self.runs) and not self.note and not self.failure


def harness_command() -> List[str]:
    script = Path(sys.executable).parent / "harness"
    return [str(script)] if script.exists() else [sys.executable, "-m", "harness"]


def tool_set(workload: Workload, pyshark_workload: Workload) -> Dict[str, Tool]:
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    pcap = str(workload.pcap)
    tools = {
        "harness": Tool("harness", "harness summary --json", harness_command() + ["summary", "--json", pcap]),
        "scapy": Tool("scapy", "scapy rdpcap + conversations", me + ["scapy", pcap], checks_output=True),
        "dpkt": Tool("dpkt", "dpkt + conversations", me + ["dpkt", pcap], checks_output=True),
        "pyshark": Tool("pyshark", f"pyshark json ({pyshark_workload.packets} pkts, scaled)",
                        me + ["pyshark", str(pyshark_workload.pcap)], checks_output=True),
        "tshark": Tool("tshark", "tshark -q -z conv,tcp", ["tshark", "-q", "-z", "conv,tcp", "-r", pcap]),
    }
    for tool in tools.values():
        tool.file_packets, tool.file_conversations = workload.packets, workload.conversations
    tools["pyshark"].file_packets = pyshark_workload.packets
    tools["pyshark"].file_conversations = pyshark_workload.conversations
    from harness.run import tools as harness_tools
    tools["pyshark"].scale = workload.packets / pyshark_workload.packets
    if harness_tools.find("tshark") is None:
        tools["tshark"].note = f"tshark: not installed ({harness_tools.tool('tshark').install})"
        tools["pyshark"].note = f"pyshark: tshark not installed ({harness_tools.tool('tshark').install})"
    return tools


def stage_set(workload: Workload) -> List[Tool]:
    me = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    stages = [Tool(f"stage-{name}", label, me + [f"stage-{name}", str(workload.pcap)], checks_output=True)
              for name, (label, _analyse) in STAGES.items()]
    for stage in stages:
        stage.file_packets, stage.file_conversations = workload.packets, workload.conversations
    return stages


# -- the other commands: show, check, --annotate, explain against tshark's flow graph -----------------

FLOW_GRAPH = "tshark -q -z flow,tcp,network"
COMMAND_RSS_TARGET_MB = 64


def chosen_conversation(workload: Workload) -> int:
    """The conversation --conversation picks: one from the middle, so streaming must pass half the
    file before it and cannot stop at the first."""
    return max(1, (workload.conversations + 1) // 2)


def command_set(workload: Workload, out_dir: Path) -> List[Tool]:
    """harness's other reviews of the workload, and tshark drawing its flow graph of the same file."""
    pcap = str(workload.pcap)
    number = str(chosen_conversation(workload))
    annotated = str(out_dir / f"annotated-{workload.kind}.pcapng")
    harness = harness_command()
    tools = [
        Tool("show", "harness show", harness + ["show", pcap]),
        Tool("check", "harness check --expect tcp_lab", harness + ["check", "--expect", "tcp_lab", pcap]),
        Tool("check-one", f"harness check --expect tcp_lab --conversation {number}",
             harness + ["check", "--expect", "tcp_lab", "--conversation", number, pcap]),
        Tool("annotate", "harness check --expect tcp_lab --annotate OUT",
             harness + ["check", "--expect", "tcp_lab", "--annotate", annotated, pcap]),
        Tool("explain", f"harness explain --conversation {number}",
             harness + ["explain", "--conversation", number, pcap]),
        Tool("tshark-flow", FLOW_GRAPH, ["tshark", "-q", "-z", "flow,tcp,network", "-r", pcap], keep_stderr=False),
    ]
    for tool in tools:
        tool.file_packets, tool.file_conversations = workload.packets, workload.conversations
        if tool.name.startswith(("check", "annotate")):
            tool.ok_statuses = (0, 1)       # 1: the conversation is not tcp_lab's (bulk): a verdict all the same
    from harness.run import tools as harness_tools
    if harness_tools.find("tshark") is None:
        tools[-1].note = f"tshark: not installed ({harness_tools.tool('tshark').install})"
    return tools


def commands_table(commands: Sequence[Tool]) -> str:
    peer = next((tool for tool in commands if tool.name == "tshark-flow"), None)
    rows = [["command", "wall s", "cpu s", "peak RSS MB", "time / tshark flow"]]
    for tool in commands:
        if not tool.usable:
            rows.append([tool.label, tool.note or f"FAILED: {tool.failure}"])
            continue
        ratio = f"{tool.wall / peer.wall:.2f}x" if peer is not None and peer.usable else "-"
        rows.append([tool.label, f"{tool.wall:.3f}", f"{tool.cpu:.3f}", f"{tool.peak_rss_mb:.1f}", ratio])
    return format_table(rows)


# -- many files: -j ------------------------------------------------------------------------------

JOBS_FILES = 30
JOBS = 2


def write_split_workload(out_dir: Path, packets: int, files: int = JOBS_FILES) -> List[Path]:
    """The lab workload of `packets` packets cut into `files` captures of whole conversations (a
    teacher's 30 submissions), pcap like the workload, cached by size and count."""
    conversations = max(files, conversations_for(packets))
    folder = out_dir / f"lab-split-{conversations * PACKETS_PER_CONVERSATION}-{files}-even-v{GENERATOR_VERSION}"
    paths = [folder / f"part-{number:02d}.pcap" for number in range(files)]
    if all(path.exists() for path in paths):
        return paths
    every = list(lab_conversations(conversations))
    for number, path in enumerate(paths):
        # Spread evenly, so no part is left without a conversation (which `check` would call unusable).
        part = every[number * len(every) // files:(number + 1) * len(every) // files]

        def frames(part=part) -> Iterator[Tuple[int, bytes]]:
            for start, conversation, pace in part:
                for segment, frame in zip(LAB_SEGMENTS, lab_frames(conversation)):
                    yield START_SECONDS * 1_000_000 + start + int(segment.micros * pace), frame
        # The pcapng copy is written beside each part only because _write_capture writes both.
        _write_capture(path, path.with_suffix(".pcapng"), frames())
    return paths


def jobs_set(paths: Sequence[Path]) -> List[Tool]:
    files = [str(path) for path in paths]
    harness = harness_command()
    tools = []
    for jobs in (1, JOBS):
        tools.append(Tool(f"summary-j{jobs}", f"harness summary --json -j {jobs} DIR/*.pcap",
                          harness + ["summary", "--json", "-j", str(jobs)] + files))
        tools.append(Tool(f"check-j{jobs}", f"harness check -j {jobs} --expect tcp_lab DIR/*.pcap",
                          harness + ["check", "-j", str(jobs), "--expect", "tcp_lab"] + files, ok_statuses=(0, 1)))
    return tools


def jobs_table(jobs: Sequence[Tool]) -> str:
    by_name = {tool.name: tool for tool in jobs}
    rows = [["command", "wall s", "cpu s", "cpu / wall", "peak RSS MB", "-j 1 wall / this"]]
    for tool in jobs:
        if not tool.usable:
            rows.append([tool.label, tool.note or f"FAILED: {tool.failure}"])
            continue
        one = by_name.get(tool.name.rsplit("-j", 1)[0] + "-j1")
        speedup = f"{one.wall / tool.wall:.2f}x" if one is not None and one.usable else "-"
        rows.append([tool.label, f"{tool.wall:.3f}", f"{tool.cpu:.3f}", f"{tool.cpu / tool.wall:.2f}",
                     f"{tool.peak_rss_mb:.1f}", speedup])
    return format_table(rows)


def compile_bytecode() -> None:
    """Compile harness's bytecode, as installing a package does: with PYTHONDONTWRITEBYTECODE set,
    every run would otherwise compile its sources again, some 60 ms that no installed copy pays."""
    import compileall
    import harness
    compileall.compile_dir(str(Path(harness.__file__).parent), quiet=1)


def argparse_refused(run: Run) -> Optional[str]:
    """argparse's own error (exit 2, usage and "error:" on stderr): the command or an option it was
    given does not exist in this harness; the error line, else None."""
    lines = run.stderr.strip().splitlines()
    if run.status == 2 and lines and lines[0].startswith("usage:") and ": error: " in lines[-1]:
        error = lines[-1].split(": error: ", 1)[1]
        # "unrecognized arguments: -j FILE FILE ...": the option is the news, not the 30 files.
        words = error.split(" ")
        kept = next((index for index, word in enumerate(words) if os.sep in word), len(words))
        return " ".join(words[:kept]) + (" ..." if kept < len(words) else "")
    return None


def measure_tools(tools: Sequence[Tool], workload: Optional[Workload], repeat: int, progress) -> None:
    for round_number in range(1, repeat + 1):
        for tool in tools:
            if tool.note or tool.failure:
                continue
            progress(f"[{round_number}/{repeat}] {tool.label} ...")
            run = run_measured(tool.argv, keep_stdout=tool.checks_output, keep_stderr=tool.keep_stderr)
            if tool.checks_output and run.status == WORKER_NOT_INSTALLED:
                tool.note = f"{tool.name}: not installed ({INSTALL_HINTS.get(tool.name, 'pip install ' + tool.name)})"
                continue
            refused = argparse_refused(run)
            if refused is not None:
                tool.note = f"not available in this harness ({refused})"
                continue
            if run.status not in tool.ok_statuses:
                last = run.stderr.strip().splitlines()[-3:]
                tool.failure = f"{tool.name}: exit status {run.status}: {' / '.join(last) or 'no message'}"
                continue
            if tool.checks_output:
                try:
                    found = json.loads(run.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    tool.failure = f"{tool.name}: printed no result line: {run.stdout.strip()[-200:]!r}"
                    continue
                expected = {"packets": tool.file_packets, "conversations": tool.file_conversations}
                run.analysis_cpu = found.pop("analysis_cpu", None)
                if "packets" not in found or found != {key: expected.get(key) for key in found}:
                    tool.failure = f"{tool.name}: found {found}, the file has {expected}"
                    continue
            tool.runs.append(run)


# -- the lab scenario ---------------------------------------------------------------------------

SCENARIO_PHASES = ("capture launched", "server ready", "capture start proven", "traffic", "capture end proven",
                   "server stopped", "capture closed", "analysis", "assertions", "annotation")
SCENARIO_TARGET_SECONDS = 0.1
# Measured beside the default backend when it can capture here: its floor is not dumpcap's.
OTHER_SCENARIO_BACKENDS = ("scapy",)


@dataclass
class ScenarioFigures:
    backend: str
    phases: Dict[str, List[float]]
    totals: List[float]                 # capture start to verdict: the capture is launched first, the server beside it
    end_to_end: List[float]             # server start to verdict
    failed_verdicts: List[str]
    other_backends: List["ScenarioFigures"] = field(default_factory=list)
    unmeasured: Dict[str, str] = field(default_factory=dict)   # backend -> why it was not measured


def _scenario_runs(backend: str, pcap_dir: Path, runs: int, progress) -> ScenarioFigures:
    from harness.lab.scenarios import LAB_SCENARIOS
    from harness.run.runner import run_scenario

    figures = ScenarioFigures(backend, {}, [], [], [])
    for run in range(runs):
        progress(f"scenario tcp-lab ({backend}) run {run + 1}/{runs} ...")
        path = pcap_dir / f"tcp-lab-{backend}-{run}.pcapng"
        result = run_scenario(LAB_SCENARIOS["tcp-lab"], path, backend=backend)
        for phase, seconds in result.phases.items():
            figures.phases.setdefault(phase, []).append(seconds)
        figures.totals.append(sum(result.phases.values()))
        figures.end_to_end.append(sum(s for phase, s in result.phases.items() if phase != "capture launched"))
        if result.ok:
            path.unlink()
        else:
            figures.failed_verdicts.append(str(path))
    return figures


def measure_scenario(out_dir: Path, runs: int, progress) -> ScenarioFigures:
    """The default backend's figures (run_scenario's), with the other backends' that can capture here."""
    from harness.run.capture import capture_unavailable_reason
    from harness.run.runner import run_scenario

    backend = inspect.signature(run_scenario).parameters["backend"].default
    reason = capture_unavailable_reason(backend)
    if reason:
        raise RuntimeError(f"cannot capture with {backend}: {reason} (or pass --skip-scenario)")
    pcap_dir = out_dir / "scenario"
    pcap_dir.mkdir(parents=True, exist_ok=True)
    figures = _scenario_runs(backend, pcap_dir, runs, progress)
    for other in OTHER_SCENARIO_BACKENDS:
        reason = capture_unavailable_reason(other)
        if reason:
            figures.unmeasured[other] = reason
        else:
            figures.other_backends.append(_scenario_runs(other, pcap_dir, runs, progress))
    return figures


# -- the report ---------------------------------------------------------------------------------

def format_table(rows: List[List[str]], right_aligned_from: int = 1) -> str:
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        if len(row) == 2 and len(rows[0]) > 2:       # a tool without figures: its note spans the row
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
            continue
        cells = [cell.ljust(width) if i < right_aligned_from else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def tools_table(tools: Sequence[Tool], harness: Optional[Tool]) -> str:
    rows = [["tool", "packets", "wall s", "cpu s", "packets/s", "peak RSS MB", "time / harness"]]
    for tool in tools:
        if not tool.usable:
            rows.append([tool.label, tool.note or f"FAILED: {tool.failure}"])
            continue
        ratio = f"{tool.wall / harness.wall:.2f}x" if harness is not None and harness.usable else "-"
        rss = f"{tool.peak_rss_mb:.1f}" + ("*" if tool.scale != 1.0 else "")
        rows.append([tool.label, f"{tool.file_packets * tool.scale:,.0f}", f"{tool.wall:.3f}", f"{tool.cpu:.3f}",
                     f"{tool.file_packets * tool.scale / tool.wall:,.0f}", rss, ratio])
    return format_table(rows)


@dataclass
class WorkloadFigures:
    workload: Workload
    tools: Dict[str, Tool]
    commands: List[Tool] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.workload.kind}, {self.workload.packets:,} packets"


def targets_table(measured: Sequence[WorkloadFigures], jobs: Sequence[Tool],
                  scenario: Optional[ScenarioFigures]) -> str:
    rows = [["target", "measured", "wanted", "status"]]   # speed: the peer's time / the harness's

    def judged(label: str, value: Optional[float], shown: str, wanted: str, met: bool) -> None:
        rows.append([label, shown if value is not None else "-", wanted,
                     ("met" if met else "NOT MET") if value is not None else "not measured"])

    for figures in measured:
        harness = figures.tools.get("harness")
        usable = harness is not None and harness.usable

        def speed(peer_name: str, label: str, wanted: float) -> None:
            peer = figures.tools.get(peer_name)
            ratio = peer.wall / harness.wall if usable and peer is not None and peer.usable else None
            judged(f"harness summary speed vs {label} ({figures.name})", ratio,
                   f"{ratio:.2f}x" if ratio is not None else "", f">= {wanted:g}x", ratio is not None and ratio >= wanted)

        speed("scapy", "scapy rdpcap analysis", 50)
        speed("tshark", "tshark -q -z conv,tcp", 4)
        speed("dpkt", "dpkt analysis", 3)
        label = f"harness summary peak RSS, 1M packets ({figures.workload.kind})"
        if usable and figures.workload.packets >= RSS_TARGET_PACKETS:
            judged(label, harness.peak_rss_mb, f"{harness.peak_rss_mb:.1f} MB", "<= 100 MB", harness.peak_rss_mb <= 100)
        elif usable:
            rows.append([label, f"{harness.peak_rss_mb:.1f} MB", "<= 100 MB",
                         f"not judged: {figures.workload.packets:,} packets here (--packets {RSS_TARGET_PACKETS})"])
        else:
            judged(label, None, "", "<= 100 MB", False)
        peer = next((tool for tool in figures.commands if tool.name == "tshark-flow"), None)
        for tool in figures.commands:
            if tool is peer:
                continue
            measured_rss = tool.peak_rss_mb if tool.usable else None
            judged(f"{tool.label} peak RSS ({figures.name})", measured_rss,
                   f"{tool.peak_rss_mb:.1f} MB" if tool.usable else "", f"<= {COMMAND_RSS_TARGET_MB} MB",
                   tool.usable and tool.peak_rss_mb <= COMMAND_RSS_TARGET_MB)
            ratio = tool.wall / peer.wall if tool.usable and peer is not None and peer.usable else None
            judged(f"{tool.label} wall vs {FLOW_GRAPH} ({figures.name})", ratio,
                   f"{ratio:.2f}x" if ratio is not None else "", "<= 1x", ratio is not None and ratio <= 1)
    cores = min(JOBS, os.cpu_count() or 1)
    for tool in jobs:
        if tool.name.endswith(f"-j{JOBS}"):
            busy = tool.cpu / tool.wall if tool.usable else None
            wanted = 0.85 * cores
            judged(f"{tool.label}: CPU time / wall", busy, f"{busy:.2f}" if busy is not None else "",
                   f">= {wanted:.2f} ({cores} of {os.cpu_count()} CPUs busy)", busy is not None and busy >= wanted)
    wanted = f"<= {SCENARIO_TARGET_SECONDS:g} s"
    if scenario is not None:
        for figures in (scenario, *scenario.other_backends):
            median = statistics.median(figures.totals)
            rows.append([f"lab scenario median, capture start to verdict ({figures.backend})", f"{median:.3f} s",
                         wanted, "met" if median <= SCENARIO_TARGET_SECONDS else "NOT MET"])
        for backend, reason in scenario.unmeasured.items():
            rows.append([f"lab scenario median, capture start to verdict ({backend})", "-", wanted,
                         f"not measured: {reason}"])
    else:
        rows.append(["lab scenario median, capture start to verdict", "-", wanted, "not measured"])
    return format_table(rows, right_aligned_from=4)


def stages_table(stages: Sequence[Tool], harness: Optional[Tool]) -> str:
    """Cumulative stages: the CPU seconds of each stage's analysis alone, measured in its own process;
    the harness summary row is the whole command, its start-up and JSON output included."""
    rows = [["stage", "cpu s", "of harness summary's"]]
    for stage in [*stages, *([harness] if harness is not None else [])]:
        if not stage.usable:
            rows.append([stage.label, stage.note or f"FAILED: {stage.failure}"])
            continue
        cpu = stage.cpu if stage is harness else stage.analysis_cpu
        share = f"{cpu / harness.cpu:.0%}" if harness is not None and harness.usable else "-"
        rows.append([stage.label, f"{cpu:.3f}", share])
    return format_table(rows)


def _phases_table(figures: ScenarioFigures) -> str:
    rows = [["phase", "median ms", "min ms", "max ms"]]
    named = [p for p in SCENARIO_PHASES if p in figures.phases] + [p for p in figures.phases if p not in SCENARIO_PHASES]
    series = [(phase, figures.phases[phase]) for phase in named]
    series += [("capture start to verdict", figures.totals), ("server start to verdict", figures.end_to_end)]
    for name, values in series:
        ms = [1000 * value for value in values]
        rows.append([name, f"{statistics.median(ms):.1f}", f"{min(ms):.1f}", f"{max(ms):.1f}"])
    return format_table(rows)


def scenario_table(figures: ScenarioFigures) -> str:
    """The default backend's phases (main names it), then each other backend's under its own heading."""
    parts = [_phases_table(figures)]
    for other in figures.other_backends:
        runs = len(other.totals)
        parts.append(f"the same on the {other.backend} backend ({runs - len(other.failed_verdicts)} PASS, "
                     f"{len(other.failed_verdicts)} FAIL{': ' + ' '.join(other.failed_verdicts) if other.failed_verdicts else ''})\n"
                     + _phases_table(other))
    return "\n\n".join(parts)


def describe_machine() -> str:
    versions = []
    for module in ("scapy", "dpkt", "pyshark"):
        try:
            from importlib.metadata import version
            versions.append(f"{module} {version(module)}")
        except Exception:      # not installed: the tools table says so
            pass
    tshark = shutil.which("tshark")
    if tshark:
        first_line = subprocess.run([tshark, "--version"], capture_output=True, text=True).stdout.splitlines()
        versions.append(first_line[0].replace("TShark (Wireshark) ", "tshark ").split(" (")[0] if first_line else "tshark")
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; " + ", ".join(versions))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    busy = " (more runnable processes than CPUs: wall times are inflated)" if one > (os.cpu_count() or 1) else ""
    return f"{one:.2f} {five:.2f} {fifteen:.2f}{busy}"


# -- main -------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000,
                        help="workload size, rounded up to whole conversations (default 200000)")
    parser.add_argument("--workload", choices=("lab", "bulk", "both"), default="both",
                        help="lab: 11-packet lab conversations; bulk: long transfers with loss (default both)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tool; the median is shown (default 3)")
    parser.add_argument("--pyshark-packets", type=int, default=5000,
                        help="pyshark runs on this many packets, scaled to the full size (default 5000)")
    parser.add_argument("--scenario-runs", type=int, default=20, help="lab scenario runs (default 20)")
    parser.add_argument("--skip-scenario", action="store_true", help="skip the lab scenario (it needs capture rights)")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/harness-bench"),
                        help="where generated captures are cached (default /tmp/harness-bench)")
    parser.add_argument("--tools", default="harness,scapy,dpkt,pyshark,tshark",
                        help="comma-separated subset of harness,scapy,dpkt,pyshark,tshark")
    parser.add_argument("--skip-stages", action="store_true",
                        help="skip the table of where harness summary's time goes")
    parser.add_argument("--skip-commands", action="store_true",
                        help="skip show, check, --annotate and explain against tshark's flow graph")
    parser.add_argument("--skip-jobs", action="store_true",
                        help=f"skip summary and check with -j 1 and -j {JOBS} over {JOBS_FILES} captures")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2])
    args = _parser().parse_args(argv)
    wanted = [name.strip() for name in args.tools.split(",") if name.strip()]
    known = ("harness", "scapy", "dpkt", "pyshark", "tshark")
    unknown = [name for name in wanted if name not in known]
    if unknown or args.repeat < 1 or args.packets < 1 or args.pyshark_packets < 1 or args.scenario_runs < 1:
        _parser().error(f"unknown tools {unknown}" if unknown else "counts must be at least 1")

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    print(f"machine: {describe_machine()}")
    print(f"figures: median of {args.repeat} run{'s' if args.repeat != 1 else ''}, each tool its own process; "
          f"time / harness > 1 means harness is faster", flush=True)
    compile_bytecode()
    failures: List[str] = []
    measured: List[WorkloadFigures] = []
    kinds = ("lab", "bulk") if args.workload == "both" else (args.workload,)
    for kind in kinds:
        began = time.perf_counter()
        workload = WORKLOADS[kind](args.out_dir, args.packets)
        pyshark_workload = WORKLOADS[kind](args.out_dir, min(args.pyshark_packets, workload.packets))
        generated = time.perf_counter() - began
        size_mb = workload.pcap.stat().st_size / 1e6
        what = "lab TCP conversations" if kind == "lab" else "bulk TCP transfers with loss"
        print(f"\n== {kind} workload: {workload.pcap} ({workload.packets:,} packets, {workload.conversations:,} "
              f"{what}, {size_mb:.1f} MB; pcapng beside it; ready in {generated:.1f} s)")
        print(f"load average before: {_load()}", flush=True)
        all_tools = tool_set(workload, pyshark_workload)
        tools = [all_tools[name] for name in known if name in wanted]
        measure_tools(tools, workload, args.repeat, progress)
        chosen = {tool.name: tool for tool in tools}
        figures = WorkloadFigures(workload, chosen)
        measured.append(figures)
        print()
        print(tools_table(tools, chosen.get("harness")))
        if "pyshark" in chosen and chosen["pyshark"].usable:
            print(f"* pyshark ran on the first {chosen['pyshark'].file_packets:,} packets; its times are scaled "
                  f"by {chosen['pyshark'].scale:.1f}, its peak RSS (its tshark's) is as measured on that subset")
        print(f"load average after: {_load()}; wall s counts waiting for a CPU, cpu s does not")
        failures += [f"{kind}: {tool.failure}" for tool in tools if tool.failure]

        if args.skip_stages:
            print("\nstages: skipped (--skip-stages)")
        else:
            stages = stage_set(workload)
            measure_tools(stages, workload, args.repeat, progress)
            print(f"\nwhere harness summary's time goes (cumulative stages, same file, median of {args.repeat}; "
                  f"each stage's analysis alone, in its own process):")
            print(stages_table(stages, chosen.get("harness")))
            failures += [f"{kind}: {stage.failure}" for stage in stages if stage.failure]

        if args.skip_commands:
            print("\ncommands: skipped (--skip-commands)")
        else:
            figures.commands = command_set(workload, args.out_dir)
            measure_tools(figures.commands, workload, args.repeat, progress)
            (args.out_dir / f"annotated-{kind}.pcapng").unlink(missing_ok=True)
            print(f"\nthe other commands on the same file (stdout to /dev/null; --conversation "
                  f"{chosen_conversation(workload)} of {workload.conversations:,}):")
            print(commands_table(figures.commands))
            failures += [f"{kind}: {tool.failure}" for tool in figures.commands if tool.failure]

    jobs: List[Tool] = []
    if args.skip_jobs:
        print("\n-j: skipped (--skip-jobs)")
    else:
        paths = write_split_workload(args.out_dir, args.packets)
        jobs = jobs_set(paths)
        measure_tools(jobs, None, args.repeat, progress)
        print(f"\nmany files: the lab workload cut into {len(paths)} captures ({paths[0].parent}), "
              f"{os.cpu_count()} CPUs; cpu s counts every process and thread of the run:")
        print(jobs_table(jobs))
        failures += [tool.failure for tool in jobs if tool.failure]

    scenario = None
    if args.skip_scenario:
        print("\nlab scenario: skipped (--skip-scenario)")
    else:
        try:
            scenario = measure_scenario(args.out_dir, args.scenario_runs, progress)
        except Exception as error:     # any way the scenario cannot be run is reported, then the exit status says so
            failures.append(f"lab scenario: {type(error).__name__}: {error}")
            print(f"\nlab scenario: could not be run: {error}")
        if scenario is not None:
            print(f"\nlab scenario tcp-lab, {args.scenario_runs} runs, {scenario.backend} backend "
                  f"({args.scenario_runs - len(scenario.failed_verdicts)} PASS, {len(scenario.failed_verdicts)} FAIL)")
            print(scenario_table(scenario))
            for path in scenario.failed_verdicts:
                print(f"  failed verdict kept: {path}")

    print()
    print(targets_table(measured, jobs, scenario))
    for failure in failures:
        print(f"failed: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
