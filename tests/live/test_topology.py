"""Multi-host scenarios (harness.run.topology): client and server in namespaces of their own, optionally
through a lossy router; nothing left behind; unrelated traffic never reaches a pcap.

Needs root (ip netns, veth, nftables). Without that the tests skip saying why; with
HARNESS_REQUIRE_CAPTURE=1 (CI) they fail instead. Every wait is bounded and names what it waited for.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.pytest_plugin import REQUIRE_ENV, capture_required
from harness.run.process import Subject, SubjectError
from harness.lab.scenarios import LAB_SCENARIOS, bulk_scenario
from harness.run.scenario import READY_LINE, Timeouts
from harness.run.runner import run_scenario, run_topology_scenario
from harness.analysis.expect import load_expectation
from harness.analysis.summary import summarize
from support.tshark_view import assert_summary_agrees_with_tshark
from harness.run.topology import (NAME_PATTERN, NFT_TABLE, Topology, cleanup_stale, list_namespaces,
                                  owned_namespaces, topology_unavailable_reason)
from harness.analysis.pipeline import analyse
from support.procfs import alive, wait_until
from support import REPO

pytestmark = pytest.mark.capture

LOSSY_BULK = load_expectation("tcp_bulk_lossy")
BULK_BYTES = 3 << 20          # 3 MiB: about 2200 full-size segments, so 5% loss drops ~100 of them
MSS_WITH_TIMESTAMPS = 1448    # 1500-byte MTU - 20 (IP) - 32 (TCP with timestamps)
SLOW = Timeouts(client_done=60.0, settle=30.0)
TOPOLOGY_SPACE = ipaddress.ip_network("10.210.0.0/16")






def root_nft_tables():
    done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=15)
    return done.stdout


def ns_nft_tables(namespace):
    done = subprocess.run(["ip", "netns", "exec", namespace, "nft", "list", "tables"],
                          capture_output=True, text=True, timeout=15, check=True)
    return done.stdout


def root_addresses():
    done = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=15, check=True)
    return {line.split()[3].split("/")[0] for line in done.stdout.splitlines()}


def require_topologies():
    """Skip the calling test, saying why, unless topologies with loss rules can be built here (as root);
    fail instead when capture is required (HARNESS_REQUIRE_CAPTURE=1), like require_capture."""
    reason = topology_unavailable_reason(loss=True)
    if reason:
        if capture_required():
            pytest.fail(f"{REQUIRE_ENV} is set but network namespaces are unavailable: {reason}", pytrace=False)
        pytest.skip(f"cannot build topologies: {reason}")


@pytest.fixture(scope="module")
def netns():
    require_topologies()


def test_without_namespaces_the_tests_skip_saying_why_and_fail_when_capture_is_required(monkeypatch):
    why = "cannot create network namespaces (...: Operation not permitted); run as root"
    monkeypatch.setattr(sys.modules[__name__], "topology_unavailable_reason", lambda loss=False: why)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot build topologies: cannot create network namespaces"):
        require_topologies()
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_ENV} is set but network namespaces are unavailable"):
        require_topologies()


def test_as_an_unprivileged_user_the_reason_says_to_run_as_root(netns):
    """The real check, run as nobody: `ip netns add` is refused and the reason says what to do."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop privileges")
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, "-c",
                           "from harness.run.topology import topology_unavailable_reason as r; print(r(loss=True))"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cannot create network namespaces") and "run as root" in done.stdout


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After every test: no namespace of this process's topologies, no harness nftables table."""
    yield
    assert owned_namespaces(os.getpid()) == []
    if shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin"):
        assert NFT_TABLE not in root_nft_tables()


# --- (a) the lab across two namespaces --------------------------------------------------------------
@pytest.mark.parametrize("capture_in", ["client", "server"])
def test_tcp_lab_across_a_direct_topology_uses_the_namespaces_addresses(netns, capture_backend, pcap_path,
                                                                         capture_in):
    with Topology.direct() as net:
        assert {net.client_addr, net.server_addr} <= set(map(str, TOPOLOGY_SPACE.hosts()))
        assert not {net.client_addr, net.server_addr} & root_addresses()  # they exist only in the namespaces
        result = run_topology_scenario(LAB_SCENARIOS["tcp-lab"], pcap_path, net, backend=capture_backend,
                                       capture_in=capture_in)
    assert result.ok, result.report()
    conversation = result.conversation
    assert (conversation.orig.host, conversation.resp.host) == (net.client_addr, net.server_addr)
    assert conversation.resp.port == result.port and len(conversation.segments) == 11
    # Nothing else in the file: every packet is one of the eleven, between the two namespaces' addresses.
    trace = analyse(pcap_path)
    assert trace.packets == 11 == result.capture.packets and len(trace.conversations) == 1
    assert {s.packet.src for s in conversation.segments} == {net.client_addr, net.server_addr}
    assert result.capture.interface == {"client": "c0", "server": "s0"}[capture_in]
    assert result.capture.dropped == 0 and result.capture.complete


