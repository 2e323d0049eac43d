"""The command line, in process, on the reference captures: exit 0 match, 1 mismatch, 2 unusable input."""
import json
import os
from pathlib import Path

import pytest

from harness.analysis.expect import BUILTIN_DIR
from harness.cli import main
from support import REPO

LAB = REPO / "captures" / "lab"


@pytest.mark.parametrize("name, expectation", [("tcp-lab", "tcp_lab"), ("udp-lab", "udp_lab"),
                                               ("tcp-broken-server", "tcp_broken_server"),
                                               ("tcp-lab", "tcp_graceful")])
def test_reference_captures_match_their_expectations(name, expectation, capsys):
    assert main(["check", str(LAB / f"{name}.pcapng"), "--expect", expectation]) == 0
    assert capsys.readouterr().out.startswith(f"PASS {LAB / name}.pcapng: conversation 1 matches ")


def test_a_mismatch_exits_1_with_the_difference_and_the_ladder(capsys):
    assert main(["check", str(LAB / "tcp-broken-server.pcapng"), "--expect", "tcp_graceful"]) == 1
    out = capsys.readouterr().out
    assert "  - graceful-close: server sent RST at frame 6 (an abortive close, not a graceful one)" in out
    assert "<--- RST, ACK      seq=1    ack=3    len=0" in out


def test_check_with_a_spec_file(tmp_path, capsys):
    spec = tmp_path / "two.txt"
    spec.write_text('C>S UDP len=2 data="YP"\n...\n')
    assert main(["check", str(LAB / "udp-lab.pcapng"), "--expect", str(spec)]) == 0


