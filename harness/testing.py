"""Your own server under test: start it, capture what it says on the wire, and assert on it with
failures that give the cause first, then what differed field by field, the ladder and the pcap::

    server = serve_program(["python3", "myserver.py", "--port", "{port}"])      # ready when it listens
    with WireCapture(pcap_path, server.port) as capture:
        talk_to(server.port)
    capture.conversation().should_match("tcp_graceful")        # or should_close_gracefully(), ...
    server.stop()

The pytest plugin's `serve` and `wire` fixtures are these, with the pcap named after the test, the
servers stopped after it, and their output added to a failing test's report (harness.pytest_plugin).

* serve_program(command) runs a command ({host}, {port} replaced; without a port, a free one is
  picked); serve_callable(function) runs function(host, port) (a coroutine function too) in a
  child forked from this process. Either way the server is ready once a socket of its session
  listens (bound, for UDP) on the port, and stop() ends its whole session.
* WireCapture is a live capture on loopback filtered on the port, proven started on entry and
  complete on exit (harness.run.capture), then analysed: conversations(), conversation().
* ConversationCheck's should_* methods raise ExpectationFailed (an AssertionError) or return the
  check, so they chain.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

from harness.analysis.conversation import Conversation
from harness.analysis.diagnose import diagnose
from harness.analysis.expect import Expectation, Problem, load_expectation
from harness.analysis.pipeline import Analysis, analyse
from harness.render import ladder
from harness.run import sockets
from harness.run.capture import Capture, CaptureResult, make_capture
from harness.run.process import CallableSubject, Subject, SubjectError
from harness.run.scenario import LOOPBACK, fill
from harness.run.settle import wait_settled
from harness.wire.packet import RST, TCP

__all__ = ["ConversationCheck", "ExpectationFailed", "Served", "WireCapture", "serve_callable", "serve_program"]

READY_TIMEOUT = 10.0
SETTLE_TIMEOUT = 5.0


class ExpectationFailed(AssertionError):
    """A conversation did not meet what was asserted: str() is the cause, the problems, the ladder and
    the pcap's path, in that order. `problems` and `diagnosis` hold them for a test that wants more."""

    def __init__(self, diagnosis: str, problems: Sequence[Problem], conversation: Optional[Conversation],
                 pcap: Optional[Path], what: str) -> None:
        self.diagnosis, self.problems, self.conversation, self.pcap = diagnosis, list(problems), conversation, pcap
        lines = [diagnosis, f"expected ({what}) against what the wire showed:"]
        lines += [f"  - {problem}" for problem in problems]
        if conversation is not None:
            lines.append(ladder.render(conversation, str(pcap) if pcap else None))
        elif pcap:
            lines.append(f"pcap: {pcap}")
        super().__init__("\n".join(lines))


class Served:
    """A server of yours that harness started: `host`, `port`, `subject` (output in
    subject.stdout_lines / stderr_lines). stop() ends its whole session; `survivors` names anything
    of it that would not go."""

    def __init__(self, subject: Subject, host: str, port: int, proto: str) -> None:
        self.subject, self.host, self.port, self.proto = subject, host, port, proto

    @property
    def pid(self) -> Optional[int]:
        return self.subject.pid

    def stop(self) -> Optional[int]:
        code = self.subject.stop()
        if self.subject.survivors:
            raise SubjectError(f"{self.subject.name} left processes running after it was stopped: "
                               f"{', '.join(self.subject.survivors)}")
        return code

    def output(self) -> str:
        """What the server printed so far, stdout then stderr."""
        return "\n".join(self.subject.stdout_lines + self.subject.stderr_lines)

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _ready(subject: Subject, host: str, port: int, proto: str, ready_line: Optional[str],
           timeout: float) -> Served:
    try:
        subject.start()
        if ready_line:
            subject.wait_for_line(ready_line, timeout)
        else:
            subject.wait_bound(proto, port, timeout)
    except BaseException:
        subject.stop()
        raise
    return Served(subject, host, port, proto)


def _port_for(proto: str, host: str, port: Optional[int]) -> int:
    if port is None:
        return sockets.free_port(proto, host)
    holding = sockets.bound(proto, port)
    if holding:
        raise SubjectError(f"port {port} ({proto}) is already in use by {sockets.describe_holders(holding)}")
    return port


def serve_program(command: Sequence[str], port: Optional[int] = None, proto: str = "tcp", host: str = LOOPBACK,
                  ready_line: Optional[str] = None, cwd: Optional[str] = None, env: Optional[dict] = None,
                  timeout: float = READY_TIMEOUT) -> Served:
    """Start `command` ({host} and {port} replaced; a free port when none is given) and return once
    it listens on the port (is bound to it, for UDP), or prints `ready_line`."""
    port = _port_for(proto, host, port)
    subject = Subject(f"the server ({' '.join(command)[:60]})", fill(command, host=host, port=port),
                      env=env, cwd=cwd)
    return _ready(subject, host, port, proto, ready_line, timeout)


