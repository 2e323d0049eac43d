"""harness: run socket programs, capture their traffic, and assert on what the wire showed.

    import harness
    analysis = harness.analyse("run.pcapng")                 # any pcap or pcapng, gzip'd or not
    conversation = analysis.conversations[0]
    problems = harness.load_expectation("tcp_graceful").problems(conversation)
    result = harness.run_scenario(harness.LAB_SCENARIOS["tcp-lab"], "tcp-lab.pcapng")

The package is in layers, and data flows one way, down this list:

    harness.wire      PURE  bytes to records to packets: the capture-file reader, the pcapng block
                            format (the one writer), the link/IP/TCP/UDP decoder
    harness.analysis  PURE  packets to conversations to facts: the tracker, Zeek's connection
                            states, tshark's counters, conn.log-style summaries, expectations
    harness.render    PURE  facts to pictures: text ladders, SVG, verdicts written into a pcapng
    harness.run       EDGES processes, the kernel's socket table, namespaces, capture backends,
                            scenarios and their runner, the system tools
    harness.lab             the lab's programs and its scenarios
    harness.testing         your own server under test: serve it, capture its port, assert on the wire
    harness.cli, harness.doctor, harness.pytest_plugin   the command line and the pytest fixtures

Everything raised on purpose is a harness.errors.HarnessError. The names below are the public API;
each is imported from its module the first time it is used, so `import harness` costs nothing.
"""

__version__ = "0.1.0"

_PUBLIC = {
    # errors
    "HarnessError": "harness.errors", "InputError": "harness.errors", "Unavailable": "harness.errors",
    "RunFailed": "harness.errors",
    # wire
    "open_capture": "harness.wire.reader", "CaptureFormatError": "harness.wire.reader",
    "Record": "harness.wire.reader", "Packet": "harness.wire.packet", "UnsupportedLinkType": "harness.wire.decode",
    # analysis
    "analyse": "harness.analysis.pipeline", "Analysis": "harness.analysis.pipeline",
    "stream_summaries": "harness.analysis.pipeline", "Conversation": "harness.analysis.conversation",
    "Segment": "harness.analysis.conversation", "Endpoint": "harness.analysis.conversation",
    "summarize": "harness.analysis.summary", "Expectation": "harness.analysis.expect",
    "load_expectation": "harness.analysis.expect", "Problem": "harness.analysis.expect",
    "SpecError": "harness.analysis.expect", "CHECKS": "harness.analysis.expect",
    "diagnose": "harness.analysis.diagnose", "write_expectation": "harness.analysis.expect",
    "stream_of": "harness.analysis.expect", "parse_tcp_options": "harness.wire.tcp_options",
    "dissect": "harness.run.dissect",
    # testing your own server
    "serve": "harness.testing", "serve_program": "harness.testing", "serve_callable": "harness.testing",
    "Served": "harness.testing", "WireCapture": "harness.testing", "ConversationCheck": "harness.testing",
    "ExpectationFailed": "harness.testing",
    # render
    "annotate": "harness.render.annotate", "render_ladder": "harness.render.ladder",
    "render_svg": "harness.render.svg",
    # run
    "Scenario": "harness.run.scenario", "Placement": "harness.run.scenario", "Timeouts": "harness.run.scenario",
    "ScenarioResult": "harness.run.scenario", "ScenarioFailed": "harness.run.scenario",
    "run_scenario": "harness.run.runner", "run_topology_scenario": "harness.run.runner",
    "make_capture": "harness.run.capture", "Capture": "harness.run.capture", "CaptureResult": "harness.run.capture",
    "CaptureError": "harness.run.capture", "CaptureUnavailable": "harness.run.capture",
    "CaptureIncomplete": "harness.run.capture", "CaptureUnwritable": "harness.run.capture", "Subject": "harness.run.process",
    "SubjectError": "harness.run.process", "wait_tcp_settled": "harness.run.settle",
    "SettleTimeout": "harness.run.settle", "Topology": "harness.run.topology",
    "TopologyError": "harness.run.topology", "ToolMissing": "harness.run.tools",
    # lab
    "LAB_SCENARIOS": "harness.lab.scenarios", "bulk_scenario": "harness.lab.scenarios",
}
# Public names that differ from their module's own name for the thing.
_RENAMED = {"render_ladder": "render"}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module_name), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return __all__
