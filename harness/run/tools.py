"""The system tools harness runs, where they are, and what to install when one is missing.

    path = tools.require("ethtool")     # the executable, or ToolMissing: "missing ethtool: apt-get install -y ethtool"
    tools.find("nft")                   # the executable or None
    tools.missing(["ip", "nft"])        # the ones not here

The list itself is harness/run/tools.txt (tool, how it is found, Debian packages, group, purpose), which
scripts/setup.sh and `harness doctor` read too: one list, so an install, a diagnosis and an error
message can never name different packages.

Programs are looked up on PATH, then in SYSTEM_DIRS: root's tools (ip, nft, setcap) live in
/usr/sbin, which an ordinary user's PATH often leaves out. HARNESS_SYSTEM_DIRS replaces SYSTEM_DIRS
(scripts/setup.sh honours it too), so a test can show what happens on a machine without a tool.
"""
from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional

from harness.errors import Unavailable

LIST_PATH = Path(__file__).with_name("tools.txt")
SYSTEM_DIRS = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_DIRS_ENV = "HARNESS_SYSTEM_DIRS"
KINDS = ("program", "header", "module", "library")


class Tool(NamedTuple):
    name: str
    kind: str                 # how it is found: one of KINDS
    packages: tuple           # Debian packages that provide it
    group: str
    purpose: str

    @property
    def install(self) -> str:
        return f"apt-get install -y {' '.join(self.packages)}"


class ToolMissing(Unavailable):
    """A tool harness needs is not installed; str() is one line naming it and its package."""


def _load(path: Path = LIST_PATH) -> Dict[str, Tool]:
    tools: Dict[str, Tool] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[1] not in KINDS or fields[0] in tools:
            raise ValueError(f"{path}:{number}: expected `tool kind package[,package] group purpose`, "
                             f"a kind among {', '.join(KINDS)} and no tool twice")
        name, kind, packages, group, purpose = fields
        tools[name] = Tool(name, kind, tuple(packages.split(",")), group, purpose)
    return tools


TOOLS: Dict[str, Tool] = _load()


def tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not on harness's list of system tools ({LIST_PATH})") from None


def _system_dirs() -> str:
    return os.environ.get(SYSTEM_DIRS_ENV, SYSTEM_DIRS)


def find(name: str) -> Optional[str]:
    """Where the tool is (an executable's path, a header's or a library's name), or None."""
    entry = tool(name)
    if entry.kind == "program":
        return shutil.which(name) or shutil.which(name, path=_system_dirs())
    if entry.kind == "header":
        header = Path(sysconfig.get_paths()["include"]) / name
        return str(header) if header.exists() else None
    if entry.kind == "module":
        return name if importlib.util.find_spec(name) is not None else None
    return ctypes.util.find_library(name[3:] if name.startswith("lib") else name)


def missing_message(names: Iterable[str]) -> str:
    """'missing ip, nft: apt-get install -y iproute2 nftables' (packages once each, in list order)."""
    names = list(names)
    packages: List[str] = []
    for name in names:
        packages += [p for p in tool(name).packages if p not in packages]
    return f"missing {', '.join(names)}: apt-get install -y {' '.join(packages)}"


def missing(names: Iterable[str]) -> List[str]:
    return [name for name in names if find(name) is None]


def require(name: str) -> str:
    """The tool's path; ToolMissing, saying what to install, when it is not here."""
    found = find(name)
    if found is None:
        raise ToolMissing(missing_message([name]))
    return found


def in_group(group: str) -> List[Tool]:
    return [entry for entry in TOOLS.values() if entry.group == group]


__all__ = ["LIST_PATH", "SYSTEM_DIRS", "TOOLS", "Tool", "ToolMissing", "find", "in_group", "missing",
           "missing_message", "require", "tool"]
