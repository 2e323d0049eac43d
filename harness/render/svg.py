"""A conversation drawn as a sequence diagram in SVG: the text ladder's picture.

In the spirit of Wireshark's Flow Graph (Statistics > Flow Graph): two lifelines headed by
"client HOST:PORT" and "server HOST:PORT", one arrow per segment in capture order, the frame
number and relative time in a left column, verdicts at the right end of their rows.

    render_svg(conversation, pcap="run.pcapng", notes={4: "ok: ...", 6: "FAIL: ..."})
    render_svg_all(trace.conversations, pcap)      # all of them stacked in one document

Arrow labels are the ladder's labels, character for character (payloads elided to fit). Each TCP
phase (handshake, data, teardown) has a bracket left of its rows (<g class="phase" data-phase=...>);
each side's TCP state is written beside its lifeline where it changes (class "state client" or
"state server", the initial ones "state initial"); a legend (<g class="legend">) below the diagrams
says what the flags, the arrows, the relative numbers and the states mean. Retransmissions are dashed,
ICMP port unreachable rows are a dotted orange arrow with a hollow head. Each arrow is a
<g class="segment"> (or "segment retransmitted", "unreachable") with data-frame="N", so a
test or a stylesheet can find it. Everything is plain text built here: no dependencies.

Geometry is fixed (rows of 22 px, at least 900 px wide, 11 px monospace) except that the
canvas widens to fit the longest endpoint, label and note: text is never cut. Text that XML
cannot carry at all (NUL and other control characters) is shown as \\xNN.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple
from xml.sax.saxutils import escape, quoteattr

from harness.analysis.conversation import SECOND, Conversation
from harness.analysis.tcp_states import initial_states, phases, state_changes
from harness.render.ladder import segment_label
from harness.wire.packet import TCP

ROW_HEIGHT = 22
MIN_WIDTH = 900
MARGIN = 10
FRAME_RIGHT = 48            # frame numbers are right-aligned here
TIME_RIGHT = 128            # relative times likewise
MIN_CLIENT_X = 360         # room on the left for the phase brackets and the client's states
PHASE_X = 144               # the phase brackets' vertical line
STATE_GAP = 8               # a side's state is written this far from its lifeline
STATE_COLUMN = 104
INITIAL_STATE_ROOM = 12          # the width a state name takes beside the server's lifeline (SYN_RECEIVED)
MIN_LIFELINE_GAP = 440      # widened when a label needs more room: labels are never cut
MIN_BOX_WIDTH = 210
FONT_SIZE = 11
CHAR_WIDTH = FONT_SIZE * 0.6    # monospace advance; used only to size the canvas and truncate labels
HEADER_BOX_HEIGHT = 22
CONVERSATION_GAP = 30

COLOURS = {
    "orig": "#0969da",
    "resp": "#6e40c9",
    "unreachable": "#bc4c00",
    "ok": "#1a7f37",
    "ok_row": "#e6f6ea",
    "fail": "#cf222e",
    "fail_row": "#fdebec",
    "lifeline": "#8c959f",
    "text": "#1f2328",
    "muted": "#57606a",
    "state": "#0a3069",
    "phase": "#9a6700",
}

# Characters XML 1.0 forbids even as character references; shown as \xNN instead.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        str(text))


def _text(text: str) -> str:
    return escape(_clean(text))


def _attr(text: str) -> str:
    return quoteattr(_clean(text))


def _text_element(x: float, y: float, content: str, *, anchor: str = "start", fill: str = COLOURS["text"],
                  css_class: Optional[str] = None, weight: Optional[str] = None) -> str:
    extra = f" class={_attr(css_class)}" if css_class else ""
    if weight:
        extra += f' font-weight="{weight}"'
    return (f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{_text(content)}</text>")


class _Row:
    __slots__ = ("frame", "time_ns", "is_orig", "label", "kind")

    def __init__(self, frame: int, time_ns: int, is_orig: bool, label: str, kind: str):
        self.frame, self.time_ns, self.is_orig, self.label, self.kind = frame, time_ns, is_orig, label, kind


def _rows(conversation: Conversation) -> List[_Row]:
    rows = [_Row(s.packet.frame, s.packet.time_ns, s.is_orig, segment_label(s, conversation.proto),
                 "segment retransmitted" if s.retransmitted else "segment")
            for s in conversation.segments]
    rows += [_Row(frame, time_ns, False, "ICMP port unreachable", "unreachable")
             for frame, time_ns in conversation.unreachable]
    rows.sort(key=lambda row: row.frame)
    return rows


def _start_time(conversation: Conversation) -> int:
    if conversation.segments:
        return conversation.segments[0].packet.time_ns
    return min((time_ns for _frame, time_ns in conversation.unreachable), default=0)


class _Layout(NamedTuple):
    box_width: int
    client_x: int
    label_x: int            # every label starts here, so their padded columns line up as in the ladder
    server_x: int
    note_x: int
    width: int


def _layout(conversations: List[Conversation], notes: Dict[int, str]) -> _Layout:
    """One geometry for the whole document, wide enough for its longest endpoint, label and note."""
    longest_endpoint = longest_label = longest_note = 0
    for conversation in conversations:
        longest_endpoint = max(longest_endpoint, len(f"client {conversation.orig}"),
                               len(f"server {conversation.resp}"))
        for row in _rows(conversation):
            longest_label = max(longest_label, len(_clean(row.label)))
            if row.frame in notes:
                longest_note = max(longest_note, len(_clean(notes[row.frame])))
    box_width = max(MIN_BOX_WIDTH, int(longest_endpoint * CHAR_WIDTH + 16))
    client_x = max(MIN_CLIENT_X, TIME_RIGHT + 16 + box_width // 2)
    label_x = client_x + 16
    server_x = max(client_x + MIN_LIFELINE_GAP, client_x + box_width + 20,
                   int(label_x + longest_label * CHAR_WIDTH + 24))
    note_x = server_x + STATE_GAP + STATE_COLUMN
    width = max(MIN_WIDTH, int(note_x + longest_note * CHAR_WIDTH + 2 * MARGIN),
                server_x + box_width // 2 + MARGIN, _legend_width())
    return _Layout(box_width, client_x, label_x, server_x, note_x, width)


def _arrow(row: _Row, y: float, layout: _Layout) -> List[str]:
    """Line and head from the sender's lifeline to the receiver's."""
    start, end = (layout.client_x, layout.server_x) if row.is_orig else (layout.server_x, layout.client_x)
    direction = 1 if end > start else -1
    tip = end - direction          # stop short of the lifeline so the head stays visible
    base = tip - direction * 9
    if row.kind == "unreachable":
        colour, dash, head_fill = COLOURS["unreachable"], ' stroke-dasharray="2 3"', "white"
    else:
        colour = COLOURS["orig"] if row.is_orig else COLOURS["resp"]
        dash = ' stroke-dasharray="7 4"' if "retransmitted" in row.kind else ""
        head_fill = colour
    return [
        f'<line x1="{start}" y1="{y:g}" x2="{base}" y2="{y:g}" stroke="{colour}" stroke-width="1.5"{dash}/>',
        f'<polygon points="{tip},{y:g} {base},{y - 4:g} {base},{y + 4:g}" fill="{head_fill}" '
        f'stroke="{colour}" stroke-width="1"/>',
    ]


def _note_colour(note: str) -> Tuple[str, str, str]:
    """(class, text colour, row tint): a verdict is good only when it says so first."""
    if note.startswith("ok"):
        return "note ok", COLOURS["ok"], COLOURS["ok_row"]
    return "note fail", COLOURS["fail"], COLOURS["fail_row"]


def _conversation(conversation: Conversation, pcap: Optional[str], notes: Dict[int, str],
                  top: float, layout: _Layout) -> Tuple[List[str], float]:
    """The elements of one conversation's diagram starting at `top`, and the height they take."""
    parts: List[str] = [f'<g class="conversation" data-index="{conversation.index}">']
    y = top + 14
    opener = "first seen" if conversation.began_mid_stream else "opened it"
    parts.append(_text_element(MARGIN, y, f"conversation {conversation.index}: {conversation.proto_name.upper()} "
                                          f"between client {conversation.orig} ({opener}) and server "
                                          f"{conversation.resp}", weight="bold", css_class="heading"))
    if pcap:
        y += 16
        parts.append(_text_element(MARGIN, y, f"pcap: {pcap}", fill=COLOURS["muted"], css_class="pcap"))

    box_top = y + 10
    box_width = layout.box_width
    client_x, server_x = layout.client_x, layout.server_x
    for x, who in ((client_x, f"client {conversation.orig}"), (server_x, f"server {conversation.resp}")):
        parts.append(f'<rect x="{x - box_width / 2:g}" y="{box_top:g}" width="{box_width}" '
                     f'height="{HEADER_BOX_HEIGHT}" rx="3" fill="#f6f8fa" stroke="{COLOURS["lifeline"]}"/>')
        parts.append(_text_element(x, box_top + 15, who, anchor="middle", css_class="endpoint"))
    parts.append(_text_element(FRAME_RIGHT, box_top + 15, "frame", anchor="end", fill=COLOURS["muted"]))
    parts.append(_text_element(TIME_RIGHT, box_top + 15, "time", anchor="end", fill=COLOURS["muted"]))

    rows = _rows(conversation)
    first_row = box_top + HEADER_BOX_HEIGHT + 6
    if conversation.proto == TCP and conversation.segments:
        first_row += INITIAL_STATE_ROOM      # each side's state before the first segment goes here
    bottom = first_row + max(len(rows), 1) * ROW_HEIGHT + 4
    for x in (client_x, server_x):
        parts.append(f'<line x1="{x}" y1="{box_top + HEADER_BOX_HEIGHT:g}" x2="{x}" y2="{bottom:g}" '
                     f'stroke="{COLOURS["lifeline"]}" stroke-width="1"/>')
    if not rows:
        parts.append(_text_element((client_x + server_x) / 2, first_row + 15,
                                   "(no segments kept for this conversation)", anchor="middle",
                                   fill=COLOURS["muted"]))

    parts += _phase_brackets(conversation, rows, first_row)
    changes = state_changes(conversation)
    if conversation.proto == TCP and conversation.segments:
        parts += _states(*initial_states(conversation), first_row - 4, layout, "state initial")

    start = _start_time(conversation)
    for number, row in enumerate(rows):
        row_top = first_row + number * ROW_HEIGHT
        arrow_y = row_top + 16
        note = notes.get(row.frame)
        group = [f'<g class={_attr(row.kind)} data-frame="{row.frame}">',
                 f"<title>{_text(f'frame {row.frame}: {row.label}')}</title>"]
        if note is not None:
            css_class, colour, tint = _note_colour(note)
            group.append(f'<rect class="verdict" x="0" y="{row_top:g}" width="{layout.width}" height="{ROW_HEIGHT}" '
                         f'fill="{tint}"/>')
        group.append(_text_element(FRAME_RIGHT, arrow_y - 1, str(row.frame), anchor="end", css_class="frame"))
        group.append(_text_element(TIME_RIGHT, arrow_y - 1, f"{(row.time_ns - start) / SECOND:.6f}", anchor="end",
                                   css_class="time"))
        group.extend(_arrow(row, arrow_y, layout))
        group.append(_text_element(layout.label_x, arrow_y - 5, row.label, css_class="label",
                                   fill=COLOURS["unreachable"] if row.kind == "unreachable" else COLOURS["text"]))
        if note is not None:
            group.append(_text_element(layout.note_x, arrow_y - 1, note, fill=colour, css_class=css_class))
        if row.kind != "unreachable" and row.frame in changes:
            changed = {t.is_orig: t.after for t in changes[row.frame]}
            group += _states(changed.get(True), changed.get(False), arrow_y + 3, layout, "state")
        group.append("</g>")
        parts.extend(group)
    parts.append("</g>")
    return parts, bottom - top


