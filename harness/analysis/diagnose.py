"""Why a conversation failed its expectation, in one sentence a user can act on. Pure code.

    diagnose(conversation, problems)   # "the server never sent FIN: it did not close the connection"

A failing verdict starts with this sentence; the field-by-field problems follow it. The sentence is
read off the wire, in this order, the first that applies (C is the client, the originator):

TCP
1. refused (Zeek's REJ): nothing listened on the port.
2. no answer to the SYN (S0): the server never answered.
3. the server reset the connection: after the client's data without a reply (it closed with data
   unread, or its program died), after its reply (it closed with data unread), or at any other point.
4. the client reset the connection.
5. a side never sent FIN: it did not close; a FIN never acknowledged.
6. otherwise the first problem the expectation found, in its own words.
But when the segments are the ones expected and only their fields differ (a payload, a length),
that difference is the cause, whatever else the wire shows.
UDP
1. ICMP port unreachable: nothing listened.
2. no datagram back, or fewer than were sent: "only 1 of 2 datagrams was answered".
3. otherwise the first problem.

The run's own reasons (a program that crashed, one that never listened) come before these and are
the runner's to give (harness.run.runner): it knows the processes, this module only the wire.

A connection idle past Zeek's inactivity timeout (TCP 300 s, UDP 60 s) ends there, and its later
packets make a new conversation, as Zeek's conn.log has it (tshark keeps one stream). harness keeps
Zeek's rule, so every command numbers conversations alike; when a checked conversation failed and
its endpoints go on after such a gap, `split_by_idle_timeout` is the cause, naming the conversation
that continues it (a capture whose clock stepped forward splits a connection the same way).
"""
from __future__ import annotations

from typing import Optional, Sequence

from harness.analysis.conversation import SECOND, Conversation
from harness.analysis.zeek import TCP_INACTIVITY_TIMEOUT, UDP_INACTIVITY_TIMEOUT
from harness.analysis.expect import Problem
from harness.wire.packet import FIN, RST, SYN, TCP, seq_ge

__all__ = ["diagnose", "first_line", "split_by_idle_timeout"]


def first_line(problem: Problem) -> str:
    return str(problem).splitlines()[0]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# The lines of a segment's difference that are about its fields, not about which segments there are.
_FIELD_DIFFERENCES = ("len:", "data:", "seq:", "ack:")


def _field_difference(problems: Sequence[Problem]) -> Optional[str]:
    """When every problem is a segment whose fields differ (the segments themselves are the ones
    expected), the first difference in words: 'segment 4 (frame 4): data: expected "yp", wire "y"'."""
    described = None
    for problem in problems:
        lines = str(problem).splitlines()
        details = [line.strip() for line in lines[1:]]
        if not lines[0].startswith("segment ") or not details or not all(
                detail.startswith(_FIELD_DIFFERENCES) for detail in details):
            return None
        if described is None:
            described = f"{lines[0].split(':', 1)[0]}: {details[0]}"
    return described


def diagnose(conversation: Optional[Conversation], problems: Sequence[Problem]) -> Optional[str]:
    """The cause of the problems, in words, or None when there are none."""
    if not problems:
        return None
    if conversation is None:
        return first_line(problems[0])
    fields = _field_difference(problems)
    if fields is not None:
        return f"the wire differs from the expectation in one field: {fields}"
    reason = _tcp(conversation) if conversation.proto == TCP else _udp(conversation)
    return reason or f"the wire does not match the expectation: {first_line(problems[0])}"


def _tcp(conversation: Conversation) -> Optional[str]:
    zeek = conversation.zeek
    state = zeek.conn_state
    orig, resp = zeek.orig, zeek.resp
    port = conversation.resp.port
    if state == "REJ" and not resp.payload_bytes:
        return f"the connection was refused: nothing listened on port {port}"
    if state == "S0":
        return f"the server never answered the client's SYN on port {port}"
    segments = conversation.segments
    server_reset = next((s for s in segments if not s.is_orig and s.flags & RST), None)
    if server_reset is not None or state in ("RSTR", "RSTRH"):
        sent = _plural(orig.payload_bytes, "byte")
        if orig.payload_bytes and not resp.payload_bytes:
            return (f"the server reset the connection (RST) after the client's {sent}, without replying: "
                    f"it closed the socket with data unread, or its program died")
        if resp.payload_bytes:
            return (f"the server reset the connection (RST) after replying "
                    f"({_plural(resp.payload_bytes, 'byte')}): it closed the socket with data unread")
        return "the server reset the connection (RST)"
    if any(s.is_orig and s.flags & RST for s in segments) or state == "RSTO":
        return "the client reset the connection (RST) instead of closing it"
    fins = {side: [s for s in segments if s.is_orig == side and s.flags & FIN] for side in (True, False)}
    if segments and not any(s.flags & SYN for s in segments[:1]):
        opened = "the capture began mid-connection"
    else:
        opened = ""
    if not fins[False]:
        return "the server never sent FIN: it did not close the connection" + (f" ({opened})" if opened else "")
    if not fins[True]:
        return "the client never sent FIN: it did not close the connection" + (f" ({opened})" if opened else "")
    for side, name in ((True, "client"), (False, "server")):
        fin = fins[side][0]
        end = (fin.rel_seq or 0) + fin.length + 1
        if not any(s.is_orig != side and s.rel_ack is not None and s.packet.frame > fin.packet.frame
                   and seq_ge(s.rel_ack, end) for s in segments):
            return f"the {name}'s FIN (frame {fin.packet.frame}) was never acknowledged"
    return None


def _udp(conversation: Conversation) -> Optional[str]:
    zeek = conversation.zeek
    sent, answered = zeek.orig.packets, zeek.resp.packets
    if conversation.unreachable:
        return (f"nothing listened on UDP port {conversation.resp.port}: the client's datagrams met "
                f"ICMP port unreachable")
    if sent and not answered:
        return f"the server never answered ({_plural(sent, 'datagram')} sent, none answered)"
    if answered < sent:
        return f"only {answered} of {sent} datagrams {'was' if answered == 1 else 'were'} answered"
    return None


def split_by_idle_timeout(conversation: Conversation, later: int, later_first_ns: int,
                          later_first_frame: int) -> Optional[str]:
    """The cause, when conversation `later` (same endpoints, first packet at later_first_ns) continues
    `conversation` after a gap past the inactivity timeout; None when the gap is shorter."""
    timeout = TCP_INACTIVITY_TIMEOUT if conversation.proto == TCP else UDP_INACTIVITY_TIMEOUT
    gap = later_first_ns - conversation.last_time_ns
    if gap < timeout:
        return None
    return (f"the connection goes on as conversation {later} at frame {later_first_frame}, after "
            f"{gap / SECOND:g} s without a packet: past the {timeout // SECOND} s inactivity timeout a connection "
            f"ends, as in Zeek's conn.log (a forward step of the capture's clock does the same; tshark keeps one "
            f"stream); check the rest with --conversation {later}")
