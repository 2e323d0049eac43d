"""What tshark says of a capture, stream by stream, and whether the harness's summary agrees.

For each conversation (matched to tshark's tcp.stream / udp.stream by its first frame) the two must
agree on: who is who, the first to last packet to the nanosecond, the packets each side sent, the
payload lengths in order, the payload bytes by sequence space (Zeek's: up to the highest sequence
number sent or acknowledged by the peer, SYN and FIN not counted), the retransmissions, out-of-order segments
and duplicate ACKs, and the connection's shape, which tshark gives as
tcp.completeness (SYN 1, SYN-ACK 2, ACK 4, DATA 8, FIN 16, RST 32) and the harness as Zeek's
conn_state and history.
"""
import subprocess
from collections import defaultdict

from support import needs
from harness.analysis.summary import summarize
from harness.analysis.pipeline import analyse

FIELDS = ("frame.number", "frame.time_relative", "tcp.stream", "udp.stream", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport",
          "tcp.len", "udp.length", "tcp.seq", "tcp.ack", "tcp.flags.ack", "tcp.flags.reset", "tcp.flags.fin",
          "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
          "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order", "tcp.analysis.duplicate_ack",
          "tcp.completeness", "icmp.type",
          "icmpv6.type")

# Zeek recognises Teredo on any UDP port; tshark does only when asked. tshark's FTP dissector
# sets up each passive-mode data connection before its SYN, and tcp.completeness then never gets
# the SYN bit; the TCP counters do not depend on it, so it is left out.
DISSECT_AS_COMPARED = ("-o", "teredo.heuristic_teredo:TRUE", "--disable-protocol", "ftp")

# tcp.completeness bits as tshark sets them.
SYN, SYN_ACK, ACK, DATA, FIN, RST = 1, 2, 4, 8, 16, 32


def tshark_streams(path):
    """tshark's streams, by (protocol, stream number). A frame may hold several TCP/UDP layers (a tunnel's
    outer datagram and what it carries): each counts in its own stream, sent by the source of the IP
    layer before it; what follows an ICMP header is the datagram it quotes, not part of any stream."""
    done = subprocess.run([needs.tool("tshark"), "-2", "-n", "-r", str(path), *DISSECT_AS_COMPARED, "-T", "fields",
                           "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.protocols",
                           *[a for f in FIELDS for a in ("-e", f)]],
                          capture_output=True, text=True, timeout=300, check=True)
    streams = defaultdict(lambda: {"first": None, "orig": None, "pkts": defaultdict(int),
                                   "payloads": defaultdict(list), "nxtseq": defaultdict(int),
                                   "acked": defaultdict(int), "fin": set(), "reset": set(),
                                   "retrans": 0, "ooo": 0, "dupack": 0, "completeness": 0,
                                   "first_ns": None, "last_ns": None, "seq64": {}, "ack64": {}})
    for line in done.stdout.splitlines():
        protocols, *values = line.split("|")
        row = {name: value.split(",") for name, value in zip(FIELDS, values)}
        seen = {"ip": 0, "ipv6": 0, "tcp": 0, "udp": 0}
        source = None
        for protocol in protocols.split(":"):
            if protocol in ("icmp", "icmpv6"):
                break   # an ICMP error quoting a datagram is not part of the datagram's stream here
            if protocol not in seen:
                continue
            index = seen[protocol]
            seen[protocol] += 1
            if protocol in ("ip", "ipv6"):
                source = _nth(row[f"{protocol}.src"], index)
            elif _nth(row[f"{protocol}.stream"], index):
                _count(streams, row, protocol, index, source)
    return streams


def _unwrap(last, sender, relative):
    """tshark's 32-bit relative number as a 64-bit one, nearest the sender's previous (as Zeek's wraps)."""
    previous = last.get(sender, relative)
    value = previous + ((relative - previous + 2**31) % 2**32) - 2**31
    last[sender] = value
    return value


def _nth(values, index):
    return values[index] if index < len(values) else ""


