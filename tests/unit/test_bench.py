"""bench/bench.py keeps working: its workload is the lab conversation, and a tiny run prints every figure.

These check that the benchmark runs and prints numbers; they never judge the numbers.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path


from harness.wire.reader import open_capture
from harness.analysis.summary import summarize
from harness.analysis.pipeline import analyse
from support import REPO

ROOT = REPO
BENCH = ROOT / "bench" / "bench.py"
LAB_CAPTURE = ROOT / "captures" / "lab" / "tcp-lab.pcapng"
TOOL_LABELS = {
    "harness": "harness summary --json",
    "scapy": "scapy rdpcap + conversations",
    "dpkt": "dpkt + conversations",
    "pyshark": "pyshark json (",
    "tshark": "tshark -q -z conv,tcp",
}
NUMBER = r"[\d,]+(\.\d+)?"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _run_bench(out_dir: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), "--packets", "2000", "--repeat", "1", "--skip-scenario",
                           "--pyshark-packets", "100", "--out-dir", str(out_dir), *extra],
                          capture_output=True, text=True, timeout=120, env=env)


def _rows(stdout: str, header_start: str) -> list:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_generated_conversation_is_the_lab_capture_byte_for_byte():
    lab_parameters = bench.LabConversation(client_ip=0x7F000001, client_port=39808, client_isn=2699672959,
                                           server_isn=266598776, client_tsval=109693791, server_tsval=3810529007,
                                           client_ip_id=0x29BE, server_ip_id=0xE2CD)
    with open_capture(LAB_CAPTURE) as capture:
        lab_frames = [record.data for record in capture]
    assert bench.lab_frames(lab_parameters) == lab_frames


def test_workload_is_complete_distinct_lab_conversations_in_both_formats(tmp_path):
    workload = bench.write_workload(tmp_path, 100)
    assert workload.packets == 110
    records = {}
    for path in (workload.pcap, workload.pcapng):
        with open_capture(path) as capture:
            times = [record.time_ns for record in capture]
        assert len(times) == 110 and times == sorted(times)
        records[path.suffix] = [summarize(c) for c in analyse(path, keep_segments=False).conversations]
    assert records[".pcap"] == records[".pcapng"]
    shapes = {(r["conn_state"], r["history"], r["orig_pkts"], r["resp_pkts"], r["orig_bytes"], r["resp_bytes"],
               r["retransmissions"], r["out_of_order"], r["duplicate_acks"], r["missed_bytes"])
              for r in records[".pcap"]}
    assert shapes == {("SF", "ShADadfF", 6, 5, 2, 11, 0, 0, 0, 0)}
    assert len({(r["id.orig_h"], r["id.orig_p"]) for r in records[".pcap"]}) == 10
    assert bench.write_workload(tmp_path, 100) == workload     # cached, by size
    with open(workload.pcap, "rb") as file:
        assert file.read(24)[20:] == b"\x01\x00\x00\x00"      # Ethernet


def test_client_ports_wrap_onto_the_next_client_address_so_four_tuples_never_repeat():
    count = len(bench.CLIENT_PORTS) + 3
    endpoints = [(c.client_ip, c.client_port) for _, c, _ in bench.lab_conversations(count)]
    assert len(set(endpoints)) == count
    assert endpoints[-1] == (bench.FIRST_CLIENT_IP + 1, bench.CLIENT_PORTS[2])
    assert bench.LAB_SERVER_PORT not in bench.CLIENT_PORTS


def test_a_tiny_run_prints_a_row_of_figures_for_every_tool(tmp_path):
    done = _run_bench(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(done.stdout, "tool ")
    for name, label in TOOL_LABELS.items():
        row = next((row for row in rows if row[0].startswith(label)), None)
        assert row is not None, f"no row for {name} in:\n{done.stdout}"
        if name in ("dpkt", "pyshark") and len(row) == 2:   # the optional bench extra's peers
            assert row[1] == f"{name}: not installed (pip install {name})"
            continue
        # packets, wall s, cpu s, packets/s, peak RSS MB (* when measured on a subset), time / harness
        assert len(row) == 7, row
        for cell in row[1:5]:
            assert re.fullmatch(NUMBER, cell), (name, row)
        assert re.fullmatch(NUMBER + r"\*?", row[5]), (name, row)
        assert re.fullmatch(NUMBER + "x", row[6]), (name, row)
        assert row[1] == "2,002"
    targets = _rows(done.stdout, "target ")
    assert len(targets) == 5
    assert all(row[-1] in ("met", "NOT MET") or row[-1].startswith(("not judged", "not measured"))
               for row in targets), targets
    assert "lab scenario: skipped" in done.stdout
    stages = _rows(done.stdout, "stage ")
    assert [row[0] for row in stages] == [label for label, _analyse in bench.STAGES.values()] + [TOOL_LABELS["harness"]]
    for row in stages:
        assert len(row) == 3 and re.fullmatch(NUMBER, row[1]) and re.fullmatch(r"\d+%", row[2]), row


def test_without_dpkt_its_row_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "dpkt.py").write_text("raise ImportError('No module named dpkt')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")])))
    done = _run_bench(tmp_path / "out", "--tools", "harness,dpkt", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(done.stdout, "tool ")
    assert ["dpkt + conversations", "dpkt: not installed (pip install dpkt)"] in rows
    assert any(line.startswith("harness summary speed vs dpkt analysis") and line.endswith("not measured")
               for line in done.stdout.splitlines())


def test_a_tool_that_fails_is_reported_as_failed_not_timed(tmp_path):
    workload = bench.write_workload(tmp_path, 11)
    tool = bench.Tool("broken", "broken", [sys.executable, "-c", "import sys; sys.exit(2)"])
    bench.measure_tools([tool], workload, 1, progress=lambda message: None)
    assert tool.failure.startswith("broken: exit status 2") and not tool.usable
    assert "FAILED: broken: exit status 2" in bench.tools_table([tool], None)
