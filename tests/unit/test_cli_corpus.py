"""Every command works on every reference capture, and the container format does not change the answer."""
import gzip
import json
import shutil
import subprocess

import pytest

from harness.cli import main
from harness.wire.reader import open_capture
from support import REPO

CAPTURES = REPO / "captures"
REFERENCE = sorted(p for p in CAPTURES.rglob("*.pcapng") if "runs" not in p.parts)
IDS = [str(p.relative_to(CAPTURES)) for p in REFERENCE]


def summary_json(path, capsys):
    status = main(["summary", "--json", str(path)])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", REFERENCE, ids=IDS)
def test_summary_show_check_and_annotate_work_on_every_reference_capture(path, tmp_path, capsys):
    status, records = summary_json(path, capsys)
    assert status == 0 and records
    assert main(["show", str(path), "--svg", str(tmp_path / "drawing.svg")]) == 0
    shown = capsys.readouterr().out
    assert shown.count("conversation ") == len(records)
    annotated = tmp_path / "annotated.pcapng"
    status = main(["check", str(path), "--expect", "tcp_graceful", "--annotate", str(annotated)])
    assert status in (0, 1), "a readable capture is a match or a mismatch, never unusable"
    capsys.readouterr()
    with open_capture(path) as original, open_capture(annotated) as copy:
        assert [r.data for r in original] == [r.data for r in copy]


@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap (from tshark's packages) is not installed")
@pytest.mark.parametrize("editcap_format", ["pcap", "nsecpcap", "pcapng"])
@pytest.mark.parametrize("path", REFERENCE, ids=IDS)
def test_the_same_capture_in_another_format_or_gzipped_summarizes_the_same(path, editcap_format, tmp_path, capsys):
    _, expected = summary_json(path, capsys)
    converted = tmp_path / f"converted.{editcap_format}"
    subprocess.run(["editcap", "-F", editcap_format, str(path), str(converted)], check=True, capture_output=True)
    zipped = tmp_path / f"converted.{editcap_format}.gz"
    zipped.write_bytes(gzip.compress(converted.read_bytes()))
    for variant in (converted, zipped):
        status, records = summary_json(variant, capsys)
        assert status == 0
        assert without_times(records) == without_times(expected), variant.name


def without_times(records):
    # A microsecond pcap rounds the timestamps, and the uid and duration derive from them.
    return [{k: v for k, v in record.items() if k not in ("ts", "uid", "duration")} for record in records]
