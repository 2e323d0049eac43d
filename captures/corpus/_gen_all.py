"""Regenerate every reference capture of captures/corpus/ by running each _gen_*.py in turn.

    python captures/corpus/_gen_all.py [--out DIR] [NAME ...]

NAME picks generators by their file's name (e.g. lossy-router); without one, all run. Needs root
(dumpcap on lo, network namespaces) and the Debian packages curl, netcat-openbsd, socat, nftables,
ethtool, iproute2 and tshark. Exits 1 if any generator failed, after running the rest.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT = 300.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    scripts = sorted(p for p in HERE.glob("_gen_*.py") if p.name != Path(__file__).name)
    if args.names:
        scripts = [p for p in scripts if p.stem.removeprefix("_gen_") in args.names]
        unknown = set(args.names) - {p.stem.removeprefix("_gen_") for p in scripts}
        if unknown:
            parser.error(f"no generator for {', '.join(sorted(unknown))}")
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        try:
            done = subprocess.run([sys.executable, str(script), "--out", str(args.out)], timeout=TIMEOUT)
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            print(f"{script.name} did not finish within {TIMEOUT:g} s", file=sys.stderr)
            ok = False
        if not ok:
            failed.append(script.name)
    print(f"{len(scripts) - len(failed)} of {len(scripts)} generators succeeded"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
