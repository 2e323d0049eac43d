"""The "scapy" backend: a Linux AF_PACKET socket read by a thread of this process, written as pcapng.
scapy is used only for libpcap's filter compiler (its bindings); the capturing is done here.

Why it looks the way it does:

* Packets are read one at a time from a plain AF_PACKET socket, so each reaches `_deliver` the
  moment the kernel queues it: no ring blocks, no 250 ms hand-over as with dumpcap, which makes
  the start and end markers come out within a millisecond or so.
* The filter is compiled by libpcap through scapy's bindings (`scapy.libs.winpcapy`), with a
  snapshot length of 262144 like libpcap's own captures. scapy's `compile_filter` is not used:
  it fixes the snapshot length at 65535, and loopback frames run to 65549 bytes, so the kernel
  would cut their last bytes off.
* The socket is opened with protocol 0, which receives nothing, and is bound to the interface
  only after the filter is attached: no packet can slip in before the filter applies.
* On loopback the kernel shows every packet twice, once leaving (PACKET_OUTGOING) and once
  arriving. Like libpcap, the outgoing copy is dropped, here by two instructions in front of
  the compiled filter, so the duplicates never take room in the socket buffer.
* Timestamps are the kernel's (SO_TIMESTAMPNS), the original length comes from PACKET_AUXDATA
  (a filter's snapshot length may have cut the frame), and VLAN tags the driver stripped are
  put back as libpcap does.
* Without libpcap, the filters the harness itself builds, `(tcp port N) or (udp dst port M)` and
  the like, are matched in Python exactly as libpcap's code would match them; any other filter
  is refused with what to install.
"""
from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import os
import re
import select
import socket
import struct
import sys
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from harness.wire import pcapng

from harness.run import tools
from harness.run.capture.session import Capture, CaptureError, CaptureUnavailable

DEFAULT_BUFFER_MIB = 32
SNAPLEN = 262144
EXIT_TIMEOUT_SECONDS = 10.0
# Only bounds how stale the kernel's drop counters may get; stopping is signalled through a pipe.
POLL_INTERVAL_SECONDS = 0.1

INSTALL_SCAPY_HINT = "install it with `pip install scapy`"
INSTALL_LIBPCAP_HINT = f"install libpcap with `{tools.tool('libpcap').install}` (Debian/Ubuntu)"


def permission_hint() -> str:
    return ("run as root, or give the Python interpreter the capture capabilities: "
            f"`setcap cap_net_raw,cap_net_admin+eip {os.path.realpath(sys.executable)}`")


# Linux constants the socket module does not export.
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS_OLD = 35
SO_TIMESTAMPNS_NEW = 64
SIOCGIFHWADDR = 0x8927
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
LINKTYPE_ETHERNET = 1
DLT_EN10MB = 1
# ARPHRD type -> (pcapng link type, libpcap DLT to compile filters for)
SUPPORTED_LINKS = {ARPHRD_ETHER: (LINKTYPE_ETHERNET, DLT_EN10MB),
                   ARPHRD_LOOPBACK: (LINKTYPE_ETHERNET, DLT_EN10MB)}

# Classic BPF opcodes, for the instructions written here by hand.
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
SKF_AD_PKTTYPE = 0xFFFFF000 + 4   # SKF_AD_OFF + SKF_AD_PKTTYPE: the sll_pkttype of the packet

Instruction = Tuple[int, int, int, int]   # (code, jt, jf, k), as struct sock_filter holds it
_AUXDATA = struct.Struct("=IIIHHHH")
_AUXDATA_SPACE = socket.CMSG_SPACE(_AUXDATA.size)
_TIMESPEC_SPACE = socket.CMSG_SPACE(16)


class _LibpcapMissing(Exception):
    """libpcap could not be loaded, so filters cannot be compiled to BPF."""


# --- environment ---------------------------------------------------------------------------------

def _require_scapy() -> None:
    if importlib.util.find_spec("scapy") is None:
        raise CaptureUnavailable(f"scapy is not installed: {INSTALL_SCAPY_HINT}")


