"""Display filters in expectations, evaluated by tshark through pyshark (harness.run.dissect): the
verdicts agree with tshark's two-pass dissection, a refused filter or a missing tshark is one line
for those steps only, results are cached, and a check without filters never starts tshark."""
import subprocess
import sys

import pytest

from harness.analysis.expect import Expectation, FilterOutcome
from harness.analysis.pipeline import analyse
from harness.cli import main
from harness.run import dissect as dissect_module
from harness.run.dissect import dissect
from harness.run.tools import ToolMissing, missing_message

from support import REPO, needs

LAB = REPO / "captures" / "lab" / "tcp-lab.pcapng"
LOSSY = REPO / "captures" / "corpus" / "lossy-router-r1.pcapng"


@pytest.fixture(autouse=True)
def tshark_here():
    needs.tool("tshark")
    dissect_module._cache.clear()


def test_verdicts_and_values_are_tsharks():
    conversation = analyse(LAB).conversations[0]
    outcome = dissect(LAB, conversation, ["tcp.window_size_value >= 1024", "tcp.len > 0"])
    big_window, data = outcome["tcp.window_size_value >= 1024"], outcome["tcp.len > 0"]
    assert isinstance(big_window, FilterOutcome) and big_window.passing == frozenset({1, 2})
    assert big_window.values[3] == {"tcp.window_size_value": "64"} and 1 not in big_window.values
    assert data.passing == frozenset({4, 6})


def test_tcp_analysis_flags_agree_with_tsharks_own_count_on_a_lossy_capture():
    conversation = max(analyse(LOSSY).conversations, key=lambda c: len(c.segments))
    outcome = dissect(LOSSY, conversation, ["!tcp.analysis.retransmission"])["!tcp.analysis.retransmission"]
    done = subprocess.run([needs.tool("tshark"), "-2", "-n", "-r", str(LOSSY), "-Y", "tcp.analysis.retransmission",
                           "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=120, check=True)
    retransmitted = {int(line) for line in done.stdout.split()}
    frames = {s.packet.frame for s in conversation.segments}
    assert retransmitted and frames - outcome.passing == retransmitted & frames
    spec = Expectation.parse('check filter "!tcp.analysis.retransmission"')
    problems = spec.problems(conversation, {"!tcp.analysis.retransmission": outcome})
    assert len(problems) == len(retransmitted & frames)
    assert str(problems[0]).startswith(f"`check filter` (line 1): tshark says frame {min(retransmitted & frames)} "
                                       f"does not match \"!tcp.analysis.retransmission\"")


def test_a_filter_tshark_refuses_is_its_own_words_and_the_others_still_count():
    conversation = analyse(LAB).conversations[0]
    outcome = dissect(LAB, conversation, ["tcp.nonesuch == 1", "tcp"])
    assert outcome["tcp.nonesuch == 1"].startswith("tshark: ") and "tcp.nonesuch" in outcome["tcp.nonesuch == 1"]
    assert outcome["tcp"].passing == frozenset(range(1, 12))


def test_without_tshark_only_the_filter_steps_fail_saying_what_to_install(monkeypatch):
    def no_tshark(name):
        raise ToolMissing(missing_message([name]))
    monkeypatch.setattr(dissect_module, "require", no_tshark)
    conversation = analyse(LAB).conversations[0]
    spec = Expectation.parse('C>S SYN\n...\ncheck filter "tcp"\ncheck handshake')
    problems = [str(p) for p in spec.problems(conversation, dissect(LAB, conversation, spec.filter_expressions))]
    assert problems == [f'`check filter` (line 3): filter "tcp" could not be evaluated: {missing_message(["tshark"])}']


def test_results_are_cached_per_file_and_filter(monkeypatch):
    conversation = analyse(LAB).conversations[0]
    dissect(LAB, conversation, ["tcp"])
    monkeypatch.setattr(dissect_module, "_packets", lambda *args: pytest.fail("tshark ran again"))
    assert dissect(LAB, conversation, ["tcp"])["tcp"].passing == frozenset(range(1, 12))


def test_check_runs_filters_and_says_which_frame_failed_with_tsharks_values(tmp_path, capsys):
    spec = tmp_path / "windows.txt"
    spec.write_text('C>S SYN where "tcp.window_size_value >= 1024"\n...\n'
                    'S>C ACK len=11 where "tcp.window_size_value >= 1024"\n...\n')
    assert main(["check", str(LAB), "--expect", str(spec)]) == 1
    out = capsys.readouterr().out
    assert 'where: tshark says frame 6 does not match "tcp.window_size_value >= 1024" (tcp.window_size_value=64)' in out
    spec.write_text('C>S SYN where "tcp.window_size_value >= 1024"\n...\ncheck filter "!tcp.analysis.flags"\n')
    assert main(["check", str(LAB), "--expect", str(spec)]) == 0


def test_a_check_without_filters_never_starts_tshark_nor_imports_pyshark():
    code = ("import sys; from harness.cli import main; "
            f"status = main(['check', {str(LAB)!r}, '--expect', 'tcp_lab']); "
            "print(status, 'harness.run.dissect' in sys.modules, 'pyshark' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "0 False False"


def test_the_process_is_left_as_pyshark_found_it():
    import signal
    conversation = analyse(LAB).conversations[0]
    before = signal.getsignal(signal.SIGCHLD)
    dissect(LAB, conversation, ["tcp.len > 0"])
    assert signal.getsignal(signal.SIGCHLD) == before
    previous = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(previous)
    assert previous == -1, "no signal wakeup fd may be left behind"
    for _ in range(20):      # exits are reaped as usual, with no BlockingIOError on a stale wakeup fd
        assert subprocess.run([sys.executable, "-c", "pass"], timeout=10).returncode == 0
