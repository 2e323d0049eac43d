"""What a scenario is, where its pieces run, and what a run of it found: data, no running here.

A scenario is a server and a client to run against it, with the expectation the wire is held to;
harness.run.runner runs one (the order of its steps is explained there), and harness.lab.scenarios
holds the lab's own. A ScenarioResult is the verdict, the problems found, the analysed capture and
the subjects' output.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from harness.analysis.conversation import Conversation
from harness.analysis.expect import Expectation, Problem, load_expectation
from harness.analysis.pipeline import Analysis
from harness.render import ladder

if TYPE_CHECKING:     # the runner makes these; the model only holds them
    from harness.run.capture import CaptureResult
    from harness.run.process import Subject

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
        return load_expectation(self.expectation)


@dataclass(frozen=True)
class Placement:
    """Where a scenario's pieces run. The default is all on loopback in this network namespace; a
    topology (harness.run.topology) places them in namespaces of their own."""

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
    capture: "CaptureResult"         # harness.run.capture.CaptureResult
    analysis: Analysis
    port: int
    problems: List[Problem]
    server: "Subject"                # harness.run.process.Subject
    client: "Subject"
    phases: Dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def conversation(self) -> Optional[Conversation]:
        return self.analysis.conversations[0] if self.analysis.conversations else None

    def verdict(self) -> str:
        word = "PASS" if self.ok else "FAIL"
        return f"{word} {self.scenario.name}: {self.expectation.name} against {self.capture.path}"

    def report(self) -> str:
        lines = [self.verdict()]
        if self.problems:
            lines.append(f"expected ({self.expectation.source}) against what the wire showed:")
            lines += [f"  - {problem}" for problem in self.problems]
        for conversation in self.analysis.conversations:
            lines.append(ladder.render(conversation, str(self.capture.path)))
        lines.append(f"capture: {self.capture.describe()}")
        return "\n".join(lines)


class ScenarioFailed(AssertionError):
    """A scenario whose wire did not match, raised where a test wants a failure: str() is the report."""

    def __init__(self, result: ScenarioResult):
        self.result = result
        super().__init__(result.report())


__all__ = ["LOOPBACK", "READY_LINE", "Placement", "Scenario", "ScenarioFailed", "ScenarioResult", "Timeouts"]