def _count(streams, row, proto, index, source):
    stream = streams[(proto, int(_nth(row[f"{proto}.stream"], index)))]
    sender = (source, int(_nth(row[f"{proto}.srcport"], index)))
    if stream["first"] is None:
        stream["first"] = int(row["frame.number"][0])
        stream["orig"] = sender
    stream["pkts"][sender] += 1
    seconds, _, fraction = row["frame.time_relative"][0].partition(".")   # tshark prints nanoseconds
    stream["last_ns"] = int(seconds) * 10**9 + int(fraction.ljust(9, "0"))
    if stream["first_ns"] is None:
        stream["first_ns"] = stream["last_ns"]
    raw_length = _nth(row["tcp.len"], index) if proto == "tcp" else _nth(row["udp.length"], index)
    if not raw_length:   # tshark gave the layer a stream but could not read it whole (a short header)
        raise AssertionError(f"frame {row['frame.number'][0]}: tshark could not dissect this {proto} header "
                             f"(truncated in tshark's view), so its {proto}.stream cannot be compared")
    length = int(raw_length) if proto == "tcp" else int(raw_length) - 8
    if length or proto == "udp":   # the harness lists every datagram, empty ones too; TCP only segments with payload
        stream["payloads"][sender].append(length)
    if proto == "tcp":
        # TCP carries no tunnel, so a frame's TCP layer is its only one: its fields are the first values.
        fin = row["tcp.flags.fin"][0] in ("1", "True")
        reset = row["tcp.flags.reset"][0] in ("1", "True")
        # Zeek's update_last_seq, on tshark's relative numbers: every segment moves its side's
        # sequence space to its end (a bare ACK too: data the capture missed), a RST to its own
        # number unless that jumps by more than 1 MiB; nothing does after the side's RST.
        if sender not in stream["reset"]:
            end = _unwrap(stream["seq64"], sender, int(row["tcp.seq"][0])) + (0 if reset else length) + fin   # the first payload byte is 1
            if not reset or abs(end - stream["nxtseq"].get(sender, 1)) <= 1 << 20:
                stream["nxtseq"][sender] = max(stream["nxtseq"][sender], end)
            if reset:
                stream["reset"].add(sender)
        if fin:
            stream["fin"].add(sender)
        if row["tcp.flags.ack"][0] in ("1", "True") and not reset:
            stream["acked"][sender] = max(stream["acked"][sender], _unwrap(stream["ack64"], sender, int(row["tcp.ack"][0])))   # the peer's bytes
        if any(row[f][0] for f in ("tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
                                   "tcp.analysis.spurious_retransmission")):
            stream["retrans"] += 1
        stream["ooo"] += bool(row["tcp.analysis.out_of_order"][0])
        stream["dupack"] += bool(row["tcp.analysis.duplicate_ack"][0])
        stream["completeness"] = int(row["tcp.completeness"][index] or 0)


def completeness_of(conversation):
    """tcp.completeness as tshark computes it, from the harness's segments."""
    if len(conversation.segments) == 1:
        return 0   # tshark leaves a stream of one frame at 0, whatever that frame is
    bits = 0
    for segment in conversation.segments:
        flags = segment.flags
        if flags & 0x02 and not flags & 0x10:
            bits |= SYN
        elif flags & 0x02:
            bits |= SYN_ACK
        elif flags & 0x10 and not segment.length:
            bits |= ACK   # tshark: an ACK without SYN and without payload (FIN and RST may be set)
        if segment.length and not flags & 0x04:
            bits |= DATA
        if flags & 0x01:
            bits |= FIN
        if flags & 0x04:
            bits |= RST
    return bits


# What each Zeek conn_state requires of the completeness bits: (must have, must not have).
STATE_SHAPES = {
    "S0": (SYN, SYN_ACK | FIN | RST), "REJ": (SYN | RST, SYN_ACK), "RSTOS0": (SYN | RST, SYN_ACK),
    "SF": (FIN, 0), "S1": (0, FIN | RST), "S2": (FIN, 0), "S3": (FIN, 0), "SH": (SYN | FIN, SYN_ACK),
    "SHR": (SYN_ACK | FIN, SYN), "RSTO": (RST, 0), "RSTR": (RST, 0), "RSTRH": (SYN_ACK | RST, SYN), "OTH": (0, 0),
}


