"""lossy-router.pcapng: curl downloads 1.5 MiB through a router namespace that drops 5% at random.

    python captures/corpus/_gen_lossy-router.py [--out DIR]        (as root)

Topology, made for this run and removed afterwards (also on failure):

    netns hc<pid>c            netns hc<pid>r                      netns hc<pid>s
    c0 10.210.1.2/24 ==veth== r0 10.210.1.1/24  r1 10.210.2.1/24 ==veth== s0 10.210.2.2/24
    curl, dumpcap on c0       ip_forward=1, nftables drop rule     python -m http.server

Nothing outside these namespaces is involved: 10.210.1.0/24 and 10.210.2.0/24 exist only on these
veths. Segment offloads (TSO/GSO/GRO) are off on every veth, so frames are MTU-sized (1500). The
router's nftables forward chain drops at random (numgen random mod 100 < 5) the server's segments
that carry neither SYN, FIN nor RST, so the handshake and the close keep their form while the data
shows real losses, dup ACKs, SACKs and retransmissions. curl runs with --ignore-content-length, so
it reads until the server's FIN (server-first close) instead of racing it.

Capture: dumpcap on c0 inside the client namespace, filter "tcp port P", through the harness's
capture API. The API proves start and end with probe datagrams sent to the capture's own address;
inside one namespace those would travel over lo and never be seen on c0, so here the probe's
sending socket is opened in the router namespace (setns) and its datagrams cross the veth to
the client's address. Everything else in the protocol is unchanged. Before the capture's end, the
TCP sockets of both the client (this namespace) and the server (via /proc/PID/net/tcp of the
server process) must have settled.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (GenerationError, analysis_counts, arguments, by_stream, captured,  # noqa: E402
                     check_handshake, describe_close, expect, http_server, main_wrapper,
                     make_site, payload, publish, require, run, tcp_segments, wait_sockets_quiet)

NAME = "lossy-router.pcapng"
SIZE = 3 << 19  # 1.5 MiB
DROP_PERCENT = 5
CLIENT, ROUTER_C, ROUTER_S, SERVER = "10.210.1.2", "10.210.1.1", "10.210.2.1", "10.210.2.2"
NFT_TABLE = "hcorpus_loss"
INNER_TIMEOUT = 150.0
STEP_TIMEOUT = 15.0


# --- inside the client namespace -------------------------------------------------------------
def inside(args: argparse.Namespace) -> int:
    """The capture and the download, run by `ip netns exec CLIENT_NS python this --inside ...`."""

    from harness.run.settle import wait_tcp_settled

    # Probes are sent from the router namespace, so they cross the veth the capture watches.
    with captured(NAME, args.work, f"tcp port {args.port}", interface="c0", probe_host=CLIENT,
                  probe_from_netns=args.router_ns):
        done = run(["curl", "--ignore-content-length", "-sS", "--max-time", "60", "--connect-timeout", "10",
                    "-o", "/dev/null", "-w", "%{size_download}", f"http://{SERVER}:{args.port}/bulk.bin"],
                   90, "curl through the lossy router")
        wait_tcp_settled(args.port, 30)
        wait_sockets_quiet(args.port, 30, [f"/proc/{args.server_pid}/net/tcp"], "the server namespace")
    print(f"curl downloaded {done.stdout.strip()} bytes")
    return 0


# --- outside: topology, server, checks ------------------------------------------------------
class Topology:
    def __init__(self) -> None:
        tag = f"hc{os.getpid()}"
        self.client, self.router, self.server = f"{tag}c", f"{tag}r", f"{tag}s"
        self.made = []

    def ip(self, *argv: str) -> None:
        run(["ip", *argv], STEP_TIMEOUT, "ip " + " ".join(argv))

    def in_ns(self, ns: str, *argv: str) -> None:
        run(["ip", "netns", "exec", ns, *argv], STEP_TIMEOUT, f"{' '.join(argv)} in {ns}")

    def build(self) -> None:
        for ns in (self.client, self.router, self.server):
            self.ip("netns", "add", ns)
            self.made.append(ns)
            # No IPv6 on these links: no router solicitations or DAD, nothing but what we send.
            self.in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                       "net.ipv6.conf.default.disable_ipv6=1")
        self.ip("-n", self.client, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", self.router)
        self.ip("-n", self.router, "link", "add", "r1", "type", "veth", "peer", "name", "s0", "netns", self.server)
        for ns, dev, address in ((self.client, "c0", CLIENT), (self.router, "r0", ROUTER_C),
                                 (self.router, "r1", ROUTER_S), (self.server, "s0", SERVER)):
            self.ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            self.in_ns(ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off")
            self.ip("-n", ns, "link", "set", dev, "up")
        for ns in (self.client, self.router, self.server):
            self.ip("-n", ns, "link", "set", "lo", "up")
        self.ip("-n", self.client, "route", "add", "default", "via", ROUTER_C)
        self.ip("-n", self.server, "route", "add", "default", "via", ROUTER_S)
        self.in_ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def add_loss(self, port: int) -> None:
        ruleset = (f"table inet {NFT_TABLE} {{\n"
                   f"  chain forward {{\n"
                   f"    type filter hook forward priority 0; policy accept;\n"
                   f"    ip saddr {SERVER} tcp sport {port} tcp flags & (fin | syn | rst) == 0 "
                   f"numgen random mod 100 < {DROP_PERCENT} counter drop\n"
                   f"  }}\n}}\n")
        run(["ip", "netns", "exec", self.router, "nft", "-f", "-"], STEP_TIMEOUT, "nft -f (the drop rule)",
            stdin=ruleset)

    def dropped(self) -> int:
        listing = run(["ip", "netns", "exec", self.router, "nft", "list", "table", "inet", NFT_TABLE],
                      STEP_TIMEOUT, "nft list table").stdout
        match = re.search(r"counter packets (\d+)", listing)
        return int(match.group(1)) if match else -1

    def remove(self) -> list:
        """Undo everything, step by step, whatever failed before; returns the steps that failed."""
        failures = []
        steps = []
        if self.router in self.made:
            steps.append(["ip", "netns", "exec", self.router, "nft", "delete", "table", "inet", NFT_TABLE])
        if self.client in self.made:
            steps.append(["ip", "-n", self.client, "link", "del", "c0"])
        if self.router in self.made:
            steps.append(["ip", "-n", self.router, "link", "del", "r1"])
        steps += [["ip", "netns", "del", ns] for ns in reversed(self.made)]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT)
            quiet = "No such file" in done.stderr or "Cannot find device" in done.stderr
            if done.returncode != 0 and not quiet:
                failures.append(f"{' '.join(argv)}: {done.stderr.strip()}")
        self.made = []
        return failures


def run_inside(topology: Topology, work: Path, port: int, server_pid: int) -> str:
    argv = ["ip", "netns", "exec", topology.client, sys.executable, str(Path(__file__).resolve()), "--inside",
            "--work", str(work), "--port", str(port), "--server-pid", str(server_pid),
            "--router-ns", topology.router]
    inner = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        out, err = inner.communicate(timeout=INNER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(inner.pid, signal.SIGKILL)  # the inner run's own process group: it, dumpcap, curl
        inner.communicate()
        raise GenerationError(f"the capture in {topology.client} did not finish within {INNER_TIMEOUT:g} s")
    sys.stdout.write(out)
    if inner.returncode != 0:
        raise GenerationError(f"the capture in {topology.client} failed: "
                              f"{(err.strip().splitlines() or ['(no error output)'])[-1]}")
    return out


def check(pcap: Path, port: int, dropped: int) -> str:
    streams = by_stream(tcp_segments(pcap))
    expect(len(streams) == 1, f"expected one TCP conversation, found {len(streams)}")
    segs = streams[0]
    check_handshake(segs, port)
    expect(not any(s.rst for s in segs), "a RST in the conversation")
    close = describe_close(segs, port)
    expect(close.startswith("server-first"), f"expected the server to close first, got {close}")
    counts = analysis_counts(pcap)
    expect(counts["retransmission"] > 0, f"no retransmissions although the router dropped {dropped}")
    largest = max(s.length for s in segs)
    expect(largest <= 1448, f"a segment of {largest} bytes: offloads were not off")
    notes = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
    return (f"{len(segs)} segments, {payload(segs, port)} bytes from the server seen on c0, "
            f"router dropped {dropped}, {close}; tshark: {notes}")


def generate(argv=None) -> int:
    def extra(parser):
        parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
        parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--router-ns", help=argparse.SUPPRESS)

    args = arguments(__doc__, argv, extra)
    if args.inside:
        return inside(args)
    if os.geteuid() != 0:
        raise GenerationError("network namespaces need root")
    require("ip", "nft", "ethtool", "curl", "dumpcap", "tshark")
    topology = Topology()
    with tempfile.TemporaryDirectory(prefix="corpus-") as work:
        work = Path(work)
        site = make_site(work / "site", bulk_bytes=SIZE)
        try:
            topology.build()
            with http_server(site, SERVER, "HTTP/1.0", netns=topology.server) as (server, port):
                topology.add_loss(port)
                out = run_inside(topology, work, port, server.pid)
                dropped = topology.dropped()
        finally:
            failures = topology.remove()
            if failures:
                print("cleanup failed: " + "; ".join(failures), file=sys.stderr)
        expect(f"curl downloaded {SIZE} bytes" in out, f"curl did not download all {SIZE} bytes")
        pcap = work / NAME
        print(f"{NAME}: {check(pcap, port, dropped)}")
        publish(pcap, args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    main_wrapper(lambda: generate())
