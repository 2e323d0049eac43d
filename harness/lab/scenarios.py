"""The lab's scenarios: the report's three runs, and a bulk download for multi-host topologies.

    run_scenario(LAB_SCENARIOS["tcp-lab"], pcap)
    run_topology_scenario(bulk_scenario(3 << 20), pcap, topology, expectation=load_expectation("tcp_bulk_lossy"))

Each names a server and a client among the lab's programs (harness.lab.*) and the built-in
expectation its wire is held to.
"""
from __future__ import annotations

import sys
from typing import Dict, List

from harness.run.scenario import Scenario

def lab_program(module: str, *arguments: str) -> List[str]:
    """A lab program's command line: `python -u -m harness.lab.MODULE --host {host} --port {port} ...`."""
    return [sys.executable, "-u", "-m", module, "--host", "{host}", "--port", "{port}", *arguments]


LAB_SCENARIOS: Dict[str, Scenario] = {s.name: s for s in (
    Scenario("tcp-lab", "tcp", lab_program("harness.lab.tcp_server", "--count", "1"),
             lab_program("harness.lab.tcp_client", "yp"), "tcp_lab",
             description="the report's TCP lab: 11 segments, server closes first, 4-segment close"),
    Scenario("udp-lab", "udp", lab_program("harness.lab.udp_server", "--count", "2"),
             lab_program("harness.lab.udp_client", "YP", "nihao"), "udp_lab",
             description="the report's UDP lab: YP and nihao out, 'thank you !' back twice"),
    Scenario("tcp-broken-server", "tcp", lab_program("harness.lab.broken_tcp_server"),
             lab_program("harness.lab.tcp_client", "yp"), "tcp_broken_server", client_must_succeed=False,
             description="the report's first server: accept() not unpacked, the connection is reset"),
)}


def bulk_scenario(nbytes: int, client_timeout: float = 30.0) -> Scenario:
    """harness.lab.bulk_client downloads `nbytes` from harness.lab.bulk_server (server closes first).
    Its expectation, tcp_graceful, holds on a lossless link; through loss, use tcp_bulk_lossy."""
    return Scenario(f"tcp-bulk-{nbytes}", "tcp", lab_program("harness.lab.bulk_server", "--count", "1"),
                    lab_program("harness.lab.bulk_client", "--bytes", str(nbytes), "--timeout", f"{client_timeout:g}"),
                    "tcp_graceful", description=f"bulk download of {nbytes} bytes, the server closing first")


__all__ = ["LAB_SCENARIOS", "bulk_scenario", "lab_program"]
