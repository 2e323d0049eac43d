"""IPv4 and IPv6 fragments reassembled into their datagrams, as Zeek reassembles them (src/Frag.cc).

    reassembler = Reassembler()
    datagram = reassembler.add(fragment)     # Reassembled when this fragment completes one, else None
    reassembler.take_dropped()               # datagrams given up since the last call (timeout, memory)
    reassembler.finish()                     # the capture ended: every datagram still incomplete

Rules (Zeek's, where it has one):

* A datagram is the fragments of one (source, destination, identification) (Zeek's
  FragReassemblerKey; IPv4 and IPv6 addresses never collide, so the version is part of the key too).
* Data already held wins: a fragment that overlaps bytes held keeps only its bytes that fill gaps
  (Zeek's Reassembler inserts only the parts of a block not yet covered); a duplicate adds nothing.
* The datagram's length is known from a fragment with More Fragments clear (its offset plus its
  length); a later fragment that reaches further extends it (Zeek's fragment_size_inconsistency).
* The datagram is complete when its data is contiguous from offset 0 up to at least that length;
  if contiguous data reaches past it with a hole beyond, the contiguous part is the datagram (Zeek
  "decides to analyze the contiguous portion now"). It is handed over at the fragment that
  completes it, and forgotten: a fragment of it that comes later starts a new datagram.
* The reassembled datagram's header is the first-arriving fragment's (Zeek copies proto_hdr from the
  fragment that created the reassembler): IPv4 with its total length set and its fragment offset and
  More Fragments cleared (so it reads as the whole datagram) and its header checksum recomputed (each
  fragment's was checked as it arrived; Zeek does not check the reassembled header again); IPv6 with
  its unfragmentable part, the payload length set and the Fragment header removed, the header before
  it naming the fragment's next header as given by the fragment at offset 0.
* A datagram not completed within FRAGMENT_TIMEOUT of its first fragment is dropped (Zeek's
  frag_timeout, 5 minutes, counted in capture time); one still incomplete when the capture ends
  never counts. Either way it is reported (take_dropped / finish), never silently lost.
* Memory is bounded, which Zeek's is not: past MAX_PENDING_DATAGRAMS datagrams awaiting fragments,
  or MAX_PENDING_BYTES of data held, the oldest datagram is dropped and reported. A datagram cannot
  grow past what its 13-bit offset and 16-bit length can address (about 128 KiB).
* A datagram that would exceed what its length field can say (65535 bytes) is dropped and reported.

Deciding what is a fragment, and checking each fragment's header, is harness.wire.decode's job; a
fragment cut by the capture's snapshot length must not be given here (Zeek does not reassemble those).
Pure: state in, state out, times from the packets; nothing here reads a clock, a file or a socket.
"""
from __future__ import annotations

import struct
from typing import Dict, List, NamedTuple, Optional, Tuple

from harness.wire.checksum import internet_checksum

__all__ = ["Fragment", "Reassembled", "Dropped", "Reassembler", "FRAGMENT_TIMEOUT", "MAX_PENDING_DATAGRAMS",
           "MAX_PENDING_BYTES"]

SECOND = 10**9
FRAGMENT_TIMEOUT = 300 * SECOND          # Zeek's frag_timeout (init-bare.zeek: 5 min)
MAX_PENDING_DATAGRAMS = 1024
MAX_PENDING_BYTES = 32 << 20
# What a held interval costs beyond its bytes, so that thousands of tiny fragments count too.
_INTERVAL_COST = 64
_MAX_DATAGRAM = 0xFFFF


class Fragment(NamedTuple):
    """One IP fragment, as harness.wire.decode found it."""
    version: int            # 4 or 6
    src: str                # addresses as text (the key, and what reports show)
    dst: str
    ident: int              # IPv4 identification (16 bits) or IPv6 fragment identification (32 bits)
    offset: int             # in bytes
    more: bool              # More Fragments
    header: bytes           # IPv4: the whole header; IPv6: the IPv6 header and the extension headers before
                            # the Fragment header (the unfragmentable part)
    next_header_at: int     # IPv6: where in `header` the byte naming the Fragment header (44) is; IPv4: unused
    next_header: int        # IPv6: the Fragment header's next header; IPv4: the protocol
    payload: bytes          # the fragment's data (after the Fragment header for IPv6)
    frame: int
    time_ns: int


class Reassembled(NamedTuple):
    datagram: bytes         # a whole IP datagram, header first
    frames: Tuple[int, ...] # the frames its fragments came in, in arrival order (the last completed it)


class Dropped(NamedTuple):
    """A datagram given up incomplete."""
    version: int
    src: str
    dst: str
    ident: int
    frames: Tuple[int, ...]
    held: int               # bytes of data it had
    size: int               # its length if a last fragment was seen, else 0
    reason: str

    def describe(self) -> str:
        frames = ", ".join(str(frame) for frame in self.frames[:8]) + (", ..." if len(self.frames) > 8 else "")
        size = f"{self.held} of {self.size} bytes" if self.size else f"{self.held} bytes, its end never seen"
        noun = "frame" if len(self.frames) == 1 else "frames"
        return (f"{noun} {frames}: IPv{self.version} datagram {self.src} -> {self.dst} id 0x{self.ident:x} "
                f"{self.reason} ({size}); not analysed")


class _Pending:
    __slots__ = ("first_time", "header", "next_header_at", "next_header", "data", "covered", "size", "frames",
                 "cost", "version")

    def __init__(self, fragment: Fragment, now: int) -> None:
        self.version = fragment.version
        self.first_time = now
        self.header = fragment.header
        self.next_header_at = fragment.next_header_at
        self.next_header = fragment.next_header
        self.data = bytearray()
        self.covered: List[List[int]] = []    # disjoint [low, high) runs of data held, in order
        self.size = 0                          # the datagram's data length; 0 until known, as in Zeek
        self.frames: List[int] = []
        self.cost = len(fragment.header)


