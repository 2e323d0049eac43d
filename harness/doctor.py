"""`harness doctor`: what is installed, what may capture, and how to fix what is missing.

Each finding is a line: OK, WARN or FAIL, what was found, and for anything not OK what to do.
The system tools are those of harness/run/tools.txt (the list scripts/setup.sh installs from), all
but the bootstrap ones (this is running) and those for regenerating the reference captures.
The exit status is 0 when the chosen backend can capture on loopback, 1 otherwise.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import List, NamedTuple, Optional

from harness import __version__

from harness.run import tools
from harness.run.capture import capture_unavailable_reason, permission_hint
from harness.run.capture.dumpcap import DUMPCAP_ENV, cannot_run, dumpcap_path
from harness.run.capture.session import CaptureUnavailable
from harness.analysis.pipeline import speedups_status

CAPTURE_CAPABILITIES = ("cap_net_admin", "cap_net_raw")
REPORTED_GROUPS = ("capture", "namespaces", "privilege", "build", "tests")


class Finding(NamedTuple):
    level: str          # "OK", "WARN" or "FAIL"
    subject: str
    detail: str
    fix: Optional[str] = None

    def __str__(self) -> str:
        line = f"{self.level:<4} {self.subject}: {self.detail}"
        return f"{line}\n     fix: {self.fix}" if self.fix else line


def _version(command: List[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"did not answer ({error})"
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "?"


def file_capabilities(path: str) -> str:
    """The file capabilities of an executable as getcap prints them, or '' when it has none."""
    getcap = tools.find("getcap")
    if not getcap:
        return ""
    done = subprocess.run([getcap, path], capture_output=True, text=True, timeout=10)
    return done.stdout.strip().split(" ", 1)[1] if " " in done.stdout.strip() else ""


def _dumpcap_findings(root: bool, backend: str) -> List[Finding]:
    try:
        dumpcap = dumpcap_path()
    except CaptureUnavailable as error:
        fix = (f"point {DUMPCAP_ENV} at a dumpcap executable, or unset it" if os.environ.get(DUMPCAP_ENV)
               else tools.tool("dumpcap").install)
        return [Finding("FAIL" if backend == "dumpcap" else "WARN", "dumpcap", str(error), fix)]
    try:
        subprocess.run([dumpcap, "--version"], capture_output=True, timeout=10)
    except OSError as error:
        return [Finding("FAIL" if backend == "dumpcap" else "WARN", "dumpcap", cannot_run(dumpcap, error))]
    except subprocess.TimeoutExpired:
        pass     # said below, as the version that did not answer
    found = [Finding("OK", "dumpcap", f"{dumpcap}: {_version([dumpcap, '--version'])}")]
    capabilities = file_capabilities(dumpcap)
    if all(cap in capabilities for cap in CAPTURE_CAPABILITIES):
        found.append(Finding("OK", "dumpcap capabilities", capabilities))
    elif not root:
        found.append(Finding("WARN", "dumpcap capabilities", capabilities or "none",
                             f"as root: setcap cap_net_raw,cap_net_admin+eip {dumpcap} "
                             f"(or dpkg-reconfigure wireshark-common and join the wireshark group)"))
    return found


def _tool_findings() -> List[Finding]:
    found = []
    for entry in tools.TOOLS.values():
        if entry.group not in REPORTED_GROUPS or entry.name == "dumpcap":
            continue
        where = tools.find(entry.name)
        subject = f"{entry.name} ({entry.group})"
        found.append(Finding("OK", subject, where) if where else
                     Finding("WARN", subject, f"not found (for {entry.purpose})", entry.install))
    return found


def findings(backend: str = "dumpcap", interface: str = "lo") -> List[Finding]:
    compiled, how = speedups_status()
    found = [Finding("OK", "harness", f"{__version__} on Python {platform.python_version()} ({sys.executable})"),
             Finding("OK" if compiled else "WARN", "summary path", how,
                     None if compiled else "install gcc and Python's headers, then reinstall: bash scripts/setup.sh")]
    root = os.geteuid() == 0
    found.append(Finding("OK", "user", f"uid {os.geteuid()}{' (root: may capture with any backend)' if root else ''}"))
    found += _dumpcap_findings(root, backend)
    found += _tool_findings()
    for name in ("dumpcap", "scapy"):
        reason = capture_unavailable_reason(name, interface)
        level = "OK" if reason is None else ("FAIL" if name == backend else "WARN")
        fix = None
        if reason is not None and ("permission" in reason.lower() or "not permitted" in reason.lower()):
            fix = permission_hint(name)
        found.append(Finding(level, f"capture with {name} on {interface}",
                             "possible" if reason is None else reason, fix))
    return found


def run(backend: str = "dumpcap", interface: str = "lo") -> int:
    results = findings(backend, interface)
    for finding in results:
        print(finding)
    can_capture = not any(f.level == "FAIL" and f.subject.startswith(f"capture with {backend}") for f in results)
    print(f"\n{'ready' if can_capture else 'NOT ready'}: {backend} "
          f"{'can' if can_capture else 'cannot'} capture on {interface}")
    return 0 if can_capture else 1
