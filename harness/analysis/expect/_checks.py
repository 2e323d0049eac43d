"""Named semantic checks (`check NAME` in an expectation): each returns what is wrong, in words, or nothing."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from harness.analysis.conversation import Conversation, describe_segment
from harness.analysis.expect._model import Problem
from harness.wire.packet import ACK, FIN, RST, SEQ_MODULO, SYN, TCP, seq_ge


def check_handshake(conversation: Conversation) -> List[Problem]:
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    segs = conversation.segments
    if len(segs) < 3:
        return [Problem(f"a handshake needs 3 segments, the conversation has {len(segs)}")]
    syn, syn_ack, ack = segs[:3]
    problems = []
    if not (syn.is_orig and syn.flags & (SYN | ACK) == SYN):
        problems.append(Problem(f"frame {syn.packet.frame} should be the client's SYN, is {describe_segment(syn, TCP, direction=True)}", syn.packet.frame))
    else:
        if syn.packet.window <= 0:
            problems.append(Problem(f"the SYN (frame {syn.packet.frame}) advertises no window", syn.packet.frame))
        if syn.packet.mss is None:
            problems.append(Problem(f"the SYN (frame {syn.packet.frame}) carries no MSS option", syn.packet.frame))
    if not (not syn_ack.is_orig and syn_ack.flags & (SYN | ACK) == SYN | ACK):
        problems.append(Problem(f"frame {syn_ack.packet.frame} should be the server's SYN-ACK, "
                        f"is {describe_segment(syn_ack, TCP, direction=True)}", syn_ack.packet.frame))
    elif syn_ack.rel_ack != 1:
        problems.append(Problem(f"the SYN-ACK (frame {syn_ack.packet.frame}) acknowledges {syn_ack.rel_ack}, "
                        f"not the client's ISN+1", syn_ack.packet.frame))
    if not (ack.is_orig and ack.flags & (SYN | ACK | RST) == ACK and ack.rel_ack == 1):
        problems.append(Problem(f"frame {ack.packet.frame} should be the client's ACK=1, is {describe_segment(ack, TCP, direction=True)}", ack.packet.frame))
    return problems


def check_graceful_close(conversation: Conversation) -> List[Problem]:
    """Both sides sent FIN, each FIN was acknowledged, and nobody reset: any close order, 3 or 4 segments."""
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    problems = []
    for segment in conversation.segments:
        if segment.flags & RST:
            problems.append(Problem(f"{_side(segment.is_orig)} sent RST at frame {segment.packet.frame} "
                            f"(an abortive close, not a graceful one)", segment.packet.frame))
    for is_orig in (True, False):
        fins = [s for s in conversation.segments if s.is_orig == is_orig and s.flags & FIN]
        if not fins:
            problems.append(Problem(f"the {_side(is_orig)} never sent FIN"))
            continue
        fin = fins[0]
        fin_end = (fin.rel_seq + fin.length + 1) % SEQ_MODULO
        acked = [s for s in conversation.segments if s.is_orig != is_orig and s.rel_ack is not None
                 and s.packet.frame > fin.packet.frame and seq_ge(s.rel_ack, fin_end)]
        if not acked:
            problems.append(Problem(f"the {_side(is_orig)}'s FIN (frame {fin.packet.frame}) was never acknowledged "
                            f"(no ACK={fin_end} from the {_side(not is_orig)})", fin.packet.frame))
    return problems


def check_sequence_consistent(conversation: Conversation) -> List[Problem]:
    """Every segment starts where its side left off and acknowledges nothing unsent; SYN and FIN take one."""
    if conversation.proto != TCP:
        return [Problem("not a TCP conversation")]
    next_seq: Dict[bool, Optional[int]] = {True: None, False: None}
    problems = []
    for segment in conversation.segments:
        side = segment.is_orig
        expected = next_seq[side]
        if expected is not None and segment.rel_seq != expected and not segment.flags & RST:
            problems.append(Problem(f"frame {segment.packet.frame}: {_side(side)} seq={segment.rel_seq}, "
                            f"expected {expected}", segment.packet.frame))
        consumed = segment.length + bool(segment.flags & SYN) + bool(segment.flags & FIN)
        end = (segment.rel_seq + consumed) % SEQ_MODULO
        if expected is None or seq_ge(end, expected):
            next_seq[side] = end
        peer_next = next_seq[not side]
        if segment.rel_ack is not None and peer_next is not None and not seq_ge(peer_next, segment.rel_ack):
            problems.append(Problem(f"frame {segment.packet.frame}: {_side(side)} acknowledges {segment.rel_ack}, "
                            f"but the {_side(not side)} has only sent up to {peer_next}", segment.packet.frame))
    return problems


def check_no_data_from_server(conversation: Conversation) -> List[Problem]:
    return [Problem(f"the server sent {s.length} bytes at frame {s.packet.frame}", s.packet.frame)
            for s in conversation.segments if not s.is_orig and s.length]


def check_max_gap(conversation: Conversation, limit_ns: int) -> List[Problem]:
    """No two consecutive segments of the conversation further apart than limit_ns."""
    segments = conversation.segments
    problems = []
    for before, after in zip(segments, segments[1:]):
        gap = after.packet.time_ns - before.packet.time_ns
        if gap > limit_ns:
            problems.append(Problem(f"{gap / 1e9:.3f} s passed between frame {before.packet.frame} and frame "
                                    f"{after.packet.frame}, more than {limit_ns / 1e9:g} s", after.packet.frame))
    return problems


def named_check(name: str) -> Callable[[Conversation], List[Problem]]:
    """The check a `check NAME` line names (max-gap=NS carries its limit, in nanoseconds)."""
    if name.startswith("max-gap="):
        limit = int(name[len("max-gap="):])
        return lambda conversation: check_max_gap(conversation, limit)
    return CHECKS[name]


def _side(is_orig: bool) -> str:
    return "client" if is_orig else "server"


CHECKS: Dict[str, Callable[[Conversation], List[Problem]]] = {
    "handshake": check_handshake,
    "graceful-close": check_graceful_close,
    "sequence-consistent": check_sequence_consistent,
    "no-data-from-server": check_no_data_from_server,
}
