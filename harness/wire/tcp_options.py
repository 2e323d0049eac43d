"""TCP options, read from the bytes a Packet keeps (`Packet.options`), and written as packetdrill writes
them: `<mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7>`. Pure code.

Rules (RFC 9293 section 3.1, and Wireshark's reading of a malformed list):

1. Kind 0 (EOL) ends the list; kind 1 (NOP) is one byte; every other kind has a length byte that
   counts the kind and itself.
2. A length below 2, or one that runs past the bytes captured, ends the parse: what came before it
   is kept and `complete` says the list was cut short (a snapshot length, or a malformed option).
3. Known kinds: 2 MSS (4 bytes), 3 window scale (3), 4 SACK permitted (2), 5 SACK blocks (2 + 8n),
   8 timestamps (10). A known kind with the wrong length, and any other kind, is kept as raw bytes.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

__all__ = ["TcpOption", "TcpOptions", "parse_tcp_options"]

EOL, NOP, MSS, WSCALE, SACK_PERMITTED, SACK, TIMESTAMPS = 0, 1, 2, 3, 4, 5, 8


class TcpOption(NamedTuple):
    kind: int
    value: object = None        # int (mss, wscale), (val, ecr), ((left, right), ...), or raw bytes

    def describe(self) -> str:
        """packetdrill's words for it."""
        if self.kind == NOP:
            return "nop"
        if self.kind == EOL:
            return "eol"
        if self.kind == MSS and isinstance(self.value, int):
            return f"mss {self.value}"
        if self.kind == WSCALE and isinstance(self.value, int):
            return f"wscale {self.value}"
        if self.kind == SACK_PERMITTED:
            return "sackOK"
        if self.kind == TIMESTAMPS and isinstance(self.value, tuple):
            return f"TS val {self.value[0]} ecr {self.value[1]}"
        if self.kind == SACK and isinstance(self.value, tuple):
            return "sack " + " ".join(f"{left}:{right}" for left, right in self.value)
        return f"opt{self.kind} {bytes(self.value or b'').hex()}"


class TcpOptions(NamedTuple):
    items: Tuple[TcpOption, ...]
    complete: bool              # False: the list was cut short (rule 2)

    def first(self, kind: int) -> Optional[TcpOption]:
        return next((item for item in self.items if item.kind == kind), None)

    @property
    def mss(self) -> Optional[int]:
        found = self.first(MSS)
        return found.value if found is not None and isinstance(found.value, int) else None

    @property
    def wscale(self) -> Optional[int]:
        found = self.first(WSCALE)
        return found.value if found is not None and isinstance(found.value, int) else None

    @property
    def sack_permitted(self) -> bool:
        return self.first(SACK_PERMITTED) is not None

    @property
    def timestamps(self) -> Optional[Tuple[int, int]]:
        found = self.first(TIMESTAMPS)
        return found.value if found is not None and isinstance(found.value, tuple) else None

    def describe(self) -> str:
        """`<mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7>`, or "" when there are none."""
        if not self.items:
            return ""
        return "<" + ",".join(item.describe() for item in self.items) + ">"


_SIZES = {MSS: 4, WSCALE: 3, SACK_PERMITTED: 2, TIMESTAMPS: 10}


def parse_tcp_options(raw: bytes) -> TcpOptions:
    """The options in `raw` (a Packet's `options`), by the rules above."""
    items: List[TcpOption] = []
    pos, end = 0, len(raw)
    while pos < end:
        kind = raw[pos]
        if kind == EOL:
            items.append(TcpOption(EOL))
            break
        if kind == NOP:
            items.append(TcpOption(NOP))
            pos += 1
            continue
        if pos + 1 >= end:
            return TcpOptions(tuple(items), False)
        size = raw[pos + 1]
        if size < 2 or pos + size > end:
            return TcpOptions(tuple(items), False)
        body = raw[pos + 2:pos + size]
        items.append(_option(kind, size, body))
        pos += size
    return TcpOptions(tuple(items), True)


def _option(kind: int, size: int, body: bytes) -> TcpOption:
    if _SIZES.get(kind) == size:
        if kind == MSS:
            return TcpOption(MSS, int.from_bytes(body, "big"))
        if kind == WSCALE:
            return TcpOption(WSCALE, body[0])
        if kind == SACK_PERMITTED:
            return TcpOption(SACK_PERMITTED)
        return TcpOption(TIMESTAMPS, (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big")))
    if kind == SACK and size >= 10 and (size - 2) % 8 == 0:
        return TcpOption(SACK, tuple((int.from_bytes(body[i:i + 4], "big"), int.from_bytes(body[i + 4:i + 8], "big"))
                                     for i in range(0, len(body), 8)))
    return TcpOption(kind, bytes(body))
