"""The lab report's socket programs as runnable subjects for the harness.

Each module is one program from the seed report (docs/lab-report/tcp_udp_lab.txt), kept
recognisable, runnable interactively like the original (`python -m harness.lab.tcp_server`,
then type at the client's prompt) and under automation:

- udp_server, udp_client: the UDP pair on 127.0.0.1:8081 ("thank you !" for every datagram).
- tcp_server, tcp_client: the corrected TCP pair on localhost:8080; the client's default
  `--close four-way` reproduces the report's 11-segment exchange deterministically on Linux.
- broken_tcp_server: the report's first TCP server, AttributeError included; its client sees
  the handshake, its request acknowledged, no reply, and a RST.

Common to all: `--host`, `--port` (0 = any free port for servers); servers print
`listening on HOST:PORT` once they can be reached and take `--count N`; clients take messages
as arguments or stdin lines. Exit status 0 on success, Ctrl-C or SIGTERM; 2 with a one-line
message on stderr for a busy port, a missing or silent server, or bad arguments.

scenarios holds the lab's scenarios (LAB_SCENARIOS, bulk_scenario) for harness.run.runner.
"""
