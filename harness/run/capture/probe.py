"""Probe datagrams: how a capture proves it has started and that it has caught up.

A capture is live only once a datagram sent through its filter has come out of it, and it has
caught up only once a datagram sent after the scenario's last packet has come out of it. Probes
are UDP datagrams to a socket of our own (so the kernel answers no ICMP), carrying a random
token, which is how they are recognised and kept out of the saved pcap.

dumpcap reads the kernel ring in blocks (TPACKET_V3) and a block is handed over only when it is
full or after 250 ms. A marker is therefore followed by a burst of large "flush" datagrams that
fills the block, so the marker is delivered in a few milliseconds instead of a quarter second.
"""
from __future__ import annotations

import itertools
import os
import socket
from typing import Optional, Tuple

from harness.run.netns import in_netns

START = b"S"
STOP = b"E"
FLUSH = b"F"
MAGIC = b"harness-probe:"

FLUSH_DATAGRAM_BYTES = 60000
# Enough to fill one ring block of any snaplen dumpcap picks on loopback (at most 512 KiB).
FLUSH_DATAGRAMS = 10


class Prober:
    def __init__(self, host: str = "127.0.0.1", flush_bytes: int = FLUSH_DATAGRAM_BYTES,
                 flush_count: int = FLUSH_DATAGRAMS, sender_netns: Optional[str] = None) -> None:
        """Probes go to a socket bound on `host`; with `sender_netns` they are sent from that network
        namespace, so they cross the link a capture watches instead of that namespace's loopback."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.token = os.urandom(8).hex().encode()
        self._sink = socket.socket(family, socket.SOCK_DGRAM)
        self._sink.bind((host, 0))
        # The sink is never read; a tiny buffer keeps probes from piling up in the kernel.
        self._sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.address: Tuple[str, int] = self._sink.getsockname()[:2]
        if sender_netns:
            with in_netns(sender_netns):
                self._sender = socket.socket(family, socket.SOCK_DGRAM)
        else:
            self._sender = socket.socket(family, socket.SOCK_DGRAM)
        self._flush = MAGIC + self.token + FLUSH + b"\0" * max(0, flush_bytes - len(MAGIC) - 17)
        self._flush_count = flush_count
        self._counter = itertools.count(1)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def bpf(self) -> str:
        return f"udp dst port {self.port}"

    def send_marker(self, kind: bytes) -> int:
        """Send one marker and the flush burst behind it; returns the marker's number."""
        number = next(self._counter)
        self._send(MAGIC + self.token + kind + b"%08d" % number)
        for _ in range(self._flush_count):
            self._send(self._flush)
        return number

    def _send(self, payload: bytes) -> None:
        try:
            self._sender.sendto(payload, self.address)
        except OSError:
            pass  # a full socket buffer only delays the marker; the waiter resends

    def classify(self, data: bytes) -> Optional[Tuple[bytes, int]]:
        """(kind, number) if these bytes carry one of our probes, else None."""
        at = data.find(self.token)
        if at < 0:
            return None
        kind = data[at + len(self.token):at + len(self.token) + 1]
        digits = data[at + len(self.token) + 1:at + len(self.token) + 9]
        return kind, int(digits) if kind != FLUSH and digits.isdigit() else 0

    def close(self) -> None:
        self._sender.close()
        self._sink.close()
