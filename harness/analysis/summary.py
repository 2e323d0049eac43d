"""One conn.log-style record per conversation, with Zeek's field names where Zeek has them. Pure code."""
from __future__ import annotations

import hashlib
import json
from typing import Dict, List

from harness.analysis.conversation import PROTO_NAMES, SECOND, Conversation, Endpoint

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Two digits per divmod: entry n is the digits of n % 62 then n // 62, least significant first.
_BASE62_PAIRS = tuple(low + high for high in _BASE62 for low in _BASE62)
_UID_DIGITS = 17

COLUMNS = ("conversation", "uid", "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
           "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "retransmissions")


def uid(conversation: Conversation) -> str:
    """Like Zeek's uids (C + 17 base-62 digits), but derived from the conversation so reruns agree."""
    return _uid(conversation.first_time_ns, conversation.proto, conversation.orig.host, conversation.orig.port,
                conversation.resp.host, conversation.resp.port, conversation.index)


def _uid(first_time_ns: int, proto: int, orig_h: str, orig_p: int, resp_h: str, resp_p: int, index: int) -> str:
    key = f"{first_time_ns / SECOND!r}|{proto}|{Endpoint(orig_h, orig_p)!s}|{Endpoint(resp_h, resp_p)!s}|{index}"
    number = int.from_bytes(hashlib.sha1(key.encode()).digest()[:13], "big")
    digits = ["C"]
    for _ in range(_UID_DIGITS // 2):
        number, pair = divmod(number, 62 * 62)
        digits.append(_BASE62_PAIRS[pair])
    digits.append(_BASE62[number % 62])
    return "".join(digits)


# The facts a record is made of, as the pure analysis and the C scanner both hand them over.
# first_time_ns and last_time_ns are Zeek's start and last time (the latter stops once both sides closed);
# first_frame, last_frame and end_frame place it in the file (tracker rule 6), for a second pass to find it.
FACTS = ("index", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "first_time_ns", "last_time_ns", "conn_state",
         "history", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes",
         "orig_payloads", "resp_payloads",
         "retransmissions", "out_of_order", "duplicate_acks", "missed_bytes", "icmp_unreachable",
         "first_frame", "last_frame", "end_frame")


def facts(conversation: Conversation) -> Dict[str, object]:
    """What the summary record says of a conversation, before it is dressed as conn.log fields:
    FACTS, by name (the C scanner hands the same dict over for the conversations it tracks)."""
    zeek, tshark = conversation.zeek, conversation.tshark
    orig, resp = zeek.orig, zeek.resp
    if tshark is not None:
        counted = tshark.orig, tshark.resp
        retransmissions = counted[0].retransmissions + counted[1].retransmissions
        out_of_order = counted[0].out_of_order + counted[1].out_of_order
        duplicate_acks = counted[0].duplicate_acks + counted[1].duplicate_acks
    else:
        retransmissions = out_of_order = duplicate_acks = 0
    return {
        "index": conversation.index, "proto": conversation.proto,
        "orig_h": conversation.orig.host, "orig_p": conversation.orig.port,
        "resp_h": conversation.resp.host, "resp_p": conversation.resp.port,
        "first_time_ns": zeek.start_time, "last_time_ns": zeek.last_time,
        "conn_state": zeek.conn_state, "history": zeek.history,
        "orig_pkts": orig.packets, "resp_pkts": resp.packets,
        "orig_bytes": orig.payload_bytes, "resp_bytes": resp.payload_bytes,
        "orig_ip_bytes": orig.ip_bytes, "resp_ip_bytes": resp.ip_bytes,
        "orig_payloads": orig.payloads.tolist(), "resp_payloads": resp.payloads.tolist(),
        "retransmissions": retransmissions, "out_of_order": out_of_order, "duplicate_acks": duplicate_acks,
        "missed_bytes": orig.missed_bytes + resp.missed_bytes,
        "icmp_unreachable": len(conversation.unreachable),
        "first_frame": conversation.first_frame, "last_frame": conversation.last_frame,
        "end_frame": conversation.end_frame,
    }


def record(facts: Dict[str, object]) -> Dict[str, object]:
    """The conn.log record of a conversation's facts: Zeek's field names and meanings, plus harness's
    own (orig/resp_payloads, retransmissions, out_of_order, duplicate_acks, icmp_unreachable, and
    `conversation`: its number, in order of first packet, as show and check --conversation take it)."""
    first = facts["first_time_ns"]
    proto = facts["proto"]
    return {
        "ts": first / SECOND,
        "uid": _uid(first, proto, facts["orig_h"], facts["orig_p"], facts["resp_h"], facts["resp_p"],
                    facts["index"]),
        "proto": PROTO_NAMES.get(proto, str(proto)),
        "id.orig_h": facts["orig_h"],
        "id.orig_p": facts["orig_p"],
        "id.resp_h": facts["resp_h"],
        "id.resp_p": facts["resp_p"],
        "duration": (facts["last_time_ns"] - first) / SECOND,
        "conn_state": facts["conn_state"],
        "history": facts["history"],
        "orig_pkts": facts["orig_pkts"],
        "resp_pkts": facts["resp_pkts"],
        "orig_bytes": facts["orig_bytes"],
        "resp_bytes": facts["resp_bytes"],
        "orig_ip_bytes": facts["orig_ip_bytes"],
        "resp_ip_bytes": facts["resp_ip_bytes"],
        "ip_proto": proto,
        "orig_payloads": facts["orig_payloads"],
        "resp_payloads": facts["resp_payloads"],
        "retransmissions": facts["retransmissions"],
        "out_of_order": facts["out_of_order"],
        "duplicate_acks": facts["duplicate_acks"],
        "missed_bytes": facts["missed_bytes"],
        "icmp_unreachable": facts["icmp_unreachable"],
        "conversation": facts["index"],
    }


def record_json(facts: Dict[str, object]) -> str:
    """The record as `summary --json` prints it: json.dumps of record(facts), which the C scanner
    writes itself for the conversations it tracks (Scanner(..., as_json=True))."""
    return json.dumps(record(facts))


def summarize(conversation: Conversation) -> Dict[str, object]:
    """The conversation's conn.log record: Zeek's field names and meanings, plus harness's own
    (orig/resp_payloads, retransmissions, out_of_order, duplicate_acks, icmp_unreachable)."""
    return record(facts(conversation))


def table(records: List[Dict[str, object]]) -> str:
    """The records as aligned text columns, for a terminal."""
    rows = [["#" if column == "conversation" else column for column in COLUMNS]]
    rows += [[str(record[column]) for column in COLUMNS] for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
