"""tshark's verdict on an expectation's display filters, through pyshark: the one path by which a
check starts tshark, taken only when an expectation has `where "..."` or `check filter "..."`.

    dissection = dissect(pcap_path, conversation, ["tcp.window_size_value >= 1024"])
    problems = expectation.problems(conversation, dissection)

Each filter is read by tshark's two-pass dissection (`-2`, so tcp.analysis.* is final) over the
conversation's frames only: one run asks for the frames that do not match it, with the values of
the fields it names (shown as the reason). Results are cached per file (path,
size and modification time) and filter. Without tshark or pyshark, or with a filter tshark rejects,
each filter's outcome is the one line saying so, and only the steps that use it fail.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, Union

from harness.analysis.conversation import Conversation
from harness.analysis.expect import Dissection, FilterOutcome
from harness.run.tools import ToolMissing, require

__all__ = ["dissect", "dissect_many"]

_FIELD = re.compile(r"\b[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+\b")
_TIMEOUT_S = 120
_cache: Dict[Tuple[str, int, int, str, Tuple[int, ...]], Union[FilterOutcome, str]] = {}


def dissect(path: Union[str, Path], conversation: Conversation, expressions: Iterable[str]) -> Dissection:
    """Each expression's outcome over the conversation's frames."""
    return dissect_many(path, [conversation], expressions)


def dissect_many(path: Union[str, Path], conversations: Sequence[Conversation],
                 expressions: Iterable[str]) -> Dissection:
    frames = tuple(sorted({s.packet.frame for c in conversations for s in c.segments}))
    path = Path(path)
    try:
        status = path.stat()
    except OSError as error:
        return {expression: f"cannot read {path}: {error.strerror}" for expression in expressions}
    expressions = list(dict.fromkeys(expressions))
    keys = {expression: (str(path.resolve()), status.st_size, status.st_mtime_ns, expression, frames)
            for expression in expressions}
    wanted = [expression for expression in expressions if keys[expression] not in _cache]
    if wanted:
        for expression, outcome in _outcomes(path, frames, wanted).items():
            _cache[keys[expression]] = outcome
    return {expression: _cache[keys[expression]] for expression in expressions}


def _outcomes(path: Path, frames: Tuple[int, ...], expressions: List[str]) -> Dict[str, Union[FilterOutcome, str]]:
    """Per filter, a check that tshark takes it, then one run for the frames that do not match it."""
    if not frames:
        return {expression: FilterOutcome(frozenset(), {}) for expression in expressions}
    try:
        tshark = require("tshark")
        import pyshark    # imported here: only expectations with display filters need it
    except ToolMissing as error:
        return {expression: str(error) for expression in expressions}
    except ImportError:
        return {expression: "pyshark, which harness depends on, cannot be imported: reinstall harness"
                for expression in expressions}
    within = f"frame.number in {{{','.join(map(str, frames))}}}"
    found: Dict[str, Union[FilterOutcome, str]] = {}
    for expression in expressions:
        # tshark's own words for a filter it refuses, before pyshark meets it (pyshark says only
        # that tshark "seems to have crashed").
        refused = _rejected(tshark, path, expression)
        if refused:
            found[expression] = refused
            continue
        # The frames that do NOT match, with the fields the filter names: usually few, and the
        # ones whose values explain the verdict. A frame matches !(EXPR) exactly when it does not
        # match EXPR, so the rest are the ones that do.
        fields = list(dict.fromkeys(_FIELD.findall(expression)))
        try:
            failing = {int(packet.number): _values(packet, fields)
                       for packet in _packets(pyshark, tshark, path, f"({within}) && !({expression})")}
        except Exception as error:      # pyshark raises its own kinds when tshark exits with an error
            found[expression] = _tshark_said(error)
            continue
        found[expression] = FilterOutcome(frozenset(frames) - failing.keys(), failing)
    return found


def _packets(pyshark, tshark: str, path: Path, display_filter: str) -> List[object]:
    """The packets tshark shows through the filter, the process left as it was found: in the main
    thread pyshark installs asyncio's SafeChildWatcher, a SIGCHLD handler and a signal wakeup fd for
    the whole process, which would outlive it and garble every later subprocess's exit
    (BlockingIOError on the wakeup fd); its event loop is one of ours, closed after."""
    policy = asyncio.get_event_loop_policy()
    previous = getattr(getattr(policy, "_local", None), "_loop", None)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    capture = None
    try:
        capture = pyshark.FileCapture(str(path), display_filter=display_filter, keep_packets=False,
                                      tshark_path=tshark, custom_parameters=["-2"])
        return list(capture)
    finally:
        try:
            if capture is not None:
                capture.close()
        finally:
            if threading.current_thread() is threading.main_thread():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)   # the child watcher API, 3.12+
                    asyncio.get_child_watcher().close()
                    asyncio.set_child_watcher(None)
            loop.close()
            asyncio.set_event_loop(previous)


def _values(packet, fields: Sequence[str]) -> Mapping[str, str]:
    shown: Dict[str, str] = {}
    for name in fields:
        layer_name = name.split(".", 1)[0]
        for layer in packet.layers:
            if layer.layer_name != layer_name:
                continue
            value = layer.get_field_value(name)
            if value is None:
                value = layer.get_field_value(name.split(".", 1)[1].replace(".", "_"))
            if value is not None:
                shown[name] = str(value)
                break
    return shown


def _rejected(tshark: str, path: Path, expression: str) -> str:
    """tshark's own words when it refuses the filter ("" when it takes it)."""
    try:
        done = subprocess.run([tshark, "-n", "-r", str(path), "-c", "1", "-Y", expression, "-T", "fields",
                               "-e", "frame.number"], capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"tshark did not answer within {_TIMEOUT_S} s"
    if done.returncode == 0:
        return ""
    said = [line.strip() for line in done.stderr.splitlines()
            if line.strip() and not line.startswith("Running as user")]
    return "tshark: " + (said[0].removeprefix("tshark: ") if said else f"exit status {done.returncode}")


def _tshark_said(error: Exception) -> str:
    text = " ".join(str(error).split())
    if "crashed" in text or "retcode" in text:
        return f"tshark rejected the filter or the file ({text[:200]})"
    return f"{type(error).__name__}: {text[:200]}"

