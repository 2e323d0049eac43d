"""`harness expect-from`: an expectation written from a known-good conversation matches it when fed
back to `check`, on every conversation of every reference capture; and what it leaves out."""
import pytest

from harness.analysis.expect import Expectation, write_expectation
from harness.analysis.pipeline import analyse
from harness.analysis.tracker import conversations
from harness.cli import main

from support import REPO
from support.packets import HANDSHAKE, tcp

REFERENCE = sorted(p for sub in ("lab", "corpus") for p in (REPO / "captures" / sub).glob("*.pcap*"))


@pytest.mark.parametrize("path", REFERENCE, ids=[p.name for p in REFERENCE])
def test_every_reference_conversation_matches_the_expectation_written_from_it(path):
    for conversation in analyse(path).conversations:
        text = write_expectation(conversation, str(path))
        assert Expectation.parse(text).problems(conversation) == [], text


def test_binary_and_long_payloads_are_left_to_len_and_checks_only_when_they_pass():
    (conversation,) = conversations(tcp(HANDSHAKE + [("C", "PA", b"\xff\xfe"), ("S", "PA", b"x" * 65),
                                                     ("C", "PA", b'say "hi"\n'), ("S", "R", b"")]))
    text = write_expectation(conversation)
    assert "C>S PSH,ACK len=2 seq=1 ack=1\n" in text
    assert "S>C PSH,ACK len=65 seq=1 ack=3\n" in text
    assert 'data="say \\"hi\\"\\n"' in text
    assert "check handshake" in text and "check graceful-close" not in text
    assert Expectation.parse(text).problems(conversation) == []


def test_the_command_writes_a_file_that_check_then_passes(tmp_path, capsys):
    capture = REPO / "captures" / "lab" / "tcp-lab.pcapng"
    out = tmp_path / "mine.txt"
    assert main(["expect-from", str(capture), "--conversation", "1", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} from conversation 1 (tcp 127.0.0.1:")
    assert out.read_text().splitlines()[2].startswith("C>S SYN len=0 seq=0 win=65495 <mss 65495,sackOK,TS val * ecr *")
    assert main(["check", str(capture), "--expect", str(out)]) == 0


def test_a_damaged_capture_or_a_missing_conversation_is_one_line_and_exit_2(tmp_path, capsys):
    damaged = tmp_path / "cut.pcapng"
    damaged.write_bytes((REPO / "captures" / "lab" / "tcp-lab.pcapng").read_bytes()[:700])
    assert main(["expect-from", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a damaged capture is no known-good conversation to write from" in err
    assert main(["expect-from", str(REPO / "captures" / "lab" / "udp-lab.pcapng"), "--proto", "tcp"]) == 2
    assert "no TCP conversations in its " in capsys.readouterr().err