def _open_packet_socket() -> socket.socket:
    """A packet socket that receives nothing until it is bound with a protocol."""
    if not hasattr(socket, "AF_PACKET"):
        raise CaptureUnavailable(f"the scapy backend captures with Linux packet sockets, "
                                 f"which {sys.platform} does not have: use the dumpcap backend")
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise CaptureUnavailable(f"no permission to open a packet socket: {permission_hint()}") from None
    except OSError as error:
        raise CaptureUnavailable(f"cannot open a packet socket: {error.strerror or error}") from None


def _require_interface(interface: str) -> None:
    try:
        socket.if_nametoindex(interface)
    except OSError:
        raise CaptureUnavailable(f"there is no network interface named {interface!r} here "
                                 f"(see `ip link`)") from None


def _link_of(sock: socket.socket, interface: str) -> Tuple[int, int, bool]:
    """(pcapng link type, DLT, is loopback) of the interface, or CaptureUnavailable."""
    request = struct.pack("16s16x", interface.encode()[:15])
    try:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    except OSError as error:
        raise CaptureUnavailable(f"cannot read the link type of {interface}: {error.strerror or error}") from None
    arphrd = struct.unpack_from("=H", answer, 16)[0]
    if arphrd not in SUPPORTED_LINKS:
        raise CaptureUnavailable(f"the scapy backend captures only Ethernet and loopback interfaces; "
                                 f"{interface} has ARPHRD type {arphrd}: use the dumpcap backend")
    linktype, dlt = SUPPORTED_LINKS[arphrd]
    return linktype, dlt, arphrd == ARPHRD_LOOPBACK


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _attach(sock: socket.socket, program: Sequence[Instruction]) -> None:
    instructions = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    fprog = _SockFprog(len(program), ctypes.cast(instructions, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def _bind(sock: socket.socket, interface: str) -> None:
    try:
        sock.bind((interface, ETH_P_ALL))
    except OSError as error:
        raise CaptureUnavailable(f"cannot capture on {interface}: {error.strerror or error}") from None


def probe_packet_socket(interface: str = "lo") -> Optional[str]:
    """None when this backend can capture on the interface here, else the one-line reason it cannot."""
    sock = None
    try:
        _require_scapy()
        _require_interface(interface)
        sock = _open_packet_socket()
        _link_of(sock, interface)
        _attach(sock, [(BPF_RET_K, 0, 0, 0)])   # bound for the check only: let nothing in
        _bind(sock, interface)
    except CaptureUnavailable as error:
        return str(error)
    finally:
        if sock is not None:
            sock.close()
    return None


# --- filters -------------------------------------------------------------------------------------

def compile_with_libpcap(expression: str, dlt: int, snaplen: int = SNAPLEN) -> List[Instruction]:
    """libpcap's BPF code for the expression: _LibpcapMissing without libpcap, CaptureError if it is bad."""
    try:
        from scapy.libs import winpcapy
        from scapy.libs.structures import bpf_program
    except OSError as error:   # scapy raises OSError when it cannot find libpcap.so
        raise _LibpcapMissing(str(error)) from None
    handle = winpcapy.pcap_open_dead(dlt, snaplen)
    if not handle:
        raise CaptureError(f"libpcap could not open a handle to compile filters for link type {dlt}")
    program = bpf_program()
    try:
        if winpcapy.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1, -1) < 0:
            reason = (winpcapy.pcap_geterr(handle) or b"no reason given").decode("utf-8", "replace")
            raise CaptureError(f"libpcap rejects the capture filter {expression!r}: {reason}")
        instructions = [(i.code, i.jt, i.jf, i.k & 0xFFFFFFFF) for i in program.bf_insns[:program.bf_len]]
        winpcapy.pcap_freecode(ctypes.byref(program))
    finally:
        winpcapy.pcap_close(handle)
    return instructions


class _Rejected(Exception):
    """A load past the end of the frame: in BPF this ends the whole program with 'reject'."""


def _byte(frame: bytes, at: int) -> int:
    if at >= len(frame):
        raise _Rejected
    return frame[at]


def _half(frame: bytes, at: int) -> int:
    if at + 2 > len(frame):
        raise _Rejected
    return frame[at] << 8 | frame[at + 1]


_PORT_TERM = re.compile(r"\((tcp|udp) (?:(src|dst) )?port (0|[1-9][0-9]{0,4})\)")
_PROTOCOLS = {"tcp": 6, "udp": 17}


def python_filter(expression: str) -> Optional[Callable[[bytes], bool]]:
    """An exact Python equivalent of libpcap's code for Ethernet frames, for filters of the shape
    `(tcp|udp [src|dst] port N) or ...`; None for any other filter.

    It mirrors what libpcap generates: IPv6 only when TCP/UDP is the first next header; IPv4 only
    for unfragmented or first fragments, ports found through the IHL without checking it; terms
    tried left to right, source port before destination port, and a load past the end of the
    frame rejecting the whole frame, as it ends a BPF program.
    """
    terms = []
    for text in expression.split(" or "):
        match = _PORT_TERM.fullmatch(text)
        if not match or int(match.group(3)) > 0xFFFF:
            return None
        terms.append((_PROTOCOLS[match.group(1)], match.group(2), int(match.group(3))))

    def term_matches(frame: bytes, proto: int, direction: Optional[str], port: int) -> bool:
        ethertype = _half(frame, 12)
        if ethertype == 0x86DD:
            if _byte(frame, 20) != proto:
                return False
            ports_at = 54
        elif ethertype == 0x0800:
            if _byte(frame, 23) != proto or _half(frame, 20) & 0x1FFF:
                return False
            ports_at = 14 + 4 * (_byte(frame, 14) & 0x0F)
        else:
            return False
        if direction != "dst" and _half(frame, ports_at) == port:
            return True
        return direction != "src" and _half(frame, ports_at + 2) == port

    def accepts(frame: bytes) -> bool:
        try:
            return any(term_matches(frame, *term) for term in terms)
        except _Rejected:
            return False

    return accepts


def _without_outgoing(program: Sequence[Instruction]) -> List[Instruction]:
    """The program behind a check that rejects the leaving copy of each loopback packet."""
    return [(BPF_LD_W_ABS, 0, 0, SKF_AD_PKTTYPE),
            (BPF_JEQ_K, 0, 1, PACKET_OUTGOING),
            (BPF_RET_K, 0, 0, 0),
            *program]


# --- pcapng blocks (harness.wire.pcapng writes them; times in nanoseconds, if_tsresol 9) ----------------

def section_header_block(comments: Sequence[str], application: str) -> bytes:
    uname = os.uname()
    return pcapng.section_header_block([*(pcapng.text_option(pcapng.OPT_COMMENT, c) for c in comments),
                                        pcapng.text_option(pcapng.SHB_OS, f"{uname.sysname} {uname.release}"),
                                        pcapng.text_option(pcapng.SHB_USERAPPL, application)])


def interface_description_block(linktype: int, snaplen: int, name: str, bpf: str) -> bytes:
    libpcap_filter_string = b"\0"
    options = [pcapng.text_option(pcapng.IF_NAME, name), (pcapng.IF_TSRESOL, bytes([9]))]
    if bpf:
        options.append((pcapng.IF_FILTER, libpcap_filter_string + bpf.encode()))
    return pcapng.interface_description_block(linktype, snaplen, options)


def enhanced_packet_block(ns: int, frame: bytes, original_length: int) -> bytes:
    return pcapng.enhanced_packet_block(0, ns, frame, original_length)


def interface_statistics_block(ns: int, started_ns: int, received: int, dropped: int, delivered: int) -> bytes:
    return pcapng.interface_statistics_block(0, ns, [
        pcapng.timestamp_option(pcapng.ISB_STARTTIME, started_ns), pcapng.timestamp_option(pcapng.ISB_ENDTIME, ns),
        pcapng.u64_option(pcapng.ISB_IFRECV, received), pcapng.u64_option(pcapng.ISB_IFDROP, dropped),
        pcapng.u64_option(pcapng.ISB_USRDELIV, delivered)])


# --- the capture ---------------------------------------------------------------------------------

def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class PacketSocketCapture(Capture):
    backend = "scapy"
    needs_flush_burst = False  # packets come one by one, as they arrive

    def __init__(self, *args, buffer_mib: int = DEFAULT_BUFFER_MIB, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer_mib = buffer_mib
        self.receive_buffer_bytes: Optional[int] = None   # what the kernel granted
        self.filtered_in_python = False
        self._socket: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop_requested = threading.Event()
        self._statistics_final = threading.Event()
        self._wake_read = self._wake_write = -1
        self._accepts: Optional[Callable[[bytes], bool]] = None
        self._linktype = LINKTYPE_ETHERNET
        self._timestamp_option = SO_TIMESTAMPNS_NEW
        self._timespec = struct.Struct("=qq")
        self._kernel_received = 0
        self._kernel_dropped = 0
        self._delivered = 0
        self._started_ns = 0
        self._death: Optional[str] = None

    # --- the backend hooks ----------------------------------------------------------------------
    def _launch(self, full_filter: str) -> None:
        _require_scapy()
        _require_interface(self.interface)
        self._socket = sock = _open_packet_socket()
        self._linktype, dlt, loopback = _link_of(sock, self.interface)
        program = self._kernel_program(full_filter, dlt)
        self._configure(sock)
        _attach(sock, _without_outgoing(program) if loopback else program)
        self._wake_read, self._wake_write = os.pipe()
        self._started_ns = time.time_ns()
        comments = self._comments()
        if self.filtered_in_python:
            comments.append("harness scapy backend: libpcap was not found, so the filter was applied "
                            "in Python after the kernel handed over every packet")
        self._write(section_header_block(comments, self._application()))
        self._write(interface_description_block(self._linktype, SNAPLEN, self.interface, full_filter))
        _bind(sock, self.interface)
        sock.setblocking(False)
        # From here on the thread owns the socket and the pipe's read end, and closes them.
        self._thread = threading.Thread(target=self._capture_loop, name=f"scapy-capture-{self.interface}",
                                        daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        self._request_stop()
        if not self._statistics_final.wait(EXIT_TIMEOUT_SECONDS):
            raise CaptureError(f"the scapy capture thread on {self.interface} did not stop within "
                               f"{EXIT_TIMEOUT_SECONDS:g} s")
        self._write(interface_statistics_block(time.time_ns(), self._started_ns, self._kernel_received,
                                               self._kernel_dropped, self._delivered))
        self.result.received = self._kernel_received
        self.result.dropped = self._kernel_dropped

    def _kill(self) -> None:
        self._request_stop()
        if self._thread is None:
            self._release()
        else:
            # Joined so that nothing is written to the file once abort() has closed it.
            self._thread.join(timeout=EXIT_TIMEOUT_SECONDS)

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _why_dead(self) -> str:
        return self._death or f"the scapy capture thread on {self.interface} stopped without saying why"

    # --- setup ----------------------------------------------------------------------------------
    def _kernel_program(self, full_filter: str, dlt: int) -> List[Instruction]:
        accept_all = [(BPF_RET_K, 0, 0, SNAPLEN)]
        if not full_filter:
            return accept_all
        try:
            return compile_with_libpcap(full_filter, dlt)
        except _LibpcapMissing as missing:
            self._accepts = python_filter(full_filter) if self._linktype == LINKTYPE_ETHERNET else None
            if self._accepts is None:
                raise CaptureUnavailable(f"the scapy backend cannot compile the capture filter {full_filter!r} "
                                         f"({missing}): {INSTALL_LIBPCAP_HINT}") from None
            self.filtered_in_python = True
            return accept_all

    def _configure(self, sock: socket.socket) -> None:
        wanted = self.buffer_mib << 20
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, wanted)
        except PermissionError:
            # Without CAP_NET_ADMIN the kernel caps the buffer at net.core.rmem_max; drops will say so.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
        self.receive_buffer_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)
            self._timestamp_option, self._timespec = SO_TIMESTAMPNS_NEW, struct.Struct("=qq")
        except OSError:   # kernels before 5.1 have only the native-timespec variant
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_OLD, 1)
            self._timestamp_option, self._timespec = SO_TIMESTAMPNS_OLD, struct.Struct("@ll")

    def _application(self) -> str:
        try:
            from scapy import VERSION as scapy_version
        except ImportError:
            scapy_version = "?"
        return (f"harness scapy backend (AF_PACKET socket, scapy {scapy_version}, "
                f"Python {sys.version.split()[0]})")

    # --- the capture thread ---------------------------------------------------------------------
    def _capture_loop(self) -> None:
        try:
            poller = select.poll()
            poller.register(self._socket.fileno(), select.POLLIN)
            poller.register(self._wake_read, select.POLLIN)
            buffer = bytearray(SNAPLEN)
            while not self._stop_requested.is_set():
                if not poller.poll(POLL_INTERVAL_SECONDS * 1000):
                    self._collect_statistics()   # the kernel's counters are 32 bits and reset on read
                    continue
                while not self._stop_requested.is_set() and self._receive(buffer):
                    pass
            self._collect_statistics()
        except Exception as error:
            self._death = f"capturing on {self.interface} failed: {_one_line(error)}"
            self._fail(self._death)
        finally:
            self._statistics_final.set()
            # Closing a packet socket waits for an RCU grace period (10-30 ms); done here, after
            # the final counters are out, it does not hold up stop().
            self._release()

    def _receive(self, buffer: bytearray) -> bool:
        """Deliver one packet if one is queued; False when the socket is empty."""
        try:
            length, ancillary, _flags, _address = self._socket.recvmsg_into(
                [buffer], _AUXDATA_SPACE + _TIMESPEC_SPACE, socket.MSG_TRUNC)
        except BlockingIOError:
            return False
        captured = min(length, len(buffer))
        frame = bytes(memoryview(buffer)[:captured])
        original_length = length
        ns = 0
        vlan = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == self._timestamp_option and len(data) >= self._timespec.size:
                seconds, nanoseconds = self._timespec.unpack_from(data)
                ns = seconds * 1_000_000_000 + nanoseconds
            elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                status, original_length, _snaplen, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
                if status & TP_STATUS_VLAN_VALID or tci:
                    vlan = (tpid if status & TP_STATUS_VLAN_TPID_VALID else ETH_P_8021Q, tci)
        if self._accepts is not None and not self._accepts(frame):
            return True
        if vlan is not None and self._linktype == LINKTYPE_ETHERNET and len(frame) >= 12:
            # The driver moved the tag into metadata; the wire had it after the MAC addresses.
            frame = frame[:12] + struct.pack("!HH", *vlan) + frame[12:]
            original_length += 4
        self._delivered += 1
        self._deliver(frame, enhanced_packet_block(ns or time.time_ns(), frame, max(original_length, len(frame))))
        return True

    def _collect_statistics(self) -> None:
        packets, drops = struct.unpack("=II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self._kernel_received += packets   # the kernel counts the dropped ones in tp_packets too
        self._kernel_dropped += drops

    # --- teardown -------------------------------------------------------------------------------
    def _request_stop(self) -> None:
        self._stop_requested.set()
        if self._wake_write >= 0:
            try:
                os.write(self._wake_write, b"x")
            except OSError:
                pass   # the thread has gone and closed the read end: there is no one left to wake
            os.close(self._wake_write)
            self._wake_write = -1

    def _release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._wake_read >= 0:
            os.close(self._wake_read)
            self._wake_read = -1


__all__ = ["PacketSocketCapture", "compile_with_libpcap", "permission_hint", "probe_packet_socket", "python_filter"]
