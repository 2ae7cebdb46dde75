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


# --- usage errors: one line, exit 2, the flag named, the help to read ----------------------

@pytest.mark.parametrize("args, line", [
    (["frob"], "runner: unknown command 'frob' (see `runner --help`)"),
    (["tac"], "runner: unknown command 'tac'; did you mean tca? (see `runner --help`)"),
    (["ledger", "shw"], "runner: unknown ledger command 'shw'; did you mean show? "
                        "(see `runner ledger --help`)"),
    (["--bogus"], "runner: unrecognized arguments: --bogus (see `runner --help`)"),
    (["plan"], "runner: the following arguments are required: SPEC (see `runner plan --help`)"),
    (["one-shot", "--side", "BYU"], "runner: --side: 'BYU' is not BUY or SELL; did you mean "
                                    "BUY? (see `runner one-shot --help`)"),
    (["one-shot", "--tif", "gtx"], "runner: --tif: 'gtx' is not IOC, DAY, GTC, GTD, OPG or FOK; "
                                   "did you mean GTD? (see `runner one-shot --help`)"),
    (["one-shot", "--arrival", "quote"], "runner: --arrival: 'quote' is not bars or broker "
                                         "(see `runner one-shot --help`)"),
    (["one-shot", "--ttl-sec", "soon"], "runner: --ttl_sec: 'soon' is not a number "
                                        "(see `runner one-shot --help`)"),
    (["one-shot", "--qty"], "runner: --qty: expected one argument (see `runner one-shot --help`)"),
    (["sanity-cancel", "--tif", "DAY"], "runner: unrecognized arguments: --tif DAY "
                                        "(see `runner sanity-cancel --help`)"),
    (["sanity-cancel", "--live"], "runner: --live: the classic commands are paper-only (write a "
                                  "spec with mode: live and use `runner run SPEC --live`)"),
    (["tca", "--side", "short"], "runner: --side: 'short' is not BUY or SELL (see `runner tca "
                                 "--help`)"),
    (["schema", "specs"], "runner: NAME: 'specs' is not spec or policy; did you mean spec? "
                          "(see `runner schema --help`)"),
])
def test_a_usage_error_is_one_line_naming_the_flag(args, line, capsys) -> None:
    from runner.cli import main

    assert main(args) == 2
    assert capsys.readouterr() == ("", line + "\n")


@pytest.mark.parametrize("args, command, version, message, hint", [
    (["one-shot", "--side", "BYU", "--json"], "one-shot", 2,
     "--side: 'BYU' is not BUY or SELL; did you mean BUY?", "see `runner one-shot --help`"),
    (["ledger", "show", "--json", "--frm"], "ledger show", 2,
     "unrecognized arguments: --frm", "see `runner ledger show --help`"),
    (["frob", "--json"], None, 1, "unknown command 'frob'", "see `runner --help`"),
])  # version: the command's document (run and ledger show are at 2); no command: 1
def test_a_usage_error_with_json_is_the_failure_document(args, command, version, message,
                                                         hint, capsys) -> None:
    import json

    from runner.cli import main

    assert main(args) == 2
    out, err = capsys.readouterr()
    assert err == f"runner: {message} ({hint})\n"
    assert out.count("\n") == 1 and json.loads(out) == {
        "version": version, "command": command, "ok": False, "spec": None, "tag": None,
        "error": {"exit_code": 2, "message": message, "hint": hint}}


def test_a_usage_error_masks_an_account_id_unless_asked(capsys) -> None:
    from runner.cli import main

    assert main(["one-shot", "--side", "DU1234567"]) == 2
    assert "DU****567" in capsys.readouterr().err
    assert main(["one-shot", "--side", "DU1234567", "--show-account"]) == 2
    assert "'DU1234567'" in capsys.readouterr().err


# --- the classic flags: any case where IB has it, errors in flag terms ---------------------

def test_classic_side_tif_and_symbol_take_any_case(tmp_path, monkeypatch, capsys) -> None:
    from runner.cli import main
    from runner.ledger import read_ledger

    monkeypatch.chdir(tmp_path)
    assert main(["one-shot", "--side", "sell", "--tif", "ioc", "--symbol", "aapl", "--limit",
                 "900", "--tag", "any-case", "--dry-run", "--out_dir", "out"]) == 0
    assert capsys.readouterr().out.startswith("[one-shot] tag=any-case state=")
    intent = read_ledger(tmp_path / "out").to_pylist()[0]
    assert (intent["event"], intent["symbol"], intent["side"], intent["tif"]) == (
        "INTENT", "AAPL", "SELL", "IOC")