def serve_callable(function: Callable, port: Optional[int] = None, proto: str = "tcp", host: str = LOOPBACK,
                   timeout: float = READY_TIMEOUT) -> Served:
    """Run function(host, port) in a forked child process (a coroutine function under asyncio.run)
    and return once it listens on the port (is bound, for UDP). Threads and event loops the
    function starts are the child's; stopping ends them all."""
    port = _port_for(proto, host, port)
    name = getattr(function, "__qualname__", repr(function))
    subject = CallableSubject(f"the server {name}()", lambda: function(host, port))
    return _ready(subject, host, port, proto, None, timeout)


def serve(server: Union[Sequence[str], Callable], **options) -> Served:
    """serve_program for a command (a list of words, or one string split as a shell splits it),
    serve_callable for a callable."""
    if callable(server):
        return serve_callable(server, **{k: v for k, v in options.items() if k in ("port", "proto", "host", "timeout")})
    if isinstance(server, str):
        import shlex
        server = shlex.split(server)
    return serve_program(list(server), **options)


class ConversationCheck:
    """One conversation of a capture, and assertions on it that fail with the cause first."""

    def __init__(self, conversation: Conversation, pcap: Optional[Path] = None,
                 capture: Optional[Sequence[Conversation]] = None) -> None:
        """`capture`: every conversation of the capture, for an expectation's capture rules."""
        self.conversation, self.pcap, self.capture = conversation, pcap, capture

    def __repr__(self) -> str:
        return f"<ConversationCheck {self.conversation.describe()}>"

    # --- what the wire showed, to assert on directly -------------------------------------------
    @property
    def client_sent(self) -> int:
        """Payload bytes from the client (the originator), counted by sequence space."""
        return self.conversation.zeek.orig.payload_bytes

    @property
    def server_sent(self) -> int:
        return self.conversation.zeek.resp.payload_bytes

    @property
    def client_payloads(self) -> List[int]:
        return self.conversation.zeek.orig.payloads.tolist()

    @property
    def server_payloads(self) -> List[int]:
        return self.conversation.zeek.resp.payloads.tolist()

    @property
    def conn_state(self) -> str:
        return self.conversation.zeek.conn_state

    @property
    def history(self) -> str:
        return self.conversation.zeek.history

    # --- assertions -------------------------------------------------------------------------
    def should_match(self, spec: Union[str, Path, Expectation]) -> "ConversationCheck":
        """The conversation matches an expectation: a built-in one's name, a file, an Expectation,
        or the expectation's text itself (anything with a newline or starting with C>S, S>C, check)."""
        expectation = _expectation(spec)
        problems = expectation.problems(self.conversation, _dissection(expectation, self.pcap, [self.conversation]))
        if expectation.capture:
            if self.capture is None:
                problems.append(Problem("capture rules (`conversations ...`, `capture ...`) need the whole capture: "
                                        "hold it with WireCapture.should_match"))
            else:
                problems += expectation.capture_problems(self.capture)
        return self._hold(problems, expectation.source)

    def should_close_gracefully(self) -> "ConversationCheck":
        """Both sides sent FIN, each FIN was acknowledged, nobody reset."""
        return self.should_match(Expectation.parse("...\ncheck graceful-close", "graceful close", "graceful close"))

    def should_handshake(self) -> "ConversationCheck":
        """SYN (with a window and an MSS), SYN-ACK acknowledging the ISN, ACK."""
        return self.should_match(Expectation.parse("check handshake\n...", "handshake", "a handshake"))

    def should_have_no_rst(self) -> "ConversationCheck":
        resets = [s for s in self.conversation.segments if s.flags & RST]
        problems = [Problem(f"the {'client' if s.is_orig else 'server'} sent RST at frame {s.packet.frame}",
                            s.packet.frame) for s in resets]
        return self._hold(problems, "no RST")

    def should_carry(self, client: Optional[Sequence[int]] = None,
                     server: Optional[Sequence[int]] = None) -> "ConversationCheck":
        """The payload lengths each side sent, in order (as summary's orig/resp_payloads)."""
        problems = []
        for side, wanted, got in (("client", client, self.client_payloads), ("server", server, self.server_payloads)):
            if wanted is not None and list(wanted) != got:
                problems.append(Problem(f"the {side} sent payloads of {got} bytes, expected {list(wanted)}"))
        return self._hold(problems, "payload lengths")

    def should_send(self, client: Optional[int] = None, server: Optional[int] = None) -> "ConversationCheck":
        """How many payload bytes each side sent (a retransmission counted once)."""
        problems = []
        for side, wanted, got in (("client", client, self.client_sent), ("server", server, self.server_sent)):
            if wanted is not None and wanted != got:
                problems.append(Problem(f"the {side} sent {got} bytes, expected {wanted}"))
        return self._hold(problems, "bytes sent")

    def should_get_reply(self) -> "ConversationCheck":
        """The server answered: payload back over TCP, at least one datagram back over UDP."""
        if self.conversation.proto == TCP:
            answered = self.server_sent > 0
        else:
            answered = self.conversation.zeek.resp.packets > 0
        return self._hold([] if answered else [Problem("the server sent nothing back")], "a reply")

    def _hold(self, problems: Sequence[Problem], what: str) -> "ConversationCheck":
        if problems:
            cause = diagnose(self.conversation, problems) or str(problems[0])
            raise ExpectationFailed(cause, problems, self.conversation, self.pcap, what)
        return self