class Reassembler:
    """Datagrams awaiting fragments, bounded in count and bytes."""

    def __init__(self, timeout_ns: int = FRAGMENT_TIMEOUT, max_datagrams: int = MAX_PENDING_DATAGRAMS,
                 max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.timeout_ns, self.max_datagrams, self.max_bytes = timeout_ns, max_datagrams, max_bytes
        self._pending: Dict[tuple, _Pending] = {}     # in the order they began
        self._bytes = 0
        self._dropped: List[Dropped] = []
        self._now: Optional[int] = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def has_dropped(self) -> bool:
        """Whether take_dropped() has anything to give."""
        return bool(self._dropped)

    def add(self, fragment: Fragment) -> Optional[Reassembled]:
        """Hold the fragment; the whole datagram if it completes one."""
        # Capture time only moves forward, as Zeek's network_time does; timers fire before the packet.
        self._now = fragment.time_ns if self._now is None else max(self._now, fragment.time_ns)
        self._expire(self._now)
        key = (fragment.version, fragment.src, fragment.dst, fragment.ident)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(fragment, self._now)
            self._bytes += pending.cost
        pending.frames.append(fragment.frame)
        if fragment.offset == 0:
            pending.next_header = fragment.next_header
        upper = fragment.offset + len(fragment.payload)
        if not fragment.more:
            if pending.size == 0 or upper > pending.size:
                pending.size = upper
        if pending.size and upper > pending.size:
            pending.size = upper
        completed = None
        if fragment.payload:
            self._hold(pending, fragment.offset, fragment.payload)
            completed = self._complete(key, pending)
        if completed is None:
            self._bound(key)
        return completed

    def take_dropped(self) -> List[Dropped]:
        dropped, self._dropped = self._dropped, []
        return dropped

    def finish(self) -> List[Dropped]:
        """The capture has ended: every datagram still awaiting fragments is dropped and reported."""
        for key in list(self._pending):
            self._drop(key, "never completed")
        return self.take_dropped()

    def _hold(self, pending: _Pending, offset: int, payload: bytes) -> None:
        low, high = offset, offset + len(payload)
        if len(pending.data) < high:
            grown = high - len(pending.data)
            pending.data.extend(bytes(grown))
            pending.cost += grown
            self._bytes += grown
        runs = pending.covered
        # Fill only the gaps between the runs already held: data that arrived first stays.
        position = low
        merged: List[List[int]] = []
        index = 0
        while index < len(runs) and runs[index][1] < low:
            merged.append(runs[index])
            index += 1
        new_low, new_high = low, high
        while index < len(runs) and runs[index][0] <= high:
            run_low, run_high = runs[index]
            if position < run_low:
                pending.data[position:run_low] = payload[position - offset:run_low - offset]
            position = max(position, run_high)
            new_low, new_high = min(new_low, run_low), max(new_high, run_high)
            index += 1
        if position < high:
            pending.data[position:high] = payload[position - offset:]
        before = len(runs)
        pending.covered = merged + [[new_low, new_high]] + runs[index:]
        change = (len(pending.covered) - before) * _INTERVAL_COST
        pending.cost += change
        self._bytes += change

    def _complete(self, key: tuple, pending: _Pending) -> Optional[Reassembled]:
        runs = pending.covered
        if not pending.size or runs[0][0] > 0:
            return None
        contiguous = runs[0][1]
        if contiguous < pending.size:
            return None
        size = contiguous       # past a last fragment's end, with or without a hole beyond: Zeek takes it all
        header = bytearray(pending.header)
        length = len(header) + size
        if length > _MAX_DATAGRAM + (40 if pending.version == 6 else 0):
            self._drop(key, f"would reassemble to {length} bytes, more than its length field can say")
            return None
        if pending.version == 4:
            struct.pack_into("!H", header, 2, length)
            header[6] &= 0x40             # keep Don't Fragment; clear More Fragments and the offset
            header[7] = 0
            header[10:12] = b"\x00\x00"
            struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
        else:
            struct.pack_into("!H", header, 4, length - 40)
            header[pending.next_header_at] = pending.next_header
        del self._pending[key]
        self._bytes -= pending.cost
        return Reassembled(bytes(header) + bytes(pending.data[:size]), tuple(pending.frames))

    def _expire(self, now: int) -> None:
        # Datagrams are held in the order they began, and each began at the capture time then (which
        # never goes back), so the oldest is first.
        if not self.timeout_ns:
            return
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.first_time + self.timeout_ns > now:
                break
            self._drop(key, f"not completed within {self.timeout_ns // SECOND} s of its first fragment")

    def _bound(self, keep: tuple) -> None:
        while len(self._pending) > 1 and (len(self._pending) > self.max_datagrams or self._bytes > self.max_bytes):
            oldest = iter(self._pending)
            key = next(oldest)
            if key == keep:
                key = next(oldest)      # the datagram this fragment belongs to stays; the next oldest goes
            reason = (f"given up: more than {self.max_datagrams} datagrams awaited fragments"
                      if len(self._pending) > self.max_datagrams
                      else f"given up: more than {self.max_bytes >> 20} MiB of fragments were held")
            self._drop(key, reason)

    def _drop(self, key: tuple, reason: str) -> None:
        pending = self._pending.pop(key)
        self._bytes -= pending.cost
        held = sum(high - low for low, high in pending.covered)
        version, src, dst, ident = key
        self._dropped.append(Dropped(version, src, dst, ident, tuple(pending.frames), held, pending.size, reason))
