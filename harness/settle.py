"""Wait until the kernel has nothing more to send on a TCP port.

A process that has exited may still have segments to come: the ACK of a peer's FIN is sent by
the kernel after close() returns. Before a capture's end is proven, every socket on the
scenario's port must be gone or in TIME_WAIT (which sends nothing unless the peer does), as
/proc/net/tcp and /proc/net/tcp6 show for the current network namespace.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Tuple

from harness.netns import in_netns

# Kernel state numbers, include/net/tcp_states.h.
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
              12: "NEW_SYN_RECV"}
QUIET_STATES = {"TIME_WAIT", "CLOSE", "FIN_WAIT2", "LISTEN"}
POLL_SECONDS = 0.002
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
# The calling thread's own namespace (/proc/net follows the process's main thread instead).
THREAD_TABLES = ("/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6")


def sockets_on_port(port: int, tables: Iterable[str] = TABLES) -> List[Tuple[str, str]]:
    """(local:remote, state) of every TCP socket with `port` at either end."""
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
            raise TimeoutError(f"TCP sockets on port {port}{where} did not settle within {timeout:g} s ({summary})")
        time.sleep(POLL_SECONDS)  # ok: polling a kernel table that offers no notification
