"""Instruments beyond US stocks: the spec's `contract:` block, its checks, the plan, the
multiplier in notional (spec limits, gates, day caps) and in TCA, the classic instrument
flags, dry runs of a future, an option and an FX pair on bars the tests build, and the same
one-shots against the fake gateway (127.0.0.1, unmodified ib_async), where qualification
refuses an ambiguous contract with its candidates listed and a contract whose multiplier
IB says is other than the spec's.

The gateway's clock starts at T0, Monday 2026-01-05 15:00Z, so its listings are known
(docs/gateway-instruments.md): ES futures 20260320 (ESH6, conId 700 000 000 + 26 x 100 + 3),
20260619, 20260918; SPY options 20260116 and 20260220. runner's own clock is the wall clock,
so the gateway specs say `outside_rth: true` (the fake's liquid hours are its own week)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.cli import main
from runner.gateway import Ack, Fill
from runner.ledger import read_ledger

NS = 1_000_000_000
T0 = 1_767_625_200 * NS  # the gateway's clock: 2026-01-05 15:00:00Z
B0 = 1_767_623_400 * NS  # the dry runs' first bar: 2026-01-05 14:30:00Z (09:30 New York)
ES = "contract: {sec_type: FUT, symbol: ES, exchange: CME, expiry: 202603, multiplier: 50}\n"
SPY_C600 = ("contract: {sec_type: OPT, symbol: SPY, expiry: '20260116', strike: 600, "
            "right: C, multiplier: 100}\n")


@pytest.fixture(autouse=True)
def policy(tmp_path: Path) -> Path:
    """The specs' policy: every type named (a policy without sec_types allows STK, CASH and
    CRYPTO only; see the policy tests at the end)."""
    path = tmp_path / "runner-policy.yaml"
    path.write_text("version: 1\nsec_types: [STK, FUT, OPT, FOP, CASH, CRYPTO, CFD]\n")
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text("version: 1\nkind: one-shot\n" + text)
    return path


def ledger_rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    return [r for r in read_ledger(tmp_path / "out").to_pylist() if r["tag"] == tag]


# ----------------------------------------------------------------------------- the spec


@pytest.mark.parametrize("text, error", [
    (ES + "order: {symbol: ES, side: BUY, qty: 1, limit: 6000}\n",
     "4:9: order.symbol: the instrument is in contract:; say it once (remove order.symbol)"),
    ("contract: {sec_type: FUT, symbol: ES, expiry: 202603, multiplier: 50}\n"
     "order: {side: BUY, qty: 1, limit: 6000}\n",
     "3:22: contract.sec_type: a FUT names its exchange: add contract.exchange (e.g. CME)"),
    ("contract: {sec_type: FUT, symbol: ES, exchange: CME, expiry: 202603}\n"
     "order: {side: BUY, qty: 1, limit: 6000}\n",
     "3:22: contract.sec_type: a FUT names its multiplier: add contract.multiplier"),
    ("contract: {sec_type: FUT, symbol: ES, exchange: CME, strike: 10, multiplier: 50}\n"
     "order: {side: BUY, qty: 1, limit: 6000}\n",
     "3:54: contract.strike: is for options (FOP or OPT), not FUT"),
    ("contract: {sec_type: STK, symbol: SPY, expiry: 202603}\n"
     "order: {side: BUY, qty: 1, limit: 600}\n",
     "3:40: contract.expiry: a STK has no expiry; remove it"),
    ("contract: {sec_type: IND, symbol: SPX, exchange: CBOE}\n"
     "order: {side: BUY, qty: 1, limit: 6000}\n",
     "3:22: contract.sec_type: IND is data only: IB takes no order for an index"),
    (ES + "order: {side: BUY, qty: 1.5, limit: 6000}\n",
     "4:25: order.qty: must be a whole number of contracts for FUT, got 1.5"),
    ("contract: {sec_type: OPT, symbol: SPY, expiry: 2026011, multiplier: 100}\n"
     "order: {side: BUY, qty: 1, limit: 5}\n",
     "3:48: contract.expiry: 2026011 is not YYYYMM or YYYYMMDD (e.g. 202603"),
    ("contract: {sec_type: OPT, symbol: SPY, expiry: '2026-01', multiplier: 100}\n"
     "order: {side: BUY, qty: 1, limit: 5}\n",
     "3:48: contract.expiry: '2026-01' does not match"),
    ("order: {side: BUY, qty: 1, limit: 6000}\n",
     "3:8: order: no instrument: add order.symbol (e.g. SPY), or a contract: block"),
    (ES + "order: {side: BUY, qty: 2, limit: 6000.25}\nlimits: {max_notional: 600000}\n",
     # 2 x 50 x 6000.25 = 600025, by hand: over the cap by 25
     "4:8: order: notional 600,025 (qty x multiplier 50 x limit) exceeds "
     "limits.max_notional 600,000"),
])
def test_a_bad_contract_is_one_line_at_its_key(tmp_path: Path, capsys: Any, text: str,
                                                error: str) -> None:
    path = write(tmp_path, "c.yaml", text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{error}" in err, err


def test_the_plan_shows_the_contract_as_it_is_asked_for(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "es.yaml", ES + "order: {side: BUY, qty: 2, limit: 6000.25}\n"
                 "limits: {max_notional: 600025}\n")  # exactly at the cap: allowed
    assert main(["plan", str(path), "--at", "2026-01-05T15:00:00Z"]) == 0
    text = capsys.readouterr().out
    assert ("2. qualify  ES FUT CME USD lastTradeDateOrContractMonth=202603 multiplier=50 "
            "(exactly one match)") in text
    assert main(["plan", str(path), "--at", "2026-01-05T15:00:00Z", "--json"]) == 0
    [plan] = json.loads(capsys.readouterr().out)["plans"]
    assert plan["order"]["contract"] == {
        "secType": "FUT", "symbol": "ES", "exchange": "CME", "currency": "USD",
        "lastTradeDateOrContractMonth": "202603", "multiplier": "50"}
    assert plan["order"]["multiplier"] == 50


def test_an_option_right_is_ibs_letter_and_fx_defaults_to_idealpro(tmp_path: Path,
                                                                   capsys: Any) -> None:
    opt = write(tmp_path, "o.yaml", SPY_C600.replace("right: C", "right: CALL")
                + "order: {side: BUY, qty: 1, limit: 5.1}\n")
    fx = write(tmp_path, "fx.yaml", "order: {symbol: EUR, sec_type: CASH, currency: USD, "
               "side: BUY, qty: 20000.5, limit: 1.085}\n")
    btc = write(tmp_path, "btc.yaml", "order: {symbol: BTC, sec_type: CRYPTO, side: BUY, "
                "qty: 0.5, limit: 97000}\n")
    exchanges = []
    for path in (opt, fx, btc):
        assert main(["plan", str(path), "--json", "--at", "2026-01-05T15:00:00Z"]) == 0
        [plan] = json.loads(capsys.readouterr().out)["plans"]
        exchanges.append(plan["order"]["contract"]["exchange"])
        if path is opt:
            assert plan["order"]["contract"]["right"] == "C"
    assert exchanges == ["SMART", "IDEALPRO", "PAXOS"]


def test_the_classic_flags_make_the_same_plan_as_a_contract_block(tmp_path: Path,
                                                                 monkeypatch: Any,
                                                                 capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no policy file governs
    spec = write(tmp_path, "es.yaml", ES + "order: {side: BUY, qty: 2, limit: 6000.25, "
                 "tag: same}\n")
    assert main(["plan", str(spec), "--json", "--at", "2026-01-05T15:00:00Z"]) == 0
    [from_spec] = json.loads(capsys.readouterr().out)["plans"]
    assert main(["plan", "--json", "--at", "2026-01-05T15:00:00Z"]) == 2  # needs a spec
    capsys.readouterr()
    code = main(["one-shot", "--sec-type", "fut", "--symbol", "es", "--exchange", "cme",
                 "--expiry", "202603", "--multiplier", "50", "--qty", "2", "--limit",
                 "6000.25", "--tag", "same", "--dry-run", "--at", "2026-01-05T15:00:00Z",
                 "--out-dir", str(tmp_path / "out"), "--json"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    [intent] = [r for r in ledger_rows(tmp_path, "same") if r["event"] == "INTENT"]
    assert (intent["sec_type"], intent["exchange"], intent["expiry"], intent["multiplier"]) \
        == ("FUT", "CME", from_spec["order"]["contract"]["lastTradeDateOrContractMonth"], 50)
    assert main(["one-shot", "--sec-type", "fut", "--symbol", "es", "--exchange", "cme",
                 "--qty", "1", "--limit", "6000", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--sec-type: a FUT names its multiplier: add --multiplier" in err, err


# ----------------------------------------------------------------------------- dry runs


def write_bars(path: Path, close0: float, open1: float, low1: float, high1: float,
               volume: float) -> None:
    """Two 1 s bars from B0: bar 0 gives the arrival (its close), bar 1 the fill."""
    pq.write_table(pa.table({
        "ts": pa.array(B0 + np.arange(2, dtype=np.int64) * NS, pa.timestamp("ns", tz="UTC")),
        "open": [close0, open1], "high": [close0, high1], "low": [close0, low1],
        "close": [close0, open1], "volume": [volume, volume]}), path)


def dry_run(tmp_path: Path, monkeypatch: Any, instrument: str, order: str,
            bars: tuple[float, ...]) -> list[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)
    write_bars(tmp_path / "bars.parquet", *bars)
    path = write(tmp_path, "d.yaml", instrument + f"order: {{tag: d1, {order}}}\n"
                 "ttl_sec: 5\nbars_path: bars.parquet\nout_dir: out\nat: 1767623401\n")
    assert main(["run", str(path), "--dry-run"]) == 0
    return ledger_rows(tmp_path, "d1")


def tca_totals(capsys: Any) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["tca", "--out-dir", "out", "--json"]) == 0
    [totals] = json.loads(capsys.readouterr().out)["totals"]
    return totals  # type: ignore[no-any-return]


def test_a_future_dry_run_puts_the_multiplier_in_notional_and_fees(tmp_path: Path,
                                                                   monkeypatch: Any,
                                                                   capsys: Any) -> None:
    # bar 1: open 6000.50 is above the 6000.25 limit, its low 5999.75 below it: 2 fill at
    # the limit (cap 10% of 40 = 4). Commission max(1.00, 0.005 x 2) = 1.00.
    rows = dry_run(tmp_path, monkeypatch, ES, "side: BUY, qty: 2, limit: 6000.25",
                   (6000.0, 6000.5, 5999.75, 6001.0, 40))
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "FILL", "PNL_SNAPSHOT"]
    assert {(r["multiplier"], r["expiry"], r["sec_type"]) for r in rows} == {
        (50.0, "202603", "FUT")}
    snap = rows[-1]
    assert (snap["avg_px"], snap["arrival_px"], snap["commission"]) == (6000.25, 6000.0, 1.0)
    assert snap["shortfall_bps"] == pytest.approx(0.25 / 6000.0 * 1e4)
    assert snap["fees_bps"] == pytest.approx(1.0 / (2 * 6000.25 * 50) * 1e4)  # not x 1
    totals = tca_totals(capsys)
    assert totals["notional"] == pytest.approx(2 * 6000.25 * 50)


def test_an_option_dry_run_fills_whole_contracts_at_the_option_price(tmp_path: Path,
                                                                     monkeypatch: Any,
                                                                     capsys: Any) -> None:
    # bar 1: low 5.00 below the 5.10 limit: 3 at 5.10 (cap 10% of 50 = 5)
    rows = dry_run(tmp_path, monkeypatch, SPY_C600, "side: BUY, qty: 3, limit: 5.1",
                   (5.05, 5.15, 5.0, 5.2, 50))
    fill = [r for r in rows if r["event"] == "FILL"][0]
    assert (fill["last_qty"], fill["last_px"], fill["strike"], fill["right"]) == (
        3, 5.1, 600.0, "C")
    assert rows[-1]["fees_bps"] == pytest.approx(1.0 / (3 * 5.1 * 100) * 1e4)
    assert tca_totals(capsys)["notional"] == pytest.approx(3 * 5.1 * 100)
    assert main(["tca", "--out-dir", "out"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("d1 ")]
    assert line.split()[2:6] == ["SPY", "20260116", "600", "C"]  # not the stock SPY


def test_an_fx_dry_run_takes_a_fractional_amount_at_idealpro(tmp_path: Path,
                                                             monkeypatch: Any,
                                                             capsys: Any) -> None:
    # bar 1 opens at 1.08505, above the 1.085 SELL limit: marketable, filled at the open
    # (cap 10% of 1e6). Commission max(1.00, 0.005 x 20000.5) = 100.0025.
    rows = dry_run(tmp_path, monkeypatch, "", "symbol: EUR, sec_type: CASH, side: SELL, "
                   "qty: 20000.5, limit: 1.085", (1.0851, 1.08505, 1.0849, 1.0853, 1e6))
    fill = [r for r in rows if r["event"] == "FILL"][0]
    assert (fill["exchange"], fill["multiplier"], fill["last_qty"], fill["last_px"]) == (
        "IDEALPRO", None, 20000.5, 1.08505)
    assert rows[-1]["fees_bps"] == pytest.approx(100.0025 / (20000.5 * 1.08505) * 1e4)
    assert tca_totals(capsys)["notional"] == pytest.approx(20000.5 * 1.08505)


def test_a_market_future_is_judged_at_its_reference_times_the_multiplier(
        tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    write_bars(tmp_path / "bars.parquet", 6000.0, 6000.5, 5999.75, 6001.0, 40)
    path = write(tmp_path, "m.yaml", ES + "order: {side: BUY, qty: 2, allow_market: true, "
                 "tag: m1}\nlimits: {max_notional: 500000}\nttl_sec: 5\n"
                 "bars_path: bars.parquet\nout_dir: out\nat: 1767623401\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    # the reference is bar 0's close: 2 x 50 x 6000 = 600000
    assert "notional 600,000 (qty x multiplier 50 x reference 6,000.00) exceeds " \
           "limits.max_notional 500,000" in err, err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the gateway


def clock_from(t0_ns: int) -> Callable[[], int]:
    start = time.time_ns()
    return lambda: t0_ns + time.time_ns() - start


@pytest.fixture
def listed(make_gateway: Callable[..., Any]) -> Any:
    """A fake gateway whose listings are those of T0."""
    return make_gateway(clock=clock_from(T0))


def live_bars(path: Path, close: float) -> None:
    """1 s bars of the wall clock (runner's clock on a broker run): the last 60 s."""
    start = (time.time_ns() // NS - 61) * NS
    pq.write_table(pa.table({
        "ts": pa.array(start + np.arange(60, dtype=np.int64) * NS,
                       pa.timestamp("ns", tz="UTC")),
        "open": [close] * 60, "high": [close] * 60, "low": [close] * 60,
        "close": [close] * 60, "volume": [1000.0] * 60}), path)


def run_at(cli: Any, gw: Any, tmp_path: Path, tag: str, instrument: str, order: str,
           extra: str = "") -> tuple[int, str]:
    path = write(tmp_path, f"{tag}.yaml", instrument + f"order: {{tag: {tag}, "
                 f"outside_rth: true, {order}}}\nttl_sec: 0.5\nout_dir: out\n{extra}")
    code, out, err = cli(gw.port, "run", str(path))
    return code, out + err


def test_a_future_one_shot_at_the_gateway(listed: Any, cli: Any, tmp_path: Path) -> None:
    listed.script("es", [Ack(), Fill(2, 6000.25, commission=4.5)])
    live_bars(tmp_path / "bars.parquet", 6000.0)
    code, said = run_at(cli, listed, tmp_path, "es", ES, "side: BUY, qty: 2, limit: 6000.25",
                        "bars_path: bars.parquet\n")
    assert code == 0, said
    [placed] = [p for p in listed.place_orders() if p.order_ref == "es"]
    # qualified: ESH6, its conId 700 000 000 + 26 x 100 + 3
    assert (placed.con_id, placed.sec_type, placed.local_symbol, placed.multiplier,
            placed.last_trade, placed.exchange) == (
        "700002603", "FUT", "ESH6", "50", "20260320", "CME")
    rows = ledger_rows(tmp_path, "es")
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "FILL", "PNL_SNAPSHOT"]
    snap = rows[-1]
    assert (snap["multiplier"], snap["commission"], snap["arrival_px"]) == (50, 4.5, 6000.0)
    assert snap["fees_bps"] == pytest.approx(4.5 / (2 * 6000.25 * 50) * 1e4)
    code, out, _ = cli(listed.port, "tca", "--out-dir", "out", "--json")
    [totals] = json.loads(out)["totals"]
    assert totals["notional"] == pytest.approx(2 * 6000.25 * 50)


def test_an_option_one_shot_at_the_gateway(listed: Any, cli: Any, tmp_path: Path) -> None:
    listed.script("opt", [Ack(), Fill(3, 5.1, commission=1.95)])
    code, said = run_at(cli, listed, tmp_path, "opt", SPY_C600, "side: BUY, qty: 3, limit: 5.1")
    assert code == 0, said
    [placed] = [p for p in listed.place_orders() if p.order_ref == "opt"]
    # 710 000 000 + (26 x 12 + 1) x 100 + strike no. 0 x 2 + 0 (a call)
    assert (placed.con_id, placed.strike, placed.right, placed.multiplier) == (
        "710031300", "600.0", "C", "100")
    assert placed.local_symbol.split() == ["SPY", "260116C00600000"]
    code, out, _ = cli(listed.port, "tca", "--out-dir", "out", "--json")
    [totals] = json.loads(out)["totals"]
    assert totals["notional"] == pytest.approx(3 * 5.1 * 100)
    code, out, _ = cli(listed.port, "tca", "--out-dir", "out")
    assert " SPY 260116C00600000 " in out, out  # IB's localSymbol, its spaces as one


def test_an_fx_one_shot_at_the_gateway(listed: Any, cli: Any, tmp_path: Path) -> None:
    listed.script("fx", [Ack(), Fill(20000.5, 1.08505, commission=2.0)])
    code, said = run_at(cli, listed, tmp_path, "fx", "", "symbol: EUR, sec_type: CASH, "
                        "side: SELL, qty: 20000.5, limit: 1.085")
    assert code == 0, said
    [placed] = [p for p in listed.place_orders() if p.order_ref == "fx"]
    assert (placed.con_id, placed.exchange, placed.total_quantity) == (
        "12087792", "IDEALPRO", "20000.5")
    [fill] = [r for r in ledger_rows(tmp_path, "fx") if r["event"] == "FILL"]
    assert (fill["fill_qty"], fill["avg_px"], fill["commission"]) == (20000.5, 1.08505, 2.0)


def test_an_ambiguous_contract_is_refused_with_the_candidates(listed: Any, cli: Any,
                                                              tmp_path: Path) -> None:
    code, said = run_at(cli, listed, tmp_path, "amb", "contract: {sec_type: FUT, symbol: ES, "
                        "exchange: CME, multiplier: 50}\n", "side: BUY, qty: 1, limit: 6000")
    assert code == 2, said
    assert ("ambiguous contract ES FUT CME USD multiplier=50: IB has 3 matches: "
            "ESH6 (expiry 20260320, con_id 700002603); ESM6 (expiry 20260619, con_id "
            "700002606); ESU6 (expiry 20260918, con_id 700002609); nothing was sent "
            "(name one with contract.con_id, contract.local_symbol or contract.expiry)") in said
    assert listed.place_orders() == []
    assert not (tmp_path / "out").exists()
    # named by its local symbol, the same contract is one match
    listed.script("one", [Ack(), Fill(1, 6000.0, commission=2.25)])
    code, said = run_at(cli, listed, tmp_path, "one", "contract: {sec_type: FUT, symbol: ES, "
                        "exchange: CME, multiplier: 50, local_symbol: ESM6}\n",
                        "side: BUY, qty: 1, limit: 6000")
    assert code == 0, said
    [placed] = listed.place_orders()
    assert (placed.con_id, placed.last_trade) == ("700002606", "20260619")


def test_a_multiplier_ib_says_the_spec_does_not_is_refused(listed: Any, cli: Any,
                                                          tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    """A gateway that gives the CFD a multiplier of 10: notional figured at 1 would be a
    tenth of the truth, so nothing is sent until the spec says 10."""
    import dataclasses

    from runner.gateway import contracts

    listing = contracts.listing

    def tenfold(today: Any) -> Any:
        return tuple(dataclasses.replace(i, multiplier="10") if i.symbol == "IBUS500" else i
                     for i in listing(today))

    monkeypatch.setattr(contracts, "listing", tenfold)
    cfd = "contract: {sec_type: CFD, symbol: IBUS500}\n"
    code, said = run_at(cli, listed, tmp_path, "cfd", cfd, "side: BUY, qty: 1, limit: 6000")
    assert code == 2, said
    assert "IB's multiplier is 10, and the spec names none" in said
    assert "add contract.multiplier: 10" in said
    assert listed.place_orders() == []
    listed.script("cfd10", [Ack(), Fill(1, 6000.0, commission=1.0)])
    code, said = run_at(cli, listed, tmp_path, "cfd10", cfd.replace("}", ", multiplier: 10}"),
                        "side: BUY, qty: 1, limit: 6000")
    assert code == 0, said
    code, out, _ = cli(listed.port, "tca", "--out-dir", "out", "--json")
    [totals] = json.loads(out)["totals"]
    assert totals["notional"] == pytest.approx(1 * 6000.0 * 10)


def test_a_con_id_ib_says_is_another_symbol_is_refused() -> None:
    """IB answers a conId by itself; the spec's symbol must be the contract's."""
    from ib_async import Contract

    from runner.broker import OrderRequest
    from runner.contract import ContractTerms
    from runner.errors import NotQualified
    from runner.ib.qualify import _agrees

    order = OrderRequest("t", "ES", "FUT", "CME", "USD", "BUY", 1, "LMT", 6000.0, "DAY",
                         contract=ContractTerms(con_id=756733, multiplier=50))
    spy = Contract(conId=756733, symbol="SPY", secType="STK", exchange="SMART",
                   currency="USD", localSymbol="SPY")
    with pytest.raises(NotQualified, match=r"IB's answer is SPY \(.*con_id 756733\), whose "
                       r"symbol SPY and sec_type STK are not the spec's; nothing was sent"):
        _agrees(order, spy)
    es = Contract(conId=756733, symbol="ES", secType="FUT", multiplier="5")
    with pytest.raises(NotQualified, match="IB's multiplier is 5, the spec's 50"):
        _agrees(order, es)


def test_the_policy_allows_futures_by_sec_type_and_caps_them_with_the_multiplier(
        tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, "es.yaml", ES + "order: {side: BUY, qty: 2, limit: 6000.25}\n")
    (tmp_path / "stocks.yaml").write_text("version: 1\nsec_types: [STK]\n")
    (tmp_path / "futures.yaml").write_text("version: 1\nsec_types: [FUT, OPT]\n"
                                           "max_notional: 550000\n")
    assert main(["plan", str(spec), "--policy", "stocks.yaml"]) == 2
    assert "sec_type FUT is not in the policy's sec_types (STK)" in capsys.readouterr().err
    assert main(["plan", str(spec), "--policy", "futures.yaml"]) == 2
    # 2 x 50 x 6000.25 = 600025 > 550000; without the multiplier it would be 12000.5
    assert ("notional 600,025 (qty x multiplier 50 x limit 6,000.25) exceeds the policy's "
            "max_notional 550,000") in capsys.readouterr().err


# ----------------------------------------------------------------------------- compatible

BEFORE = Path(__file__).parent / "golden" / "before-16"  # the specs as they were at 81fa34f^


def test_every_spec_of_the_earlier_schema_still_validates(tmp_path: Path, monkeypatch: Any,
                                                         capsys: Any, policy: Path) -> None:
    """The shipped specs as they were before issue 16 (and the schema they were written
    for): each one the old schema took, runner takes now, unchanged. Checked outside the
    repository, so that its policy (which refuses one of them on purpose) is not asked."""
    import yaml
    from jsonschema import Draft202012Validator

    class Loader(yaml.SafeLoader):  # `at:` is text, as runner (and YAML 1.2) reads it
        pass

    Loader.add_constructor("tag:yaml.org,2002:timestamp", Loader.construct_yaml_str)
    old = Draft202012Validator(json.loads((BEFORE / "spec.schema.json").read_text()))
    files = sorted(BEFORE.glob("*.yaml"))
    assert len(files) == 15  # specs/ (13) and docs/examples/{invalid,refused}.yaml
    policy.unlink()  # no policy: the specs alone
    for path in files:
        docs = list(yaml.load_all(path.read_text(), Loader))  # noqa: S506 (a safe loader)
        was_valid = all(old.is_valid(d) for d in docs)
        assert was_valid == (path.name != "docs_examples_invalid.yaml"), path
        monkeypatch.chdir(tmp_path)
        copy = tmp_path / path.name
        copy.write_text(path.read_text())
        assert main(["validate", str(copy)]) == (0 if was_valid else 2), capsys.readouterr()
    capsys.readouterr()


# ----------------------------------------------------------------------------- review mends


def test_a_policy_without_sec_types_allows_no_future(tmp_path: Path, policy: Path,
                                                     capsys: Any) -> None:
    """A policy written for stocks (no sec_types) lets no future or option through."""
    policy.write_text("version: 1\nsymbols: [ES, SPY]\n")
    es = write(tmp_path, "es.yaml", ES + "order: {side: BUY, qty: 1, limit: 6000}\n")
    opt = write(tmp_path, "o.yaml", SPY_C600 + "order: {side: SELL, qty: 19, limit: 5}\n")
    for path, sec_type in ((es, "FUT"), (opt, "OPT")):
        assert main(["plan", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"sec_type {sec_type} needs a policy that names it: " in err, err
        assert "runner-policy.yaml has no sec_types, which allows STK, CASH and CRYPTO only" \
            in err


def test_a_derivatives_bars_file_with_a_symbol_column_is_refused(tmp_path: Path,
                                                                 monkeypatch: Any,
                                                                 capsys: Any) -> None:
    """A symbol names the underlying's rows, not the option's: nothing is run on them."""
    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.table({
        "ts": pa.array([B0, B0 + NS], pa.timestamp("ns", tz="UTC")), "symbol": ["SPY"] * 2,
        "open": [600.0] * 2, "high": [600.0] * 2, "low": [600.0] * 2, "close": [600.0] * 2,
        "volume": [1e4] * 2}), tmp_path / "capture.parquet")
    path = write(tmp_path, "o.yaml", SPY_C600 + "order: {side: SELL, qty: 1, limit: 5.1}\n"
                 "bars_path: capture.parquet\nout_dir: out\nat: 1767623401\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "capture.parquet: a column 'symbol' names its rows by symbol, which does not " \
           "tell one OPT of SPY from another" in err, err
    assert not (tmp_path / "out").exists()


def test_a_sanity_cancel_of_an_option_needs_a_reference(tmp_path: Path, monkeypatch: Any,
                                                        capsys: Any) -> None:
    """0.01 is far below a stock, not below a far out-of-the-money option."""
    monkeypatch.chdir(tmp_path)
    assert main(["sanity-cancel", "--sec-type", "OPT", "--symbol", "SPY", "--expiry",
                 "20260116", "--strike", "700", "--right", "C", "--multiplier", "100",
                 "--dry-run", "--out-dir", "out"]) == 2
    assert "sanity-cancel BUY limit 0.01 (OPT) cannot be shown to be far from the market" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_ledger_records_the_contract_ib_qualified(listed: Any, cli: Any,
                                                      tmp_path: Path) -> None:
    listed.script("q", [Ack(), Fill(1, 6000.0, commission=2.25)])
    code, said = run_at(cli, listed, tmp_path, "q", ES, "side: BUY, qty: 1, limit: 6000")
    assert code == 0, said
    rows = ledger_rows(tmp_path, "q")
    # the spec said 202603; IB's ESH6 is conId 700002603, last trade 20260320
    assert {(r["con_id"], r["local_symbol"], r["expiry"], r["multiplier"]) for r in rows} \
        == {(700002603, "ESH6", "20260320", 50.0)}


def test_a_wrong_multiplier_is_refused_naming_ibs(listed: Any, cli: Any,
                                                  tmp_path: Path) -> None:
    code, said = run_at(cli, listed, tmp_path, "m5", ES.replace("multiplier: 50",
                                                                "multiplier: 5"),
                        "side: BUY, qty: 1, limit: 6000")
    assert code == 2, said
    assert ("contract ES FUT CME USD lastTradeDateOrContractMonth=202603 multiplier=5: IB has "
            "none with multiplier 5; without it: ESH6 (expiry 20260320, multiplier 50, con_id "
            "700002603); nothing was sent (fix contract.multiplier") in said
    assert listed.place_orders() == []


def test_a_multiplier_of_one_is_the_truth_for_a_stock(listed: Any, cli: Any,
                                                      tmp_path: Path) -> None:
    listed.script("one", [Ack()])
    code, said = run_at(cli, listed, tmp_path, "one", "contract: {sec_type: STK, symbol: SPY, "
                        "multiplier: 1}\n", "side: BUY, qty: 1, limit: 10")
    assert code == 0, said
    [placed] = listed.place_orders()
    assert (placed.con_id, placed.multiplier) == ("756733", "")  # as IB qualified it


def test_the_day_caps_count_the_multiplier(listed: Any, cli: Any, tmp_path: Path,
                                           policy: Path) -> None:
    """Placed today 1 x 50 x 6000 = 300000; the next 1 x 50 x 5000 = 250000 makes 550000,
    over a 500000 cap: refused. Without the multiplier it would be 11000."""
    policy.write_text("version: 1\nsec_types: [FUT]\nmax_day_notional: 500000\n"
                      "ledger_root: out\n")
    listed.script("d1", [Ack(), Fill(1, 6000.0, commission=2.25)])
    code, said = run_at(cli, listed, tmp_path, "d1", ES, "side: BUY, qty: 1, limit: 6000")
    assert code == 0, said
    code, said = run_at(cli, listed, tmp_path, "d2", ES, "side: BUY, qty: 1, limit: 5000")
    assert code == 2, said
    assert ("notional placed today 300,000 + this order 250,000 = 550,000 exceeds the policy's "
            "max_day_notional 500,000") in said
    # a file of two: 300000 today + 1 x 50 x 3000 + 1 x 50 x 2000 = 550000, refused before
    # either is sent (without the multiplier the first would count 3000: 403000, let through)
    both = write(tmp_path, "two.yaml", ES + "order: {tag: t1, outside_rth: true, side: BUY, "
                 "qty: 1, limit: 3000}\nttl_sec: 0.5\nout_dir: out\n---\nversion: 1\n"
                 "kind: one-shot\n" + ES + "order: {tag: t2, outside_rth: true, side: BUY, "
                 "qty: 1, limit: 2000}\nttl_sec: 0.5\nout_dir: out\n")
    code, out, err = cli(listed.port, "run", str(both))
    assert code == 2, out + err
    assert "notional placed today 450,000 + this order 100,000 = 550,000 exceeds" in err, err
    assert [p.order_ref for p in listed.place_orders()] == ["d1"]


def test_place_refuses_an_instrument_it_did_not_qualify(listed: Any) -> None:
    """The Contract kept from qualify() is of that request: another one is never sent."""
    import asyncio
    import dataclasses

    from runner.broker import OrderRequest
    from runner.contract import ContractTerms
    from runner.ib import IBBroker
    from runner.plan import Connection

    req = OrderRequest("st", "ES", "FUT", "CME", "USD", "BUY", 1, "LMT", 6000.0, "DAY",
                       contract=ContractTerms(expiry="202603", multiplier=50))
    june = dataclasses.replace(req, contract=ContractTerms(expiry="202606", multiplier=50))

    async def body() -> None:
        broker = IBBroker(Connection("127.0.0.1", listed.port, client_id=3))
        await broker.connect()
        try:
            await broker.qualify(req)
            with pytest.raises(RuntimeError, match="place\\(\\) of an instrument qualify\\(\\) "
                                                   "was not asked for"):
                await broker.place(june)
        finally:
            await broker.close()

    asyncio.run(body())
    assert listed.place_orders() == []
