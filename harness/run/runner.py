"""Running a scenario: server up, capture proven live, client runs, everything settles, capture proven
complete, then the wire is held to the expectation and the verdicts are written into the pcap.

The order matters. The server starts first because its port (0 = any free one) decides the capture
filter; it sends nothing while it listens. The capture is proven live before the client starts and
proven complete only after the kernel has nothing left to send on the port (harness.run.settle).
Across a topology (run_topology_scenario) the steps are the same; only where each piece runs differs.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

from harness.analysis.expect import Expectation, Problem
from harness.analysis.pipeline import analyse
from harness.render.annotate import annotate
from harness.run.capture import make_capture
from harness.run.netns import in_netns
from harness.run.process import Subject
from harness.run.scenario import READY_LINE, Placement, Scenario, ScenarioResult, Timeouts
from harness.run.settle import wait_tcp_settled
from harness.run.topology import CapturePoint, Topology, TopologyError


def run_scenario(scenario: Scenario, pcap: Path, backend: str = "dumpcap", timeouts: Timeouts = Timeouts(),
                 host: Optional[str] = None, placement: Placement = Placement(),
                 expectation: Optional[Expectation] = None) -> ScenarioResult:
    """Run it once and judge it. Raises CaptureError/SubjectError when it could not be run at all."""
    if host is not None:
        placement = replace(placement, server_host=host, probe_host=host)
    host = placement.server_host
    expectation = expectation or scenario.load_expectation()
    phases: Dict[str, float] = {}
    began = time.monotonic()

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - began - sum(phases.values())

    where = f" in {placement.server_netns}" if placement.server_netns else ""
    server = Subject(f"{scenario.proto} server ({scenario.server_module}){where}", scenario.server_argv(host),
                     netns=placement.server_netns)
    client = None
    capture = None
    try:
        server.start()
        port = int(server.wait_for_line(READY_LINE, timeouts.server_ready).group("port"))
        phase("server ready")
        capture = make_capture(backend, pcap, interface=placement.capture_interface,
                               bpf=f"{scenario.proto} port {port}{placement.bpf_host}",
                               probe_host=placement.probe_host, probe_from_netns=placement.probe_from_netns,
                               start_timeout=timeouts.capture_start, stop_timeout=timeouts.capture_stop)
        # A capture started by this thread inside a namespace stays there (process or thread).
        with in_netns(placement.capture_netns) if placement.capture_netns else nullcontext():
            capture.start()
        phase("capture start proven")
        where = f" in {placement.client_netns}" if placement.client_netns else ""
        # Named before it starts, so the finally below stops it even if start() is interrupted.
        client = Subject(f"{scenario.proto} client ({scenario.client_module}){where}",
                         scenario.client_argv(host, port), netns=placement.client_netns)
        client.start()
        client_status = client.wait(timeouts.client_done, "to finish its exchange")
        server.wait(timeouts.server_done, "to exit after serving the client")
        if scenario.proto == "tcp":
            for netns in placement.settle_netns:
                wait_tcp_settled(port, timeouts.settle, netns=netns)
        phase("traffic")
        capture_result = capture.stop()
        phase("capture end proven")
    except BaseException:
        if capture is not None:
            capture.abort()
        raise
    finally:
        for subject in (client, server):
            if subject is not None:
                subject.stop()

    analysis = analyse(capture_result.path)
    phase("analysis")
    problems = [Problem(warning) for warning in analysis.warnings]
    if scenario.client_must_succeed and client_status != 0:
        problems.append(Problem(f"the client exited with status {client_status}: "
                                f"{' / '.join(client.stderr_lines[-2:])}"))
    if len(analysis.conversations) != 1:
        problems.append(Problem(f"expected one conversation on port {port}, "
                                f"the wire has {len(analysis.conversations)}"))
    notes = {}
    if analysis.conversations:
        conversation = analysis.conversations[0]
        hosts = (conversation.orig.host, conversation.resp.host)
        if placement.client_host and hosts != (placement.client_host, host):
            problems.append(Problem(f"expected the conversation between the client's {placement.client_host} and "
                                    f"the server's {host}, the wire has {hosts[0]} -> {hosts[1]}"))
        problems += expectation.problems(conversation)
        notes = expectation.frame_notes(conversation)
    phase("assertions")
    result = ScenarioResult(scenario, expectation, capture_result, analysis, port, problems, server, client, phases)
    # The saved pcap carries the verdicts, so a reviewer opening it in Wireshark sees why.
    annotate(capture_result.path, capture_result.path, notes, [result.verdict(), *placement.comments, *map(str, problems)])
    phase("annotation")
    return result


@dataclass
class TopologyScenarioResult(ScenarioResult):
    topology: Optional[Topology] = None
    capture_point: Optional[CapturePoint] = None
    dropped: int = 0                 # the router's loss rule counter after the run
    endpoints: Tuple[str, str] = ("", "")   # (client address, server address) the scenario used


def run_topology_scenario(scenario: Scenario, pcap: Path, topology: Topology, backend: str = "dumpcap",
                          capture_in: str = "client", timeouts: Timeouts = Timeouts(),
                          expectation: Optional[Expectation] = None) -> TopologyScenarioResult:
    """run_scenario across a built topology: the server in its server namespace on the server's
    address, the client in the client namespace, the capture on `capture_in` (see
    Topology.capture_point). Raises CaptureError/SubjectError when it could not be run at all."""
    if topology.slot is None or topology.closed:
        raise TopologyError("run_topology_scenario needs a built topology: use `with Topology.direct() as t:`")
    point = topology.capture_point(capture_in)
    placement = Placement(
        server_host=topology.server_addr, server_netns=topology.server_ns, client_netns=topology.client_ns,
        client_host=topology.client_addr, capture_interface=point.interface, capture_netns=point.namespace,
        probe_host=point.address, probe_from_netns=point.probe_from,
        # Each namespace has its own socket table: both ends must have nothing left to send.
        settle_netns=(topology.client_ns, topology.server_ns),
        comments=(f"topology: {topology.describe()}", f"captured on {point.interface} in {point.namespace}"))
    result = run_scenario(scenario, pcap, backend, timeouts, placement=placement, expectation=expectation)
    return TopologyScenarioResult(**vars(result), topology=topology, capture_point=point,
                                  dropped=topology.dropped(), endpoints=(topology.client_addr, topology.server_addr))


__all__ = ["TopologyScenarioResult", "run_scenario", "run_topology_scenario"]