def test_show_draws_every_conversation(capsys):
    assert main(["show", str(LAB / "tcp-lab.pcapng")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"pcap: {LAB / 'tcp-lab.pcapng'}"
    assert len([line for line in out if "--->" in line or "<---" in line]) == 11


@pytest.mark.parametrize("argv, message", [
    (["show", "/nonexistent.pcap"], "harness show: /nonexistent.pcap: no such file"),
    (["show", str(LAB / "tcp-lab.pcapng"), "--conversation", "2"], "tcp-lab.pcapng has no conversation 2: it has 1 conversation (see `harness summary`)"),
    (["check", str(LAB / "tcp-lab.pcapng"), "--expect", "/nonexistent.txt"],
     "harness check: no expectation '/nonexistent.txt': not a file, nor a built-in one (http_request_reply, tcp_broken_server, "
     "tcp_bulk_lossy, tcp_graceful, tcp_lab, udp_lab)"),
    (["lab", "no-such-scenario"], "harness lab: unknown scenario no-such-scenario; choose from tcp-lab"),
])
def test_unusable_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_bad_spec_names_file_line_and_column(tmp_path, capsys):
    spec = tmp_path / "bad.txt"
    spec.write_text("C>S SYN\nC>S SYN,NOPE\n")
    assert main(["check", str(LAB / "tcp-lab.pcapng"), "--expect", str(spec)]) == 2
    assert capsys.readouterr().err == f"harness check: {spec}:2:9: unknown TCP flag 'NOPE'; known: SYN, FIN, RST, PSH, ACK, URG, ECE, CWR\n"


def test_a_truncated_capture_shows_what_came_before_and_exits_2(tmp_path, capsys):
    whole = (LAB / "tcp-lab.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(whole[:-150])
    assert main(["show", str(cut)]) == 2
    captured = capsys.readouterr()
    assert "conversation 1: tcp" in captured.out
    assert captured.err.startswith(f"harness show: {cut}: truncated ") and " at byte " in captured.err
    assert captured.err.count("\n") == 1


def test_not_a_capture_file_is_one_line(tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, this is not a pcap\n")
    assert main(["show", str(junk)]) == 2
    err = capsys.readouterr().err
    assert str(junk) in err and err.count("\n") == 1


def test_summary_json_uses_zeek_names(capsys):
    assert main(["summary", "--json", str(LAB / "tcp-lab.pcapng")]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert {key: record[key] for key in ("proto", "id.orig_h", "conn_state", "history", "orig_pkts", "resp_pkts",
                                         "orig_bytes", "resp_bytes", "orig_payloads", "resp_payloads",
                                         "retransmissions")} == {
        "proto": "tcp", "id.orig_h": "127.0.0.1", "conn_state": "SF", "history": "ShADadfF", "orig_pkts": 6,
        "resp_pkts": 5, "orig_bytes": 2, "resp_bytes": 11, "orig_payloads": [2], "resp_payloads": [11],
        "retransmissions": 0}
    assert record["uid"].startswith("C") and record["id.resp_p"] != record["id.orig_p"]


@pytest.mark.parametrize("command", ["summary", "show", "check"])
def test_zeek_checksums_verifies_checksums_as_zeek_does_without_dash_c(command, capsys):
    # Zeek's trace: the client's segments carry bad TCP checksums (its conn.log: OTH C, then ^hCadf).
    trace = str(REPO / "captures" / "zeek" / "traces" / "chksums" / "localhost-bad-chksum.pcap")
    argv = {"summary": ["summary", "--json", trace], "show": ["show", trace],
            "check": ["check", trace, "--expect", "tcp_graceful"]}[command]
    plain = main(argv)
    plain_out = capsys.readouterr().out
    verified = main([*argv, "--zeek-checksums"])
    verified_out = capsys.readouterr().out
    if command == "summary":
        assert plain == verified == 0
        assert [r["history"] for r in json.loads(plain_out)] == ["ShADadFf"]
        assert [r["history"] for r in json.loads(verified_out)] == ["C", "^hCadf"]
    elif command == "show":
        assert plain == verified == 0
        assert plain_out.count("conversation ") < verified_out.count("conversation ")
    else:
        assert (plain, verified) == (0, 1)


def test_summary_of_several_files_is_keyed_by_file_and_the_table_has_a_row_each(capsys):
    files = [str(LAB / f"{name}.pcapng") for name in ("udp-lab", "tcp-broken-server")]
    assert main(["summary", "--json", *files]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [[r["conn_state"] for r in document[f]] for f in files] == [["SF"], ["RSTR"]]
    assert main(["summary", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"== {files[0]}" and out[1].split()[:4] == ["#", "uid", "proto", "id.orig_h"]
    assert out[2].split()[7:9] == ["SF", "Dd"]


def test_summary_of_a_damaged_file_warns_summarizes_and_exits_2(tmp_path, capsys):
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes((LAB / "tcp-lab.pcapng").read_bytes()[:-150])
    assert main(["summary", "--json", str(cut)]) == 2
    captured = capsys.readouterr()
    (record,) = json.loads(captured.out)
    assert record["conn_state"] in ("S1", "S3", "SF") and record["orig_pkts"] >= 3
    assert captured.err.startswith(f"harness summary: {cut}: truncated ")


def test_an_icmp_port_unreachable_is_tied_to_its_datagram(tmp_path, capsys):
    from scapy.all import ICMP, IP, UDP, Ether, wrpcap
    path = tmp_path / "unreachable.pcap"
    datagram = IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=5555, dport=9) / b"hi"
    wrpcap(str(path), [Ether() / datagram, Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / ICMP(type=3, code=3) / datagram])
    assert main(["summary", "--json", str(path)]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["conn_state"], record["icmp_unreachable"], record["orig_pkts"]) == ("S0", 1, 1)
    assert main(["show", str(path)]) == 0
    assert "<--- ICMP port unreachable" in capsys.readouterr().out


def test_check_annotate_writes_verdicts_as_packet_comments(tmp_path, capsys):
    from harness.wire.reader import open_capture
    out = tmp_path / "annotated.pcapng"
    assert main(["check", str(LAB / "tcp-broken-server.pcapng"), "--expect", "tcp_graceful",
                 "--annotate", str(out)]) == 1
    with open_capture(out) as annotated:
        comments = [record.comments for record in annotated]
        sections = annotated.comments
    assert comments[0] == ("ok: step 1 `C>S SYN seq=0`",)
    assert comments[5][0].startswith("FAIL: graceful-close: server sent RST at frame 6")
    assert any(c.startswith("harness check: FAIL ") for c in sections)


def test_show_and_check_draw_svg(tmp_path, capsys):
    import xml.etree.ElementTree as ElementTree
    drawing = tmp_path / "lab.svg"
    assert main(["show", str(LAB / "tcp-lab.pcapng"), "--svg", str(drawing), "--expect", "tcp_lab"]) == 0
    assert "ok: step 11" in capsys.readouterr().out
    root = ElementTree.parse(drawing).getroot()
    assert root.tag.endswith("svg") and drawing.read_text().count('class="segment"') == 11
    assert main(["check", str(LAB / "udp-lab.pcapng"), "--expect", "udp_lab", "--svg", str(drawing)]) == 0
    assert "PASS" in drawing.read_text()


def test_an_unwritable_svg_path_is_one_line(tmp_path, capsys):
    assert main(["show", str(LAB / "tcp-lab.pcapng"), "--svg", str(tmp_path / "no" / "such" / "dir.svg")]) == 2
    assert capsys.readouterr().err.startswith("harness show: cannot write ")


def test_an_unsupported_link_type_is_reported_not_guessed(tmp_path, capsys):
    from scapy.all import Raw, wrpcap
    path = tmp_path / "frame-relay.pcap"
    wrpcap(str(path), [Raw(b"\x08\x00" + b"\x00" * 40)], linktype=107)
    capsys.readouterr()  # scapy's own warning about the link type
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness summary: {path}: link type 107 (Frame Relay) is not supported; supported: ")
    assert err.count("\n") == 1


# -- papercuts a new user met (issue: a fresh machine) ------------------------------------------

def test_a_misspelt_built_in_expectation_names_the_built_in_ones(capsys):
    assert main(["check", str(LAB / "tcp-lab.pcapng"), "--expect", "tcp_labb"]) == 2
    err = capsys.readouterr().err
    assert err == ("harness check: no expectation 'tcp_labb': not a file, nor a built-in one "
                   "(http_request_reply, tcp_broken_server, tcp_bulk_lossy, tcp_graceful, tcp_lab, udp_lab)\n")


def test_a_built_in_expectation_may_be_named_with_its_txt(capsys):
    assert main(["check", str(LAB / "tcp-lab.pcapng"), "--expect", "tcp_lab.txt"]) == 0
    assert capsys.readouterr().out.startswith("PASS ")


@pytest.mark.parametrize("command", [["summary"], ["summary", "--json"], ["show"],
                                     ["check", "--expect", "tcp_lab"]])
def test_a_text_file_is_one_line_and_nothing_that_contradicts_it(command, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my lab notes, not a capture\n")
    argv = [command[0], str(notes), *command[1:]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"harness {command[0]}: {notes}: not a capture file: starts with ")
    assert captured.err.count("\n") == 1
    assert captured.out in ("", "[]\n"), "nothing on stdout may say the file was read"


def _arp_and_icmp_capture(path: Path) -> None:
    from scapy.all import ARP, ICMP, IP, Ether, wrpcap
    frames = [Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.1")] * 3
    frames += [Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP()] * 2
    wrpcap(str(path), frames)


@pytest.mark.parametrize("command", ["summary", "show"])
def test_a_capture_without_tcp_or_udp_says_what_it_did_read(command, tmp_path, capsys):
    path = tmp_path / "ping.pcap"
    _arp_and_icmp_capture(path)
    assert main([command, str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: no TCP or UDP conversations in its 5 packets (3 ARP, 2 ICMP)\n"


def test_check_of_a_capture_without_tcp_or_udp_says_what_it_did_read(tmp_path, capsys):
    path = tmp_path / "ping.pcap"
    _arp_and_icmp_capture(path)
    assert main(["check", str(path), "--expect", "tcp_lab"]) == 2
    assert capsys.readouterr().err == (f"harness check: {path}: no TCP or UDP conversations in its 5 packets "
                                       f"(3 ARP, 2 ICMP): nothing to check\n")


def test_version_says_which_summary_path_is_in_use(capsys):
    from harness import __version__
    from harness.analysis.pipeline import speedups_status
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"harness {__version__} (Python ")
    assert f"summary: {speedups_status()[1]})" in out


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_a_pcap_dir_that_cannot_be_written_is_one_line_before_anything_runs(where, tmp_path, capsys):
    if where == "under a file":
        (tmp_path / "a-file").write_text("")
        directory = tmp_path / "a-file" / "pcaps"
    else:
        directory = Path("/proc/harness-pcaps")     # no one, not even root, may make a directory here
    assert main(["lab", "--pcap-dir", str(directory), "tcp-lab"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness lab: cannot write pcaps to {directory}: ")
    assert err.endswith("; choose another --pcap-dir\n") and err.count("\n") == 1


def test_the_slow_path_is_said_once_when_the_c_scanner_is_missing(tmp_path, monkeypatch, capsys):
    from harness.analysis import pipeline
    monkeypatch.setattr(pipeline, "_speedups", None)
    monkeypatch.setattr(pipeline, "SPEEDUPS_REASON_FILE", tmp_path / "reason")
    (tmp_path / "reason").write_text("building harness.analysis._speedups on Python 3.13 failed: no compiler\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(pipeline.PURE_PYTHON_ENV, raising=False)
    notes = []
    for _ in range(2):
        assert main(["summary", str(LAB / "tcp-lab.pcapng")]) == 0
        notes.append(capsys.readouterr().err)
    assert notes[0] == ("harness: note: summary runs in pure Python, several times slower: building "
                        "harness.analysis._speedups on Python 3.13 failed: no compiler (said once; `harness --version` "
                        "says it again)\n")
    assert notes[1] == ""


# -- finding the conversation --------------------------------------------------------------------

def _mixed_capture(tmp_path):
    """A UDP exchange on 8081, then the lab's TCP exchange on 8080, then another TCP one on 9090."""
    from support.packets import FOUR_WAY_SERVER_FIRST, HANDSHAKE, LAB_DATA, renumber, tcp, to_pcap, udp
    datagrams = udp([("C", b"YP"), ("S", b"thank you !"), ("C", b"nihao"), ("S", b"thank you !")],
                    client=("10.0.0.1", 50000), server=("10.0.0.2", 8081))
    lab = tcp(HANDSHAKE + LAB_DATA + FOUR_WAY_SERVER_FIRST)
    other = tcp(HANDSHAKE + FOUR_WAY_SERVER_FIRST, client=("10.0.0.1", 40001), server=("10.0.0.2", 9090))
    path = tmp_path / "mixed.pcap"
    shifted = [p._replace(time_ns=p.time_ns + 20 * 10**6) for p in lab]
    later = [p._replace(time_ns=p.time_ns + 40 * 10**6) for p in other]
    path.write_bytes(to_pcap(renumber(datagrams + shifted + later)))
    return path


def _opening(tmp_path):
    """A TCP expectation the synthetic packets meet (they carry no TCP options, so no `check handshake`)."""
    spec = tmp_path / "opening.txt"
    spec.write_text("C>S SYN seq=0\nS>C SYN,ACK ack=1\n...\n")
    return spec


def test_summary_numbers_its_rows_and_filters_by_port_and_protocol(tmp_path, capsys):
    path = _mixed_capture(tmp_path)
    assert main(["summary", "--json", str(path)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["conversation"], r["proto"], r["id.resp_p"]) for r in records] == [
        (1, "udp", 8081), (2, "tcp", 8080), (3, "tcp", 9090)]
    assert main(["summary", "--json", "--proto", "tcp", str(path)]) == 0
    assert [r["conversation"] for r in json.loads(capsys.readouterr().out)] == [2, 3]
    assert main(["summary", "--port", "9090", str(path)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[0] == "#" and [row.split()[0] for row in rows[1:]] == ["3"]
    assert main(["summary", "--port", "7", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: no TCP or UDP conversations on port 7 in its ")


def test_show_and_check_take_the_conversation_by_number_or_port(tmp_path, capsys):
    path = _mixed_capture(tmp_path)
    assert main(["show", str(path), "--port", "9090"]) == 0
    out = capsys.readouterr().out
    assert out.count("conversation ") == 1 and "conversation 3: tcp" in out
    assert main(["check", str(path), "--conversation", "2", "--expect", str(_opening(tmp_path))]) == 0
    assert capsys.readouterr().out.startswith(f"PASS {path}: conversation 2 matches ")


def test_check_takes_the_first_conversation_of_the_expectations_protocol_and_says_which(tmp_path, capsys):
    path = _mixed_capture(tmp_path)
    assert main(["check", str(path), "--expect", str(_opening(tmp_path))]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"PASS {path}: conversation 2 matches ")
    assert captured.err == ("harness check: note: checking conversation 2 (tcp 10.0.0.1:40000 (originator) <-> "
                            "10.0.0.2:8080), the first TCP one\n")
    assert main(["check", str(path), "--expect", "udp_lab"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"PASS {path}: conversation 1 matches ") and captured.err == ""


def test_a_failing_check_opens_with_the_cause(capsys):
    assert main(["check", str(LAB / "tcp-broken-server.pcapng"), "--expect", "tcp_graceful"]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"FAIL {LAB / 'tcp-broken-server.pcapng'}: the server reset the connection (RST) after the "
                     f"client's 2 bytes, without replying: it closed the socket with data unread, or its program died "
                     f"(conversation 1 against {BUILTIN_DIR / 'tcp_graceful.txt'})")


def _with_stdout_closed(argv):
    """harness run with a stdout pipe whose reader has gone before the first line (as `| head -0`)."""
    import subprocess
    import sys
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "harness", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("name, expected", [("tcp-lab", 0), ("tcp-broken-server", 1)])
def test_a_closed_stdout_leaves_the_exit_status_the_verdicts(name, expected):
    done = _with_stdout_closed(["check", str(LAB / f"{name}.pcapng"), "--expect", "tcp_lab"])
    assert (done.returncode, done.stderr) == (expected, "")


def test_a_closed_stdout_does_not_hide_a_failure_in_a_later_file(tmp_path):
    """The first file's verdict fills the pipe's place; the second, failing, still decides the status."""
    files = [str(LAB / "tcp-lab.pcapng"), str(LAB / "tcp-broken-server.pcapng")]
    done = _with_stdout_closed(["check", "-j", "1", "--expect", "tcp_lab", *files])
    assert (done.returncode, done.stderr) == (1, "")
    done = _with_stdout_closed(["summary", "-j", "2", *files, str(tmp_path / "missing.pcap")])
    assert done.returncode == 2 and done.stderr.strip().endswith("missing.pcap: no such file")


def test_a_clock_step_past_the_idle_timeout_is_named_in_the_failure(tmp_path, capsys):
    """Issue 15 item 10: 301 s between two packets of one connection split it, as in Zeek's conn.log;
    check fails on the first part (the wire has 5 of the 11 segments) and says where the rest went."""
    from harness.wire.reader import open_capture
    from support import pcapbuild as pb
    second = 10**9
    with open_capture(LAB / "tcp-lab.pcapng") as capture:
        records = [(r.time_ns + (301 * second if number > 5 else 0), r.data, r.origlen)
                   for number, r in enumerate(capture, 1)]
        linktype = capture.linktype
    stepped = tmp_path / "stepped.pcap"
    stepped.write_bytes(pb.pcap([(t // second, t % second, data, origlen) for t, data, origlen in records],
                                linktype=linktype, nano=True, snaplen=262144))
    assert main(["check", str(stepped), "--expect", "tcp_lab"]) == 1
    verdict = capsys.readouterr().out.splitlines()[0]
    assert verdict.startswith(f"FAIL {stepped}: the connection goes on as conversation 2 at frame 6, after 301")
    assert verdict.endswith("check the rest with --conversation 2 (conversation 1 against "
                            f"{BUILTIN_DIR / 'tcp_lab.txt'})")
    assert main(["check", str(LAB / "tcp-broken-server.pcapng"), "--expect", "tcp_lab"]) == 1
    assert "goes on as conversation" not in capsys.readouterr().out, "no split where there was none"