# --- (b) a bulk transfer through a lossy router ------------------------------------------------------
@pytest.mark.parametrize("capture_in", ["client", "r1"])
def test_a_lossy_router_makes_a_bulk_download_retransmit_while_the_byte_counts_stay_exact(
        netns, capture_backend, pcap_path, capture_in, record_property):
    with Topology.routed(loss_percent=5) as net:
        result = run_topology_scenario(bulk_scenario(BULK_BYTES), pcap_path, net, backend=capture_backend,
                                       capture_in=capture_in, timeouts=SLOW, expectation=LOSSY_BULK)
    assert result.ok, result.report()
    record = summarize(result.conversation)
    seen = {key: record[key] for key in ("orig_bytes", "resp_bytes", "retransmissions", "out_of_order",
                                         "duplicate_acks", "missed_bytes", "resp_pkts", "conn_state")}
    seen["router_dropped"] = result.dropped
    record_property("lossy_bulk", seen)
    print(f"captured on {capture_in}: {seen}")
    assert result.dropped > 0, "the router's loss rule dropped nothing"
    assert record["retransmissions"] > 0, seen
    assert record["orig_bytes"] == len(f"{BULK_BYTES}\n")          # the request, counted once
    assert record["resp_bytes"] == BULK_BYTES                      # retransmissions not counted twice
    assert record["missed_bytes"] == 0 and record["conn_state"] == "SF"
    assert f"client received {BULK_BYTES} bytes" in result.client.stdout_lines
    # Offloads are off: segments are MTU-sized, as on a real link.
    assert max(s.length for s in result.conversation.segments) == MSS_WITH_TIMESTAMPS
    # Every retransmission, out-of-order segment and duplicate ACK as tshark classifies it.
    assert_summary_agrees_with_tshark(result.capture.path)


def test_a_lossless_bulk_download_loses_nothing(netns, capture_backend, pcap_path):
    # Without a loss rule nothing is dropped, so nothing can arrive out of order and no bytes go
    # missing. TCP may still retransmit spuriously (a tail-loss probe fires after two round trips,
    # microseconds on a veth, when a busy CPU delays the ACKs): such a segment repeats bytes the
    # capture has already seen, and is counted exactly as tshark counts it.
    with Topology.routed() as net:
        assert net.nft_table is None
        result = run_topology_scenario(bulk_scenario(1 << 20), pcap_path, net, backend=capture_backend,
                                       timeouts=SLOW, expectation=LOSSY_BULK)
    assert result.ok, result.report()
    record = summarize(result.conversation)
    assert (record["resp_bytes"], record["missed_bytes"], record["out_of_order"], result.dropped) == \
        (1 << 20, 0, 0, 0)
    assert_summary_agrees_with_tshark(result.capture.path)


# --- (c) nothing is left behind ----------------------------------------------------------------------
def gone(names):
    return not set(names) & set(list_namespaces())


@pytest.mark.parametrize("error", [RuntimeError("on purpose"), KeyboardInterrupt()])
def test_an_exception_or_ctrl_c_inside_the_topology_removes_it(netns, error):
    with pytest.raises(type(error)):
        with Topology.routed(loss_percent=5) as net:
            names = list(net.namespaces)
            assert len(names) == 3 and set(names) <= set(list_namespaces())
            assert NFT_TABLE in ns_nft_tables(net.router_ns)  # the rule really exists while it runs
            raise error
    assert gone(names) and net.closed


def test_a_topology_is_removed_even_with_processes_still_running_inside(netns):
    with Topology.direct() as net:
        names = list(net.namespaces)
        sleeper = Subject("sleeper", [sys.executable, "-c", "import signal; print('inside'); signal.pause()"],
                          netns=net.server_ns).start()
        sleeper.wait_for_line("inside", 10)
    try:
        wait_until(lambda: sleeper.returncode is not None, 10, "the process left in the namespace to be killed")
    finally:
        sleeper.stop()
    assert sleeper.returncode == -signal.SIGKILL
    assert gone(names) and net.closed


