#!/usr/bin/env python3
"""Fuzz the capture readers, the decoder and the command line for longer than the test suite does.

The properties are those of tests/unit/test_fuzz_readers.py (which runs each a few hundred times):

  arbitrary  arbitrary bytes, and arbitrary bytes behind a valid pcap/pcapng header, maybe gzipped
  mutated    the reference captures with bytes flipped, length fields set to awkward values, cut,
             grown, gzipped
  claims     a length field claiming up to 4 GiB: the reader's peak allocation (tracemalloc)
             stays near the bytes really in the file
  cli        mutated captures through `harness summary --json`, `show` and `check --expect
             tcp_graceful`, in process: exit 0/1/2, at most one error line, never a traceback

Each input must be read whole or end in CaptureFormatError / UnsupportedLinkType (single packets
in PacketDecodeError), within the property deadline; anything else is a failure.

    .venv/bin/python bench/fuzz.py --examples 100000                 # hypothesis, every property
    .venv/bin/python bench/fuzz.py --seconds 600 --property mutated
    .venv/bin/python bench/fuzz.py --engine atheris --seconds 600    # coverage-guided (libFuzzer)
    .venv/bin/python bench/fuzz.py --replay /tmp/harness-fuzz/mutated-0123456789ab.bin

--examples is per property; --seconds is for the whole run, shared among the properties. The
report: inputs tried, seconds, how the inputs ended (by exception type and by kind of message),
and the first failing input of each property, saved under --out with its traceback beside it.
Exit status 0 when nothing failed, 1 otherwise.

Engines. hypothesis (the default) generates structured inputs and shrinks a failure to a small
one. atheris (`pip install atheris`; it has wheels for CPython 3.11 on x86-64 Linux) mutates the
seed captures under libFuzzer's coverage guidance: bytes in, no shrinking, crash files named by
libFuzzer; its properties are `readers` (arbitrary and mutated in one) and `cli`.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "unit")]   # the properties and their builders live with the tests

HYPOTHESIS_PROPERTIES = ("arbitrary", "mutated", "claims", "cli")
ATHERIS_PROPERTIES = ("readers", "cli")
BATCH = 1000            # hypothesis examples per run of a property; the clock is read between runs
CLI_COMMANDS = (("summary", "--json"), ("show",), ("check", "--expect", "tcp_graceful"))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    parser.add_argument("--property", action="append", dest="properties", metavar="NAME",
                        help=f"repeatable; default all. hypothesis: {', '.join(HYPOTHESIS_PROPERTIES)}; "
                             f"atheris: {', '.join(ATHERIS_PROPERTIES)}")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--examples", type=int, help="inputs per property (default 10000 without --seconds)")
    budget.add_argument("--seconds", type=float, help="wall-clock budget for the whole run")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "harness-fuzz",
                        help="where failing inputs and atheris logs go (default /tmp/harness-fuzz)")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run one saved input through every check")
    parser.add_argument("--atheris-child", type=Path, help=argparse.SUPPRESS)
    args, libfuzzer_args = parser.parse_known_args(argv)

    if args.atheris_child:
        return _atheris_child(args.atheris_child, args.properties[0], libfuzzer_args)
    if args.replay:
        return _replay(args.replay)
    known = HYPOTHESIS_PROPERTIES if args.engine == "hypothesis" else ATHERIS_PROPERTIES
    chosen = args.properties or list(known)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown {args.engine} property {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.engine == "atheris" and importlib.util.find_spec("atheris") is None:
        parser.error("atheris is not installed: .venv/bin/pip install atheris (or use the default engine)")
    examples = args.examples if args.examples is not None else (None if args.seconds else 10000)
    seconds_each = args.seconds / len(chosen) if args.seconds else None
    args.out.mkdir(parents=True, exist_ok=True)
    run = _run_hypothesis if args.engine == "hypothesis" else _run_atheris
    failed = False
    for name in chosen:
        report = run(name, examples, seconds_each, args.out)
        print(report.text(), flush=True)
        failed |= report.failure is not None
    return 1 if failed else 0


class Report:
    def __init__(self, engine: str, name: str):
        self.engine, self.name = engine, name
        self.tried = 0
        self.seconds = 0.0
        self.exception_types: Counter = Counter()    # how inputs ended, by exception type
        self.kinds: Counter = Counter()              # and by message, numbers blanked
        self.failure: Optional[str] = None           # the first failure: its type and message
        self.saved: Optional[Path] = None

    def note(self, outcome) -> None:
        if isinstance(outcome, tuple) and hasattr(outcome, "error"):   # an Outcome of the readers
            if outcome.error is None:
                self.exception_types["(none: read whole)"] += 1
            else:
                self.exception_types[type(outcome.error).__name__] += 1
                self.kinds[_kind(outcome.error)] += 1
            if outcome.skipped:
                self.exception_types["PacketDecodeError (packets skipped)"] += 1
        else:                                                            # the command line's statuses
            self.kinds[f"exit statuses {outcome}"] += 1

    def text(self) -> str:
        lines = [f"== {self.engine} {self.name}: {self.tried} inputs in {self.seconds:.1f} s "
                 f"({self.tried / max(self.seconds, 1e-9):.0f}/s)"]
        if self.exception_types:
            lines.append(f"   {len(self.exception_types)} distinct ways inputs ended (exception types):")
            lines += [f"     {count:>9}  {kind}" for kind, count in self.exception_types.most_common()]
        if self.kinds:
            lines.append(f"   {len(self.kinds)} distinct kinds of message; the most common:")
            lines += [f"     {count:>9}  {kind}" for kind, count in self.kinds.most_common(15)]
        if self.failure:
            lines.append(f"   FAILED: {self.failure}")
            if self.saved:
                lines.append(f"   first failing input: {self.saved} (traceback beside it; "
                             f"replay: bench/fuzz.py --replay {self.saved})")
        else:
            lines.append("   no failure")
        return "\n".join(lines)


def _kind(error: BaseException) -> str:
    """The message without its file, offset, detail and numbers: what kind of damage it was."""
    message = str(error)
    path = getattr(error, "path", None)
    if path is not None and message.startswith(f"{path}: "):
        message = message[len(path) + 2:]
    message = re.sub(r"starts with .*? \('.*'\)", "starts with ...", message)
    message = message.split(" at byte")[0].split(" (")[0].split(";")[0]
    return re.sub(r"\b(0x)?[0-9a-f]*\d[0-9a-f]*\b", "N", message)


def _properties():
    import test_fuzz_readers
    return test_fuzz_readers


def _input_bytes(properties, name: str, case) -> bytes:
    if name == "claims":
        return properties.claimed(case)
    return case if isinstance(case, bytes) else case.data


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _save(out: Path, name: str, data: bytes, description: str) -> Path:
    path = out / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(description)
    return path


# -- hypothesis -------------------------------------------------------------------------------------

def _run_hypothesis(name: str, examples: Optional[int], seconds: Optional[float], out: Path) -> Report:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    properties = _properties()
    strategy, check, _share = properties.PROPERTIES[name]
    if name == "cli":
        check = lambda case: properties.check_cli(case, CLI_COMMANDS)     # noqa: E731 (check too)
    report = Report("hypothesis", name)
    last: Dict[str, object] = {}

    def observed(case):
        report.tried += 1
        last["case"] = case
        report.note(check(case))

    start = time.monotonic()
    stop_at = start + seconds if seconds else None
    while (examples is None or report.tried < examples) and (stop_at is None or time.monotonic() < stop_at):
        batch = BATCH if examples is None else min(BATCH, examples - report.tried)
        runner = settings(max_examples=batch, deadline=properties.DEADLINE, database=None,
                          phases=(Phase.generate, Phase.shrink), verbosity=Verbosity.quiet,
                          suppress_health_check=list(HealthCheck))(given(strategy)(observed))
        try:
            runner()
        except Exception as error:      # hypothesis re-raises the shrunk example's error last
            report.failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            case = last.get("case")
            if case is not None:
                report.saved = _save(out, name, _input_bytes(properties, name, case),
                                     f"{case!r}\n\n{_traceback(error)}")
            break
    report.seconds = time.monotonic() - start
    return report


# -- atheris ----------------------------------------------------------------------------------------

def _run_atheris(name: str, examples: Optional[int], seconds: Optional[float], out: Path) -> Report:
    report = Report("atheris", name)
    stats_path = out / f"atheris-{name}-stats.json"
    log_path = out / f"atheris-{name}.log"
    stats_path.unlink(missing_ok=True)
    before = set(out.glob("*"))
    with tempfile.TemporaryDirectory() as corpus:
        properties = _properties()
        for seed, data in properties.SEEDS.items():
            Path(corpus, seed).write_bytes(data)
        limits = ([f"-max_total_time={max(int(seconds), 1)}"] if seconds else []) + \
                 ([f"-runs={examples}"] if examples else [])
        command = [sys.executable, str(Path(__file__).resolve()), "--atheris-child", str(stats_path),
                   "--property", name, corpus, f"-artifact_prefix={out.resolve()}/{name}-",
                   "-timeout=10", "-rss_limit_mb=4096", "-print_final_stats=1", *limits]
        start = time.monotonic()
        with open(log_path, "w") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        report.seconds = time.monotonic() - start
    log = log_path.read_text(errors="replace")
    done = re.search(r"Done (\d+) runs in", log) or re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    report.tried = int(done.group(1)) if done else stats.get("tried", 0)
    report.exception_types.update(stats.get("exception_types", {}))
    report.kinds.update(stats.get("kinds", {}))
    artifacts = sorted(path for path in set(out.glob(f"{name}-*")) - before
                       if re.match(r".*-(crash|timeout|oom|leak|slow-unit)-", path.name))
    if status != 0 or artifacts:
        report.failure = stats.get("failure") or f"libFuzzer exit status {status}; see {log_path}"
        if artifacts:
            report.saved = artifacts[0]
            artifacts[0].with_suffix(".txt").write_text(log[-20000:])
    return report


def _atheris_child(stats_path: Path, name: str, libfuzzer_args: List[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["harness"]):
        properties = _properties()
    report = Report("atheris", name)
    written = [time.monotonic()]

    def write_stats(failure: Optional[str] = None) -> None:
        stats_path.write_text(json.dumps({"tried": report.tried, "exception_types": report.exception_types,
                                          "kinds": report.kinds, "failure": failure}))
        written[0] = time.monotonic()

    def one_input(data: bytes) -> None:
        report.tried += 1
        try:
            if name == "cli":
                report.note(properties.check_cli(properties.Mutated("fuzzed", (), False, data), CLI_COMMANDS))
            else:
                report.note(properties.read_everything(data))
        except BaseException as error:
            write_stats(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            raise
        if time.monotonic() - written[0] > 1:
            write_stats()

    # libFuzzer ends the process with exit(): whatever was not written by then is lost, so the
    # stats are written every second and the final count is taken from libFuzzer's own line.
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()
    return 0


# -- replay -----------------------------------------------------------------------------------------

def _replay(path: Path) -> int:
    properties = _properties()
    data = path.read_bytes()
    failed = False
    for label, run in (("readers", lambda: properties.read_everything(data, path.name)),
                       ("cli", lambda: properties.check_cli(properties.Mutated(path.name, (), False, data),
                                                            CLI_COMMANDS))):
        try:
            print(f"{label}: {run()}")
        except Exception:
            failed = True
            print(f"{label}: FAILED")
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
