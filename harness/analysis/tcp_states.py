"""Each side's TCP state (RFC 9293, section 3.3.2) along a conversation, as the wire shows it. Pure code.

Rules, applied to each segment in capture order (the capture sees a loopback segment sent and
received at once, so the sender's and the receiver's transitions happen at the same segment):

1. Start: the client (the originator) is CLOSED and the server LISTEN when the capture holds the
   client's SYN; otherwise both are ESTABLISHED, as far as the capture can tell (it began
   mid-connection).
2. The sender, by what it sends: a SYN without ACK, CLOSED -> SYN_SENT; a SYN-ACK, LISTEN ->
   SYN_RECEIVED; a FIN, ESTABLISHED or SYN_RECEIVED -> FIN_WAIT_1, CLOSE_WAIT -> LAST_ACK; a RST,
   CLOSED.
3. The receiver, by what it gets, the acknowledgment before the FIN: a SYN-ACK, SYN_SENT ->
   ESTABLISHED; an ACK in SYN_RECEIVED, ESTABLISHED; an ACK of its FIN, FIN_WAIT_1 -> FIN_WAIT_2,
   CLOSING -> TIME_WAIT, LAST_ACK -> CLOSED; a FIN, ESTABLISHED -> CLOSE_WAIT, FIN_WAIT_1 -> CLOSING,
   FIN_WAIT_2 -> TIME_WAIT; a RST, CLOSED.
4. A segment that changes nothing leaves the states as they were (retransmissions, duplicate ACKs).
5. Phases: the handshake runs from the SYN to the segment after which both sides are ESTABLISHED;
   the teardown from the first FIN or RST to the end; the data is what lies between (all of a
   capture that began mid-connection, up to its teardown).
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

from harness.analysis.conversation import Conversation, Segment
from harness.wire.packet import ACK, FIN, RST, SEQ_MODULO, SYN, TCP, seq_ge

__all__ = ["Phase", "Transition", "initial_states", "phases", "state_changes", "tcp_states"]

CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED = "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"
FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT = (
    "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT")


class Transition(NamedTuple):
    is_orig: bool          # the side that changed: True for the client
    before: str
    after: str


class StatesAfter(NamedTuple):
    client: str
    server: str
    transitions: Tuple[Transition, ...]


def tcp_states(conversation: Conversation) -> List[StatesAfter]:
    """The two sides' states after each segment, and what changed at it (empty for UDP)."""
    if conversation.proto != TCP:
        return []
    client, server = initial_states(conversation)
    state: Dict[bool, str] = {True: client, False: server}
    segments = conversation.segments
    fin_end: Dict[bool, int] = {}           # one past each side's FIN, relative
    found = []
    unchanged = ()
    for segment in segments:
        client_before, server_before = state[True], state[False]
        _sent(state, segment, fin_end)
        _received(state, segment, fin_end)
        client, server = state[True], state[False]
        if client == client_before and server == server_before:
            found.append(StatesAfter(client, server, unchanged))
            continue
        changes = []
        if client != client_before:
            changes.append(Transition(True, client_before, client))
        if server != server_before:
            changes.append(Transition(False, server_before, server))
        found.append(StatesAfter(client, server, tuple(changes)))
    return found


def state_changes(conversation: Conversation,
                  states: Optional[List[StatesAfter]] = None) -> Dict[int, Tuple[Transition, ...]]:
    """frame -> what changed at it, for the segments at which a side's state changes (`states`: the
    conversation's tcp_states, when the caller has them already)."""
    states = tcp_states(conversation) if states is None else states
    return {segment.packet.frame: after.transitions
            for segment, after in zip(conversation.segments, states) if after.transitions}


def initial_states(conversation: Conversation) -> Tuple[str, str]:
    """(the client's, the server's) state before the first segment (rule 1)."""
    segments = conversation.segments
    opened = bool(segments) and segments[0].is_orig and segments[0].flags & (SYN | ACK) == SYN
    return (CLOSED, LISTEN) if opened else (ESTABLISHED, ESTABLISHED)


def _sent(state: Dict[bool, str], segment: Segment, fin_end: Dict[bool, int]) -> None:
    side, flags = segment.is_orig, segment.flags
    if flags & RST:
        state[side] = CLOSED
    elif flags & SYN and not flags & ACK and state[side] == CLOSED:
        state[side] = SYN_SENT
    elif flags & SYN and flags & ACK and state[side] == LISTEN:
        state[side] = SYN_RECEIVED
    if flags & FIN:
        fin_end.setdefault(side, (segment.rel_seq + segment.length + 1) % SEQ_MODULO)
        if state[side] in (ESTABLISHED, SYN_RECEIVED):
            state[side] = FIN_WAIT_1
        elif state[side] == CLOSE_WAIT:
            state[side] = LAST_ACK


def _received(state: Dict[bool, str], segment: Segment, fin_end: Dict[bool, int]) -> None:
    receiver, flags = not segment.is_orig, segment.flags
    if flags & RST:
        state[receiver] = CLOSED
        return
    if flags & SYN and flags & ACK and state[receiver] == SYN_SENT:
        state[receiver] = ESTABLISHED
    elif flags & ACK and not flags & SYN and state[receiver] == SYN_RECEIVED:
        state[receiver] = ESTABLISHED
    own_fin = fin_end.get(receiver)
    if flags & ACK and own_fin is not None and segment.rel_ack is not None and seq_ge(segment.rel_ack, own_fin):
        state[receiver] = {FIN_WAIT_1: FIN_WAIT_2, CLOSING: TIME_WAIT, LAST_ACK: CLOSED}.get(state[receiver],
                                                                                           state[receiver])
    if flags & FIN:
        state[receiver] = {ESTABLISHED: CLOSE_WAIT, SYN_RECEIVED: CLOSE_WAIT, FIN_WAIT_1: CLOSING,
                           FIN_WAIT_2: TIME_WAIT}.get(state[receiver], state[receiver])


class Phase(NamedTuple):
    name: str              # "handshake", "data" or "teardown"
    first: int             # index of its first segment in conversation.segments
    last: int              # index of its last


def phases(conversation: Conversation, states: Optional[List[StatesAfter]] = None) -> List[Phase]:
    """The conversation's phases, in order (rule 5); none for UDP or an empty conversation (`states`:
    its tcp_states, when the caller has them already)."""
    segments = conversation.segments
    if conversation.proto != TCP or not segments:
        return []
    states = tcp_states(conversation) if states is None else states
    teardown = next((i for i, s in enumerate(segments) if s.flags & (FIN | RST)), len(segments))
    found = []
    data_from = 0
    if states[0].client == SYN_SENT:
        established = next((i for i, after in enumerate(states) if after.client == after.server == ESTABLISHED),
                           len(segments) - 1)
        end = min(established, teardown - 1) if teardown > 0 else 0
        found.append(Phase("handshake", 0, max(end, 0)))
        data_from = max(end, 0) + 1
    if data_from < teardown:
        found.append(Phase("data", data_from, teardown - 1))
    if teardown < len(segments):
        found.append(Phase("teardown", max(teardown, data_from), len(segments) - 1))
    return found
