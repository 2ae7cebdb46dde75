"""one-shot's flags for IB's other order types (runner.flags): the spec they build, their
errors in flag terms, and a trailing stop sent through them to the fake gateway."""

from __future__ import annotations

import json

import pytest

from runner.cli import main
from runner.ledger import read_ledger

NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05T14:30:00Z, 09:30 New York


def test_one_shot_type_flags_build_the_spec(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["one-shot", "--type", "stp-lmt", "--stop", "100.10", "--limit", "100.15",
            "--good-till", "2026-01-05T16:00:00-05:00", "--dry-run", "--at",
            "2026-01-05T09:30:00-05:00", "--tag", "cl-1", "--json"]
    assert main(argv) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["state"] == "CANCEL"  # no bars: acknowledged, never filled
    [intent] = [r for r in read_ledger(tmp_path / "data" / "exec").to_pylist()
                if r["event"] == "INTENT"]
    assert (intent["order_type"], intent["limit"], intent["tif"]) == ("STP LMT", 100.15, "GTD")
    # the backstop (INTENT + 3 s + 10 s) is earlier than the good_till: it is stamped
    assert intent["good_till"].value == T0 + 13 * NS


@pytest.mark.parametrize("argv, line", [
    (["--type", "stp"], "<command line>: order: type STP needs --stop (the trigger price)"),
    (["--type", "trail", "--trail-amount", "1", "--trail-percent", "1"],
     "<command line>: --trail-percent: give --trail-amount or --trail-percent, not both"),
    (["--type", "stop"], "runner: --type: 'stop' is not LMT, MKT, STP, STP LMT, TRAIL, "
                         "TRAIL LIMIT, MOC, LOC, MIDPRICE, REL or PEG MID; did you mean STP?"),
])
def test_one_shot_type_flag_errors_name_the_flags(argv, line, tmp_path, monkeypatch,
                                                   capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["one-shot", *argv, "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[0].startswith(line), err


def test_the_classic_one_shot_sends_a_trailing_stop(gateway, cli, tmp_path) -> None:
    code, out, err = cli(gateway.port, "one-shot", "--type", "trail", "--trail-percent", "2",
                         "--side", "sell", "--ttl_sec", "0.3", "--tag", "cl-trail",
                         "--out_dir", "out")
    assert code == 0, out + err
    assert out == "[one-shot] tag=cl-trail state=CANCEL fill_qty=0 avg_px=— arrival=—\n"
    [placed] = gateway.place_orders()
    assert (placed.action, placed.order_type, placed.trailing_percent, placed.aux_price) == (
        "SELL", "TRAIL", "2.0", "")
    events = [r["event"] for r in read_ledger(tmp_path / "out").to_pylist()]
    assert events == ["INTENT", "ACK", "CANCEL"]
