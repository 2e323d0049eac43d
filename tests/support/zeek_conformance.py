"""harness's summary held against the conn.log Zeek wrote, trace by trace (captures/zeek/).

    entries()                      the manifest's entries
    compare(entry) -> Comparison   every Zeek TCP/UDP row paired with harness's record, field by field
    figures(comparisons)           per-field agreement, as the conformance test and script print it

How rows are read and paired, so that both sides are read the way conn.log prints them:
* Zeek's ASCII log: the #fields header, `-` unset, `(empty)` empty; btest's masked values
  (XXXXXXXXXX.XXXXXX) are not compared.
* Zeek leaves duration, orig_bytes and resp_bytes unset when the duration is 0; so does this for
  harness's record. duration is compared as printed, to the microsecond.
* Rows are grouped by their unordered 5-tuple; within a group, paired by start time when Zeek's is
  not masked, else in order. A pairing where harness's originator is Zeek's responder is compared in
  Zeek's orientation and disagrees on the pseudo-field `direction`.
* Zeek's rows of other protocols (ICMP, unknown transports) are counted, not compared.
* Fields: conn_state, history, duration, orig/resp_pkts, orig/resp_bytes, missed_bytes,
  orig/resp_ip_bytes, ip_proto. Not compared: uid and ts (masked or random), service (what an
  application analyzer confirmed), local_orig/local_resp (Site::local_nets, empty by default),
  tunnel_parents (uids).
"""
from __future__ import annotations

import ipaddress
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from harness.analysis import pipeline
from harness.analysis.zeek import ZeekSettings

from support import REPO

CORPUS = REPO / "captures" / "zeek"
MASK = "XXXXXXXXXX.XXXXXX"
FIELDS = ("conn_state", "history", "duration", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "missed_bytes",
          "orig_ip_bytes", "resp_ip_bytes", "ip_proto")
INT_FIELDS = {"orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "missed_bytes", "orig_ip_bytes", "resp_ip_bytes",
              "id.orig_p", "id.resp_p", "ip_proto"}
SIDED = {"orig_pkts": "resp_pkts", "resp_pkts": "orig_pkts", "orig_bytes": "resp_bytes", "resp_bytes": "orig_bytes",
         "orig_ip_bytes": "resp_ip_bytes", "resp_ip_bytes": "orig_ip_bytes"}
# Redefinitions a btest made that change conn.log, as ZeekSettings takes them.
_SETTING_NAMES = {"report_gaps_for_partial": bool, "tcp_max_initial_window": int,
                  "tcp_max_above_hole_without_any_acks": int, "tcp_excessive_data_without_further_acks": int}


def entries() -> List[dict]:
    return json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"]


def settings_for(entry: dict) -> ZeekSettings:
    """The settings the entry's btest ran Zeek with, where harness models them."""
    options = entry["zeek_options"]
    values = {}
    for setting in options["settings"]:
        name, _, value = setting.partition("=")
        name, value = name.strip(), value.strip()
        if name in _SETTING_NAMES:
            values[name] = value in ("T", "true") if _SETTING_NAMES[name] is bool else int(value.replace(" ", ""))
    return ZeekSettings(likely_server_ports=_corpus_ports()[entry["trace"]], **values)


_PROTO_NUMBERS = {"tcp": 6, "udp": 17}
_ports_cache: Dict[str, frozenset] = {}


def _corpus_ports() -> Dict[str, frozenset]:
    """likely_server_ports as each entry's btest had them (captures/zeek/likely_server_ports.json)."""
    if not _ports_cache:
        document = json.loads((CORPUS / "likely_server_ports.json").read_text(encoding="utf-8"))
        for trace, ports in document["traces"].items():
            _ports_cache[trace] = frozenset((int(port), _PROTO_NUMBERS[proto])
                                            for port, proto in (item.split("/") for item in ports))
    return _ports_cache


