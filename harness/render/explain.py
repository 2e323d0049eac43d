"""A conversation explained packet by packet, in the manner of the lab report's walk-through, in any
language with a catalogue (harness.render.i18n). Pure code: the input is an analysed Conversation.

Rules:
1. One paragraph per segment, under a heading per phase: the handshake (up to the segment after
   which both sides are ESTABLISHED), the data, the teardown (from the first FIN or RST); a
   capture that began mid-connection says so, and its phases start with the data.
2. Every number stated is read off the segment: relative seq and ack (as Wireshark shows them), the
   raw initial sequence number, lengths, windows, options; an ACK is derived from what it
   acknowledges (a data segment's seq plus its length, or a FIN's seq plus one) only when the
   peer's last segment before it is exactly that.
3. Each side's TCP state is said where it changes (harness.analysis.tcp_states).
4. What tshark's analysis flags (retransmission, out of order, duplicate ACK:
   harness.analysis.tshark, replayed over the segments) is said as such.
5. SACK blocks are said as the peer's relative byte ranges they report.
6. UDP: no handshake, no ACKs, datagrams whole; an ICMP port unreachable that quotes a datagram is said.
7. Words come from the catalogue: `_()` marks each message, a format string with named fields.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from harness.analysis.conversation import Conversation, Segment
from harness.analysis.tcp_states import ESTABLISHED, TIME_WAIT, Phase, phases, tcp_states
from harness.analysis.tshark import TsharkState
from harness.render.i18n import catalogue
from harness.wire.packet import ACK, FIN, PSH, RST, SEQ_MODULO, SYN, TCP
from harness.wire.tcp_options import SACK, parse_tcp_options

__all__ = ["explain", "frame_analysis"]

SHOWN_PAYLOAD = 40          # bytes of text quoted in a paragraph; longer payloads are only counted


def _(message: str) -> str:
    """Marks a message for the catalogue; explain() looks it up in the language asked for."""
    return message


def frame_analysis(conversation: Conversation) -> Dict[int, str]:
    """tshark's verdict per frame: "retransmission", "out-of-order", "duplicate-ack" or nothing."""
    if conversation.proto != TCP:
        return {}
    state = TsharkState()
    verdicts: Dict[int, str] = {}
    for segment in conversation.segments:
        side = state.orig if segment.is_orig else state.resp
        before = (side.retransmissions, side.out_of_order, side.duplicate_acks)
        state.feed(segment.packet, segment.is_orig)
        after = (side.retransmissions, side.out_of_order, side.duplicate_acks)
        for name, old, new in zip(("retransmission", "out-of-order", "duplicate-ack"), before, after):
            if new > old:
                verdicts[segment.packet.frame] = name
    return verdicts


def explain(conversation: Conversation, language: str = "en") -> str:
    """The walk-through, as paragraphs separated by blank lines."""
    words = catalogue(language).gettext
    if conversation.proto == TCP:
        paragraphs = _Tcp(conversation, words).paragraphs()
    else:
        paragraphs = _udp(conversation, words)
    return "\n\n".join(paragraphs) + "\n"


def _say(words: Callable[[str], str], message: str, **fields) -> str:
    return words(message).format(**fields)


def _sack_blocks(segment: Segment) -> List[str]:
    """The SACK blocks as relative byte ranges of the peer's stream ("1449-2896")."""
    if segment.rel_ack is None:
        return []
    sack = parse_tcp_options(segment.packet.options).first(SACK)
    if sack is None or not isinstance(sack.value, tuple):
        return []
    peer_base = (segment.packet.ack - segment.rel_ack) % SEQ_MODULO
    return [f"{(left - peer_base) % SEQ_MODULO}-{(right - peer_base - 1) % SEQ_MODULO}" for left, right in sack.value]


def _join(sentences: List[str]) -> str:
    """Sentences run on: with a space after one that ends in a Latin full stop, none after a CJK one."""
    out = ""
    for sentence in sentences:
        out += (" " if out and out[-1] not in "。：；！？" else "") + sentence
    return out


def _text(segment: Segment) -> Optional[str]:
    """The payload, quoted, when it is short text captured whole."""
    if not segment.length or len(segment.payload) != segment.length or segment.length > SHOWN_PAYLOAD:
        return None
    try:
        text = segment.payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return f'"{text}"' if text.isprintable() else None


