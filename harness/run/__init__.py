"""EDGES: everything that runs, waits and captures: subject processes, the kernel's socket table,
network namespaces and topologies, capture backends, scenarios and their runner, system tools.

The pure layers (harness.wire, harness.analysis, harness.render) never import from here; this
layer uses them to judge what it captured.
"""

BACKENDS = ("dumpcap", "scapy")     # the capture engines harness.run.capture.make_capture knows
