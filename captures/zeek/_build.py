#!/usr/bin/env python3
"""Regenerate captures/zeek/ from a clone of Zeek's repository: every trace and conn.log baseline that
manifest.json lists, copied byte for byte from the commit it names, and checked against its sha256.

    python captures/zeek/_build.py /path/to/zeek          # a git clone (or bare mirror) of zeek/zeek
    python captures/zeek/_build.py /path/to/zeek --check  # only compare what is here with the clone

The manifest is the source of truth: which Zeek test produced each baseline, the command it ran
Zeek with and the options that matter to conn.log (bare mode, checksum verification, the scripts
loaded, redefinitions given on the command line). To add a trace, add its entry by hand from the
test's @TEST-EXEC lines, then run this to fetch it and fill in its sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"


def git_show(repository: Path, commit: str, path: str) -> bytes:
    result = subprocess.run(["git", "-C", str(repository), "show", f"{commit}:{path}"], capture_output=True,
                            timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"_build.py: {path} is not in {repository} at {commit}: "
                         f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zeek", type=Path, help="a git clone of github.com/zeek/zeek")
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args()
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    commit = manifest["zeek_commit"]
    differ = 0
    for entry in manifest["entries"]:
        for kind, source in (("trace", entry["zeek_trace"]), ("baseline", entry["zeek_baseline"])):
            data = git_show(args.zeek, commit, source)
            digest = hashlib.sha256(data).hexdigest()
            target = HERE / entry[kind]
            if entry["sha256"].get(kind) not in (None, digest):
                print(f"{source}: sha256 {digest} at {commit[:12]}, manifest says {entry['sha256'][kind]}")
                differ += 1
                continue
            if args.check:
                if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
                    print(f"{entry[kind]}: differs from {source}")
                    differ += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            entry["sha256"][kind] = digest
    if not args.check:
        MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(f"{len(manifest['entries'])} traces and baselines from zeek {commit[:12]}; {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