def _states(client: Optional[str], server: Optional[str], y: float, layout: _Layout, css_class: str) -> List[str]:
    """Each side's state written beside its lifeline: the client's to its left, the server's to its right."""
    out = []
    if client:
        out.append(_text_element(layout.client_x - STATE_GAP, y, client, anchor="end", fill=COLOURS["state"],
                                 css_class=css_class + " client"))
    if server:
        out.append(_text_element(layout.server_x + STATE_GAP, y, server, fill=COLOURS["state"],
                                 css_class=css_class + " server"))
    return out


def _phase_brackets(conversation: Conversation, rows: List[_Row], first_row: float) -> List[str]:
    """A bracket left of the rows for each phase (handshake, data, teardown), named along it."""
    position = {row.frame: number for number, row in enumerate(rows)}
    out = []
    for phase in phases(conversation):
        top = first_row + position[conversation.segments[phase.first].packet.frame] * ROW_HEIGHT + 3
        bottom = first_row + (position[conversation.segments[phase.last].packet.frame] + 1) * ROW_HEIGHT - 3
        middle = (top + bottom) / 2
        out += [f'<g class="phase" data-phase="{phase.name}">',
                f'<path d="M{PHASE_X + 6},{top:g} H{PHASE_X} V{bottom:g} H{PHASE_X + 6}" fill="none" '
                f'stroke="{COLOURS["phase"]}" stroke-width="1.5"/>',
                f'<text x="{PHASE_X - 4}" y="{middle:g}" text-anchor="middle" fill="{COLOURS["phase"]}" '
                f'transform="rotate(-90 {PHASE_X - 4} {middle:g})" class="phase-name">{_text(phase.name)}</text>',
                "</g>"]
    return out


