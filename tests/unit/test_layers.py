"""The architecture, held by tests: the pure layers import no edge, the public face is complete and
documented, `import harness` and the pytest plugin load nothing they do not need, and every
exception harness defines is in the one tree."""
from __future__ import annotations

import ast
import inspect
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.errors import HarnessError
from support import REPO

REPO = REPO
PACKAGE = REPO / "harness"
PURE = ("wire", "analysis", "render")
# What a pure module may never import: the edges, and the modules that run, wait or talk.
FORBIDDEN = ("harness.run", "harness.lab", "harness.cli", "harness.doctor", "harness.pytest_plugin",
             "subprocess", "socket", "pytest", "threading", "multiprocessing", "signal", "select", "asyncio")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


@pytest.mark.parametrize("layer", PURE)
def test_the_pure_layers_import_no_edge(layer):
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, name in _imports(path):
            if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN):
                offenders.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not offenders, "\n".join(offenders)


def test_data_flows_down_the_layers():
    # wire knows nothing of analysis or render; analysis nothing of render.
    above = {"wire": ("harness.analysis", "harness.render"), "analysis": ("harness.render",)}
    offenders = []
    for layer, banned in above.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            offenders += [f"{path.relative_to(REPO)}:{line}: imports {name}" for line, name in _imports(path)
                          if name.startswith(banned)]
    assert not offenders, "\n".join(offenders)


def test_every_public_name_resolves_and_says_what_it_is():
    undocumented = []
    for name in harness.__all__:
        value = getattr(harness, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and not inspect.getdoc(value):
            undocumented.append(name)
    assert not undocumented, f"public names without a docstring: {undocumented}"
    assert sorted(dir(harness)) == sorted(harness.__all__)
    with pytest.raises(AttributeError):
        harness.no_such_name  # noqa: B018


def _loaded_after(code: str, cwd: Path) -> list:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                           "print('\\n'.join(m for m in sys.modules if m == 'harness' or m.startswith('harness.')))"],
                          capture_output=True, text=True, check=True, cwd=cwd, timeout=120)
    return sorted(done.stdout.split())


def test_import_harness_loads_nothing_else(tmp_path):
    assert _loaded_after("import harness", tmp_path) == ["harness"]


def test_collecting_a_project_without_capture_loads_no_capture_or_process_module(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    pytester.makeconftest("""
import sys
def pytest_sessionfinish(session):
    with open("loaded.txt", "w") as out:
        out.write("\\n".join(sorted(m for m in sys.modules if m.startswith("harness"))))
""")
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    result.assert_outcomes()
    loaded = (pytester.path / "loaded.txt").read_text().split()
    assert loaded == ["harness", "harness.pytest_plugin", "harness.run"], loaded


def _exception_classes():
    for path in sorted(PACKAGE.rglob("*.py")):
        module_name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if module_name == "harness.__main__" or (module_name.startswith("harness.lab.")
                                                 and module_name != "harness.lab.scenarios"):
            continue    # the lab's programs run as processes of their own, not as the library
        module = __import__(module_name, fromlist=["_"])
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module_name:
                yield value


def test_every_exception_harness_defines_is_a_harness_error():
    outside = [f"{error.__module__}.{error.__qualname__}" for error in _exception_classes()
               if not issubclass(error, HarnessError) and not issubclass(error, AssertionError)
               and not error.__name__.startswith("_")]
    assert not outside, f"exceptions outside harness.errors' tree: {outside}"


def test_addresses_are_written_as_inet_ntop_writes_them():
    from harness.wire.decode import address_text
    rng = random.Random(7)
    special = [bytes(16), bytes(15) + b"\1", bytes(10) + b"\xff\xff\1\2\3\4", bytes(12) + b"\1\2\3\4",
               bytes(12) + b"\0\0\0\2", bytes(11) + b"\1\1\2\3\4", b"\x20\x01\x0d\xb8" + bytes(12)]
    groups = [[rng.choice([0, 0, 1, 0xFFFF, rng.randrange(65536)]) for _ in range(8)] for _ in range(20000)]
    cases = special + [b"".join(g.to_bytes(2, "big") for g in group) for group in groups]
    for raw in cases:
        assert address_text(raw) == socket.inet_ntop(socket.AF_INET6, raw), raw.hex()
    for raw in (bytes(4), b"\x7f\0\0\1", bytes([255] * 4)):
        assert address_text(raw) == socket.inet_ntop(socket.AF_INET, raw)