def assert_summary_agrees_with_tshark(path, check_shapes=True):
    """Conversation by conversation, the harness's summary against tshark's two-pass dissection.

    check_shapes: also hold each conn_state to STATE_SHAPES, which is written for connections whose
    handshake was captured; a conversation picked up mid-stream can reach SH or RSTRH without the
    SYN or SYN-ACK that the table asks for (Zeek's rules for inactive endpoints), so random
    conversations are checked without it."""
    streams = tshark_streams(path)
    trace = analyse(path)
    # A datagram whose fragments never all came is in no stream of tshark's either.
    assert trace.damage is None and not [w for w in trace.warnings if "never completed" not in w], trace.warnings
    by_first_packet = {(s["first"], key[0], s["orig"]): (key, s) for key, s in streams.items()}
    assert len(trace.conversations) == len(streams), "the harness and tshark see different conversations"
    for conversation in trace.conversations:
        record = summarize(conversation)
        first = conversation.segments[0].packet
        key, stream = by_first_packet[(first.frame, "tcp" if first.proto == 6 else "udp", (first.src, first.sport))]
        where = f"{path.name} conversation {conversation.index} ({record['conn_state']} {record['history']})"
        orig = (record["id.orig_h"], record["id.orig_p"])
        resp = (record["id.resp_h"], record["id.resp_p"])
        assert key[0] == record["proto"], where
        if not conversation.zeek.flipped:
            assert stream["orig"] == orig, where
        assert (stream["pkts"][orig], stream["pkts"][resp]) == (record["orig_pkts"], record["resp_pkts"]), where
        # The packets' span (conn.log's duration is Zeek's, which stops once both sides have closed:
        # the conformance test holds that to Zeek).
        assert conversation.last_time_ns - conversation.first_time_ns == stream["last_ns"] - stream["first_ns"], \
            f"{where}: first to last packet"
        assert (stream["payloads"][orig], stream["payloads"][resp]) == \
            (record["orig_payloads"], record["resp_payloads"]), where
        if record["proto"] == "tcp":
            for side, peer, field in ((orig, resp, "orig_bytes"), (resp, orig, "resp_bytes")):
                highest = max(stream["nxtseq"].get(side, 0), stream["acked"].get(peer, 0))
                tshark_bytes = max(0, highest - 1)                       # the SYN is sequence number 0
                if tshark_bytes and side in stream["fin"]:
                    tshark_bytes -= 1                                    # and the FIN is not a byte
                # Zeek's arithmetic has one quirk at the wrap: after a SYN with sequence number 2^32 - 1
                # its last_seq starts at 0 uncounted as a wrap while the ACKs that follow count one,
                # so its bytes come from the peer's ACKs alone (test_zeek.py pins that).
                # And the two number a side alike only from its SYN: without it Zeek restarts the side's
                # numbering at each of its packets until one moves it out of INACTIVE.
                first = next((s.packet for s in conversation.segments if s.is_orig == (side == orig)), None)
                opened = first is not None and first.flags & 0x02
                if opened and first.seq != 2**32 - 1:
                    assert tshark_bytes == record[field], f"{where}: {field}"
            tshark_counts = (stream["retrans"], stream["ooo"], stream["dupack"])
            harness_counts = (record["retransmissions"], record["out_of_order"], record["duplicate_acks"])
            assert tshark_counts == harness_counts, \
                f"{where}: retransmissions, out-of-order, duplicate ACKs: tshark {tshark_counts}, harness {harness_counts}"
            bits = completeness_of(conversation)
            assert bits == stream["completeness"], f"{where}: completeness {bits} vs tshark {stream['completeness']}"
            must, must_not = STATE_SHAPES[record["conn_state"]]
            assert not check_shapes or bits & must == must and not bits & must_not, f"{where}: shape {bits} contradicts the state"
        else:
            assert sum(stream["payloads"][orig]) == record["orig_bytes"], where


# --- frame by frame ----------------------------------------------------------------------------

# tshark's per-frame analysis flags; the first five decide a verdict, the rest explain one.
FRAME_FIELDS = ("frame.number", "tcp.stream", "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
                "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order",
                "tcp.analysis.duplicate_ack", "tcp.analysis.keep_alive", "tcp.analysis.keep_alive_ack",
                "tcp.analysis.zero_window_probe", "tcp.analysis.zero_window_probe_ack",
                "tcp.analysis.zero_window", "tcp.analysis.window_update", "tcp.analysis.lost_segment",
                "tcp.analysis.ack_lost_segment", "tcp.analysis.initial_rtt")
RETRANSMISSION, OUT_OF_ORDER, DUPLICATE_ACK = "retransmission", "out-of-order", "duplicate ACK"


