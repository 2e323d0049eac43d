"""A scenario: server up, capture proven live, client runs, everything settles, capture proven complete,
then the wire is held to an expectation.

The order matters. The server starts first because its port (0 = any free one) decides the capture
filter; it sends nothing while it listens. The capture is proven live before the client starts and
proven complete only after the kernel has nothing left to send on the port (settle.py).
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from harness import ladder
from harness.annotate import annotate
from harness.capture import CaptureError, CaptureResult, make_capture
from harness.conversation import Conversation
from harness.expect import Expectation
from harness.netns import in_netns
from harness.process import Subject, SubjectError
from harness.settle import wait_tcp_settled
from harness.trace import Trace, load_trace

LOOPBACK = "127.0.0.1"
READY_LINE = r"listening on (?P<host>\S+):(?P<port>\d+)"


@dataclass(frozen=True)
class Timeouts:
    server_ready: float = 10.0
    client_done: float = 10.0
    server_done: float = 10.0
    settle: float = 5.0
    capture_start: float = 10.0
    capture_stop: float = 10.0


@dataclass(frozen=True)
class Scenario:
    """A server and a client to run against it.

    Either Python modules following the lab's conventions (`--host`, `--port`, the server printing
    `listening on HOST:PORT`), or any commands: `server_command` and `client_command` are argument
    lists in which `{host}` and `{port}` are replaced (the server's `{port}` is 0, and it must
    print the readiness line with the port it got).
    """

    name: str
    proto: str                        # "tcp" or "udp"
    server_module: str
    client_module: str
    client_args: Sequence[str]
    expectation: str                  # a built-in expectation's name, or a path to a spec file
    server_args: Sequence[str] = ("--count", "1")
    client_must_succeed: bool = True
    description: str = ""
    server_command: Optional[Sequence[str]] = None
    client_command: Optional[Sequence[str]] = None

    def server_argv(self, host: str) -> List[str]:
        if self.server_command:
            return [arg.format(host=host, port=0) for arg in self.server_command]
        return [sys.executable, "-u", "-m", self.server_module, "--host", host, "--port", "0", *self.server_args]

    def client_argv(self, host: str, port: int) -> List[str]:
        if self.client_command:
            return [arg.format(host=host, port=port) for arg in self.client_command]
        return [sys.executable, "-u", "-m", self.client_module, "--host", host, "--port", str(port),
                *self.client_args]

    def load_expectation(self) -> Expectation:
        if "/" in self.expectation or self.expectation.endswith(".txt"):
            return Expectation.load(self.expectation)
        return Expectation.builtin(self.expectation)


LAB_SCENARIOS: Dict[str, Scenario] = {s.name: s for s in (
    Scenario("tcp-lab", "tcp", "harness.lab.tcp_server", "harness.lab.tcp_client", ["yp"], "tcp_lab",
             description="the report's TCP lab: 11 segments, server closes first, 4-segment close"),
    Scenario("udp-lab", "udp", "harness.lab.udp_server", "harness.lab.udp_client", ["YP", "nihao"], "udp_lab",
             server_args=("--count", "2"),
             description="the report's UDP lab: YP and nihao out, 'thank you !' back twice"),
    Scenario("tcp-broken-server", "tcp", "harness.lab.broken_tcp_server", "harness.lab.tcp_client", ["yp"],
             "tcp_broken_server", server_args=(), client_must_succeed=False,
             description="the report's first server: accept() not unpacked, the connection is reset"),
)}


@dataclass(frozen=True)
class Placement:
    """Where a scenario's pieces run. The default is all on loopback in this network namespace; a
    topology (harness.topology) places them in namespaces of their own."""

    server_host: str = LOOPBACK
    server_netns: Optional[str] = None
    client_netns: Optional[str] = None
    client_host: Optional[str] = None        # the client's address the wire must show (None: not checked)
    capture_interface: str = "lo"
    capture_netns: Optional[str] = None
    probe_host: str = LOOPBACK               # an address on the capture's side of the watched link
    probe_from_netns: Optional[str] = None   # where probes are sent from, so they cross that link
    settle_netns: Sequence[Optional[str]] = (None,)   # every socket table with an end of the connection
    comments: Sequence[str] = ()             # said in the saved pcap's section header

    @property
    def bpf_host(self) -> str:
        return "" if self.server_host == LOOPBACK else f" and host {self.server_host}"


@dataclass
class ScenarioResult:
    scenario: Scenario
    expectation: Expectation
    capture: CaptureResult
    trace: Trace
    port: int
    problems: List[str]
    server: Subject
    client: Subject
    phases: Dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def conversation(self) -> Optional[Conversation]:
        return self.trace.conversations[0] if self.trace.conversations else None

    def verdict(self) -> str:
        word = "PASS" if self.ok else "FAIL"
        return f"{word} {self.scenario.name}: {self.expectation.name} against {self.capture.path}"

    def report(self) -> str:
        lines = [self.verdict()]
        if self.problems:
            lines.append(f"expected ({self.expectation.source}) against what the wire showed:")
            lines += [f"  - {problem}" for problem in self.problems]
        for conversation in self.trace.conversations:
            lines.append(ladder.render(conversation, str(self.capture.path)))
        lines.append(f"capture: {self.capture.describe()}")
        return "\n".join(lines)


class ScenarioFailed(AssertionError):
    def __init__(self, result: ScenarioResult):
        self.result = result
        super().__init__(result.report())


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

    trace = load_trace(capture_result.path)
    phase("analysis")
    problems = [f"{w}" for w in trace.warnings]
    if scenario.client_must_succeed and client_status != 0:
        problems.append(f"the client exited with status {client_status}: {' / '.join(client.stderr_lines[-2:])}")
    if len(trace.conversations) != 1:
        problems.append(f"expected one conversation on port {port}, the wire has {len(trace.conversations)}")
    notes = {}
    if trace.conversations:
        conversation = trace.conversations[0]
        hosts = (conversation.orig.host, conversation.resp.host)
        if placement.client_host and hosts != (placement.client_host, host):
            problems.append(f"expected the conversation between the client's {placement.client_host} and the "
                            f"server's {host}, the wire has {hosts[0]} -> {hosts[1]}")
        problems += expectation.problems(conversation)
        notes = expectation.frame_notes(conversation)
    phase("assertions")
    result = ScenarioResult(scenario, expectation, capture_result, trace, port, problems, server, client, phases)
    # The saved pcap carries the verdicts, so a reviewer opening it in Wireshark sees why.
    annotate(capture_result.path, capture_result.path, notes, [result.verdict(), *placement.comments, *problems])
    phase("annotation")
    return result


__all__ = ["LAB_SCENARIOS", "CaptureError", "Placement", "Scenario", "ScenarioFailed", "ScenarioResult", "SubjectError",
           "Timeouts", "run_scenario"]
