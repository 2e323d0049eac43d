"""The likely server ports Zeek's default scripts register (`likely_server_ports` in a plain `zeek -r`
run): which side of a connection that began mid-stream is the server (harness.analysis.zeek, rule 3).

The list, zeek_ports.txt beside this module, is one `port/proto script` line per port, as
scripts/zeek_ports.py derives it from a Zeek clone (the analyzers' register_for_ports calls in every
script base/init-default.zeek loads); it names the Zeek commit it came from. Pure data, read once.
"""
from __future__ import annotations

from pathlib import Path
from typing import FrozenSet, Tuple

from harness.wire.packet import TCP, UDP

_PROTOCOLS = {"tcp": TCP, "udp": UDP}
PORTS_FILE = Path(__file__).with_name("zeek_ports.txt")


def _read(path: Path) -> FrozenSet[Tuple[int, int]]:
    ports = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            port, _, proto = line.split()[0].partition("/")
            ports.add((int(port), _PROTOCOLS[proto]))
    return frozenset(ports)


DEFAULT_LIKELY_SERVER_PORTS = _read(PORTS_FILE)
