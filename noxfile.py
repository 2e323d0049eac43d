"""The suite's pure part on the oldest and newest Python that requires-python admits and this machine has.

    nox                 # the `interpreters` session, once per interpreter found
    nox --list          # which interpreters were found

The pure part is what does not capture, start subjects or build namespaces: the readers, the
analysis, the C scanner held to the pure-Python analysis (so the extension must build on each),
the expectations, and the command line on saved captures. Each interpreter gets a fresh virtual
environment and a real (not editable) install of the package, so the wheel, its package data and
its C extension are what is tested. Interpreters are looked for on PATH and in pyenv's versions
(`pyenv root`), which is where this project's machines keep them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PURE_TESTS = ["tests/unit"]
NEWEST_MINOR_CONSIDERED = 20


def _minimum_version() -> tuple:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', text).groups()
    return int(major), int(minor)


def _pyenv_bins() -> list:
    pyenv = shutil.which("pyenv")
    root = os.environ.get("PYENV_ROOT")
    if not root and pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    return [str(path / "bin") for path in sorted(versions.glob("*")) if (path / "bin").is_dir()]


def admitted_interpreters() -> list:
    """'3.9', '3.13', ...: the oldest and the newest admitted version found (one if only one is)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_pyenv_bins()])
    os.environ["PATH"] = search            # so that nox finds them by version as it always does
    major, minor = _minimum_version()
    found = [f"{major}.{m}" for m in range(minor, NEWEST_MINOR_CONSIDERED)
             if shutil.which(f"python{major}.{m}", path=search)]
    return sorted({found[0], found[-1]}, key=lambda v: int(v.split(".")[1])) if found else []


nox.options.sessions = ["interpreters"]
nox.options.error_on_missing_interpreters = True


@nox.session(python=admitted_interpreters())
def interpreters(session: nox.Session) -> None:
    """The pure part of the suite on this interpreter, against a real install of the package."""
    # setuptools too: a test builds the extension by hand (3.12+ virtual environments come without it).
    session.install(f"{ROOT}[test]", "setuptools")
    # Run from the tests' own directory: the checkout's harness/ must not shadow the installed one.
    session.chdir(ROOT / "tests")
    session.run("pytest", "-p", "no:cacheprovider", "-q", "-m", "not capture", "--rootdir", str(ROOT),
                "-c", str(ROOT / "pyproject.toml"), *[str(ROOT / test) for test in PURE_TESTS], *session.posargs,
                env={"HARNESS_REQUIRE_SPEEDUPS": "1"})