LEGEND = (("SYN", "synchronize: open a connection (takes one sequence number)"),
          ("ACK", "acknowledge: ack=N is the next byte expected from the other side"),
          ("PSH", "push: hand the data to the program at once"),
          ("FIN", "finish: no more data from this side (takes one sequence number)"),
          ("RST", "reset: abort the connection at once"))
LEGEND_NOTES = ("seq and ack are relative, as Wireshark shows them: each side counts from 0 at its SYN",
                "blue: client to server; purple: server to client; dashed: a retransmission; "
                "dotted orange: ICMP port unreachable",
                "CAPITALS beside a lifeline: that side's TCP state (RFC 9293) from that segment on")
LEGEND_LINE = 15


def _legend_width() -> int:
    longest = max([len(f"{flag}  {meaning}") for flag, meaning in LEGEND] + [len(note) for note in LEGEND_NOTES])
    return int(MARGIN * 2 + longest * CHAR_WIDTH + 16)


def _legend(top: float) -> Tuple[List[str], float]:
    """What the picture's words and marks mean, below the diagrams."""
    parts = ['<g class="legend">', _text_element(MARGIN, top + 14, "legend", weight="bold", css_class="legend-title")]
    y = top + 14
    for flag, meaning in LEGEND:
        y += LEGEND_LINE
        parts.append(_text_element(MARGIN, y, f"{flag}  {meaning}", css_class="legend-flag"))
    for note in LEGEND_NOTES:
        y += LEGEND_LINE
        parts.append(_text_element(MARGIN, y, note, fill=COLOURS["muted"], css_class="legend-note"))
    parts.append("</g>")
    return parts, y - top + 8


