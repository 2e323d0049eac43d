"""The completeness protocol's own failures, with a backend that never delivers (no capture needed)."""
import pytest

from harness.run.capture import CaptureIncomplete
from harness.run.capture.session import Capture


class _Silent(Capture):
    """A backend that starts and runs, but nothing ever comes out of it."""
    backend = "silent"
    needs_flush_burst = False

    def _launch(self, full_filter: str) -> None:
        pass

    def _halt(self) -> None:
        pass

    def _kill(self) -> None:
        pass

    def _reap(self) -> None:
        pass


def test_a_start_never_proven_names_no_file_it_has_removed(tmp_path):
    """Issue 15 item 9: the start timeout named a .partial file that abort() had just deleted."""
    capture = _Silent(tmp_path / "never.pcapng", start_timeout=0.2)
    with pytest.raises(CaptureIncomplete) as raised:
        capture.start()
    assert str(raised.value) == ("silent on lo did not show its start probe within 0.2 s; "
                                 "the capture cannot be proven complete")
    assert list(tmp_path.iterdir()) == [], "the empty file is removed"
