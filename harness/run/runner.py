"""Running a scenario: server up, capture proven live, client runs, everything settles, capture proven
complete, then the wire is held to the expectation and the verdicts are written into the pcap.

The order matters. The port is chosen first (0 = any free one) because it decides the capture filter;
the capture and the server then start side by side (the server sends nothing while it listens). The
capture is proven live before the client starts and its end proven only after the kernel has nothing
left to send on the port (harness.run.settle), before the server is stopped. Lab programs are forked
from this process rather than started in a new interpreter (harness.run.process.ForkedLabProgram).
Across a topology (run_topology_scenario) the steps are the same; only where each piece runs differs.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

from harness.analysis.diagnose import diagnose
from harness.analysis.expect import Expectation, Problem
from harness.analysis.pipeline import analyse
from harness.render.annotate import annotate
from harness.run import sockets
from harness.errors import cannot_write
from harness.run.capture import CaptureUnwritable, make_capture
from harness.run.netns import in_netns
from harness.run.process import Subject, SubjectError, program_subject
from harness.run.scenario import Placement, Scenario, ScenarioResult, Timeouts
from harness.run.settle import wait_settled
from harness.run.topology import CapturePoint, Topology, TopologyError


def run_scenario(scenario: Scenario, pcap: Path, backend: str = "dumpcap", timeouts: Timeouts = Timeouts(),
                 host: Optional[str] = None, placement: Placement = Placement(),
                 expectation: Optional[Expectation] = None) -> ScenarioResult:
    """Run it once and judge it; RunFailed (or Unavailable) when it could not be run at all.

    The steps, each bounded by its timeout:

    1. the port: a fixed one must be free (a program listening on it is named; leftover TIME_WAIT
       sockets of an earlier run are waited out); otherwise a free one is picked;
    2. the capture is launched, and beside it the server, in a session of its own, which is ready
       when a socket of its session listens (or is bound) on the port, or when it prints `ready_line`;
    3. the capture's start is proven (a probe seen);
    4. the client runs to its end (one still running at `client_done` is stopped, and judged so:
       a client waiting for a reply that never comes is what the wire then shows);
    5. the server is given `close_grace` to close what it still holds, then the kernel's last
       segments are waited for (harness.run.settle);
    6. the capture's end is proven, before the server is stopped: what stopping it makes the
       kernel send (a FIN or RST for a connection it never closed) is not the program's doing;
    7. the server's whole session is stopped (while the capture backend goes away); anything of it
       that survives fails the run; then the capture's exit and drop counts are judged;
    8. the wire is analysed and held to the expectation, the cause of a failure put in words, and
       the verdicts written into the saved pcap.
    """
    if host is not None:
        placement = replace(placement, server_host=host, probe_host=host)
    host = placement.server_host
    expectation = expectation or scenario.load_expectation()

    where = f" in {placement.server_netns}" if placement.server_netns else ""
    with in_netns(placement.server_netns) if placement.server_netns else nullcontext():
        port = _claim_port(scenario, host, timeouts)
    server = program_subject(f"the server ({Scenario.label(scenario.server)}){where}",
                             scenario.server_argv(host, port), netns=placement.server_netns, cwd=scenario.cwd)
    capture = make_capture(backend, pcap, interface=placement.capture_interface,
                           bpf=f"{scenario.proto} port {port}{placement.bpf_host}",
                           probe_host=placement.probe_host, probe_from_netns=placement.probe_from_netns,
                           start_timeout=timeouts.capture_start, stop_timeout=timeouts.capture_stop)
    client = None
    client_timeout = None
    phases: Dict[str, float] = {}
    began = time.monotonic()

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - began - sum(phases.values())

    try:
        # The capture is launched first and the server beside it: dumpcap's start-up (18-27 ms to
        # go live) then overlaps the server's. Its start is still proven before the client starts, and the
        # server sends nothing while it listens.
        with in_netns(placement.capture_netns) if placement.capture_netns else nullcontext():
            capture.begin()
        phase("capture launched")
        try:
            server.start()
            if scenario.ready_line:
                server.wait_for_line(scenario.ready_line, timeouts.server_ready)
            else:
                server.wait_bound(scenario.proto, port, timeouts.server_ready)
        except BaseException:
            # Launched beside a server that never came up: it holds nothing of the scenario's.
            capture.abort(discard=True)
            raise
        phase("server ready")
        capture.prove_started()
        phase("capture start proven")
        where = f" in {placement.client_netns}" if placement.client_netns else ""
        # Named before it starts, so the finally below stops it even if start() is interrupted.
        client = program_subject(f"the client ({Scenario.label(scenario.client)}){where}",
                                 scenario.client_argv(host, port), stdin_text=scenario.client_stdin,
                                 netns=placement.client_netns, cwd=scenario.cwd)
        client.start()
        try:
            client.wait(timeouts.client_done, "to finish its exchange")
        except SubjectError as timed_out:
            # Judged, not raised: a client still waiting for a reply that never comes is what the
            # wire must show (the server never answered), so it is stopped and the run goes on.
            client.stop()
            client_timeout = Problem(str(timed_out))
        _wait_for_the_server_to_close(server, scenario.proto, port, timeouts.close_grace, placement)
        wait_settled(port, timeouts.settle, scenario.proto, placement.settle_netns)
        phase("traffic")
        capture.prove_ended()
        phase("capture end proven")
    except BaseException:
        capture.abort()
        raise
    finally:
        # Each is stopped whatever happened to the stop before it (a Ctrl-C raised by the client's
        # stop once that stop is done would otherwise leave the server running); the first raised after.
        interrupted: Optional[BaseException] = None
        for subject in (client, server):
            if subject is not None:
                try:
                    subject.stop()
                except BaseException as error:
                    interrupted = interrupted or error
        if interrupted is not None:
            capture.abort()
            raise interrupted
    # Whatever stopping the server makes the kernel send comes after the capture's end: dumpcap is
    # by now only releasing its ring, which is what capture.finish() waits for.
    if server.survivors:
        capture.abort()
        raise SubjectError(f"{server.name} left processes running after it was stopped: "
                           f"{', '.join(server.survivors)}")
    phase("server stopped")
    # Judged and annotated under its private name, published only then: a concurrent run that writes
    # the same final name can replace the file, never the capture this verdict is about.
    capture_result = capture.finish(publish=False)
    phase("capture closed")

    private = capture_result.path
    capture_result.path = capture.path      # what the verdict names: where the file will be
    analysis = analyse(private)
    phase("analysis")
    problems, notes = _judge(scenario, expectation, analysis, port, host, placement, client, client_timeout)
    diagnosis = _diagnosis(server, client, analysis, port, problems)
    phase("assertions")
    result = ScenarioResult(scenario, expectation, capture_result, analysis, port, problems, server, client,
                            phases, diagnosis)
    # The saved pcap carries the verdicts, so a reviewer opening it in Wireshark sees why; one that
    # cannot be written with them (the disk full) is not published without them.
    try:
        annotate(private, private, notes, [result.verdict(), *placement.comments, *map(str, problems)])
    except OSError as error:
        capture.discard()
        raise CaptureUnwritable(cannot_write(capture.path, error, "the capture")) from None
    analysis.path = str(capture.publish())
    phase("annotation")
    return result


def _claim_port(scenario: Scenario, host: str, timeouts: Timeouts) -> int:
    """The port the server is to use: a free one, or the scenario's own once it is free."""
    if scenario.port is None:
        return sockets.free_port(scenario.proto, host)
    port = scenario.port
    holding = sockets.bound(scenario.proto, port)
    if holding:
        raise SubjectError(f"port {port} ({scenario.proto}) is already in use by "
                           f"{sockets.describe_holders(holding)}: stop it, or choose another port")
    deadline = time.monotonic() + timeouts.port_free
    while any(s.local.port == port for s in sockets.table(scenario.proto, port)):
        if time.monotonic() > deadline:
            left = [s for s in sockets.table(scenario.proto, port) if s.local.port == port]
            raise SubjectError(f"port {port} still has {len(left)} connection(s) of an earlier run "
                               f"({', '.join(sorted({s.state for s in left}))}) after {timeouts.port_free:g} s")
        time.sleep(0.05)  # ok: polling a kernel table for TIME_WAIT to end, which offers no notification
    return port


