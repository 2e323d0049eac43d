#!/usr/bin/env python3
"""The differential test against tshark (tests/unit/test_tshark_differential.py) with fresh seeds, for long.

Each round: `--conversations` random conversations from tests/support/tcpgen.py in one pcap, one tshark run,
then frame by frame the harness's verdict (retransmission, out-of-order, duplicate ACK, nothing)
against tshark's, and conversation by conversation the summary (tests/support/tshark_view.py).

    .venv/bin/python bench/tshark_differential.py --seconds 600
    .venv/bin/python bench/tshark_differential.py --rounds 20 --seed 7 --out /tmp/diff

Prints the rounds, conversations and frames checked, and each kind of disagreement (harness verdict
vs tshark verdict, or the summary's assertion) with its count and a minimal reproduction: the
conversation's packets up to the first frame of that kind, shrunk packet by packet while the last
frame still disagrees the same way, written as a pcap under --out (printed). Exit status 0 when
nothing disagreed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support import tcpgen  # noqa: E402
from support import tshark_view as tv  # noqa: E402
from support.packets import renumber, to_pcap  # noqa: E402


def _last_frame_kind(packets, workdir):
    """(harness verdict, tshark verdict) of the last frame of `packets`, written alone as a pcap."""
    path = Path(workdir) / "shrink.pcap"
    packets = renumber(packets)
    path.write_bytes(to_pcap(packets))
    theirs = tv.tshark_frame_verdicts(path)
    ours = tv.harness_frame_verdicts(packets)
    last = packets[-1].frame
    return ours[last][0], theirs[last][0]


def shrink(packets, kind, workdir):
    """Drop packets one at a time (never the last) while the last frame still disagrees as `kind`."""
    index = 0
    while index < len(packets) - 1:
        candidate = packets[:index] + packets[index + 1:]
        if _last_frame_kind(candidate, workdir) == kind:
            packets = candidate
        else:
            index += 1
    return renumber(packets)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=0, help="rounds to run (0: until --seconds)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget when --rounds is 0")
    parser.add_argument("--conversations", type=int, default=400, help="conversations per round (one pcap)")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random); then +1 per round")
    parser.add_argument("--out", default=None, help="directory for reproductions (default: a new temporary one)")
    parser.add_argument("--no-shrink", action="store_true", help="keep whole conversations up to the frame")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="harness-tshark-diff-"))
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    started = time.monotonic()
    rounds = conversations = frames = 0
    kinds: Counter = Counter()
    examples = {}
    while (args.rounds and rounds < args.rounds) or (not args.rounds and time.monotonic() - started < args.seconds):
        packets = tcpgen.capture(seed, args.conversations)
        path = out / "round.pcap"
        path.write_bytes(to_pcap(packets))
        found = tv.frame_disagreements(path, packets)
        for frame, ours, theirs, flags, conv in found:
            kind = (ours, theirs)
            kinds[kind] += 1
            if kind not in examples:
                packet = packets[frame - 1]
                ends = {(packet.src, packet.sport), (packet.dst, packet.dport)}
                mine = [p for p in packets if p.frame <= frame and {(p.src, p.sport), (p.dst, p.dport)} == ends]
                examples[kind] = (seed, frame, flags, mine)
        try:
            tv.assert_summary_agrees_with_tshark(path, check_shapes=False)
        except AssertionError as error:
            message = str(error).splitlines()[0]
            kind = ("summary", re.sub(r"\d+", "N", message.split(": ", 1)[-1])[:80])
            kinds[kind] += 1
            examples.setdefault(kind, (seed, None, message, None))
            if not found:   # keep the capture: the summary's failure names the conversation
                (out / f"summary-seed{seed}.pcap").write_bytes(path.read_bytes())
        rounds += 1
        conversations += args.conversations
        frames += len(packets)
        seed += 1
    path.unlink(missing_ok=True)

    elapsed = time.monotonic() - started
    print(f"{rounds} rounds, {conversations} conversations, {frames} frames in {elapsed:.0f} s; "
          f"{sum(kinds.values())} disagreements of {len(kinds)} kinds")
    for number, (kind, count) in enumerate(kinds.most_common(), 1):
        seed_of, frame, flags, packets = examples[kind]
        if kind[0] == "summary":
            print(f"  {count:6}  summary: {flags} (seed {seed_of}; out/summary-seed{seed_of}.pcap)")
            continue
        ours, theirs = kind
        print(f"  {count:6}  harness {ours or 'nothing'!r}, tshark {theirs or 'nothing'!r} "
              f"(first: seed {seed_of} frame {frame}; tshark's flags: {flags or 'none'})")
        minimal = packets if args.no_shrink else shrink(packets, kind, out)
        repro = out / f"kind{number}.pcap"
        repro.write_bytes(to_pcap(minimal))
        print(f"          {len(minimal)} packets, the last disagrees: {repro}")
        for packet in minimal:
            print("            " + tv.describe_packet(packet))
    print(f"reproductions in {out}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(main())
