"""One tree of errors: whatever harness raises on purpose is a HarnessError, and its str() is one line
that says what is wrong and, where something can be done, what to do::

    HarnessError
    ├── InputError      the input will not do: a damaged capture, a bad expectation, a link type
    │                   not read (the user's file, not the machine, is at fault)
    ├── Unavailable     this machine cannot do it: a tool missing, no permission to capture or to
    │                   make namespaces (a reason for a test to skip, and for the CLI to say how to fix)
    └── RunFailed       a run was tried and could not be carried out or proven: a subject that did
                        not start or finish, a capture that could not be proven complete, a socket
                        that would not settle, a topology step that failed

The command line catches HarnessError as one (exit 2, the line on stderr); a wire that does not
match an expectation is not an error but a verdict (exit 1). Each layer defines its own subclasses
beside the code that raises them (harness.wire.reader.CaptureFormatError, harness.run.process.
SubjectError, ...), all of which are named in harness.__all__.
"""
from __future__ import annotations

__all__ = ["HarnessError", "InputError", "RunFailed", "Unavailable", "cannot_write"]


class HarnessError(Exception):
    """Anything harness raises on purpose; str() is one line."""


class InputError(HarnessError):
    """A capture, expectation or argument that harness cannot work with."""


class Unavailable(HarnessError):
    """What is needed is not available here (a tool, a permission); the message says how to get it."""


class RunFailed(HarnessError):
    """A run of subjects under capture could not be carried out, or not proven complete."""


def cannot_write(path, error: OSError, what: str = "it") -> str:
    """The one line for a file that could not be written: the path, the system's reason, what to do."""
    import errno
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = f"free some space there, or write {what} elsewhere"
    elif error.errno in (errno.ENOTDIR, errno.EEXIST):
        advice = f"a file stands where a directory should be: move it, or write {what} elsewhere"
    else:
        advice = f"write {what} elsewhere"
    return f"cannot write {path}: {reason}; {advice}"