INNER_TESTS = '''
import json, os, sys
from dataclasses import replace
from harness.lab.scenarios import LAB_SCENARIOS
from harness.run.scenario import Timeouts
from harness.run.topology import Topology
from harness.run.runner import run_topology_scenario

RECORD = {record!r}

def remember(net):
    with open(RECORD, "a") as out:
        out.write(json.dumps({{"pid": os.getpid(), "names": net.namespaces}}) + "\\n")

def test_assertion_fails_inside_the_topology():
    with Topology.routed(loss_percent=5) as net:
        remember(net)
        assert net.client_addr == "somewhere else", "failing on purpose"

def test_a_client_that_hangs_times_out_with_the_capture_running(tmp_path):
    hang = replace(LAB_SCENARIOS["tcp-lab"], client=[sys.executable, "-c", "import signal; signal.pause()"])
    with Topology.routed(loss_percent=5) as net:
        remember(net)
        result = run_topology_scenario(hang, tmp_path / "hang.pcapng", net, timeouts=Timeouts(client_done=1.0))
        assert result.ok, result.report()

def test_a_server_that_never_starts():
    broken = replace(LAB_SCENARIOS["tcp-lab"], server=[sys.executable, "-m", "harness.lab.no_such_server"])
    with Topology.direct() as net:
        remember(net)
        run_topology_scenario(broken, "unused.pcapng", net)
'''


def test_tests_that_fail_inside_a_topology_leave_no_namespace(netns, pytester, tmp_path):
    record = tmp_path / "namespaces.jsonl"
    pytester.makepyfile(test_inner=INNER_TESTS.format(record=str(record)))
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=180)
    outcome.assert_outcomes(failed=3)
    outcome.stdout.fnmatch_lines(["*failing on purpose*", "*did not finish its exchange within 1 s*",
                                  "*exited (exit 1) before it would listen on port*"])
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(runs) == 3 and [len(run["names"]) for run in runs] == [3, 3, 2]
    assert gone([name for run in runs for name in run["names"]])
    assert owned_namespaces(runs[0]["pid"]) == []


