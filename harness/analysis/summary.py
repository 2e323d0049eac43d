"""One conn.log-style record per conversation, with Zeek's field names where Zeek has them. Pure code."""
from __future__ import annotations

import hashlib
from typing import Dict, List

from harness.analysis.conversation import SECOND, Conversation

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Two digits per divmod: entry n is the digits of n % 62 then n // 62, least significant first.
_BASE62_PAIRS = tuple(low + high for high in _BASE62 for low in _BASE62)
_UID_DIGITS = 17

COLUMNS = ("uid", "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
           "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "retransmissions")


def uid(conversation: Conversation) -> str:
    """Like Zeek's uids (C + 17 base-62 digits), but derived from the conversation so reruns agree."""
    # !s: str() the endpoints directly; the default format() of a tuple subclass takes a slower way there.
    key = f"{conversation.first_time_ns / SECOND!r}|{conversation.proto}|{conversation.orig!s}|{conversation.resp!s}|" \
          f"{conversation.index}"
    number = int.from_bytes(hashlib.sha1(key.encode()).digest()[:13], "big")
    digits = ["C"]
    for _ in range(_UID_DIGITS // 2):
        number, pair = divmod(number, 62 * 62)
        digits.append(_BASE62_PAIRS[pair])
    digits.append(_BASE62[number % 62])
    return "".join(digits)


def summarize(conversation: Conversation) -> Dict[str, object]:
    """The conversation's conn.log record: Zeek's field names and meanings, plus harness's own
    (orig/resp_payloads, retransmissions, out_of_order, duplicate_acks, icmp_unreachable)."""
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
        "ts": conversation.first_time_ns / SECOND,
        "uid": uid(conversation),
        "proto": conversation.proto_name,
        "id.orig_h": conversation.orig.host,
        "id.orig_p": conversation.orig.port,
        "id.resp_h": conversation.resp.host,
        "id.resp_p": conversation.resp.port,
        "duration": (conversation.last_time_ns - conversation.first_time_ns) / SECOND,
        "conn_state": zeek.conn_state,
        "history": zeek.history,
        "orig_pkts": orig.packets,
        "resp_pkts": resp.packets,
        "orig_bytes": orig.payload_bytes,
        "resp_bytes": resp.payload_bytes,
        "orig_payloads": orig.payloads.tolist(),
        "resp_payloads": resp.payloads.tolist(),
        "retransmissions": retransmissions,
        "out_of_order": out_of_order,
        "duplicate_acks": duplicate_acks,
        "missed_bytes": orig.missed_bytes + resp.missed_bytes if orig.holes or resp.holes else 0,
        "icmp_unreachable": len(conversation.unreachable),
    }


def table(records: List[Dict[str, object]]) -> str:
    """The records as aligned text columns, for a terminal."""
    rows = [list(COLUMNS)] + [[str(record[column]) for column in COLUMNS] for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
