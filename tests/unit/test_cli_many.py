"""`summary` and `check` over many files with -j N: the same output in the files' order whatever the number
of workers and whichever finishes first, the worst status, the work done in worker processes."""
from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest

from harness.cli import main
from harness.cli._many import run_each
from support import REPO

LAB = REPO / "captures" / "lab"


@pytest.fixture
def folder(tmp_path):
    """Nine captures, as a teacher's folder of submissions: good, broken and damaged among them."""
    paths = []
    for number in range(9):
        name = ("tcp-lab", "tcp-broken-server", "udp-lab")[number % 3]
        path = tmp_path / f"{number}-{name}.pcapng"
        shutil.copy(LAB / f"{name}.pcapng", path)
        paths.append(path)
    damaged = tmp_path / "9-cut.pcapng"
    damaged.write_bytes((LAB / "tcp-lab.pcapng").read_bytes()[:-150])
    return [str(p) for p in paths + [damaged]]


@pytest.mark.parametrize("argv", [["summary", "--json"], ["summary"], ["check", "--expect", "tcp_lab"]])
def test_output_and_status_are_the_same_with_one_worker_or_several(argv, folder, capsys):
    alone = main([*argv, "-j", "1", *folder])
    alone_out = capsys.readouterr()
    together = main([*argv, "-j", "3", *folder])
    together_out = capsys.readouterr()
    assert (together, together_out.out) == (alone, alone_out.out)
    assert sorted(together_out.err.splitlines()) == sorted(alone_out.err.splitlines())
    assert alone == 2, "the damaged file makes it 2, the worst status"


def test_check_prints_each_verdict_in_the_files_order(folder, capsys):
    assert main(["check", "--expect", "tcp_lab", "-j", "4", *folder]) == 2
    verdicts = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1].rstrip(":") for line in verdicts] == folder[:9]
    assert [line.split()[0] for line in verdicts] == ["PASS", "FAIL", "FAIL"] * 3


def test_summary_json_of_many_files_is_one_object_keyed_in_order(folder, capsys):
    main(["summary", "--json", "-j", "2", *folder])
    document = json.loads(capsys.readouterr().out)
    assert list(document) == folder
    assert [len(document[f]) for f in folder[:3]] == [1, 1, 1]


def _pid(args, path, position) -> int:
    print(f"{position} {os.getpid()}")
    return 1 if position == 2 else 0


def test_several_jobs_run_in_worker_processes_in_order():
    import io
    import sys
    args = argparse.Namespace(jobs=2, command="test")
    out, saved = io.StringIO(), sys.stdout
    sys.stdout = out
    try:
        status = run_each(args, ["a", "b", "c", "d"], _pid)
    finally:
        sys.stdout = saved
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert [int(position) for position, _ in lines] == [0, 1, 2, 3]
    assert status == 1
    assert str(os.getpid()) not in {pid for _, pid in lines}, "the files were read in this process"


def test_annotate_takes_one_file_only(folder, tmp_path, capsys):
    assert main(["check", "--expect", "tcp_lab", "--annotate", str(tmp_path / "out.pcapng"), *folder[:2]]) == 2
    assert capsys.readouterr().err.strip() == ("harness check: --annotate writes one file: check one capture "
                                               "with it, not 2")


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_a_number_of_jobs_that_is_no_number_is_refused(jobs, folder, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["summary", "-j", jobs, *folder])
    assert exit.value.code == 2
    assert "-j/--jobs" in capsys.readouterr().err


def _dies_on_the_second(args, path, position) -> int:
    if position == 1:
        os._exit(9)      # the worker is gone without a word, holding this file
    print(position)
    return 0


def test_a_worker_that_dies_costs_its_file_one_line_and_the_rest_go_on(capsys):
    args = argparse.Namespace(jobs=2, command="test")
    status = run_each(args, ["a", "b", "c", "d", "e"], _dies_on_the_second)
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out.split() == ["0", "2", "3", "4"]
    assert captured.err == "harness test: b: its worker process ended before the file was read\n"