CRASHING = '''
import os, signal, subprocess, sys
from harness.run.topology import Topology
net = Topology.routed(loss_percent=5).create()
sleeper = subprocess.Popen(["ip", "netns", "exec", net.server_ns, sys.executable, "-c",
                            "import signal; signal.pause()"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(" ".join(net.namespaces), sleeper.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_cleanup_stale_removes_what_a_killed_run_left_and_nothing_else(netns):
    done = subprocess.run([sys.executable, "-c", CRASHING], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    *names, sleeper = done.stdout.split()
    try:
        assert len(names) == 3 and set(names) <= set(list_namespaces()), "the killed run left nothing to clean up"
        removed = cleanup_stale()   # (under pytest-xdist another worker's new topology may get there first)
        assert gone(names)
        assert all(NAME_PATTERN.match(name) for name in removed)
        wait_until(lambda: not alive(int(sleeper)), 10, "the process left in the stale namespace to be killed")
        with Topology.direct() as live:   # a live process's topology (this one) is left alone
            assert not set(live.namespaces) & set(cleanup_stale())
            assert set(live.namespaces) <= set(list_namespaces())
    finally:
        for name in names:   # should the test fail half-way, do not leave the dead run's namespaces
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=15)


def test_two_topologies_at_once_have_distinct_names_and_addresses(netns):
    with Topology.direct() as one, Topology.routed(loss_percent=1) as two:
        assert not set(one.namespaces) & set(two.namespaces)
        assert not set(one.addresses.values()) & set(two.addresses.values())
        assert one.slot != two.slot
        for net in (one, two):
            for address in net.addresses.values():
                assert ipaddress.ip_address(address) in TOPOLOGY_SPACE
        # Nothing leads out: every route points into the topology's own links, and the router has no default.
        for net, namespace in [(one, one.client_ns), (one, one.server_ns),
                               (two, two.client_ns), (two, two.router_ns), (two, two.server_ns)]:
            routes = subprocess.run(["ip", "-n", namespace, "-4", "route", "show"], capture_output=True,
                                    text=True, timeout=15, check=True).stdout.splitlines()
            for route in routes:
                if route.startswith("default"):
                    assert namespace != two.router_ns and route.split()[2] in net.addresses.values(), route
                else:
                    assert ipaddress.ip_network(route.split()[0]).subnet_of(TOPOLOGY_SPACE), (namespace, route)


# --- (d) unrelated traffic never reaches the scenario's pcap -----------------------------------------
def free_listed_port():
    """A TCP port free on 127.0.0.1 here, below the ephemeral range (so no connect() picks it meanwhile)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(10000, low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("found no free TCP port below the ephemeral range in 100 tries")


def lab(name, module, args, netns=None):
    return Subject(name, [sys.executable, "-u", "-m", f"harness.lab.{module}", *args], netns=netns)


# The lab clients' own exchange functions, fed an endless supply of messages: one connection (TCP) or
# datagram (UDP) after another until SIGTERM, which the lab's run_program turns into exit status 0.
# Paced at about 200 a second (pacing, not synchronisation): unpaced, the TCP noise leaves tens of
# thousands of TIME_WAIT sockets, and reading /proc/net/tcp (harness.run.settle) then takes seconds.
ENDLESS_CLIENT = """
import itertools, sys, time
from harness.lab import tcp_client, udp_client
from harness.lab._common import run_program
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def paced(message):
    while True:
        yield message
        time.sleep(0.005)
if kind == "tcp":
    sys.exit(run_program("tcp_client", lambda: tcp_client.exchange_each(
        host, port, 5.0, tcp_client.CLOSE_FOUR_WAY, paced(lambda: "n"))))
sys.exit(run_program("udp_client", lambda: udp_client.exchange_all(host, port, 5.0, paced("n"))))
"""


def endless_client(name, kind, host, port, netns=None):
    return Subject(name, [sys.executable, "-u", "-c", ENDLESS_CLIENT, kind, host, str(port)], netns=netns)


def ready_port(subject):
    return int(subject.wait_for_line(READY_LINE, 10).group("port"))


def test_unrelated_traffic_on_other_ports_and_in_other_namespaces_on_the_same_port_stays_out(
        netns, capture_backend, pcap_path):
    noise = []
    try:
        with Topology.direct() as other:
            for attempt in range(3):
                port = free_listed_port()
                # The lab's own server and client on the scenario's port number, in namespaces of their own:
                # over the namespace's loopback (the same 127.0.0.1:PORT!) and across its veth.
                copy_server = lab("lab copy server", "tcp_server", ["--host", "0.0.0.0", "--port", str(port)],
                                  netns=other.server_ns).start()
                noise.append(copy_server)
                assert ready_port(copy_server) == port
                noise.append(endless_client("lab copy client over the namespace's lo", "tcp", "127.0.0.1", port,
                                            netns=other.server_ns).start())
                noise.append(endless_client("lab copy client across the veth", "tcp", other.server_addr, port,
                                            netns=other.client_ns).start())
                # Another process talking on other loopback ports here, TCP and UDP.
                tcp_noise = lab("tcp noise server", "tcp_server", ["--host", "127.0.0.1", "--port", "0"]).start()
                udp_noise = lab("udp noise server", "udp_server", ["--host", "127.0.0.1", "--port", "0"]).start()
                noise += [tcp_noise, udp_noise]
                noise.append(endless_client("tcp noise client", "tcp", "127.0.0.1", ready_port(tcp_noise)).start())
                noise.append(endless_client("udp noise client", "udp", "127.0.0.1", ready_port(udp_noise)).start())
                talkers = noise[1:3] + noise[-2:]
                for talker in talkers:
                    talker.wait_for_line("client received", 10)
                before = [len(t.stdout_lines) for t in talkers]
                # The scenario's server on the same port number (argparse: the last --port wins).
                scenario = replace(LAB_SCENARIOS["tcp-lab"], port=port)
                try:
                    result = run_scenario(scenario, pcap_path, backend=capture_backend)
                except SubjectError as error:   # someone took the port in between: pick another
                    if "already in use" not in str(error) or attempt == 2:
                        raise
                    for subject in noise:
                        subject.stop()
                    noise.clear()
                    continue
                after = [len(t.stdout_lines) for t in talkers]
                running = [t.name for t in talkers if t.returncode is not None]
                break
    finally:
        for subject in noise:
            subject.stop()
    assert result.ok, result.report()
    assert result.port == port
    assert running == [], f"noise stopped before the scenario ended: {running}"
    assert all(b > a for a, b in zip(before, after)), f"some noise made no exchange meanwhile: {before} -> {after}"
    trace = analyse(pcap_path)
    assert len(trace.conversations) == 1 and trace.packets == 11 == result.capture.packets
    conversation = trace.conversations[0]
    assert conversation.orig.host == conversation.resp.host == "127.0.0.1" and conversation.resp.port == port
    assert all(port in (s.packet.sport, s.packet.dport) and s.packet.src == "127.0.0.1"
               for s in conversation.segments)


def test_a_server_where_lo_has_lost_127_0_0_1_says_to_give_it_back(netns):
    """Issue 15 item 9: '127.0.0.1 is not an address of this machine; pass --host 127.0.0.1' repeated the
    problem as its advice. In a namespace whose lo lost its address, the line says to give it back."""
    name = f"harness-lo-bare-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=15)
    try:
        for step in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "del", "127.0.0.1/8", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", name, *step], check=True, timeout=15)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-m", "harness.lab.tcp_server",
                               "--host", "127.0.0.1", "--port", "0"], capture_output=True, text=True, timeout=30,
                              env=env, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True, timeout=15)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("127.0.0.1 is not on the loopback interface here (lo has lost it, in this "
                                        "network namespace at least): give it back with "
                                        "`ip addr add 127.0.0.1/8 dev lo`"), done.stderr
