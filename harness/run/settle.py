"""Wait until the kernel has nothing more to send on a TCP port.

A process that has exited may still have segments to come: the ACK of a peer's FIN is sent by
the kernel after close() returns. Before a capture's end is proven, every socket on the
scenario's port must be gone or in TIME_WAIT (which sends nothing unless the peer does).

The kernel is asked through NETLINK_SOCK_DIAG (what `ss` uses) with a filter on the port, so the
answer costs the same with forty thousand sockets in TIME_WAIT as with none; /proc/net/tcp, which
lists every socket, is the fallback where sock_diag is not available.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import Dict, Iterable, List, Optional, Tuple

from harness.errors import RunFailed
from harness.run.netns import in_netns

# Kernel state numbers, include/net/tcp_states.h.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
              12: "NEW_SYN_RECV"}
QUIET_STATES = {"TIME_WAIT", "CLOSE", "FIN_WAIT2", "LISTEN"}
POLL_SECONDS = 0.002
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
# The calling thread's own namespace (/proc/net follows the process's main thread instead).
THREAD_TABLES = ("/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6")


# NETLINK_SOCK_DIAG, include/uapi/linux/{netlink,sock_diag,inet_diag}.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP, INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ = 1, 11, 12
_NLMSG_HEADER = struct.Struct("=IHHII")
_BYTECODE_OP = struct.Struct("=BBH")
_DIAG_MESSAGE_STATE_AT = 1     # inet_diag_msg: family, state, ...
_DIAG_SOCKID = struct.Struct("!HH16s16s")   # sport, dport, src, dst (network order)


class SettleTimeout(RunFailed, TimeoutError):
    """Sockets on the port kept something to send past the timeout; str() names them by state."""


def _port_filter(port: int) -> bytes:
    """Bytecode for `sport == port or dport == port`, laid out as `ss` lays out an OR: A; a jump over
    B; B. An op goes `yes` bytes on when its test holds and `no` bytes on when it fails; landing
    exactly at the end accepts, 4 bytes past it rejects. The kernel's audit follows the `yes`
    chain, so every `no` target must lie on it."""
    return (_BYTECODE_OP.pack(INET_DIAG_BC_S_EQ, 8, 12) + _BYTECODE_OP.pack(0, 0, port)
            + _BYTECODE_OP.pack(INET_DIAG_BC_JMP, 4, 12)
            + _BYTECODE_OP.pack(INET_DIAG_BC_D_EQ, 8, 12) + _BYTECODE_OP.pack(0, 0, port))


def _sock_diag_on_port(port: int) -> List[Tuple[str, str]]:
    """sockets_on_port through sock_diag, in the calling thread's network namespace; OSError if refused."""
    found = []
    bytecode = _port_filter(port)
    attribute = struct.pack("=HH", 4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as diag:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + bytes(48) + attribute
            diag.sendall(_NLMSG_HEADER.pack(16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                                            family, 0) + request)
            done = False
            while not done:
                data = diag.recv(1 << 16)
                at = 0
                while at + 16 <= len(data):
                    length, kind = _NLMSG_HEADER.unpack_from(data, at)[:2]
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        error = -struct.unpack_from("=i", data, at + 16)[0]
                        raise OSError(error, f"sock_diag: {os.strerror(error)}")
                    state = data[at + 16 + _DIAG_MESSAGE_STATE_AT]
                    sport, dport = _DIAG_SOCKID.unpack_from(data, at + 16 + 4)[:2]
                    found.append((f"{sport}->{dport}", TCP_STATES.get(state, str(state))))
                    at += (length + 3) & ~3
                if not data:
                    break
    return found


def sockets_on_port(port: int, tables: Iterable[str] = TABLES) -> List[Tuple[str, str]]:
    """(local->remote, state) of every TCP socket with `port` at either end, in the calling thread's
    network namespace; from sock_diag when the kernel offers it, else from `tables`."""
    try:
        return _sock_diag_on_port(port)
    except OSError:
        return _sockets_on_port_from_proc(port, tables)


def _sockets_on_port_from_proc(port: int, tables: Iterable[str] = TABLES) -> List[Tuple[str, str]]:
    found = []
    for table in tables:
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    local, remote, state = fields[1], fields[2], int(fields[3], 16)
                    if int(local.rsplit(":", 1)[1], 16) == port or int(remote.rsplit(":", 1)[1], 16) == port:
                        found.append((f"{local}->{remote}", TCP_STATES.get(state, str(state))))
        except FileNotFoundError:
            continue
    return found


def sockets_on_port_in_netns(port: int, netns: str) -> List[Tuple[str, str]]:
    """sockets_on_port for network namespace NETNS (`ip netns` name): this thread enters it and
    reads its own tables, so it works after every process of that namespace has exited."""
    with in_netns(netns):
        return sockets_on_port(port, THREAD_TABLES)


def wait_tcp_settled(port: int, timeout: float, netns: Optional[str] = None) -> None:
    """Return once no socket on `port` can still send; fail naming the sockets that would not settle.

    FIN_WAIT2 and LISTEN count as settled: neither sends unless the other side does.
    With `netns`, the sockets of that network namespace are the ones watched.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = sockets_on_port(port) if netns is None else sockets_on_port_in_netns(port, netns)
        busy = [(sock, state) for sock, state in found if state not in QUIET_STATES]
        if not busy:
            return
        if time.monotonic() > deadline:
            states: Dict[str, int] = {}
            for _, state in busy:
                states[state] = states.get(state, 0) + 1
            summary = ", ".join(f"{n} in {s}" for s, n in sorted(states.items()))
            where = f" in network namespace {netns}" if netns else ""
            raise SettleTimeout(f"TCP sockets on port {port}{where} did not settle within {timeout:g} s ({summary})")
        time.sleep(POLL_SECONDS)  # ok: polling a kernel table that offers no notification
