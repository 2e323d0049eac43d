"""Regenerate the lab's reference captures in captures/lab/ (needs dumpcap and capture permission).

    python captures/_gen_lab.py [--out captures/lab] [--backend dumpcap]

Each file is one lab scenario run live, saved only if it passed its expectation; see captures/README.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.lab.scenarios import LAB_SCENARIOS
from harness.run.runner import run_scenario


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "lab")
    parser.add_argument("--backend", default="dumpcap")
    args = parser.parse_args(argv)
    for name, scenario in LAB_SCENARIOS.items():
        result = run_scenario(scenario, args.out / f"{name}.pcapng", backend=args.backend)
        print(result.verdict())
        if not result.ok:
            print(result.report(), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
