"""One list of system tools (harness/run/tools.txt), and the three that read it agree: scripts/setup.sh
installs what harness.run.tools would report missing, `harness doctor` reports every tool on it, and
every external program the code runs is on it. The C extension's build says why when it fails."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from harness.run import tools
from harness.doctor import REPORTED_GROUPS, findings
from support import REPO

REPO = REPO
SETUP = REPO / "scripts" / "setup.sh"
DEFAULT_GROUPS = ("bootstrap", "capture", "namespaces", "privilege", "build", "tests")
# Calls that run their first argument (an argv list) as a program, and where in the call it is.
RUNNERS = {"run": 0, "Popen": 0, "check_output": 0, "check_call": 0, "call": 0, "_run": 0, "in_ns": 1,
           "exec_argv": 1, "netns_exec_argv": 1, "Subject": 1}
LOOKUPS = {"which", "require", "find", "tool", "missing"}


def test_the_list_reads_and_every_tool_names_its_package_and_purpose():
    assert tools.TOOLS, "harness/run/tools.txt is empty"
    for entry in tools.TOOLS.values():
        assert entry.kind in tools.KINDS and entry.packages and entry.purpose
        assert entry.group in DEFAULT_GROUPS + ("corpus",)
    assert tools.missing_message(["ip", "nft", "ethtool"]) == "missing ip, nft, ethtool: apt-get install -y iproute2 nftables ethtool"
    with pytest.raises(ValueError, match="not on harness's list of system tools"):
        tools.find("no-such-tool")


def test_a_missing_tool_is_one_line_naming_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(tools.SYSTEM_DIRS_ENV, str(tmp_path))
    with pytest.raises(tools.ToolMissing) as missing:
        tools.require("ethtool")
    assert str(missing.value) == "missing ethtool: apt-get install -y ethtool"


def _program_literals(tree: ast.AST, module_lists: dict):
    """(line, name) of every program named literally where it is run or looked up."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if isinstance(node.func, ast.Name):
            owner = None
        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            owner = node.func.value.id
        else:
            owner = "<expression>"
        # tools.find/require/missing/tool, shutil.which (or a bare which/require): not ElementTree's find.
        if name in LOOKUPS and owner in (None, "tools", "shutil", "needs"):
            for argument in node.args:
                values = argument.elts if isinstance(argument, (ast.List, ast.Tuple)) else [argument]
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        yield node.lineno, value.value
        position = RUNNERS.get(name)
        if position is None or len(node.args) <= position or not isinstance(node.args[position], ast.List):
            continue
        elements = node.args[position].elts
        first = elements[0] if elements else None
        if isinstance(first, ast.Starred) and isinstance(first.value, ast.Name):
            first = module_lists.get(first.value.id)
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield node.lineno, first.value


def _python_files():
    for folder in ("harness", "tests", "bench", "captures"):
        yield from sorted((REPO / folder).rglob("*.py"))
    yield REPO / "setup.py"


def test_every_program_the_code_runs_is_on_the_list():
    unlisted = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_lists = {target.id: node.value.elts[0] for node in tree.body if isinstance(node, ast.Assign)
                        for target in node.targets if isinstance(target, ast.Name)
                        and isinstance(node.value, ast.List) and node.value.elts}
        for line, program in _program_literals(tree, module_lists):
            if program not in tools.TOOLS and not program.startswith(("-", "/")) and " " not in program:
                unlisted.append(f"{path.relative_to(REPO)}:{line}: {program}")
    # Test-only stand-ins (commands a test makes up to be missing) do not count; nothing else may be off the list.
    unlisted = [item for item in unlisted if "no-such" not in item and "nonexistent" not in item]
    assert not unlisted, "programs run or looked up that harness/run/tools.txt does not list:\n" + "\n".join(unlisted)