class _Tcp:
    def __init__(self, conversation: Conversation, words: Callable[[str], str]) -> None:
        self.conversation, self.words = conversation, words
        self.side = {True: words(_("the client")), False: words(_("the server"))}
        self.verdicts = frame_analysis(conversation)
        self.states = tcp_states(conversation)

    def say(self, message: str, **fields) -> str:
        return _say(self.words, message, **fields)

    def paragraphs(self) -> List[str]:
        conversation = self.conversation
        out = [self.say(_("Conversation {index}: TCP between the client {client} and the server {server}. Sequence "
                          "and acknowledgment numbers are relative, as Wireshark shows them: each side counts "
                          "from 0 at its SYN, and its first data byte is 1."),
                        index=conversation.index, client=conversation.orig, server=conversation.resp)]
        segments = conversation.segments
        opened = bool(self.states) and self.states[0].client == "SYN_SENT"
        if not opened:
            out.append(self.say(_("The capture began mid-connection: it holds no handshake, so each side's "
                                  "numbers count from 1 at its first segment seen.")))
        starts = {phase.first: phase for phase in phases(conversation)}
        for index, segment in enumerate(segments):
            if index in starts:
                out.append(self._heading(starts[index]))
            out.append(self._segment(index, segment))
        return out

    def _heading(self, phase: Phase) -> str:
        segments = self.conversation.segments
        first, last = segments[phase.first].packet.frame, segments[phase.last].packet.frame
        established = any(after.client == after.server == ESTABLISHED for after in self.states)
        if phase.name == "handshake" and not established:
            title = (_("Handshake, frame {first}: the client asks for a connection, which is never set up.")
                     if first == last else
                     _("Handshake, frames {first} to {last}: the client asks for a connection, which is never "
                       "set up."))
            return "## " + self.say(title, first=first, last=last)
        if phase.name == "teardown" and segments[phase.first].flags & RST:
            title = (_("Reset, frame {first}: the connection is aborted, not closed.") if first == last else
                     _("Reset, frames {first} to {last}: the connection is aborted, not closed."))
            return "## " + self.say(title, first=first, last=last)
        if first == last:
            title = {"handshake": _("Handshake, frame {first}: the connection is set up."),
                     "data": _("Data, frame {first}: the two sides exchange bytes and acknowledge them."),
                     "teardown": _("Teardown, frame {first}: the connection is closed.")}[phase.name]
            return "## " + self.say(title, first=first)
        title = {"handshake": _("Handshake, frames {first} to {last}: the connection is set up."),
                 "data": _("Data, frames {first} to {last}: the two sides exchange bytes and acknowledge them."),
                 "teardown": _("Teardown, frames {first} to {last}: the connection is closed.")}[phase.name]
        return "## " + self.say(title, first=first, last=last)

    def _segment(self, index: int, segment: Segment) -> str:
        side, peer = self.side[segment.is_orig], self.side[not segment.is_orig]
        frame, flags = segment.packet.frame, segment.flags
        sentences: List[str] = []
        verdict = self.verdicts.get(frame)
        if verdict == "retransmission":
            sentences.append(self.say(_("Frame {frame}: a retransmission: {side} sends again what it had sent "
                                        "before (seq={seq}, {length} bytes), because it was not acknowledged "
                                        "in time or was lost."), frame=frame, side=side, seq=segment.rel_seq,
                                      length=segment.length))
        elif verdict == "out-of-order":
            sentences.append(self.say(_("Frame {frame}: out of order: {side}'s bytes from seq={seq} arrive after "
                                        "bytes that come later in its stream."), frame=frame, side=side,
                                      seq=segment.rel_seq))
        elif flags & RST:
            sentences.append(self._reset(index, segment, side))
        elif flags & SYN and not flags & ACK:
            sentences.append(self._syn(segment, side))
        elif flags & SYN:
            sentences.append(self._syn_ack(segment, side, peer))
        else:
            sentences += self._established(index, segment, side, peer, verdict)
        sentences += self._transitions(index)
        return _join(sentences)

    def _syn(self, segment: Segment, side: str) -> str:
        text = self.say(_("Frame {frame}: {side} sends a SYN (SYN=1) to open a connection. Its sequence number is "
                          "{seq} (the real one, its initial sequence number, is {isn}), and it advertises a "
                          "window of {window} bytes: how much it can receive before it must wait for an "
                          "acknowledgment."), frame=segment.packet.frame, side=side, seq=segment.rel_seq,
                        isn=segment.packet.seq, window=segment.packet.window)
        return _join([text] + self._options(segment))

    def _syn_ack(self, segment: Segment, side: str, peer: str) -> str:
        text = self.say(_("Frame {frame}: {side} answers with SYN and ACK (SYN=1, ACK=1). Its own sequence number "
                          "is {seq} (really {isn}); ACK={ack} acknowledges {peer}'s SYN, which took one sequence "
                          "number. It advertises a window of {window} bytes."), frame=segment.packet.frame,
                        side=side, peer=peer, seq=segment.rel_seq, isn=segment.packet.seq, ack=segment.rel_ack,
                        window=segment.packet.window)
        return _join([text] + self._options(segment))

    def _options(self, segment: Segment) -> List[str]:
        options = parse_tcp_options(segment.packet.options)
        found = []
        if options.mss is not None:
            found.append(self.say(_("MSS {mss}: the largest segment it will accept."), mss=options.mss))
        if options.wscale is not None:
            found.append(self.say(_("Window scale {wscale}: once both sides have offered it, windows are "
                                    "multiplied by {factor}."), wscale=options.wscale, factor=1 << min(options.wscale, 14)))
        if options.sack_permitted:
            found.append(self.say(_("SACK permitted: the receiver may acknowledge blocks past a gap.")))
        if options.timestamps is not None:
            found.append(self.say(_("Timestamps: each segment carries a clock value, for measuring the round trip.")))
        return found

    def _established(self, index: int, segment: Segment, side: str, peer: str, verdict: Optional[str]) -> List[str]:
        frame, flags = segment.packet.frame, segment.flags
        out: List[str] = []
        previous = self.conversation.segments[index - 1] if index else None
        if segment.length:
            text = _text(segment)
            message = (_("Frame {frame}: {side} sends {length} bytes ({text}), bytes {first} to {last} of its "
                         "stream (seq={seq}).") if text else
                       _("Frame {frame}: {side} sends {length} bytes, bytes {first} to {last} of its stream "
                         "(seq={seq})."))
            out.append(self.say(message, frame=frame, side=side, length=segment.length, text=text,
                                first=segment.rel_seq, last=segment.rel_seq + segment.length - 1,
                                seq=segment.rel_seq))
            if flags & PSH:
                out.append(self.say(_("PSH asks the receiver to hand them to the program at once.")))
        if flags & FIN:
            out.append(self.say(_("Frame {frame}: {side} sends FIN (FIN=1): it has nothing more to send. A FIN takes "
                                  "one sequence number, seq={seq}, so {peer} will acknowledge {next}."),
                                frame=frame, side=side, peer=peer, seq=(segment.rel_seq + segment.length) % SEQ_MODULO,
                                next=(segment.rel_seq + segment.length + 1) % SEQ_MODULO))
        if flags & ACK and segment.rel_ack is not None:
            out.append(self._acknowledges(index, segment, previous, side, peer, bool(segment.length or flags & FIN)))
        blocks = _sack_blocks(segment)
        if blocks:
            out.append(self.say(_("Its SACK option says {peer}'s bytes {blocks} arrived past a gap: the bytes "
                                  "before them are missing."), peer=peer, blocks=", ".join(blocks)))
        if verdict == "duplicate-ack":
            out.append(self.say(_("It is a duplicate ACK: {side} repeats ACK={ack}, telling {peer} that a segment "
                                  "after byte {before} is missing."), side=side, peer=peer, ack=segment.rel_ack,
                                before=(segment.rel_ack - 1) % SEQ_MODULO))
        return out

    def _acknowledges(self, index: int, segment: Segment, previous: Optional[Segment], side: str, peer: str,
                      more: bool) -> str:
        ack, frame = segment.rel_ack, segment.packet.frame
        if previous is not None and previous.is_orig != segment.is_orig and previous.rel_seq is not None:
            if previous.flags & FIN and ack == (previous.rel_seq + previous.length + 1) % SEQ_MODULO:
                message = (_("ACK={ack} acknowledges {peer}'s FIN: its seq {seq} plus one.") if more else
                           _("Frame {frame}: {side} acknowledges {peer}'s FIN with ACK={ack}: its seq {seq} plus one."))
                return self.say(message, frame=frame, side=side, peer=peer, ack=ack,
                                seq=(previous.rel_seq + previous.length) % SEQ_MODULO)
            if previous.length and ack == (previous.rel_seq + previous.length) % SEQ_MODULO:
                message = (_("ACK={ack} acknowledges {peer}'s {length} bytes: seq {seq} plus {length}, the next "
                             "byte it expects.") if more else
                           _("Frame {frame}: {side} acknowledges {peer}'s {length} bytes with ACK={ack}: seq {seq} "
                             "plus {length}, the next byte it expects."))
                return self.say(message, frame=frame, side=side, peer=peer, ack=ack, seq=previous.rel_seq,
                                length=previous.length)
        if more:
            if ack == 1:
                return self.say(_("ACK=1: nothing has come from {peer} yet, so its byte 1 is the next expected."),
                                peer=peer)
            return self.say(_("ACK={ack}: {side} has received {peer}'s bytes up to {before}."), side=side, peer=peer,
                            ack=ack, before=(ack - 1) % SEQ_MODULO)
        if segment.flags & (SYN | FIN | RST) == 0 and self._completes_handshake(index):
            return self.say(_("Frame {frame}: {side} acknowledges {peer}'s SYN with ACK={ack}. The three-way "
                              "handshake is complete."), frame=frame, side=side, peer=peer, ack=ack)
        if ack == 1:
            return self.say(_("Frame {frame}: {side} sends an ACK with ACK=1: none of {peer}'s bytes has arrived in "
                              "order yet."), frame=frame, side=side, peer=peer)
        return self.say(_("Frame {frame}: {side} sends an ACK with ACK={ack}: it has received {peer}'s bytes up to "
                          "{before}."), frame=frame, side=side, peer=peer, ack=ack, before=(ack - 1) % SEQ_MODULO)

    def _completes_handshake(self, index: int) -> bool:
        return index > 0 and self.states[index - 1].server != ESTABLISHED and self.states[index].server == ESTABLISHED

    def _reset(self, index: int, segment: Segment, side: str) -> str:
        text = self.say(_("Frame {frame}: {side} resets the connection (RST=1): it aborts at once instead of "
                          "closing, and data not yet delivered is thrown away."), frame=segment.packet.frame,
                        side=side)
        if segment.is_orig:
            return text
        if index and self.states[index - 1].client == "SYN_SENT" and self.states[index - 1].server == "LISTEN":
            return self.say(_("Frame {frame}: the server's host answers the SYN with RST (RST=1): the connection is "
                              "refused, because nothing listens on port {port}."), frame=segment.packet.frame,
                            port=self.conversation.resp.port)
        zeek = self.conversation.zeek
        if zeek.orig.payload_bytes and not zeek.resp.payload_bytes:
            text = _join([text, self.say(_("It came after {bytes} bytes from the client and no reply: the server's "
                                     "program closed its socket with data unread, or died."),
                                   bytes=zeek.orig.payload_bytes)])
        return text

    def _transitions(self, index: int) -> List[str]:
        changed = self.states[index].transitions
        # Refused: nothing listened, so there is no server whose state to tell.
        changed = tuple(t for t in changed if not (not t.is_orig and t.before == "LISTEN" and t.after == "CLOSED"))
        if not changed:
            return []
        now = self.states[index]
        if {t.after for t in changed} == {ESTABLISHED} and now.client == now.server == ESTABLISHED:
            return [self.say(_("Both sides are now ESTABLISHED."))]
        out = []
        for transition in changed:
            message = (_("{side} is now {state}: it waits twice the maximum segment lifetime before forgetting the "
                         "connection, in case its last ACK was lost.") if transition.after == TIME_WAIT else
                       _("{side} is now {state}."))
            sentence = self.say(message, side=self.side[transition.is_orig], state=transition.after)
            out.append(sentence[:1].upper() + sentence[1:])
        return out


