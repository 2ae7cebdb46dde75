"""Command-line edges that used to end in a traceback or an "unexpected error" (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_a_closed_pipe_is_a_quiet_exit() -> None:
    """`runner plan … | head`: the reader is gone before runner writes; no message."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "runner", "plan", "specs/one-shot.yaml"],
                              cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_the_fake_gateway_listens_where_runner_connects_by_default() -> None:
    from runner.plan import DEFAULTS

    assert build_parser().parse_args([]).port == int(DEFAULTS["IB_GATEWAY_PORT"]) == 7497


@pytest.mark.parametrize("port", ["99999", "-1", "abc"])
def test_a_port_out_of_range_is_a_usage_error(port: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--port", port])
    assert done.value.code == 2
    assert capsys.readouterr().err == (f"runner gateway: --port: '{port}' is not a port "
                                       "(0-65535) (see `runner gateway --help`)\n")


def test_at_in_epoch_milliseconds_is_a_one_line_usage_error(capsys) -> None:
    from runner.cli import main

    assert main(["plan", str(ROOT / "specs" / "one-shot.yaml"), "--at", "1772461805123"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("runner: --at 1772461805123: not epoch seconds between 1990 and "
                          "2100 (13 digits; milliseconds?)")


def test_at_in_epoch_seconds_keeps_its_nanoseconds() -> None:
    from runner.plan import parse_at

    assert parse_at("1767623401.123456789") == 1_767_623_401_123_456_789
    assert parse_at("1767623401") == 1_767_623_401 * 10**9


@pytest.mark.parametrize("args, why", [
    (["--date", "2026-13-01"], "runner: --date 2026-13-01: not a date (month must be in 1..12)"),
    (["--date", "yesterday"], "runner: --date yesterday: not a date (not YYYY-MM-DD)"),
    (["--out-dir", "no/such/dir"],
     "runner: --out-dir no/such/dir: no such folder, so no ledger to recover from"),
])
def test_recover_refuses_a_date_or_folder_that_is_none(args, why, tmp_path, monkeypatch,
                                                       capsys) -> None:
    """Exit 2 and one line, not exit 0 with "nothing to recover" (nothing is contacted)."""
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "exec").mkdir(parents=True)
    assert main(["recover", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(why), err


def test_tca_plot_onto_a_file_is_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    import shutil

    from runner.cli import main

    bars = "data/live/2026-01-05/bars1s_SPY.parquet"  # as the shipped spec names it
    (tmp_path / bars).parent.mkdir(parents=True)
    shutil.copy(ROOT / bars, tmp_path / bars)
    shutil.copy(ROOT / "specs" / "one-shot.yaml", tmp_path / "one-shot.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "one-shot.yaml", "--dry-run", "--out-dir", "exec"]) == 0
    (tmp_path / "plot.png").write_text("mine")
    capsys.readouterr()
    assert main(["tca", "--out-dir", "exec", "--plot", "plot.png"]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before the report: no half of the command's work
    assert err.splitlines() == ["runner: --plot plot.png: a file is in the way; --plot takes a "
                                "folder (one PNG per order) (give a folder name)"], err
    assert (tmp_path / "plot.png").read_text() == "mine"  # untouched
