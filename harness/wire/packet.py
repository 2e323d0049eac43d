"""The one record the analysis works on (the header fields of a TCP or UDP packet), TCP's flags and
its sequence arithmetic, each written once.

Readers and capture backends produce these; the conversation analysis consumes them.
Only fields the conversation model needs are decoded, so building one is cheap.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

TCP = 6
UDP = 17

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# The one table of TCP flags, in the order Wireshark's Info column lists them.
FLAG_BITS = {"SYN": SYN, "FIN": FIN, "RST": RST, "PSH": PSH, "ACK": ACK, "URG": URG, "ECE": ECE, "CWR": CWR}


def _flag_names(flags: int) -> str:
    return ", ".join(name for name, bit in FLAG_BITS.items() if flags & bit) or "<none>"


# Every row of a ladder names its flags: the 256 combinations are named once.
_FLAG_NAMES = tuple(_flag_names(flags) for flags in range(256))


def flag_names(flags: int) -> str:
    """Flags as Wireshark lists them in its Info column, e.g. 'SYN, ACK'."""
    return _FLAG_NAMES[flags] if 0 <= flags < 256 else _flag_names(flags)


# TCP sequence space: 32-bit numbers compared modulo 2^32 (RFC 793's "sequence number arithmetic").
SEQ_MODULO = 1 << 32
HALF_SEQ_SPACE = 1 << 31


def seq_delta(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit difference."""
    delta = (a - b) % SEQ_MODULO
    return delta - SEQ_MODULO if delta >= HALF_SEQ_SPACE else delta


def seq_after(a: int, b: int) -> bool:
    """a comes strictly after b in sequence space."""
    return 0 < (a - b) % SEQ_MODULO < HALF_SEQ_SPACE


def seq_ge(a: int, b: int) -> bool:
    """a is b or comes after it in sequence space."""
    return (a - b) % SEQ_MODULO < HALF_SEQ_SPACE


class Packet(NamedTuple):
    frame: int                 # 1-based position in the capture, as Wireshark numbers frames
    time_ns: int               # nanoseconds since the epoch (exact: time differences are compared to the ns)
    src: str                   # IP address, textual (IPv4 dotted quad or compressed IPv6)
    dst: str
    proto: int                 # TCP or UDP
    sport: int
    dport: int
    payload_len: int           # transport payload length on the wire, even if the capture truncated it
    payload: bytes             # captured payload bytes (may be shorter than payload_len)
    seq: int = 0               # TCP only from here on
    ack: int = 0
    flags: int = 0
    window: int = 0            # raw window field, unscaled
    mss: Optional[int] = None  # MSS option, decoded on SYN segments only
    wscale: Optional[int] = None  # window-scale option, decoded on SYN segments only
    ip_len: int = 0            # the IP header's length field as Zeek reads it: IPv4 total length, IPv6 payload + 40
    options: bytes = b""       # the TCP options as captured (harness.wire.tcp_options reads them)
