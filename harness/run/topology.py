"""Network namespaces joined by veth links, for scenarios whose client and server are hosts of their own.

    with Topology.direct() as net:                  # client ns <== veth ==> server ns
        result = run_topology_scenario(LAB_SCENARIOS["tcp-lab"], pcap, net)      # harness.run.runner

    with Topology.routed(loss_percent=5) as net:     # client ns <==> router ns <==> server ns
        ...

What a topology is (routed; direct has no router and one link c0 <-> s0):

    netns htopo-PID-N-SLOT-client     netns ...-router                     netns ...-server
    c0 10.210.x.1/30 ==veth== r0 10.210.x.2/30   r1 10.210.x.5/30 ==veth== s0 10.210.x.6/30
    default via r0                 ip_forward=1, nftables loss rule        default via r1

* Addresses come from 10.210.16.0-10.210.255.255 and exist only inside the topology's own
  namespaces; each topology takes a /28 slot no other live topology holds (chosen under a lock
  file, and written into the namespace names), so any number can exist at once, across
  processes (pytest-xdist workers) too. Nothing is routed outside them: traffic between them
  can only reach addresses of namespaces the topology created.
* IPv6 is disabled in every namespace (no router solicitations, DAD or MLD on the links), and
  segmentation offloads are off on every veth (ethtool -K ... tso off gso off gro off), so TCP
  segments are MTU-sized as on a real link.
* `loss_percent` makes the router's nftables forward chain drop, at random (numgen random mod 100),
  that percentage of the TCP segments carrying data from the server (or the client, with
  loss_from="client"): never SYN, FIN or RST segments and never pure ACKs (only packets longer than
  any header-only segment, IP length > 80), so handshake and close keep their form while the data
  shows real losses, duplicate ACKs and retransmissions. `dropped()` reads the rule's counter.
* Leaving the `with` block, however it is left (an exception, Ctrl-C, a failed assertion, a
  pytest timeout), kills whatever still runs inside the namespaces and deletes them, which takes
  the veths, addresses, routes and nftables rules with them. Topologies still open when the
  interpreter exits are closed by an atexit hook (registered when the first one is built, not at
  import). A run killed outright (SIGKILL) leaves its
  namespaces behind: `cleanup_stale()` (called by every new topology) deletes those whose owning
  pid, written in the name, is no longer alive.

A topology only builds and removes; harness.run.runner.run_topology_scenario runs a scenario across
one: the server in the server namespace bound to its address, the client in the client namespace,
and the capture in the namespace of the chosen interface (capture_point), with the probes that
prove its start and end sent from the namespace at the link's other end, so they cross it.
"""
from __future__ import annotations

import atexit
import errno
import fcntl
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from harness.errors import RunFailed
from harness.run import tools
from harness.run.process import netns_exec_argv
from harness.run.netns import NETNS_DIR

PREFIX = "htopo"
NAME_PATTERN = re.compile(rf"^{PREFIX}-(?P<pid>\d+)-(?P<seq>\d+)-(?P<slot>\d+)-(?P<role>client|router|server)$")
ROLES = ("client", "router", "server")

# Slot s is the /28 starting at FIRST_SLOT_ADDRESS + 16 * s: 10.210.16.0 up to 10.210.255.240.
# (10.210.1.0/24 and 10.210.2.0/24 are the corpus generator's, hence the start at .16.0.)
FIRST_SLOT_ADDRESS = ipaddress.IPv4Address("10.210.16.0")
SLOT_SIZE = 16
SLOTS = (int(ipaddress.IPv4Address("10.210.255.255")) + 1 - int(FIRST_SLOT_ADDRESS)) // SLOT_SIZE
LINK_PREFIX_LENGTH = 30

NFT_TABLE = "harness_topology"
STEP_TIMEOUT_SECONDS = 15.0
LOCK_TIMEOUT_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.01
LOCK_PATHS = ("/run/lock/harness-topology.lock", "/run/harness-topology.lock")
# Longest IPv4+TCP header (20 + 60): a longer packet carries data.
LONGEST_HEADERS = 80


class TopologyError(RunFailed):
    """A topology could not be built or removed; str() is one line naming the step."""


# --- running the tools -------------------------------------------------------------------------
def _tool(name: str) -> str:
    try:
        return tools.require(name)
    except tools.ToolMissing as missing:
        raise TopologyError(str(missing)) from None


