"""bench/bench.py keeps working: its workloads are the lab conversation and bulk transfers with loss, and a
tiny run prints every figure.

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


def _tables(stdout: str, header_start: str) -> list:
    """Every table whose header starts so, as rows of cells."""
    lines = stdout.splitlines()
    tables = []
    for start in [i for i, line in enumerate(lines) if line.startswith(header_start)]:
        rows = []
        for line in lines[start + 1:]:
            if not line.strip():
                break
            rows.append(re.split(r"\s{2,}", line.strip()))
        tables.append(rows)
    return tables


def _rows(stdout: str, header_start: str) -> list:
    return _tables(stdout, header_start)[0]


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


def test_bulk_workload_is_long_transfers_with_loss_in_both_formats(tmp_path):
    workload = bench.write_bulk_workload(tmp_path, 2500)
    assert workload.kind == "bulk" and workload.packets >= 2500 and workload.conversations == 3
    records = {}
    for path in (workload.pcap, workload.pcapng):
        with open_capture(path) as capture:
            times = [record.time_ns for record in capture]
        assert len(times) == workload.packets and times == sorted(times)
        records[path.suffix] = [summarize(c) for c in analyse(path, keep_segments=False).conversations]
    assert records[".pcap"] == records[".pcapng"]
    assert len(records[".pcap"]) == workload.conversations
    for record in records[".pcap"]:
        assert record["conn_state"] == "SF" and record["orig_pkts"] + record["resp_pkts"] > 800
        # what loss leaves on the wire, as tshark counts it; every byte there in the end
        assert record["retransmissions"] and record["out_of_order"] and record["duplicate_acks"]
        assert record["missed_bytes"] == 0 and record["orig_bytes"] % bench.BULK_MSS == 0
    assert bench.write_bulk_workload(tmp_path, 2500) == workload     # cached, by size
    smaller = bench.write_bulk_workload(tmp_path, 1000)
    with open_capture(smaller.pcap) as capture:
        head = [record.data for record in capture]
    with open_capture(workload.pcap) as capture:
        assert [record.data for _, record in zip(head, capture)] == head    # the start of a larger one


def test_split_workload_is_the_lab_workload_in_files(tmp_path):
    paths = bench.write_split_workload(tmp_path, 660, files=6)
    assert len(paths) == 6
    whole = []
    for path in paths:
        with open_capture(path) as capture:
            whole += [record.data for record in capture]
    with open_capture(bench.write_workload(tmp_path, 660).pcap) as capture:
        assert whole == [record.data for record in capture]


def test_a_command_refused_by_argparse_is_not_available_not_failed(tmp_path):
    workload = bench.write_workload(tmp_path, 11)
    tool = bench.Tool("jobs", "harness summary -j 2", bench.harness_command() + ["summary", "--no-such-option",
                                                                                  str(workload.pcap)])
    bench.measure_tools([tool], workload, 1, progress=lambda message: None)
    assert not tool.failure and tool.note == "not available in this harness (unrecognized arguments: --no-such-option)"
    assert "not available in this harness" in bench.jobs_table([tool])


def test_client_ports_wrap_onto_the_next_client_address_so_four_tuples_never_repeat():
    count = len(bench.CLIENT_PORTS) + 3
    endpoints = [(c.client_ip, c.client_port) for _, c, _ in bench.lab_conversations(count)]
    assert len(set(endpoints)) == count
    assert endpoints[-1] == (bench.FIRST_CLIENT_IP + 1, bench.CLIENT_PORTS[2])
    assert bench.LAB_SERVER_PORT not in bench.CLIENT_PORTS


def test_a_tiny_run_prints_a_row_of_figures_for_every_tool(tmp_path):
    done = _run_bench(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("== ")] == \
        ["== lab workload", "== bulk workload"]
    tool_tables = _tables(done.stdout, "tool ")
    assert len(tool_tables) == 2
    for rows in tool_tables:
        _assert_tool_rows(rows)
    assert tool_tables[0][0][1] == "2,002"
    targets = _rows(done.stdout, "target ")
    commands = [label for label in bench_command_labels()]
    for workload in ("lab", "bulk"):
        mine = [row for row in targets if f"({workload}" in row[0]]
        assert len(mine) == 4 + 2 * len(commands), mine
        assert any(row[0].startswith("harness summary speed vs tshark -q -z conv,tcp") and row[2] == ">= 4x"
                   for row in mine)
    assert len([row for row in targets if "-j 2" in row[0]]) == 2
    assert targets[-1][0] == "lab scenario median, capture start to verdict"
    assert all(row[-1] in ("met", "NOT MET") or row[-1].startswith(("not judged", "not measured"))
               for row in targets), targets
    assert "lab scenario: skipped" in done.stdout
    for stages in _tables(done.stdout, "stage "):
        assert [row[0] for row in stages] == [label for label, _analyse in bench.STAGES.values()] + \
            [TOOL_LABELS["harness"]]
        for row in stages:
            assert len(row) == 3 and re.fullmatch(NUMBER, row[1]) and re.fullmatch(r"\d+%", row[2]), row
    command_tables = _tables(done.stdout, "command ")
    assert len(command_tables) == 3     # lab, bulk, many files
    for rows in command_tables[:2]:
        assert [row[0].split(" --conversation")[0] for row in rows] == \
            [label.split(" --conversation")[0] for label in commands] + [bench.FLOW_GRAPH]
        for row in rows:
            if row[0] == bench.FLOW_GRAPH and len(row) == 2:
                assert row[1].startswith("tshark: not installed")
                continue
            # wall s, cpu s, peak RSS MB, time / tshark flow
            assert len(row) == 5 and all(re.fullmatch(NUMBER, cell) for cell in row[1:4]), row
            assert re.fullmatch(NUMBER + "x", row[4]), row
    jobs = command_tables[2]
    assert len(jobs) == 4
    for row in jobs:
        if len(row) == 2:       # -j not there yet: said, not failed
            assert row[1].startswith("not available in this harness"), row
            continue
        # wall s, cpu s, cpu / wall, peak RSS MB, -j 1 wall / this
        assert len(row) == 6 and all(re.fullmatch(NUMBER, cell) for cell in row[1:5]), row
        assert re.fullmatch(NUMBER + "x", row[5]), row


def bench_command_labels() -> list:
    workload = bench.Workload("lab", Path("x.pcap"), Path("x.pcapng"), 2, 22)
    return [tool.label for tool in bench.command_set(workload, Path("/nonexistent")) if tool.name != "tshark-flow"]


def _assert_tool_rows(rows: list) -> None:
    for name, label in TOOL_LABELS.items():
        row = next((row for row in rows if row[0].startswith(label)), None)
        assert row is not None, f"no row for {name} in {rows}"
        if name in ("dpkt", "pyshark") and len(row) == 2:   # the optional bench extra's peers
            assert row[1] == f"{name}: not installed (pip install {name})"
            continue
        # packets, wall s, cpu s, packets/s, peak RSS MB (* when measured on a subset), time / harness
        assert len(row) == 7, row
        for cell in row[1:5]:
            assert re.fullmatch(NUMBER, cell), (name, row)
        assert re.fullmatch(NUMBER + r"\*?", row[5]), (name, row)
        assert re.fullmatch(NUMBER + "x", row[6]), (name, row)
    assert len({row[1] for row in rows if len(row) == 7}) == 1      # every tool read the same packets


def test_without_dpkt_its_row_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "dpkt.py").write_text("raise ImportError('No module named dpkt')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")])))
    done = _run_bench(tmp_path / "out", "--tools", "harness,dpkt", "--workload", "lab", "--skip-commands",
                      "--skip-jobs", env=env)
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
