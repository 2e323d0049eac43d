"""`harness lab`: the lab scenarios run under capture from the command line."""
import pytest

from harness.cli import main


@pytest.mark.capture
def test_lab_command_runs_all_scenarios_and_prints_verdicts(capture_backend, tmp_path, capsys):
    assert main(["lab", "--quiet", "--backend", capture_backend, "--pcap-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"PASS {name}: {expectation} against {tmp_path / name}.pcapng" for name, expectation in
                   (("tcp-lab", "tcp_lab"), ("udp-lab", "udp_lab"), ("tcp-broken-server", "tcp_broken_server"))]


def test_lab_without_dumpcap_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HARNESS_DUMPCAP", "/nonexistent/dumpcap")
    assert main(["lab", "tcp-lab", "--pcap-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("harness lab: tcp-lab: HARNESS_DUMPCAP=/nonexistent/dumpcap is not an "
                                       "executable dumpcap: fix the variable or unset it\n")
    assert not list(tmp_path.iterdir()), "a capture that never started leaves no file behind"


@pytest.mark.capture
def test_seed_ports_runs_the_lab_where_the_reports_filters_find_it(capture_backend, tmp_path, capsys):
    import subprocess
    from support import needs
    assert main(["lab", "--quiet", "--seed-ports", "--backend", capture_backend, "--pcap-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["PASS tcp-broken-server", "PASS tcp-lab", "PASS udp-lab"]
    for name, report_filter, frames in (("tcp-lab", "tcp.port==8080", 11), ("udp-lab", "udp.port==8081", 4),
                                        ("tcp-broken-server", "tcp.port==8080", 6)):
        done = subprocess.run([needs.tool("tshark"), "-n", "-r", str(tmp_path / f"{name}.pcapng"), "-Y", report_filter,
                               "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=60,
                              check=True)
        assert len(done.stdout.split()) == frames, (name, report_filter, done.stdout)


def test_seed_ports_taken_is_one_line_naming_the_process(tmp_path, capsys):
    import os
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 8081))
        assert main(["lab", "udp-lab", "--seed-ports", "--pcap-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("harness lab: udp-lab: port 8081 (udp) is already in use by ")
    assert str(os.getpid()) in err


@pytest.mark.capture
def test_lab_with_its_reader_gone_runs_every_scenario_and_exits_with_their_verdict(capture_backend, tmp_path):
    """`harness lab | head -1`: the reader leaves after a line; every scenario still runs and is judged."""
    import os
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "harness", "lab", "--backend", capture_backend,
                               "--pcap-dir", str(tmp_path)], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
    assert sorted(p.name for p in tmp_path.glob("*.pcapng")) == ["tcp-broken-server.pcapng", "tcp-lab.pcapng",
                                                                 "udp-lab.pcapng"]


@pytest.mark.capture
def test_concurrent_runs_into_one_directory_each_judge_their_own_capture(capture_backend, tmp_path):
    """Issue 15 item 1: runs sharing a pcap directory shared one .partial name; most crashed and a
    survivor could PASS on the other's capture. Each capture is now private until its verdict is in."""
    import subprocess
    import sys
    from harness.analysis.pipeline import analyse
    runs = [subprocess.Popen([sys.executable, "-m", "harness", "lab", "tcp-lab", "--quiet", "--backend",
                              capture_backend, "--pcap-dir", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            for _ in range(4)]
    outcomes = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    for out, err, status in outcomes:
        assert (status, err) == (0, ""), (out, err)
        assert out == f"PASS tcp-lab: tcp_lab against {tmp_path / 'tcp-lab.pcapng'}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tcp-lab.pcapng"], "a private file was left behind"
    assert len(analyse(tmp_path / "tcp-lab.pcapng").conversations) == 1, "the file holds one run's capture"