def _udp(conversation: Conversation, words: Callable[[str], str]) -> List[str]:
    side = {True: words(_("the client")), False: words(_("the server"))}
    out = [_say(words, _("Conversation {index}: UDP between the client {client} and the server {server}. UDP "
                         "sets up no connection: no handshake, no acknowledgments, no teardown. Each datagram "
                         "travels on its own and arrives whole or not at all, its boundaries kept."),
                index=conversation.index, client=conversation.orig, server=conversation.resp)]
    for segment in conversation.segments:
        text = _text(segment)
        if segment.is_orig:
            message = (_("Frame {frame}: {side} sends a datagram of {length} bytes ({text}).") if text else
                       _("Frame {frame}: {side} sends a datagram of {length} bytes."))
        else:
            message = (_("Frame {frame}: {side} replies with a datagram of {length} bytes ({text}).") if text else
                       _("Frame {frame}: {side} replies with a datagram of {length} bytes."))
        out.append(_say(words, message, frame=segment.packet.frame, side=side[segment.is_orig],
                        length=segment.length, text=text))
    for frame, _time in conversation.unreachable:
        out.append(_say(words, _("Frame {frame}: an ICMP port unreachable comes back: nothing listened on port "
                                 "{port}, so the datagram was dropped."), frame=frame, port=conversation.resp.port))
    sent = sum(1 for s in conversation.segments if s.is_orig)
    out.append(_say(words, _("Datagrams in all: {sent} from the client, {replies} from the server."),
                    sent=sent, replies=len(conversation.segments) - sent))
    return out
