"""Wait until the kernel has nothing more to send on a port: the moment a capture's end may be proven.

A process that has exited may still have segments to come: the ACK of a peer's FIN is sent by the
kernel after close() returns, and a delayed ACK some 40 ms after the data it acknowledges. So the
socket table is read (harness.run.sockets) until every socket on the port is quiet:

* TCP: LISTEN, FIN_WAIT2, TIME_WAIT and CLOSE are quiet (none sends unless the other side does).
  ESTABLISHED and CLOSE_WAIT are quiet when nothing is left unacknowledged either way: the socket's
  own send queue is empty, and so is its peer's (when the peer is in the tables watched: on
  loopback, or in another namespace given in `netns`), which also means no ACK is still due,
  since the peer would then hold unacknowledged bytes; a peer whose FIN is not yet acknowledged
  (FIN_WAIT1, LAST_ACK, CLOSING) is not quiet. That is how a server that keeps its connection open
  settles: it will send nothing until its program acts. Every other state is busy.
* UDP: quiet when nothing waits in either buffer (every datagram read, every reply sent).

Every wait is bounded and, on timeout, names the sockets that would not settle by their state.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from harness.errors import RunFailed
from harness.run import sockets
from harness.run.netns import in_netns

QUIET_STATES = {"TIME_WAIT", "CLOSE", "FIN_WAIT2", "LISTEN"}
IDLE_WHEN_ACKNOWLEDGED = {"ESTABLISHED", "CLOSE_WAIT"}
FIN_UNACKNOWLEDGED = {"FIN_WAIT1", "LAST_ACK", "CLOSING"}
POLL_SECONDS = 0.002


class SettleTimeout(RunFailed, TimeoutError):
    """Sockets on the port kept something to send past the timeout; str() names them by state."""


def _tables(proto: str, port: int, netns: Sequence[Optional[str]]) -> List[sockets.Socket]:
    found: List[sockets.Socket] = []
    for name in netns:
        if name is None:
            found += sockets.table(proto, port)
        else:
            with in_netns(name):
                found += sockets.table(proto, port)
    return found


def busy(proto: str, port: int, netns: Sequence[Optional[str]] = (None,)) -> List[sockets.Socket]:
    """The sockets on `port` that may still send something, judged across the tables of `netns`."""
    found = _tables(proto, port, netns)
    if proto == "udp":
        return [s for s in found if s.rqueue or s.wqueue]
    peers = sockets.sockets_by_peer(found)
    still = []
    for s in found:
        if s.state in QUIET_STATES:
            continue
        if s.state in IDLE_WHEN_ACKNOWLEDGED and not s.wqueue:
            peer = peers.get((s.remote, s.local))
            if peer is None or (not peer.wqueue and peer.state not in FIN_UNACKNOWLEDGED):
                continue
        still.append(s)
    return still


def wait_settled(port: int, timeout: float, proto: str = "tcp",
                 netns: Union[None, str, Sequence[Optional[str]]] = None) -> None:
    """Return once no socket on `port` can still send; SettleTimeout naming them if time runs out.
    `netns`: a namespace name, or several (None for this one) whose tables are judged together."""
    spaces: Sequence[Optional[str]] = (netns,) if netns is None or isinstance(netns, str) else tuple(netns)
    deadline = time.monotonic() + timeout
    while True:
        still = busy(proto, port, spaces)
        if not still:
            return
        if time.monotonic() > deadline:
            states: Dict[str, int] = {}
            for s in still:
                states[s.state] = states.get(s.state, 0) + 1
            summary = ", ".join(f"{n} in {state}" for state, n in sorted(states.items()))
            where = f" in network namespace{'s' if len(spaces) > 1 else ''} {', '.join(map(str, spaces))}" \
                if spaces != (None,) else ""
            raise SettleTimeout(f"{proto.upper()} sockets on port {port}{where} did not settle within "
                                f"{timeout:g} s ({summary})")
        time.sleep(POLL_SECONDS)  # ok: polling a kernel table that offers no notification


def wait_tcp_settled(port: int, timeout: float, netns: Optional[str] = None) -> None:
    """wait_settled for TCP, in this namespace or in `netns`."""
    wait_settled(port, timeout, "tcp", netns)


def sockets_on_port(port: int, tables: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """(local->remote, state) of every TCP socket on `port` here; from `tables` (/proc/net/tcp-like
    files, another process's namespace's) when given."""
    found = sockets._proc_tables("tcp", port, tuple(tables)) if tables else sockets.table("tcp", port)
    return [(f"{s.local}->{s.remote}", s.state) for s in found]


__all__ = ["QUIET_STATES", "SettleTimeout", "busy", "sockets_on_port", "wait_settled", "wait_tcp_settled"]
