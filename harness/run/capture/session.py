"""A capture that proves its own completeness at both ends, whatever backend feeds it.

Protocol, the same for every backend:
1. The output goes to `<name>.<pid>-<token>.partial`, private to this capture (created exclusively,
   mode 0600, so a concurrent run writing to the same name can never write into it), while the
   capture runs; only a capture whose
   start and end were both proven, with no drops, is renamed to its final name.
2. `start()` returns once a start marker sent through the filter has come out of the backend
   (`begin()` then `prove_started()`, for a caller with something to do while the backend starts).
3. `stop()` first sends an end marker and waits until it has come out: every packet sent before
   it has then been delivered, so nothing the scenario sent is still in a kernel buffer. Only
   then is the backend told to stop (`prove_ended()`); its exit and drop counts are judged, and
   the file renamed, by `finish()`, which a caller may put off until it has stopped its server.
4. Probe datagrams (probe.py) never reach the saved file; the Section Header says how many were
   left out, and the backend, interface and filter.
5. Every wait is bounded, and its timeout names what it waited for.
6. A file the disk will not take (full, read-only, a file where its directory should be) fails the
   capture as CaptureUnwritable, whichever thread's write or close found it first, and the file is
   removed: a capture written in part is no evidence of anything.
"""
from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

from harness.errors import RunFailed, Unavailable, cannot_write
from harness.run.capture.probe import FLUSH_DATAGRAMS, START, STOP, Prober

# Markers are resent, each with its flush burst, until one comes out: every 50 ms for the first
# second (dumpcap goes live some 30 ms after it starts), then less and less often, so that however
# long the backend stalls, probes alone cannot fill its kernel buffer (about 40 bursts of 600 KB in
# a 10 s wait, against dumpcap's 64 MiB).
MARKER_RESEND_SECONDS = 0.05
MARKER_STEADY_SECONDS = 1.0
MARKER_RESEND_GROWTH = 1.5
MARKER_RESEND_MAX_SECONDS = 0.5


class CaptureError(RunFailed):
    """A capture that could not run or could not be proven complete; str() is one line."""


class CaptureUnavailable(CaptureError, Unavailable):
    """The backend cannot capture here at all (missing tool, no permission): a reason to skip."""


class CaptureIncomplete(CaptureError):
    """The capture ran but cannot be trusted to hold every packet."""


class CaptureUnwritable(CaptureError):
    """Its file could not be written (a full or read-only disk, a file where its directory should be):
    the machine's fault, not the run's; str() names the file and what to do."""


@dataclass
class CaptureResult:
    path: Path
    backend: str
    interface: str
    bpf: str
    packets: int = 0               # packets written to the pcap (probes excluded)
    probes_removed: int = 0
    received: Optional[int] = None  # backend's own counters, probes included
    dropped: Optional[int] = None   # packets the capture lost: any makes it incomplete
    drop_detail: str = ""           # the backend's own breakdown, for diagnosis
    start_proven_after: float = 0.0  # seconds from launch until the start marker came out
    stop_proven_after: float = 0.0   # seconds from the end marker until it came out
    complete: bool = False

    def describe(self) -> str:
        drops = "?" if self.dropped is None else self.dropped
        return (f"{self.path} ({self.backend} on {self.interface}, filter {self.bpf!r}: "
                f"{self.packets} packets, {drops} dropped, {self.probes_removed} probes removed)")


def private_partial(path: Path) -> Path:
    """A name beside `path` no other capture, of this process or another, will use."""
    return path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.partial")


def partial_paths(path: Path) -> List[Path]:
    """The partial files captures to `path` have left (an interrupted or incomplete run's)."""
    return sorted(path.parent.glob(f"{glob.escape(path.name)}.*.partial"))