def _wait_for_the_server_to_close(server: Subject, proto: str, port: int, grace: float,
                                  placement: Placement) -> None:
    """Up to `grace`, until the server has no connection left on the port (it closed, or exited)."""
    if proto != "tcp":
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and server.returncode is None:
        with in_netns(placement.server_netns) if placement.server_netns else nullcontext():
            open_here = [s for s in sockets.table(proto, port)
                         if s.local.port == port and s.state in ("ESTABLISHED", "CLOSE_WAIT", "SYN_RECV")]
        if not open_here:
            return
        time.sleep(0.002)  # ok: polling a kernel table that offers no notification


class ClientProblem(Problem):
    """A problem of the client program's (its exit, its timeout), not of the wire."""
    about_the_client = True


def _own(analysis) -> Optional[object]:
    return analysis.conversations[0] if analysis.conversations else None


def _judge(scenario: Scenario, expectation: Expectation, analysis, port: int, host: str, placement: Placement,
           client: Subject, client_timeout: Optional[Problem]) -> Tuple[list, dict]:
    problems = [Problem(warning) for warning in analysis.warnings]
    if client_timeout is not None:
        problems.append(ClientProblem(str(client_timeout)))
    elif scenario.client_must_succeed and client.returncode != 0:
        problems.append(ClientProblem(f"the client ended with {client.exit_description()}"
                                      + (f": {client.last_error_line()}" if client.last_error_line() else "")))
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
        if conversation.resp.port != port:
            problems.append(Problem(f"the conversation on the wire is to port {conversation.resp.port}, "
                                    f"not the server's {port}"))
        dissection = None
        if expectation.filter_expressions:
            from harness.run.dissect import dissect    # tshark runs only for display filters
            dissection = dissect(analysis.path, conversation, expectation.filter_expressions)
        problems += expectation.problems(conversation, dissection)
        notes = expectation.frame_notes(conversation, dissection)
    problems += expectation.capture_problems(analysis.conversations)
    return problems, notes


def _diagnosis(server: Subject, client: Subject, analysis, port: int, problems: list) -> Optional[str]:
    """The cause, first of: the server crashed; nothing reached the server; what the wire shows (the
    client's own failure aside, which is mostly the wire's consequence); the client failed."""
    if not problems:
        return None
    conversation = _own(analysis)
    if server.crashed():
        replied = conversation is not None and conversation.zeek.resp.payload_bytes > 0
        return f"the server crashed{'' if replied else ' before replying'} ({_exit_and_line(server)})"
    if conversation is None:
        if client.crashed():
            return f"the client failed before reaching the server ({_exit_and_line(client)})"
        return f"nothing reached port {port}: the client never connected"
    about_the_wire = [p for p in problems if not getattr(p, "about_the_client", False)]
    if about_the_wire:
        return diagnose(conversation, about_the_wire)
    return f"the client failed ({_exit_and_line(client)})"


def _exit_and_line(subject: Subject) -> str:
    line = subject.last_error_line()
    return subject.exit_description() + (f": {line}" if line else "")


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
