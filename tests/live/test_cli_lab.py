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
