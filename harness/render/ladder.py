"""A conversation drawn as a ladder in text: one row per packet, time flowing down; every arrow is
as long as the longest row needs, and payloads are elided to PAYLOAD_SHOWN characters. For TCP, a
key line says what the marks mean, a line opens each phase (handshake, data, teardown), and a row
ends with each side's new TCP state where it changes (harness.analysis.tcp_states).

    frame      time  client 127.0.0.1:40312          server 127.0.0.1:8080
        1  0.000000  ---- SYN          seq=0 ack=-  len=0 --->
        2  0.000021  <--- SYN, ACK     seq=0 ack=1  len=0 ----
"""
from __future__ import annotations

from typing import Dict, Optional

from harness.analysis.conversation import SECOND, Conversation, Segment, describe_segment
from harness.analysis.tcp_states import phases, state_changes, tcp_states
from harness.wire.packet import TCP


KEY = ("seq/ack are relative, as Wireshark shows them; -- phase --: handshake, data, teardown; "
       "[side STATE]: that side's TCP state from that segment on")
PAYLOAD_SHOWN = 16      # characters of a payload's repr a row shows; longer ones end in "..."


def segment_label(segment: Segment, proto: int) -> str:
    text = describe_segment(segment, proto, padded=True)
    if segment.retransmitted:
        text += " [retransmission]"
    if segment.payload:
        shown = repr(segment.payload)
        text += " " + (shown if len(shown) <= PAYLOAD_SHOWN else shown[:PAYLOAD_SHOWN - 3] + "...")
    return text


def render(conversation: Conversation, pcap: Optional[str] = None,
           notes: Optional[Dict[int, str]] = None, width: int = 58) -> str:
    """The ladder as text. `notes` maps frame numbers to a verdict shown at the row's end."""
    notes = notes or {}
    start = conversation.segments[0].packet.time_ns if conversation.segments else 0
    lines = []
    if pcap:
        lines.append(f"pcap: {pcap}")
    lines.append(f"conversation {conversation.index}: {conversation.describe()}")
    rows = [(s.packet.frame, s.packet.time_ns, s.is_orig, segment_label(s, conversation.proto)) for s in conversation.segments]
    rows += [(frame, time_ns, False, "ICMP port unreachable") for frame, time_ns in conversation.unreachable]
    # Every arrow as long as the longest label needs, so the rows stay aligned whatever they carry.
    width = max([width] + [len(label) + 3 for _, _, _, label in rows])
    client, server = f"client {conversation.orig}", f"server {conversation.resp}"
    if conversation.proto == TCP and conversation.segments:
        lines.append(KEY)
    lines.append(f"{'frame':>6} {'time':>9}  {client:<{width - len(server) + 8}}{server}")
    segments = conversation.segments
    states = tcp_states(conversation)
    phase_at = {segments[phase.first].packet.frame: phase for phase in phases(conversation, states)}
    changes = state_changes(conversation, states)
    for frame, time_ns, is_orig, label in sorted(rows):
        if frame in phase_at and label != "ICMP port unreachable":
            phase = phase_at.pop(frame)
            last = segments[phase.last].packet.frame
            span = f"frame {frame}" if last == frame else f"frames {frame}-{last}"
            lines.append(f"{'':>6} {'':>9}  -- {phase.name} ({span}) --")
        body = f" {label} "
        arrow = f"----{body:-<{width}}-->" if is_orig else f"<---{body:-<{width}}---"
        row = f"{frame:>6} {(time_ns - start) / SECOND:>9.6f}  {arrow}"
        if frame in changes and label != "ICMP port unreachable":
            row += "  " + " ".join(f"[{'client' if t.is_orig else 'server'} {t.after}]" for t in changes[frame])
        note = notes.get(frame)
        lines.append(f"{row}  << {note}" if note else row)
    return "\n".join(lines)