@pytest.mark.parametrize("args, line", [
    (["--qty", "-1"], "<command line>: --qty: must be > 0, got -1"),
    (["--qty", "1.5"], "<command line>: --qty: must be a whole number of shares for STK, got 1.5"),
    (["--ttl_sec", "0"], "<command line>: --ttl_sec: must be > 0, got 0"),
    (["--limit", "10.001"], "<command line>: --limit: 10.001 is not on the tick grid (0.01); "
                            "use 10.00"),
    (["--limit", "0"], "<command line>: --limit: must be > 0, got 0"),
    (["--arrival", "bars"], "<command line>: --arrival: 'bars' needs --bars_path (add --bars_path, "
                            "or use --arrival broker)"),
])
def test_a_classic_spec_check_names_the_flag(args, line, tmp_path, monkeypatch,
                                             capsys) -> None:
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["one-shot", "--dry-run", *args]) == 2
    assert capsys.readouterr() == ("", line + "\n")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_hours_refusal_names_outside_rth_and_the_flag_sends_it(tmp_path, monkeypatch,
                                                                   capsys) -> None:
    from test_gates import write_pre_market_bars

    from runner.cli import main
    from runner.ledger import read_ledger

    monkeypatch.chdir(tmp_path)
    write_pre_market_bars(tmp_path / "bars.parquet")
    args = ["one-shot", "--qty", "10", "--limit", "99.90", "--bars_path", "bars.parquet",
            "--ttl_sec", "2", "--out_dir", "out", "--dry-run", "--at", "2026-01-05T09:00:00-05:00"]
    assert main([*args, "--tag", "pre-1"]) == 2
    assert capsys.readouterr().err == (
        "runner: <command line>: refused by the built-in policy; nothing was sent:\n"
        "  - the market is closed at 2026-01-05T14:00:00Z (outside regular trading hours); "
        "pass --outside-rth to send the order anyway\n")
    assert not (tmp_path / "out").exists()
    assert main([*args, "--tag", "pre-2", "--outside-rth"]) == 0
    rows = read_ledger(tmp_path / "out").to_pylist()
    assert [(r["event"], r["fill_qty"]) for r in rows][:3] == [
        ("INTENT", 0.0), ("ACK", 0.0), ("FILL", 10.0)]


def test_sanity_cancel_bars_path_gives_the_gates_a_reference(tmp_path, monkeypatch,
                                                             capsys) -> None:
    """The refusal says "add --bars_path": sanity-cancel takes it, and the 5% rule uses it."""
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    bars = str(ROOT / "data" / "live" / "2026-01-05" / "bars1s_SPY.parquet")
    args = ["sanity-cancel", "--limit", "470", "--tag", "sc-1", "--dry-run", "--out_dir", "out"]
    assert main([*args, "--bars_path", bars]) == 2
    assert capsys.readouterr().err.endswith(
        "  - sanity-cancel BUY limit 470.00 is 61.7 bps below the reference 472.92 (from the "
        "bars); it must be at least 500 bps below so it cannot fill (min_sanity_distance_bps)\n")
    assert not (tmp_path / "out").exists()


def test_a_spec_file_keeps_its_key_names(tmp_path, monkeypatch, capsys) -> None:
    """Only the classic commands' messages speak in flags: a file's name its keys."""
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("version: 1\nkind: one-shot\nttl_sec: 2\n"
                                     "order: {symbol: SPY, side: BUY, qty: -1, limit: 10.00}\n")
    assert main(["validate", "s.yaml"]) == 2
    assert capsys.readouterr().err == "s.yaml:4:38: order.qty: must be > 0, got -1\n"


# --- any terminal encoding -----------------------------------------------------------------

def test_an_ascii_terminal_gets_plain_stand_ins(tmp_path) -> None:
    """PYTHONIOENCODING=ascii: "—" (no fill price) prints as "-", not a UnicodeEncodeError."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "runner", "one-shot", "--limit", "1.00",
                           "--tag", "ascii-1", "--dry-run", "--out_dir", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr
    assert done.stdout == (b"[one-shot] tag=ascii-1 state=CANCEL fill_qty=0 avg_px=- "
                           b"arrival=-\n")


def test_the_stand_ins() -> None:
    from runner.terminal import HANDLER

    text = "a\u2014b \u2192 2\u00d73 5\u00b5s caf\u00e9 \u2026"
    assert text.encode("ascii", HANDLER) == b"a-b -> 2x3 5us caf? ..."
    assert text.encode("latin-1", HANDLER) == "a-b -> 2\u00d73 5\u00b5s caf\u00e9 ...".encode(
        "latin-1")  # what the encoding has is kept


# --- runner schema ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, shipped", [([], "spec"), (["policy"], "policy"),
                                           (["POLICY"], "policy")])
def test_schema_prints_the_shipped_schema(args, shipped, tmp_path) -> None:
    """From any folder: read beside the installed package, not from the working directory."""
    done = subprocess.run([sys.executable, "-m", "runner", "schema", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (ROOT / "schemas" / f"{shipped}.schema.json").read_text()
