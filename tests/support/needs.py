"""Tests that need a system tool ask for it here: its path, or a skip that says what to install
(the words of harness/run/tools.txt, as every message of harness's own). Under HARNESS_REQUIRE_CAPTURE
(set by .ci/run, where scripts/setup.sh installed every tool) a missing tool fails the test instead:
CI never skips silently."""
from __future__ import annotations

import pytest

from harness.run import tools
from harness.pytest_plugin import capture_required


def tool(name: str) -> str:
    found = tools.find(name)
    if found is None:
        message = tools.missing_message([name])
        if capture_required():
            pytest.fail(f"{message} (HARNESS_REQUIRE_CAPTURE is set: scripts/setup.sh installs it)", pytrace=False)
        pytest.skip(message)
    return found
