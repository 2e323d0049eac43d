"""pytest glue for harness: a `capture` marker, options, and fixtures over the library.

The library works without pytest; this module only decides where pcaps go, whether they are
kept, and whether a test that cannot capture here skips (with how to fix it) or fails
(when HARNESS_REQUIRE_CAPTURE=1, as in CI, where a capture test must never silently skip).

Installing harness registers this plugin in every project, so at import it loads nothing of the
library but the backend names: capture, processes and analysis are imported by the fixtures
that use them (a `pytest --collect-only` in a project without capture tests loads none of them).
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import pytest

from harness.run import BACKENDS

if TYPE_CHECKING:
    from harness.run.capture import Capture
    from harness.run.scenario import Scenario, ScenarioResult

REQUIRE_ENV = "HARNESS_REQUIRE_CAPTURE"
KEEP_CHOICES = ("always", "failed")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "packet-capture verification (harness)")
    group.addoption("--pcap-dir", dest="harness_pcap_dir", default=None,
                    help="where capture tests save their pcaps (default: ini harness_pcap_dir, "
                         "else captures/runs under the rootdir)")
    group.addoption("--keep-pcaps", dest="harness_keep", choices=KEEP_CHOICES, default=None,
                    help="keep every test's pcap ('always', the default) or only failed tests' ('failed')")
    group.addoption("--capture-backend", dest="harness_backend", choices=BACKENDS, default=None,
                    help="capture engine: dumpcap (default) or scapy")
    parser.addini("harness_pcap_dir", "directory for capture tests' pcaps", default="captures/runs")
    parser.addini("harness_keep_pcaps", "always or failed", default="always")
    parser.addini("harness_capture_backend", "dumpcap or scapy", default="dumpcap")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "capture: the test captures live traffic (needs dumpcap or scapy "
                                       "and capture permission); select with -m capture")


def _setting(config: pytest.Config, option: str, ini: str) -> str:
    return config.getoption(option) or config.getini(ini)


def capture_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    setattr(item, f"harness_report_{report.when}", report)
    if report.failed and report.when == "call":
        for served in getattr(item, "harness_served", ()):
            report.sections.append((f"harness: output of {served.subject.name}",
                                    served.output() or "(nothing printed)"))
    return report


def _test_failed(item: pytest.Item) -> bool:
    return any(getattr(getattr(item, f"harness_report_{when}", None), "failed", False)
               for when in ("setup", "call"))


def require_capture(backend: str, interface: str = "lo") -> str:
    """Skip the calling test, with how to fix it, unless `backend` can capture here (fail in CI instead)."""
    from harness.run.capture import capture_unavailable_reason
    reason = capture_unavailable_reason(backend, interface)
    if reason:
        if capture_required():
            pytest.fail(f"{REQUIRE_ENV} is set but capture is unavailable: {reason}", pytrace=False)
        pytest.skip(f"cannot capture: {reason}")
    return backend


@pytest.fixture(scope="session")
def capture_backend(pytestconfig: pytest.Config) -> str:
    """The backend name, once it is proven able to capture on loopback here; else skip (or fail in CI)."""
    return require_capture(_setting(pytestconfig, "harness_backend", "harness_capture_backend"))


@pytest.fixture(scope="session")
def pcap_dir(pytestconfig: pytest.Config) -> Path:
    configured = Path(_setting(pytestconfig, "harness_pcap_dir", "harness_pcap_dir"))
    directory = configured if configured.is_absolute() else Path(pytestconfig.rootpath) / configured
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".harness-write-test-"):
            pass
    except OSError as error:
        pytest.fail(f"harness: cannot write pcaps to {directory}: {error.strerror or error}; "
                    f"choose another --pcap-dir (or ini harness_pcap_dir)", pytrace=False)
    return directory


def _file_stem(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__").replace(".py", "")).strip("_")


@pytest.fixture
def pcap_path(request: pytest.FixtureRequest, pcap_dir: Path) -> Iterator[Path]:
    """This test's pcap, named after the test; removed after a pass when --keep-pcaps=failed (with the
    test's further pcaps, NAME-2.pcapng and on, which `numbered` hands out)."""
    from harness.run.capture import partial_paths
    path = pcap_dir / f"{_file_stem(request.node.nodeid)}.pcapng"
    for stale in (path, *partial_paths(path)):
        stale.unlink(missing_ok=True)
    request.node.harness_pcaps = [path]
    yield path
    keep = _setting(request.config, "harness_keep", "harness_keep_pcaps")
    if keep == "failed" and not _test_failed(request.node):
        for kept in request.node.harness_pcaps:
            kept.unlink(missing_ok=True)