def _run(argv: Sequence[str], what: str, stdin: Optional[str] = None, quiet_errors: Sequence[str] = (),
         timeout: float = STEP_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """Run one step within `timeout`; TopologyError naming `what` unless it succeeded (or failed in a
    way `quiet_errors` says is fine, e.g. deleting what is already gone)."""
    exe = argv[0] if os.path.isabs(argv[0]) else _tool(argv[0])
    try:
        done = subprocess.run([exe, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TopologyError(f"{what} did not finish within {timeout:g} s") from None
    if done.returncode != 0 and not any(text in done.stderr for text in quiet_errors):
        tail = (done.stderr.strip().splitlines() or ["(no error output)"])[-1]
        raise TopologyError(f"{what} failed (status {done.returncode}): {tail}")
    return done


def list_namespaces() -> List[str]:
    """Names of the namespaces `ip netns add` made (the files in /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def owned_namespaces(pid: Optional[int] = None) -> List[str]:
    """Namespaces of harness topologies: all of them, or those of the process `pid`."""
    names = []
    for name in list_namespaces():
        match = NAME_PATTERN.match(name)
        if match and (pid is None or int(match.group("pid")) == pid):
            names.append(name)
    return names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_in(namespace_inode: int) -> List[int]:
    """Processes (other than this one) whose network namespace is the one with this inode."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == namespace_inode:
                pids.append(int(entry))
        except OSError:
            continue  # gone meanwhile, or not ours to look at
    return pids


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _delete_namespace(name: str) -> None:
    """Kill what still runs in it (only harness-started processes can be in a harness namespace),
    then delete it; once its last process is gone, the kernel frees its veths and nftables tables.

    The namespace is held open meanwhile, so a process that was entering it as it was deleted
    (`ip netns exec` opens the name, then enters) is still found by the namespace's inode and killed."""
    try:
        held = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        inode = os.fstat(held).st_ino
        _kill_all(_pids_in(inode))
        _run(["ip", "netns", "del", name], f"ip netns del {name}", quiet_errors=("No such file",))
        _kill_all(_pids_in(inode))
    finally:
        os.close(held)


def cleanup_stale() -> List[str]:
    """Delete the namespaces of topologies whose owning process (the pid in the name) is dead:
    leftovers of a run that was killed outright. Returns the names deleted. Namespaces of live
    processes (another pytest worker's, say) and any name without this module's prefix are left alone."""
    removed = []
    for name in owned_namespaces():
        if not _pid_alive(int(NAME_PATTERN.match(name).group("pid"))):
            _delete_namespace(name)
            removed.append(name)
    return removed


def topology_unavailable_reason(loss: bool = False, loopback_only: bool = False) -> Optional[str]:
    """None when topologies (with loss rules, if `loss`; only Topology.loopback, if `loopback_only`)
    can be built here, else why not (one line)."""
    needed = ["ip"] if loopback_only else ["ip", "ethtool", "sysctl"] + (["nft"] if loss else [])
    missing = tools.missing(needed)
    if missing:
        return tools.missing_message(missing)
    name = f"{PREFIX}-{os.getpid()}-0-0-client"
    try:
        _run(["ip", "netns", "add", name], "ip netns add (a trial namespace)")
    except TopologyError as error:
        return f"cannot create network namespaces ({error}); run as root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    try:
        _run(["ip", "netns", "del", name], "ip netns del (the trial namespace)")
    except TopologyError as error:
        return str(error)
    return None


# --- slots: unique addresses per live topology --------------------------------------------------
class _SlotLock:
    """An exclusive flock on a file in /run, shared by every process that builds topologies."""

    def __init__(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._fd: Optional[int] = None

    def __enter__(self) -> "_SlotLock":
        path = next((p for p in LOCK_PATHS if os.path.isdir(os.path.dirname(p))), LOCK_PATHS[-1])
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                os.close(self._fd)
                raise TopologyError(f"the topology slot lock {path} was not free within {self.timeout:g} s")
            time.sleep(LOCK_POLL_SECONDS)  # ok: flock offers no wait with a timeout

    def __exit__(self, *exc) -> None:
        os.close(self._fd)  # closing releases the lock


def _slots_in_use() -> set:
    return {int(NAME_PATTERN.match(name).group("slot")) for name in owned_namespaces()}


# --- the topology ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CapturePoint:
    """Where a capture runs: the interface, its namespace and address, and the namespace at the
    link's other end, from which probes are sent so that they cross the interface."""
    namespace: str
    interface: str
    address: str
    probe_from: str


_sequence = itertools.count(1)
_sequence_lock = threading.Lock()
_open_topologies: "set[Topology]" = set()
_exit_hook_registered = False


class Topology:
    """Network namespaces joined by veth links; a context manager that always removes them."""

    def __init__(self, routed: bool = False, loss_percent: float = 0, loss_from: str = "server",
                 offloads: bool = False) -> None:
        if not 0 <= loss_percent <= 100:
            raise ValueError(f"loss_percent must be within 0-100, not {loss_percent}")
        if loss_percent and not routed:
            raise ValueError("loss needs a router: use Topology.routed(loss_percent=...)")
        if loss_from not in ("server", "client"):
            raise ValueError(f"loss_from must be 'server' or 'client', not {loss_from!r}")
        self.kind = "routed" if routed else "direct"
        self.loss_percent = loss_percent
        self.loss_from = loss_from
        self.offloads = offloads
        with _sequence_lock:
            self.seq = next(_sequence)
        self.pid = os.getpid()
        self.slot: Optional[int] = None
        self.client_ns = self.server_ns = ""
        self.router_ns: Optional[str] = None
        self.client_if, self.server_if = "c0", "s0"
        self.router_client_if: Optional[str] = "r0" if routed else None
        self.router_server_if: Optional[str] = "r1" if routed else None
        self.client_addr = self.server_addr = ""
        self.router_client_addr: Optional[str] = None
        self.router_server_addr: Optional[str] = None
        self.namespaces: List[str] = []     # every namespace this topology created (or began to)
        self.nft_table: Optional[str] = NFT_TABLE if loss_percent else None
        self.closed = False

    @classmethod
    def direct(cls, **kwargs) -> "Topology":
        """Client namespace <== one veth pair ==> server namespace."""
        return cls(routed=False, **kwargs)

    @classmethod
    def loopback(cls) -> "Topology":
        """One namespace of its own with nothing but its loopback (127.0.0.1 and ::1): a host of its
        own for programs on a fixed port, so several can use 8080 at once. `namespace` names it."""
        topology = cls()
        topology.kind = "loopback"
        return topology

    @property
    def namespace(self) -> str:
        """The loopback topology's one namespace (the client's namespace of the others)."""
        return self.client_ns

    @classmethod
    def routed(cls, loss_percent: float = 0, **kwargs) -> "Topology":
        """Client namespace <==> router namespace (forwarding, optional random loss) <==> server namespace."""
        return cls(routed=True, loss_percent=loss_percent, **kwargs)

    # --- naming -----------------------------------------------------------------------------
    def _name(self, role: str) -> str:
        return f"{PREFIX}-{self.pid}-{self.seq}-{self.slot}-{role}"

    def _address(self, offset: int) -> str:
        return str(FIRST_SLOT_ADDRESS + SLOT_SIZE * self.slot + offset)

    @property
    def addresses(self) -> Dict[str, str]:
        """Every address of the topology, by namespace and interface (`client/c0`, ...)."""
        pairs = {f"client/{self.client_if}": self.client_addr, f"server/{self.server_if}": self.server_addr}
        if self.router_ns:
            pairs[f"router/{self.router_client_if}"] = self.router_client_addr
            pairs[f"router/{self.router_server_if}"] = self.router_server_addr
        return pairs

    def describe(self) -> str:
        if self.kind == "loopback":
            return f"{self.client_ns} (loopback only)"
        if self.router_ns:
            loss = f", {self.loss_percent:g}% loss of the {self.loss_from}'s data" if self.loss_percent else ""
            return (f"{self.client_ns} {self.client_if} {self.client_addr} <=> {self.router_client_if} "
                    f"{self.router_client_addr} {self.router_ns} {self.router_server_if} {self.router_server_addr}"
                    f" <=> {self.server_if} {self.server_addr} {self.server_ns}{loss}")
        return (f"{self.client_ns} {self.client_if} {self.client_addr} <=> "
                f"{self.server_if} {self.server_addr} {self.server_ns}")

    def __repr__(self) -> str:
        return f"<Topology {self.kind} {self.describe() if self.slot is not None else '(not built)'}>"

    def capture_point(self, where: str) -> CapturePoint:
        """`where`: a role ("client", "server"; "router" = r0, its client-side link) or an interface
        name ("c0", "s0", "r0", "r1")."""
        peer_of_client = self.router_ns or self.server_ns
        peer_of_server = self.router_ns or self.client_ns
        points = {self.client_if: CapturePoint(self.client_ns, self.client_if, self.client_addr, peer_of_client),
                  self.server_if: CapturePoint(self.server_ns, self.server_if, self.server_addr, peer_of_server)}
        aliases = {"client": self.client_if, "server": self.server_if}
        if self.router_ns:
            points[self.router_client_if] = CapturePoint(self.router_ns, self.router_client_if,
                                                         self.router_client_addr, self.client_ns)
            points[self.router_server_if] = CapturePoint(self.router_ns, self.router_server_if,
                                                         self.router_server_addr, self.server_ns)
            aliases["router"] = self.router_client_if
        key = aliases.get(where, where)
        if key not in points:
            raise ValueError(f"no capture point {where!r} in this {self.kind} topology; "
                             f"choose one of {', '.join([*aliases, *points])}")
        return points[key]

    def exec_argv(self, namespace: str, argv: Sequence[str]) -> List[str]:
        return netns_exec_argv(namespace, [_tool(argv[0]), *argv[1:]])

    def in_ns(self, namespace: str, argv: Sequence[str], what: Optional[str] = None,
              stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run a short command inside one of the namespaces, bounded, failing with what it was."""
        return _run(self.exec_argv(namespace, argv), what or f"{' '.join(argv)} in {namespace}", stdin=stdin)

    # --- building ---------------------------------------------------------------------------
    def __enter__(self) -> "Topology":
        return self.create()

    def __exit__(self, exc_type, exc, tb) -> None:
        failures = self.close(raise_on_failure=exc_type is None)
        if failures and exc_type is not None and exc is not None and hasattr(exc, "add_note"):
            exc.add_note(f"removing topology {self.client_ns}...: {'; '.join(failures)}")

    def create(self) -> "Topology":
        """Build it; on any failure (Ctrl-C included) remove what was made and re-raise."""
        if self.slot is not None:
            raise TopologyError("this topology was already built; make a new one")
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(_close_left_open)
            _exit_hook_registered = True
        _open_topologies.add(self)
        try:
            self._build()
        except BaseException:
            self.close(raise_on_failure=False)
            raise
        return self

    def _claim_slot(self) -> None:
        cleanup_stale()
        with _SlotLock():
            used = _slots_in_use()
            start = (self.pid * 7919 + self.seq * 104729) % SLOTS
            free = next((s % SLOTS for s in range(start, start + SLOTS) if s % SLOTS not in used), None)
            if free is None:
                raise TopologyError(f"all {SLOTS} topology address slots are in use (`ip netns list`)")
            self.slot = free
            # The first namespace carries the slot in its name: from here on, it is taken.
            self._add_namespace("client")

    def _add_namespace(self, role: str) -> str:
        name = self._name(role)
        self.namespaces.append(name)  # before it exists: an interrupted add is still cleaned up
        _run(["ip", "netns", "add", name], f"ip netns add {name}")
        return name

    def _build(self) -> None:
        self._claim_slot()
        self.client_ns = self._name("client")
        if self.kind == "loopback":
            self.server_ns = self.client_ns
            _run(["ip", "-n", self.client_ns, "link", "set", "lo", "up"], f"ip link set lo up in {self.client_ns}")
            return
        self.server_ns = self._add_namespace("server")
        if self.kind == "routed":
            self.router_ns = self._add_namespace("router")
            self.client_addr, self.router_client_addr = self._address(1), self._address(2)
            self.router_server_addr, self.server_addr = self._address(5), self._address(6)
        else:
            self.client_addr, self.server_addr = self._address(1), self._address(2)
        for ns in self.namespaces:
            # No IPv6 on these links: nothing but what the scenario sends (no RS, DAD, MLD).
            self.in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                            "net.ipv6.conf.default.disable_ipv6=1"], f"disabling IPv6 in {ns}")
            _run(["ip", "-n", ns, "link", "set", "lo", "up"], f"ip link set lo up in {ns}")
        links: List[Tuple[str, str, str]] = []   # (namespace, interface, address)
        if self.router_ns:
            self._veth(self.client_ns, self.client_if, self.router_ns, self.router_client_if)
            self._veth(self.router_ns, self.router_server_if, self.server_ns, self.server_if)
            links += [(self.client_ns, self.client_if, self.client_addr),
                      (self.router_ns, self.router_client_if, self.router_client_addr),
                      (self.router_ns, self.router_server_if, self.router_server_addr),
                      (self.server_ns, self.server_if, self.server_addr)]
        else:
            self._veth(self.client_ns, self.client_if, self.server_ns, self.server_if)
            links += [(self.client_ns, self.client_if, self.client_addr),
                      (self.server_ns, self.server_if, self.server_addr)]
        for ns, dev, address in links:
            _run(["ip", "-n", ns, "addr", "add", f"{address}/{LINK_PREFIX_LENGTH}", "dev", dev],
                 f"ip addr add {address} dev {dev} in {ns}")
            if not self.offloads:
                self.in_ns(ns, ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"],
                           f"ethtool -K {dev} (offloads off) in {ns}")
            _run(["ip", "-n", ns, "link", "set", dev, "up"], f"ip link set {dev} up in {ns}")
        if self.router_ns:
            _run(["ip", "-n", self.client_ns, "route", "add", "default", "via", self.router_client_addr],
                 f"the client's default route in {self.client_ns}")
            _run(["ip", "-n", self.server_ns, "route", "add", "default", "via", self.router_server_addr],
                 f"the server's default route in {self.server_ns}")
            self.in_ns(self.router_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       f"enabling forwarding in {self.router_ns}")
            if self.loss_percent:
                self._add_loss()

    def _veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
        # Made inside ns_a with its peer put straight into ns_b: the pair never exists in the host's namespace.
        _run(["ip", "-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b],
             f"veth {ns_a}/{dev_a} <=> {ns_b}/{dev_b}")

    def loss_rule(self) -> str:
        source, target = ((self.server_addr, self.client_addr) if self.loss_from == "server"
                          else (self.client_addr, self.server_addr))
        return (f"ip saddr {source} ip daddr {target} tcp flags & (fin | syn | rst) == 0 "
                f"ip length > {LONGEST_HEADERS} numgen random mod 100 < {self.loss_percent:g} counter drop")

    def _add_loss(self) -> None:
        ruleset = (f"table inet {NFT_TABLE} {{\n"
                   f"  chain forward {{\n"
                   f"    type filter hook forward priority 0; policy accept;\n"
                   f"    {self.loss_rule()}\n"
                   f"  }}\n}}\n")
        self.in_ns(self.router_ns, ["nft", "-f", "-"], f"nft -f (the loss rule) in {self.router_ns}", stdin=ruleset)

    def dropped(self) -> int:
        """Packets the loss rule has dropped so far (0 without a loss rule)."""
        if not self.nft_table or self.closed:
            return 0
        listing = self.in_ns(self.router_ns, ["nft", "list", "table", "inet", self.nft_table],
                             f"nft list table in {self.router_ns}").stdout
        match = re.search(r"counter packets (\d+)", listing)
        if not match:
            raise TopologyError(f"the loss rule's counter is missing from table {self.nft_table} in {self.router_ns}")
        return int(match.group(1))

    # --- removing ---------------------------------------------------------------------------
    def close(self, raise_on_failure: bool = True) -> List[str]:
        """Kill what still runs in the namespaces and delete them (veths, routes and nftables
        rules go with them). Safe to call twice. A Ctrl-C meanwhile does not stop the removal:
        it is raised once every namespace has been dealt with."""
        failures: List[str] = []
        interrupted: Optional[BaseException] = None
        for name in reversed(self.namespaces):
            try:
                _delete_namespace(name)
            except TopologyError as error:
                failures.append(str(error))
            except BaseException as error:  # KeyboardInterrupt mid-removal: finish first
                interrupted = interrupted or error
                try:
                    _delete_namespace(name)
                except BaseException as again:
                    failures.append(f"ip netns del {name}: {again!r}")
        left = [name for name in self.namespaces if os.path.exists(os.path.join(NETNS_DIR, name))]
        failures += [f"namespace {name} is still there" for name in left if not any(name in f for f in failures)]
        self.namespaces = left
        self.closed = not left
        if not left:
            _open_topologies.discard(self)
        if interrupted is not None:
            raise interrupted
        if failures and raise_on_failure:
            raise TopologyError("removing the topology: " + "; ".join(failures))
        return failures


def _close_left_open() -> None:
    for topology in list(_open_topologies):
        topology.close(raise_on_failure=False)


__all__ = ["CapturePoint", "PREFIX", "Topology", "TopologyError", "cleanup_stale", "list_namespaces",
           "owned_namespaces", "topology_unavailable_reason"]