def test_no_install_advice_is_written_outside_the_list():
    # Every "apt-get install" a user is shown comes from harness.run.tools (or setup.py, which reads tools.txt).
    offenders = []
    for path in _python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "apt-get install" in line and path.name not in ("tools.py", "setup.py", "test_tools.py"):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _print_missing(env: dict, *options: str) -> list:
    done = subprocess.run(["/bin/bash", str(SETUP), "--print-missing", *options], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _packages_of(names) -> list:
    packages = []
    for name in names:
        packages += [p for p in tools.tool(name).packages if p not in packages]
    return packages


def test_setup_installs_exactly_what_harness_would_report_missing():
    expected = _packages_of(tools.missing(e.name for e in tools.TOOLS.values() if e.group in DEFAULT_GROUPS))
    assert sorted(_print_missing(dict(os.environ))) == sorted(expected)
    with_corpus = _packages_of(tools.missing(tools.TOOLS))
    assert sorted(_print_missing(dict(os.environ), "--corpus")) == sorted(with_corpus)


def test_on_a_machine_without_ethtool_setup_installs_it(tmp_path):
    # A PATH holding every tool this machine has but ethtool, and no system directories to fall back on.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in tools.TOOLS.values():
        found = tools.find(entry.name)
        if entry.kind == "program" and found and entry.name != "ethtool":
            (bin_dir / entry.name).symlink_to(found)
    (bin_dir / "python3").unlink(missing_ok=True)
    (bin_dir / "python3").symlink_to(sys.executable)      # the interpreter whose headers count
    env = {"PATH": str(bin_dir), tools.SYSTEM_DIRS_ENV: str(bin_dir), "HOME": str(tmp_path)}
    missing = _print_missing(env)
    assert "ethtool" in missing, missing
    hidden = dict(os.environ, PATH=str(bin_dir), **{tools.SYSTEM_DIRS_ENV: str(bin_dir)})
    reported = subprocess.run([sys.executable, "-c", "from harness.run import tools; "
                               "print(' '.join(tools.missing(['ethtool', 'ip'])))"],
                              capture_output=True, text=True, env=hidden, timeout=60, cwd=REPO)
    assert reported.stdout.split() == ["ethtool"] + (["ip"] if "iproute2" in missing else [])


def test_doctor_reports_every_tool_of_its_groups(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(tools.SYSTEM_DIRS_ENV, str(tmp_path))
    report = {finding.subject: finding for finding in findings()}
    for entry in tools.TOOLS.values():
        if entry.group in REPORTED_GROUPS and entry.kind == "program" and entry.name != "dumpcap":
            finding = report[f"{entry.name} ({entry.group})"]
            assert finding.level == "WARN" and finding.fix == entry.install, finding
    assert report["dumpcap"].fix == tools.tool("dumpcap").install


def test_doctor_gives_each_backend_its_own_permission_advice(monkeypatch):
    from harness import doctor
    refused = {"dumpcap": "dumpcap may not capture here (permission denied): ...",
               "scapy": "no permission to open a packet socket: ..."}
    monkeypatch.setattr(doctor, "capture_unavailable_reason", lambda backend, interface: refused[backend])
    report = {finding.subject: finding for finding in findings()}
    assert "setcap cap_net_raw,cap_net_admin+eip" in report["capture with dumpcap on lo"].fix
    scapy_fix = report["capture with scapy on lo"].fix
    assert "give the Python interpreter the capture capabilities" in scapy_fix and "dumpcap" not in scapy_fix


def test_a_failed_build_of_the_c_scanner_says_why(tmp_path):
    pytest.importorskip("setuptools")
    env = dict(os.environ, CC="/nonexistent/cc")
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                           "--build-temp", str(tmp_path / "temp")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr       # the install goes on without it...
    assert "*** harness: harness.analysis._speedups was not built" in done.stderr    # ...but says so, loudly
    assert "apt-get install -y gcc libc6-dev python3-dev" in done.stderr
    reason = (tmp_path / "lib" / "harness" / "analysis" / "_speedups.unavailable").read_text()
    assert reason.startswith(f"building harness.analysis._speedups on Python {sys.version.split()[0]} failed: ")
    assert not list((tmp_path / "lib" / "harness").rglob("_speedups*.so"))


def test_an_editable_install_without_a_compiler_succeeds_and_says_so(tmp_path):
    # As a developer's checkout meets it: `pip install -e .` where no compiler runs. The install goes
    # on, the reason lies beside the package in the checkout, and harness says which path it is on.
    import shutil
    import venv
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "harness", checkout / "harness",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "_speedups.unavailable"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, checkout / name)
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    env = dict(os.environ, CC="/nonexistent/cc", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(checkout)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    reason = (checkout / "harness" / "analysis" / "_speedups.unavailable").read_text()
    # setuptools words it its own way from one version to the next; the compiler and why are in it.
    assert "/nonexistent/cc" in reason and "No such file or directory" in reason
    status = subprocess.run([python, "-c", "from harness.analysis.pipeline import speedups_status; "
                             "compiled, how = speedups_status(); print(compiled, how)"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert status.stdout.startswith("False pure Python, several times slower: building harness.analysis."
                                    "_speedups on Python"), status.stdout + status.stderr


@pytest.mark.parametrize("content", [b"plain text, not a program\n", b"#!/nonexistent/interpreter\n"],
                         ids=["not-elf", "missing-interpreter"])
def test_a_dumpcap_that_cannot_run_is_one_line_saying_so(content, monkeypatch, tmp_path, capsys):
    """Issue 15 items 3 and 9: HARNESS_DUMPCAP naming something that is no program ended in a traceback."""
    from harness.cli import main
    fake = tmp_path / "dumpcap"
    fake.write_bytes(content)
    fake.chmod(0o755)
    monkeypatch.setenv("HARNESS_DUMPCAP", str(fake))
    report = {finding.subject: finding for finding in findings()}
    assert report["dumpcap"].level == "FAIL" and "cannot be run" in report["dumpcap"].detail
    assert main(["lab", "tcp-lab", "--pcap-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err == (f"harness lab: tcp-lab: {fake} cannot be run ({os.strerror(8 if b'plain' in content else 2)}): "
                   f"point HARNESS_DUMPCAP at Wireshark's dumpcap, or unset it\n")
