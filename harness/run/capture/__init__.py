"""Capture backends behind one interface; see session.py for the completeness protocol."""
from harness.run.capture.session import (Capture, CaptureError, CaptureIncomplete, CaptureResult,
                                     CaptureUnavailable, CaptureUnwritable, partial_paths)

from harness.run import BACKENDS


def make_capture(backend: str, path, **kwargs) -> Capture:
    """A capture by the named backend ("dumpcap" or "scapy") into `path`; see Capture for its keywords
    (interface, bpf, probe_host, start_timeout, stop_timeout) and for how it proves itself complete."""
    if backend == "dumpcap":
        from harness.run.capture.dumpcap import DumpcapCapture
        return DumpcapCapture(path, **kwargs)
    if backend == "scapy":
        from harness.run.capture.packet_socket import PacketSocketCapture
        return PacketSocketCapture(path, **kwargs)
    raise CaptureError(f"unknown capture backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def capture_unavailable_reason(backend: str, interface: str = "lo"):
    """None when the backend can capture on the interface here, else why not (one line)."""
    if backend == "dumpcap":
        from harness.run.capture.dumpcap import probe_dumpcap
        return probe_dumpcap(interface)
    if backend == "scapy":
        from harness.run.capture.packet_socket import probe_packet_socket
        return probe_packet_socket(interface)
    return f"unknown capture backend {backend!r}"


def permission_hint(backend: str) -> str:
    """How to give the backend the right to capture."""
    if backend == "scapy":
        from harness.run.capture.packet_socket import permission_hint as scapy_hint
        return scapy_hint()
    from harness.run.capture.dumpcap import PERMISSION_HINT
    return PERMISSION_HINT


__all__ = ["BACKENDS", "Capture", "CaptureError", "CaptureIncomplete", "CaptureResult",
           "CaptureUnavailable", "CaptureUnwritable", "capture_unavailable_reason", "make_capture", "partial_paths", "permission_hint"]
