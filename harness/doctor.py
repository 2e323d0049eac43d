"""`harness doctor`: what is installed, what may capture, and how to fix what is missing.

Each finding is a line: OK, WARN or FAIL, what was found, and for anything not OK what to do.
The exit status is 0 when the chosen backend can capture on loopback, 1 otherwise.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from typing import List, NamedTuple, Optional

from harness import __version__
from harness.capture import capture_unavailable_reason
from harness.capture.dumpcap import PERMISSION_HINT, dumpcap_path
from harness.capture.session import CaptureUnavailable

CAPTURE_CAPABILITIES = ("cap_net_admin", "cap_net_raw")


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
    getcap = shutil.which("getcap") or shutil.which("getcap", path="/sbin:/usr/sbin")
    if not getcap:
        return ""
    done = subprocess.run([getcap, path], capture_output=True, text=True, timeout=10)
    return done.stdout.strip().split(" ", 1)[1] if " " in done.stdout.strip() else ""


def findings(backend: str = "dumpcap", interface: str = "lo") -> List[Finding]:
    found = [Finding("OK", "harness", f"{__version__} on Python {platform.python_version()} ({sys.executable})")]
    root = os.geteuid() == 0
    found.append(Finding("OK", "user", f"uid {os.geteuid()}{' (root: may capture with any backend)' if root else ''}"))
    try:
        dumpcap = dumpcap_path()
    except CaptureUnavailable as error:
        found.append(Finding("FAIL", "dumpcap", str(error), "apt-get install tshark"))
        dumpcap = None
    if dumpcap:
        found.append(Finding("OK", "dumpcap", f"{dumpcap}: {_version([dumpcap, '--version'])}"))
        capabilities = file_capabilities(dumpcap)
        granted = all(cap in capabilities for cap in CAPTURE_CAPABILITIES)
        if granted:
            found.append(Finding("OK", "dumpcap capabilities", capabilities))
        elif not root:
            found.append(Finding("WARN", "dumpcap capabilities", capabilities or "none",
                                 f"as root: setcap cap_net_raw,cap_net_admin+eip {dumpcap} "
                                 f"(or dpkg-reconfigure wireshark-common and join the wireshark group)"))
    for tool, package in (("tshark", "tshark"), ("editcap", "wireshark-common"), ("capinfos", "wireshark-common")):
        where = shutil.which(tool)
        found.append(Finding("OK", tool, where) if where else
                     Finding("WARN", tool, "not found (the tests cross-check with it)", f"apt-get install {package}"))
    for name in ("dumpcap", "scapy"):
        reason = capture_unavailable_reason(name, interface)
        level = "OK" if reason is None else ("FAIL" if name == backend else "WARN")
        fix = None
        if reason is not None:
            fix = PERMISSION_HINT if "permission" in reason.lower() or "not permitted" in reason.lower() else None
        found.append(Finding(level, f"capture with {name} on {interface}",
                             "possible" if reason is None else reason, fix))
    netns = shutil.which("ip")
    found.append(Finding("OK", "ip (network namespaces)", netns) if netns else
                 Finding("WARN", "ip (network namespaces)", "not found (multi-host scenarios need it)",
                         "apt-get install iproute2"))
    nft = shutil.which("nft") or shutil.which("nft", path="/sbin:/usr/sbin")
    found.append(Finding("OK", "nft (lossy router)", nft) if nft else
                 Finding("WARN", "nft (lossy router)", "not found (lossy-router scenarios need it)",
                         "apt-get install nftables"))
    return found


def run(backend: str = "dumpcap", interface: str = "lo") -> int:
    results = findings(backend, interface)
    for finding in results:
        print(finding)
    can_capture = not any(f.level == "FAIL" and f.subject.startswith(f"capture with {backend}") for f in results)
    print(f"\n{'ready' if can_capture else 'NOT ready'}: {backend} "
          f"{'can' if can_capture else 'cannot'} capture on {interface}")
    return 0 if can_capture else 1