def _canon(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def parse_conn_log(path: Path, field_map: Optional[Dict[str, str]] = None) -> List[dict]:
    separator, unset, empty = "\t", "-", "(empty)"
    names: List[str] = []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#separator"):
                separator = bytes(line.split(" ", 1)[1], "ascii").decode("unicode_escape")
            elif line.startswith("#unset_field"):
                unset = line.split(separator, 1)[1]
            elif line.startswith("#empty_field"):
                empty = line.split(separator, 1)[1]
            elif line.startswith("#fields"):
                names = [(field_map or {}).get(name, name) for name in line.split(separator)[1:]]
            continue
        row = {}
        for name, value in zip(names, line.split(separator)):
            if value == unset:
                row[name] = None
            elif value == empty:
                row[name] = ""
            elif MASK in value or (value and set(value) <= set("X.")):
                row[name] = MASK
            elif name in INT_FIELDS:
                row[name] = int(value)
            else:
                row[name] = value
        rows.append(row)
    return rows


def as_conn_log(record: dict, flipped: bool) -> dict:
    """harness's record as Zeek's conn.log prints it, in Zeek's orientation."""
    history = record["history"] or ""
    out = {"conn_state": record["conn_state"], "history": history.swapcase() if flipped else history,
           "missed_bytes": record["missed_bytes"], "ip_proto": record.get("ip_proto")}
    duration = record["duration"]
    out["duration"] = f"{duration:.6f}" if duration > 0 else None
    for name in SIDED:
        out[name] = record.get(SIDED[name] if flipped else name)
    if not duration > 0:
        out["orig_bytes"] = out["resp_bytes"] = None
    return out


@dataclass
class Pair:
    zeek: Optional[dict]                    # the conn.log row (None: harness only)
    harness: Optional[dict]                 # harness's record (None: Zeek only)
    differ: Dict[str, Tuple[object, object]] = field(default_factory=dict)   # field: (Zeek's, harness's)

    @property
    def tuple(self) -> str:
        row = self.zeek or self.harness
        return f"{row['proto']} {row['id.orig_h']}:{row['id.orig_p']} > {row['id.resp_h']}:{row['id.resp_p']}"


@dataclass
class Comparison:
    entry: dict
    pairs: List[Pair]
    other_rows: Counter                      # Zeek rows not compared, by proto
    error: str = ""                          # what harness said if it could not read the trace
    compared: Counter = field(default_factory=Counter)
    agreed: Counter = field(default_factory=Counter)


def _compare_pair(zeek_row: dict, record: dict, comparison: Comparison) -> Pair:
    flipped = not (_canon(record["id.orig_h"]) == _canon(zeek_row["id.orig_h"])
                   and record["id.orig_p"] == zeek_row["id.orig_p"])
    if zeek_row["id.orig_h"] == zeek_row["id.resp_h"] and zeek_row["id.orig_p"] == zeek_row["id.resp_p"]:
        flipped = False
    ours = as_conn_log(record, flipped)
    pair = Pair(zeek_row, record)
    for name in FIELDS:
        if name not in zeek_row or zeek_row[name] == MASK:
            continue
        theirs = zeek_row[name] if not (name == "history" and zeek_row[name] is None) else ""
        comparison.compared[name] += 1
        if theirs == ours[name]:
            comparison.agreed[name] += 1
        else:
            pair.differ[name] = (theirs, ours[name])
    comparison.compared["direction"] += 1
    if flipped:
        pair.differ["direction"] = (f"{zeek_row['id.orig_h']}:{zeek_row['id.orig_p']}",
                                    f"{record['id.orig_h']}:{record['id.orig_p']}")
    else:
        comparison.agreed["direction"] += 1
    return pair


def _group_key(row: dict) -> tuple:
    a, b = (_canon(row["id.orig_h"]), row["id.orig_p"]), (_canon(row["id.resp_h"]), row["id.resp_p"])
    return (row["proto"],) + (a + b if a <= b else b + a)


def compare(entry: dict) -> Comparison:
    records: List[dict] = []
    trace = CORPUS / entry["trace"]
    error = ""
    try:
        analysis = pipeline.stream_summaries(trace, records.append, settings_for(entry),
                                             verify_checksums=entry["zeek_options"]["verify_checksums"])
        if analysis.damage is not None:
            error = str(analysis.damage)
    except Exception as caught:      # the comparison reports it; the test fails on it
        error = f"{type(caught).__name__}: {caught}"
    rows = parse_conn_log(CORPUS / entry["baseline"], entry.get("field_map"))
    comparison = Comparison(entry, [], Counter(row.get("proto") for row in rows if row.get("proto") not in ("tcp", "udp")),
                            error)
    zeek_groups, harness_groups = defaultdict(list), defaultdict(list)
    for row in rows:
        if row.get("proto") in ("tcp", "udp"):
            zeek_groups[_group_key(row)].append(row)
    for record in records:
        harness_groups[_group_key(record)].append(record)
    for key, zeek_rows in zeek_groups.items():
        ours = sorted(harness_groups.pop(key, []), key=lambda record: record["ts"])
        if all(row.get("ts") not in (None, MASK) for row in zeek_rows):
            zeek_rows = sorted(zeek_rows, key=lambda row: float(row["ts"]))
        for index, row in enumerate(zeek_rows):
            comparison.pairs.append(_compare_pair(row, ours[index], comparison) if index < len(ours)
                                    else Pair(row, None))
        comparison.pairs.extend(Pair(None, record) for record in ours[len(zeek_rows):])
    for leftover in harness_groups.values():
        comparison.pairs.extend(Pair(None, record) for record in leftover)
    return comparison


def describe(comparison: Comparison, pair: Pair) -> str:
    """One line: where, and what differs."""
    where = f"{comparison.entry['trace'].removeprefix('traces/')} {pair.tuple}"
    if pair.harness is None:
        return f"{where}: only in Zeek ({pair.zeek['conn_state']} {pair.zeek.get('history') or '-'})"
    if pair.zeek is None:
        return f"{where}: only in harness ({pair.harness['conn_state']} {pair.harness['history']})"
    return f"{where}: " + ", ".join(f"{name} {theirs} (harness {ours})" for name, (theirs, ours) in pair.differ.items())


def figures(comparisons: List[Comparison]) -> str:
    compared, agreed = Counter(), Counter()
    pairs = [pair for comparison in comparisons for pair in comparison.pairs]
    for comparison in comparisons:
        compared.update(comparison.compared)
        agreed.update(comparison.agreed)
    matched = [pair for pair in pairs if pair.zeek is not None and pair.harness is not None]
    lines = [f"{len(comparisons)} traces; {sum(1 for p in pairs if p.zeek is not None)} Zeek TCP/UDP rows, "
             f"{len(matched)} matched, {sum(1 for p in matched if not p.differ)} agreeing on every field; "
             f"{sum(1 for p in pairs if p.harness is None)} only in Zeek, "
             f"{sum(1 for p in pairs if p.zeek is None)} only in harness",
             f"{'field':<15}{'agree':>7}{'of':>7}{'%':>8}"]
    for name in FIELDS + ("direction",):
        if compared[name]:
            lines.append(f"{name:<15}{agreed[name]:>7}{compared[name]:>7}{100 * agreed[name] / compared[name]:>8.1f}")
    return "\n".join(lines)