def _document(body: List[str], width: int, height: float, title: Optional[str]) -> str:
    height = int(height + 0.999)
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
        f'font-size="{FONT_SIZE}" xml:space="preserve">',
    ]
    if title:
        head.append(f"<title>{_text(title)}</title>")
    head.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    return "\n".join(head + body + ["</svg>", ""])


def _title_block(title: Optional[str]) -> Tuple[List[str], float]:
    if not title:
        return [], 0.0
    return [_text_element(MARGIN, 20, title, weight="bold", css_class="title")], 28.0


def render_svg(conversation: Conversation, pcap: Optional[str] = None,
               notes: Optional[Dict[int, str]] = None, title: Optional[str] = None) -> str:
    """One conversation as a standalone SVG document. `notes` maps frame numbers to verdicts:
    green when the text starts with "ok", red otherwise, and their rows tinted to match."""
    return render_svg_all([conversation], pcap, notes, title)


def render_svg_all(conversations: Iterable[Conversation], pcap: Optional[str] = None,
                   notes: Optional[Dict[int, str]] = None, title: Optional[str] = None) -> str:
    """Several conversations stacked top to bottom in ONE document, in the order given.

    Frame numbers are unique within a capture, so one `notes` mapping serves them all.
    """
    conversations = list(conversations)
    notes = notes or {}
    layout = _layout(conversations, notes)
    body, height = _title_block(title)
    for number, conversation in enumerate(conversations):
        if number:
            height += CONVERSATION_GAP
        parts, used = _conversation(conversation, pcap if number == 0 else None, notes, height, layout)
        body += parts
        height += used
    if not conversations:
        body.append(_text_element(MARGIN, height + 16, "no TCP or UDP conversations", fill=COLOURS["muted"]))
        height += 24
    else:
        legend, used = _legend(height + CONVERSATION_GAP / 2)
        body += legend
        height += CONVERSATION_GAP / 2 + used
    return _document(body, layout.width, height + MARGIN, title)