def _dissection(expectation: Expectation, pcap: Optional[Path], conversations: Sequence[Conversation]):
    """tshark's verdicts on the expectation's display filters, when it has any and there is a pcap."""
    if not expectation.filter_expressions or pcap is None:
        return None
    from harness.run.dissect import dissect_many   # tshark runs only for display filters
    return dissect_many(pcap, conversations, expectation.filter_expressions)


def _expectation(spec: Union[str, Path, Expectation]) -> Expectation:
    if isinstance(spec, Expectation):
        return spec
    text = str(spec)
    if "\n" in text or text.lstrip().startswith(("C>S", "S>C", "check ", "...", "?", "conversations ", "capture ")):
        return Expectation.parse(text, "inline expectation", "<inline>")
    return load_expectation(text)


class WireCapture:
    """A live capture of loopback traffic on one port, proven complete, then analysed.

    On entry the capture is started and proven live; on exit the kernel's last segments on the port
    are waited for, the capture's end is proven, and the pcap is analysed."""

    def __init__(self, path: Union[str, Path], port: int, proto: Optional[str] = None, host: str = LOOPBACK,
                 backend: str = "dumpcap", interface: str = "lo") -> None:
        self.path, self.port, self.proto, self.host = Path(path), port, proto, host
        bpf = f"{proto} port {port}" if proto else f"port {port}"
        self.capture: Capture = make_capture(backend, self.path, bpf=bpf, interface=interface, probe_host=host)
        self.result: Optional[CaptureResult] = None
        self.analysis: Optional[Analysis] = None

    def __enter__(self) -> "WireCapture":
        self.capture.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.capture.abort()
            return
        try:
            for proto in ([self.proto] if self.proto else ["tcp", "udp"]):
                wait_settled(self.port, SETTLE_TIMEOUT, proto)
        except BaseException:
            self.capture.abort()
            raise
        self.result = self.capture.stop()
        self.analysis = analyse(self.result.path)

    def conversations(self, port: Optional[int] = None, proto: Optional[str] = None) -> List[ConversationCheck]:
        """The conversations captured, as checks (those on `port` and of `proto`, when given)."""
        if self.analysis is None:
            raise RuntimeError("the capture is analysed once its `with` block has ended")
        return [ConversationCheck(c, self.result.path, self.analysis.conversations) for c in self.analysis.conversations
                if (proto is None or c.proto_name == proto) and (port is None or port in (c.orig.port, c.resp.port))]

    def should_match(self, spec: Union[str, Path, Expectation]) -> "WireCapture":
        """The whole capture matches an expectation: its capture rules over every conversation, and
        what it says of one conversation over the first (as `harness check` takes it)."""
        if self.analysis is None:
            raise RuntimeError("the capture is analysed once its `with` block has ended")
        expectation = _expectation(spec)
        conversations = self.analysis.conversations
        if expectation.about_a_conversation:
            if not conversations:
                raise ExpectationFailed(f"the wire has no conversation ({self.analysis.contents()})",
                                        [Problem("no conversation")], None, self.result.path, expectation.source)
            self.conversation().should_match(expectation)
            return self
        problems = expectation.capture_problems(conversations)
        if problems:
            raise ExpectationFailed(str(problems[0]), problems, None, self.result.path, expectation.source)
        return self

    def conversation(self, index: int = 0, port: Optional[int] = None,
                     proto: Optional[str] = None) -> ConversationCheck:
        """One conversation (the first, by default); ExpectationFailed, with what was captured, if
        there is none."""
        found = self.conversations(port, proto)
        if len(found) <= index:
            what = f"{proto.upper() + ' ' if proto else ''}conversation{' on port ' + str(port) if port else ''}"
            raise ExpectationFailed(f"the wire has no {what} number {index + 1}: it has {len(found)} "
                                    f"({self.analysis.contents()})", [Problem(f"{len(found)} conversations")],
                                    None, self.result.path, what)
        return found[index]
