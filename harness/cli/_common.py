"""What the commands share: exit statuses, the one-line error, reading captures, choosing conversations."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from harness.analysis.conversation import Conversation
from harness.analysis.expect import Expectation, load_expectation
from harness.analysis.pipeline import PURE_PYTHON_ENV, Analysis, Wanted, speedups_status, stream_analysis
from harness.errors import InputError, cannot_write

OK, MISMATCH, UNUSABLE = 0, 1, 2


class Unusable(InputError):
    """Arguments or input the command cannot work with; str() is the one line to print."""


def writable_directory(directory: Path, option: str, what: str = "pcaps") -> None:
    """Make the directory if need be, and prove a file can be made in it, before anything runs."""
    import tempfile     # here: it costs every command's start-up 5 ms, and only capturing commands call this
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".harness-write-test-"):
            pass
    except OSError as error:
        raise Unusable(f"cannot write {what} to {directory}: {error.strerror or error}; "
                       f"choose another {option}") from None


def reading(path: Path, read: Callable[[], Analysis]) -> Analysis:
    """read(), with an unreadable file as one line, and the reader's warnings on stderr."""
    try:
        analysis = read()
    except FileNotFoundError:
        raise Unusable(f"{path}: no such file") from None
    except OSError as error:
        # strerror alone: str(OSError) repeats the path and adds "[Errno N]".
        raise Unusable(f"{path}: {error.strerror or error}") from None
    except InputError as error:
        raise Unusable(f"{path}: {error}") from None
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return analysis


def note_slow_path_once() -> None:
    """Say once per installation, on stderr, that summaries run without the compiled C scanner."""
    compiled, how = speedups_status()
    if compiled or os.environ.get(PURE_PYTHON_ENV):
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"
    key = hashlib.sha1(f"{Path(__file__).parent}|{sys.version}|{how}".encode()).hexdigest()[:16]
    marker = cache / f"pure-python-noted-{key}"
    if marker.exists():
        return
    print(f"harness: note: summary runs in {how} (said once; `harness --version` says it again)",
          file=sys.stderr)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass   # no cache to remember it in: it is said again next time, which is better than never


def damaged(analysis: Analysis, command: str) -> int:
    """Say the damage (one line) and return UNUSABLE; OK for a whole file."""
    if analysis.damage is not None:
        shown = "; what came before the damage is shown" if analysis.packets else ""
        print(f"harness {command}: {analysis.damage}{shown}", file=sys.stderr)
        return UNUSABLE
    return OK


def unreadable(analysis: Analysis) -> bool:
    """The file was not a capture at all: nothing was read before the damage."""
    return analysis.damage is not None and analysis.frames == 0


def nothing_to_show(analysis: Analysis, filtered: str = "") -> str:
    before = " before the damage" if analysis.damage is not None else ""
    kinds = "TCP or UDP" if not filtered.startswith((" TCP", " UDP")) else filtered[1:4]
    filtered = filtered[4:] if kinds != "TCP or UDP" else filtered
    return f"{analysis.path}: no {kinds} conversations{filtered}{before} in its {analysis.contents()}"


def expectation(spec: str) -> Expectation:
    """A spec file's path, or the name of a shipped expectation (with or without .txt)."""
    try:
        return load_expectation(spec)
    except OSError as error:
        raise Unusable(f"{spec}: {error.strerror or error}") from None


def write_text(path: Path, text: str) -> None:
    """Write the file whole or not at all: it is written beside its name and renamed over it once
    complete, so a full disk never leaves a truncated file where the user had a whole one."""
    partial = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.partial")
    try:
        with open(partial, "x", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
    except OSError as error:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass    # a file system gone read-only keeps it; the error below is the one to report
        raise Unusable(cannot_write(path, error, "it")) from None


def matches(conversation: Conversation, port: Optional[int], proto: Optional[str]) -> bool:
    """The conversation has `port` at either end and is of `proto` (each when given)."""
    if proto is not None and conversation.proto_name != proto:
        return False
    return port is None or port in (conversation.orig.port, conversation.resp.port)


def describe_filter(port: Optional[int], proto: Optional[str]) -> str:
    parts = [f" {proto.upper()}" if proto else "", f" on port {port}" if port is not None else ""]
    return "".join(parts)


def streamed(path: Path, on_conversation: Callable[[Conversation], None], number: Optional[int] = None,
             port: Optional[int] = None, proto: Optional[str] = None, first: bool = False,
             verify_checksums: bool = False) -> Analysis:
    """The conversations asked for (number N, 1-based as `summary` numbers them, and/or those on `port`
    of `proto`; all when nothing is asked; with `first`, the first of them), handed to on_conversation
    in order of number as the capture is read (pipeline.stream_analysis), with an unreadable file as
    one line and a number the capture does not have as Unusable."""
    handed = []

    def take(conversation: Conversation) -> None:
        handed.append(conversation.index)
        on_conversation(conversation)

    analysis = reading(path, lambda: stream_analysis(path, take, Wanted(number, port, proto, first),
                                                     verify_checksums=verify_checksums))
    if number is not None and not handed:
        raise no_such_conversation(analysis, number, port, proto)
    return analysis


def no_such_conversation(analysis: Analysis, number: int, port: Optional[int], proto: Optional[str]) -> Unusable:
    count = analysis.conversation_count
    return Unusable(f"{analysis.path} has no conversation {number}{describe_filter(port, proto)}: "
                    f"{'its conversations are numbered 1 to ' + str(count) if count > 1 else 'it has ' + str(count)}"
                    f"{' conversation' if count == 1 else ''} (see `harness summary`)")