class LabRunner:
    """Runs lab scenarios (or your own) for one test, each into the test's pcap."""

    def __init__(self, backend: str, pcap_path: Path, node: Optional[pytest.Item] = None) -> None:
        self.backend = backend
        self.pcap_path = pcap_path
        self.results = []
        self._node = node

    def run(self, scenario: Union[str, "Scenario"], check: bool = True, **kwargs) -> "ScenarioResult":
        """Run once; with check=True a wire that does not match fails the test with the ladder."""
        from harness.lab.scenarios import LAB_SCENARIOS
        from harness.run.runner import run_scenario
        from harness.run.scenario import ScenarioFailed
        if isinstance(scenario, str):
            scenario = LAB_SCENARIOS[scenario]
        path = self.pcap_path if not self.results else numbered(self.pcap_path, len(self.results) + 1, self._node)
        with _disk_errors_in_one_line():
            result = run_scenario(scenario, path, backend=self.backend, **kwargs)
        self.results.append(result)
        if check and not result.ok:
            raise ScenarioFailed(result)
        return result


@pytest.fixture
def lab(request: pytest.FixtureRequest, capture_backend: str, pcap_path: Path) -> LabRunner:
    """`lab.run("tcp-lab")` runs a lab scenario with capture and asserts on the wire."""
    return LabRunner(capture_backend, pcap_path, request.node)


@pytest.fixture
def live_capture(request: pytest.FixtureRequest, capture_backend: str, pcap_path: Path):
    """A context manager capturing your own traffic: `with live_capture("tcp port 8080") as cap: ...`.

    On leaving the block the capture's end is proven and `cap.result` holds the saved pcap's details.
    The first block of a test saves to the test's pcap, later ones to NAME-2.pcapng, NAME-3.pcapng...
    """
    blocks = 0

    @contextmanager
    def capturing(bpf: str = "", interface: str = "lo", probe_host: str = "127.0.0.1") -> Iterator["Capture"]:
        from harness.run.capture import make_capture
        nonlocal blocks
        blocks += 1
        path = pcap_path if blocks == 1 else numbered(pcap_path, blocks, request.node)
        capture = make_capture(capture_backend, path, bpf=bpf, interface=interface, probe_host=probe_host)
        with _disk_errors_in_one_line(), capture:
            yield capture

    return capturing


@contextmanager
def _disk_errors_in_one_line() -> Iterator[None]:
    """A pcap the disk will not take (full, read-only) is the machine's fault, not the test's code: it
    is said as the --pcap-dir problem is, one line without a traceback."""
    from harness.run.capture import CaptureUnwritable
    try:
        yield
    except CaptureUnwritable as error:
        pytest.fail(f"harness: {error} (--pcap-dir, or ini harness_pcap_dir)", pytrace=False)


def numbered(pcap_path: Path, number: int, node: Optional[pytest.Item] = None) -> Path:
    """The test's Nth pcap (N > 1): NAME-N.pcapng beside NAME.pcapng, cleared of a stale one and
    remembered on the test's node so that --keep-pcaps=failed removes it with the first."""
    from harness.run.capture import partial_paths
    path = pcap_path.with_name(f"{pcap_path.stem}-{number}{pcap_path.suffix}")
    for stale in (path, *partial_paths(path)):
        stale.unlink(missing_ok=True)
    if node is not None:
        getattr(node, "harness_pcaps", []).append(path)
    return path


@pytest.fixture
def serve(request: pytest.FixtureRequest):
    """`serve(command or callable, port=None, proto="tcp", ...)` starts your server and returns once it
    listens (harness.testing.serve): `.port`, `.host`, `.subject`. Every server a test started is
    stopped after it, whole session; a failing test's report shows what each printed."""
    from harness.testing import serve as start
    started: list = []
    request.node.harness_served = started

    def serving(server, **options):
        served = start(server, **options)
        started.append(served)
        return served

    yield serving
    # Each is stopped whatever happened to the stop before it (an interruption, survivors named);
    # the first such error is raised once all are.
    failed: Optional[BaseException] = None
    for served in reversed(started):
        try:
            served.stop()
        except BaseException as error:
            failed = failed or error
    if failed is not None:
        raise failed


@pytest.fixture
def wire(request: pytest.FixtureRequest, capture_backend: str, pcap_path: Path):
    """`with wire(port) as capture:` captures loopback on the port (harness.testing.WireCapture),
    proven complete when the block ends; then `capture.conversation().should_match("tcp_graceful")`.
    The pcap is the test's (a second capture in the test gets NAME-2.pcapng, and so on)."""
    from harness.testing import WireCapture
    captures = 0

    def capturing(port: int, proto: Optional[str] = None, host: str = "127.0.0.1"):
        nonlocal captures
        captures += 1
        path = pcap_path if captures == 1 else numbered(pcap_path, captures, request.node)
        return WireCapture(path, port, proto, host, backend=capture_backend)

    return capturing


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    backend = _setting(config, "harness_backend", "harness_capture_backend")
    required = " (required)" if capture_required() else ""
    return f"harness: capture backend {backend}{required}, pcaps in " \
           f"{_setting(config, 'harness_pcap_dir', 'harness_pcap_dir')}"

