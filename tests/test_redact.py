"""Account ids are masked (`DU1234567` -> `DU****567`) in everything runner prints and
logs, ib_async's own log lines included, unless `--show-account`; the ledger keeps them."""

from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path

import pytest

from runner.cli import main
from runner.gateway import Ack, Fill
from runner.ledger import read_ledger
from runner.redact import redact, redacted_output

UNMASKED = re.compile(r"\b(?:D?[UFI])\d{4,10}\b")  # an IB account id in the clear


@pytest.mark.parametrize(("text", "shown"), [
    ("DU1234567", "DU****567"),
    ("accounts U7654321, DF9876543", "accounts U****321, DF****543"),
    ("F12345678 and I1234", "F*****678 and I*234"),
    ("(U7654321);", "(U****321);"),
    ("UTC 20260105 U12 DUX1234567 SPY 473.10 orderRef=sanity_SPY_1767623400",
     "UTC 20260105 U12 DUX1234567 SPY 473.10 orderRef=sanity_SPY_1767623400"),
])
def test_redact(text, shown):
    assert redact(text) == shown


def test_output_and_log_records_are_masked_then_restored(caplog):
    out, err = io.StringIO(), io.StringIO()
    sys_out, sys_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with caplog.at_level(logging.INFO, logger="ib_async"):
            with redacted_output():
                print("account DU1234567")
                print("live U7654321", file=sys.stderr)
                logging.getLogger("ib_async.wrapper").info("managed accounts: %s", "DU1234567")
            assert (sys.stdout, sys.stderr) == (out, err)  # restored
            logging.getLogger("ib_async.wrapper").info("after: %s", "DU1234567")
    finally:
        sys.stdout, sys.stderr = sys_out, sys_err
    assert (out.getvalue(), err.getvalue()) == ("account DU****567\n", "live U****321\n")
    assert [r.getMessage() for r in caplog.records] == ["managed accounts: DU****567",
                                                       "after: DU1234567"]


def test_disabled_passes_everything_through(capsys):
    with redacted_output(enabled=False):
        print("DU1234567")
    assert capsys.readouterr().out == "DU1234567\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture):
    """Run `runner ...` against a gateway; returns everything it printed and logged."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "3")
    caplog.set_level(logging.DEBUG)

    def run(port: int, *args: str) -> tuple[int, str]:
        monkeypatch.setenv("IB_GATEWAY_PORT", str(port))
        caplog.clear()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out + err + caplog.text

    return run


def ib_session(gw_port: int, live_port: int, cli, tmp_path: Path, *flags: str) -> str:
    """The ib paths that know accounts, verbose, all output and logs joined."""
    (tmp_path / "w.yaml").write_text("version: 1\nkind: one-shot\nttl_sec: 0.2\n"
                                     "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00}\n")
    runs = [
        (gw_port, "handshake", "-vv"),
        (gw_port, "sanity-cancel", "-vv", "--tag", "r-1"),
        (gw_port, "one-shot", "-vv", "--qty", "2", "--limit", "99.00", "--tag", "r-2",
         "--ttl_sec", "0.2"),
        (gw_port, "run", "w.yaml", "--json", "-vv"),
        (gw_port, "plan", "w.yaml", "--broker", "-vv"),
        (gw_port, "plan", "w.yaml", "--broker", "--json"),
        (live_port, "sanity-cancel", "-vv", "--tag", "r-3"),  # refused: a live account
        (gw_port, "ledger", "show", "--json"),
        (gw_port, "ledger", "show"),
    ]
    seen = ""
    for port, *args in runs:
        code, text = cli(port, *args, *flags)
        assert code in (0, 3), text
        seen += text
    return seen


def test_no_account_id_in_any_output_or_log_of_the_ib_paths(make_gateway, cli, tmp_path):
    gw, live = make_gateway(), make_gateway(accounts=("U7654321",))
    gw.script("r-2", [Ack(), Fill(2, 99.00, commission=1.0)])
    seen = ib_session(gw.port, live.port, cli, tmp_path)
    assert UNMASKED.findall(seen) == []
    assert "DU****567" in seen and "U****321" in seen  # masked, and there to see
    # the ledger is data, not output: it keeps the real account
    accounts = set(read_ledger(tmp_path / "data" / "exec").column("account").to_pylist())
    assert accounts == {"DU1234567"}


def test_show_account_prints_them_in_full(make_gateway, cli, tmp_path):
    gw, live = make_gateway(), make_gateway(accounts=("U7654321",))
    seen = ib_session(gw.port, live.port, cli, tmp_path, "--show-account")
    assert {"DU1234567", "U7654321"} <= set(UNMASKED.findall(seen))