class Capture:
    """Base class: backends implement _launch, _halt and _kill, and call _deliver."""

    backend = "?"
    # dumpcap hands packets over in ring blocks, so each marker needs a burst behind it to fill one.
    needs_flush_burst = True

    def __init__(self, path, interface: str = "lo", bpf: str = "", probe_host: str = "127.0.0.1",
                 start_timeout: float = 10.0, stop_timeout: float = 10.0,
                 probe_from_netns: Optional[str] = None) -> None:
        self.path = Path(path)
        self.interface = interface
        self.bpf = bpf
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._probe_host = probe_host
        self._probe_from_netns = probe_from_netns
        self.prober: Optional[Prober] = None
        self.result: Optional[CaptureResult] = None
        self._seen: Dict[bytes, Set[int]] = {START: set(), STOP: set()}
        self._changed = threading.Condition()
        self._failure: Optional[str] = None
        self._failure_type = CaptureIncomplete
        self._file = None
        self._running = False
        self._ended = False
        self._launched_at = 0.0
        self.partial = private_partial(self.path)

    # --- the protocol ---------------------------------------------------------------------
    def start(self) -> "Capture":
        """Launch the backend and return once its start is proven (begin, then prove_started)."""
        return self.begin().prove_started()

    def begin(self) -> "Capture":
        """Launch the backend without waiting for it to go live, so that its start-up (dumpcap's
        takes 18-27 ms) can overlap the server's; nothing is proven until prove_started()."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            # mkdir names the directory it could not make, open the file: whichever stopped it.
            raise CaptureUnwritable(cannot_write(error.filename or self.partial, error, "the capture")) from None
        self._file = os.fdopen(fd, "wb")
        self.prober = Prober(self._probe_host, flush_count=FLUSH_DATAGRAMS if self.needs_flush_burst else 0,
                             sender_netns=self._probe_from_netns)
        full_filter = f"({self.bpf}) or ({self.prober.bpf})" if self.bpf else ""
        self.result = CaptureResult(self.path, self.backend, self.interface, self.bpf)
        self._launched_at = time.monotonic()
        try:
            self._running = True
            self._launch(full_filter)
        except BaseException:
            self.abort()
            raise
        return self

    def prove_started(self) -> "Capture":
        """Return once a start marker has come out of the backend begun by begin()."""
        assert self.result is not None, "prove_started() before begin()"
        try:
            self._await_marker(START, self.start_timeout, "its start probe")
        except BaseException:
            self.abort()
            raise
        self.result.start_proven_after = time.monotonic() - self._launched_at
        return self

    def stop(self) -> CaptureResult:
        """Prove the end, then close: prove_ended, then finish."""
        self.prove_ended()
        return self.finish()

    def prove_ended(self) -> None:
        """Return once the end marker has come out and the backend has handed over its last packet
        and its counters: nothing later is captured. The backend may still be going away (dumpcap
        spends some 25 ms releasing its ring after its output has ended), which finish() waits for;
        in between the caller may do what must come after the capture's end (stop the server)."""
        assert self.result is not None, "prove_ended() before start()"
        began = time.monotonic()
        try:
            self._await_marker(STOP, self.stop_timeout, "its end probe")
            self.result.stop_proven_after = time.monotonic() - began
            self._halt()
        except BaseException:
            self.abort()
            raise
        self._ended = True

    def finish(self, publish: bool = True) -> CaptureResult:
        """Once the end is proven: wait for the backend to be gone, judge its exit and its drop counts,
        and only then give the file its final name (without `publish`, it keeps its private name, and
        result.path says so, until publish()). CaptureIncomplete for any drop or failure."""
        if not self._ended:
            self.prove_ended()
        try:
            self._reap()
        except BaseException:
            self.abort()
            raise
        self._running = False
        self._close_file()
        self._close_prober()
        if self._failure_type is CaptureUnwritable:
            self.discard()
            raise CaptureUnwritable(self._failure)
        if self._failure:
            raise CaptureIncomplete(f"{self.backend} capture {self.partial}: {self._failure}")
        if self.result.dropped:
            detail = f" ({self.result.drop_detail})" if self.result.drop_detail else ""
            raise CaptureIncomplete(
                f"{self.backend} dropped {self.result.dropped} packets on {self.interface}{detail}; the partial "
                f"capture is {self.partial}; give it a larger buffer or less competing load")
        self.result.complete = True
        self.result.path = self.partial
        if publish:
            self.publish()
        return self.result

    def publish(self) -> Path:
        """Give a complete capture its final name (what a concurrent run to the same name published
        before is replaced, as a rerun replaces the last run's file)."""
        assert self.result is not None and self.result.complete, "publish() of a capture not proven complete"
        try:
            os.replace(self.partial, self.path)
        except OSError as error:
            self.discard()
            raise CaptureUnwritable(cannot_write(self.path, error, "the capture")) from None
        self.result.path = self.path
        return self.path

    def discard(self) -> None:
        """Remove the private file of a capture that will never be published (one that could not be
        written whole, or whose verdicts could not be written into it)."""
        try:
            self.partial.unlink(missing_ok=True)
        except OSError:
            pass    # a file system gone read-only keeps it; the error that brought us here says more

    def abort(self, discard: bool = False) -> None:
        """Stop at once; whatever was written stays under the .partial name (an empty file is removed,
        and with `discard` any file: for a capture whose run ended before it was of any use; so is one
        that could not be written whole). Raises nothing of its own: it runs while another error is
        on its way out, which is the one to report."""
        if self._running:
            self._running = False
            self._kill()
        self._close_file()
        self._close_prober()
        try:
            broken = self._failure_type is CaptureUnwritable
            if discard or broken or self.partial.stat().st_size == 0:
                self.discard()
        except OSError:
            pass    # no file to judge (never made, or already removed)

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._running:
            self.stop()
        else:
            self.abort()

    # --- for backends ---------------------------------------------------------------------
    def _comments(self) -> List[str]:
        assert self.prober is not None
        return [f"harness capture: backend={self.backend} interface={self.interface} filter={self.bpf!r}",
                f"harness probes: UDP datagrams to port {self.prober.port} carrying token "
                f"{self.prober.token.decode()} prove the capture's start and end; they are left out of this file"]

    def _deliver(self, data: bytes, raw_block: bytes) -> None:
        """One captured packet: probes are noted, everything else is written as raw_block."""
        assert self.prober is not None and self.result is not None
        probe = self.prober.classify(data)
        if probe is None:
            self._write(raw_block)
            self.result.packets += 1
            return
        self.result.probes_removed += 1
        kind, number = probe
        if kind in self._seen:
            with self._changed:
                self._seen[kind].add(number)
                self._changed.notify_all()

    def _write(self, raw_block: bytes) -> None:
        """Write to the file; a write that fails (the disk full, say) fails the capture, with the first
        reason kept, and what comes later is read and dropped, so the backend is never left blocked."""
        if self._file is None or self._failure_type is CaptureUnwritable:
            return
        try:
            self._file.write(raw_block)
        except OSError as error:
            self._unwritable(error)

    def _unwritable(self, error: OSError) -> None:
        self._fail(cannot_write(self.partial, error, "the capture"), CaptureUnwritable)

    def _fail(self, reason: str, kind=CaptureIncomplete) -> None:
        with self._changed:
            if not self._failure:
                self._failure, self._failure_type = reason, kind
            self._changed.notify_all()

    def _alive(self) -> bool:
        return True

    def _wait_until_live(self, deadline: float) -> None:
        """Return when the backend says it captures (or at `deadline`, or when it fails): only a
        hint of when to send the start marker, never a proof; the marker seen is the proof."""

    def _why_dead(self) -> str:
        return "the capture backend stopped"

    # --- internals --------------------------------------------------------------------------
    def _await_marker(self, kind: bytes, timeout: float, what: str) -> None:
        assert self.prober is not None
        began = time.monotonic()
        deadline = began + timeout
        sent_from = None
        resend_after = MARKER_RESEND_SECONDS
        if kind == START:
            # A marker sent before the backend listens is lost, and the next goes out only after
            # the resend interval: waiting for the backend's own sign of life saves most of it.
            self._wait_until_live(deadline)
        while True:
            number = self.prober.send_marker(kind)
            sent_from = number if sent_from is None else sent_from
            with self._changed:
                self._changed.wait_for(lambda: self._has_marker(kind, sent_from) or self._failure
                                       or not self._alive(), timeout=resend_after)
                if self._has_marker(kind, sent_from):
                    return
                if self._failure:
                    kind = CaptureUnwritable if self._failure_type is CaptureUnwritable else CaptureError
                    raise kind(f"{self.backend} capture failed: {self._failure}")
            if time.monotonic() - began > MARKER_STEADY_SECONDS:
                resend_after = min(resend_after * MARKER_RESEND_GROWTH, MARKER_RESEND_MAX_SECONDS)
            if not self._alive():
                raise CaptureUnavailable(self._why_dead())
            if time.monotonic() > deadline:
                # Before its start nothing was captured, and the empty file is removed: only an end
                # that cannot be proven leaves a partial file to name.
                kept = f" (partial file: {self.partial})" if kind == STOP else ""
                raise CaptureIncomplete(
                    f"{self.backend} on {self.interface} did not show {what} within {timeout:g} s; "
                    f"the capture cannot be proven complete{kept}")

    def _has_marker(self, kind: bytes, first_number: int) -> bool:
        return any(n >= first_number for n in self._seen[kind])

    def _close_file(self) -> None:
        """Close the file; what its buffer could not write fails the capture, as a write would have."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as error:
                self._unwritable(error)

    def _close_prober(self) -> None:
        if self.prober is not None:
            self.prober.close()

    def _launch(self, full_filter: str) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        """Stop capturing; return once the last packet and the final counters are delivered."""
        raise NotImplementedError

    def _reap(self) -> None:
        """After _halt: wait until the backend is gone, failing the capture if it ended badly."""

    def _kill(self) -> None:
        raise NotImplementedError