def tshark_frame_verdicts(path):
    """{frame number: (verdict, tshark's flags for that frame)} for every TCP frame; the verdict is
    'retransmission' (plain, fast or spurious), 'out-of-order', 'duplicate ACK' or ''."""
    done = subprocess.run([needs.tool("tshark"), "-2", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|",
                           "-E", "occurrence=f", *[a for f in FRAME_FIELDS for a in ("-e", f)]],
                          capture_output=True, text=True, timeout=300, check=True)
    verdicts = {}
    for line in done.stdout.splitlines():
        row = dict(zip(FRAME_FIELDS, line.split("|")))
        if not row["tcp.stream"]:
            continue
        flags = [f.rpartition(".")[2] + ("=" + row[f] if f.endswith("initial_rtt") else "")
                 for f in FRAME_FIELDS[2:] if row[f]]
        if row["tcp.analysis.retransmission"] or row["tcp.analysis.fast_retransmission"] or \
                row["tcp.analysis.spurious_retransmission"]:
            verdict = RETRANSMISSION
        elif row["tcp.analysis.out_of_order"]:
            verdict = OUT_OF_ORDER
        elif row["tcp.analysis.duplicate_ack"]:
            verdict = DUPLICATE_ACK
        else:
            verdict = ""
        verdicts[int(row["frame.number"])] = (verdict, " ".join(flags))
    return verdicts


def harness_frame_verdicts(packets):
    """{frame number: (verdict, conversation)}: each TCP packet through the ConversationTracker, the
    verdict read from what its tshark counters gained on it."""
    from harness.analysis.tracker import ConversationTracker
    from harness.wire.packet import TCP
    tracker = ConversationTracker(keep_segments=False)
    before = {}
    verdicts = {}
    for packet in packets:
        conv = tracker.feed(packet)
        if packet.proto != TCP:
            continue
        state = conv.tshark
        now = tuple(getattr(state.orig, c) + getattr(state.resp, c)
                    for c in ("retransmissions", "out_of_order", "duplicate_acks"))
        gained = [b - a for a, b in zip(before.get(conv, (0, 0, 0)), now)]
        before[conv] = now
        verdict = " + ".join(name for name, n in zip((RETRANSMISSION, OUT_OF_ORDER, DUPLICATE_ACK), gained)
                             for _ in range(n))
        verdicts[packet.frame] = (verdict, conv)
    return verdicts


def describe_packet(packet):
    from harness.wire.packet import flag_names
    return (f"frame {packet.frame} t={packet.time_ns} {packet.src}:{packet.sport} -> {packet.dst}:{packet.dport} "
            f"[{flag_names(packet.flags)}] seq={packet.seq} ack={packet.ack} win={packet.window} "
            f"len={packet.payload_len}")


def frame_disagreements(path, packets=None):
    """[(frame, harness verdict, tshark verdict, tshark's flags, conversation)], in frame order, of the
    TCP frames where the harness's per-packet counters and tshark's analysis flags disagree.
    `packets`: the capture's packets if already at hand (else read with the harness's reader)."""
    if packets is None:
        from harness.analysis.pipeline import read_packets
        packets = list(read_packets(path))
    theirs = tshark_frame_verdicts(path)
    ours = harness_frame_verdicts(packets)
    assert set(ours) == set(theirs), "the harness and tshark see different TCP frames"
    return [(frame, ours[frame][0], theirs[frame][0], theirs[frame][1], ours[frame][1])
            for frame in sorted(ours) if ours[frame][0] != theirs[frame][0]]


def explain_disagreement(disagreement, packets, context=12):
    """The first differing frame, both verdicts, and the conversation's packets up to it."""
    frame, ours, theirs, flags, conv = disagreement
    by_frame = {p.frame: p for p in packets}
    packet = by_frame[frame]
    mine = [p for p in packets if p.frame <= frame and {(p.src, p.sport), (p.dst, p.dport)} ==
            {(packet.src, packet.sport), (packet.dst, packet.dport)}]
    lines = [f"frame {frame}: harness says {ours or 'nothing'!r}, tshark says {theirs or 'nothing'!r} "
             f"(tshark's flags: {flags or 'none'}); conversation {conv.index}, its packets up to there:"]
    lines += ["  " + describe_packet(p) for p in mine[-context:]]
    return "\n".join(lines)


def assert_frames_agree_with_tshark(path, packets=None):
    """Frame by frame, the harness's retransmission / out-of-order / duplicate-ACK verdicts against
    tshark's; on failure, names the first differing frame with both verdicts and what led to it."""
    if packets is None:
        from harness.analysis.pipeline import read_packets
        packets = list(read_packets(path))
    found = frame_disagreements(path, packets)
    assert not found, f"{len(found)} frames disagree; the first: " + explain_disagreement(found[0], packets)
