"""What a scenario is, where its pieces run, and what a run of it found: data, no running here.

A scenario is a server and a client to run against it, with the expectation the wire is held to;
harness.run.runner runs one (the order of its steps is explained there), and harness.lab.scenarios
holds the lab's own. A ScenarioResult is the verdict, the problems found, the analysed capture and
the subjects' output.
"""
from __future__ import annotations

import os
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
    """Every wait of a run, in seconds; each one's timeout message names what was waited for."""
    server_ready: float = 10.0        # the server listening (or bound) on its port
    client_done: float = 10.0         # the client's exchange, start to exit
    close_grace: float = 1.0          # once the client is done, the server's time to close what it holds
    settle: float = 5.0               # the kernel's last segments on the port (harness.run.settle)
    capture_start: float = 10.0
    capture_stop: float = 10.0
    port_free: float = 65.0           # a fixed port's leftover TIME_WAIT sockets (Linux keeps them 60 s)


def fill(template: Sequence[str], **values: object) -> List[str]:
    """The argv with `{name}` replaced by each value given; other braces are left as they are."""
    argv = []
    for word in template:
        for name, value in values.items():
            word = word.replace("{" + name + "}", str(value))
        argv.append(word)
    return argv


@dataclass(frozen=True)
class Scenario:
    """A server and a client to run against it, and the expectation the wire is held to.

    `server` and `client` are argument lists (as a shell splits a command) in which `{host}` and
    `{port}` are replaced. With `port` the server's port is fixed (the lab report's 8080);
    without, harness picks a free one and hands it over through `{port}`. The server is ready
    when a socket of its session listens on the port (bound, for UDP), or, with `ready_line`, when
    it prints a line matching that regular expression. A server may serve forever: once the client
    is done and the wire has settled, harness stops it (its whole session).
    """

    name: str
    proto: str                              # "tcp" or "udp"
    server: Sequence[str]
    client: Sequence[str]
    expectation: str                        # a built-in expectation's name, or a path to a spec file
    port: Optional[int] = None
    ready_line: Optional[str] = None
    client_stdin: Optional[str] = None      # text for the client's standard input (student clients call input())
    client_must_succeed: bool = True
    description: str = ""
    cwd: Optional[str] = None               # where both programs run

    def server_argv(self, host: str, port: int) -> List[str]:
        return fill(self.server, host=host, port=port)

    def client_argv(self, host: str, port: int) -> List[str]:
        return fill(self.client, host=host, port=port)

    def load_expectation(self) -> Expectation:
        return load_expectation(self.expectation)

    @staticmethod
    def label(argv: Sequence[str]) -> str:
        """How messages name a program: its command, short ('python3 alice/TCPServer.py')."""
        words = [os.path.basename(argv[0]) if argv else "?"] + list(argv[1:])
        text = " ".join(words)
        return text if len(text) <= 60 else text[:57] + "..."


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

    @classmethod
    def within(cls, netns: str, host: str = LOOPBACK) -> "Placement":
        """Everything on the loopback of one namespace of its own (harness.run.topology.Topology.loopback)."""
        return cls(server_host=host, server_netns=netns, client_netns=netns, capture_netns=netns,
                   probe_host=host, settle_netns=(netns,), comments=(f"run in network namespace {netns}",))

    @property
    def bpf_host(self) -> str:
        return "" if self.server_host == LOOPBACK else f" and host {self.server_host}"


@dataclass
class ScenarioResult:
    """What a run found: the verdict (`ok`), its cause in words (`diagnosis`, first line of the
    report), every problem, the analysed capture, and the two programs with their output."""

    scenario: Scenario
    expectation: Expectation
    capture: "CaptureResult"         # harness.run.capture.CaptureResult
    analysis: Analysis
    port: int
    problems: List[Problem]
    server: "Subject"                # harness.run.process.Subject
    client: "Subject"
    phases: Dict[str, float] = field(default_factory=dict)
    diagnosis: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def conversation(self) -> Optional[Conversation]:
        return self.analysis.conversations[0] if self.analysis.conversations else None

    def verdict(self) -> str:
        """One line: PASS, or FAIL with the cause first; then what was held to what."""
        held = f"{self.expectation.name} against {self.capture.path}"
        if self.ok:
            return f"PASS {self.scenario.name}: {held}"
        return f"FAIL {self.scenario.name}: {self.diagnosis or 'the wire does not match'} ({held})"

    def report(self) -> str:
        lines = [self.verdict()]
        if self.problems:
            lines.append(f"expected ({self.expectation.source}) against what the wire showed:")
            lines += [f"  - {problem}" for problem in self.problems]
        for name, subject in (("server", self.server), ("client", self.client)):
            if subject is not None and (subject.crashed() or (not self.ok and subject.stderr_lines)):
                lines.append(f"{name} ({subject.exit_description()}; the last of its output):")
                lines += [f"  | {line}" for line in (subject.stdout_lines[-5:] + subject.stderr_lines[-10:])]
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
