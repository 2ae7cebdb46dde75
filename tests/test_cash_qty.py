"""order.cash_qty (IB's cashQty): the spec, the plan, the gates, the day caps, the
simulator's rule, the ledger column and TCA. The IB path: tests/test_cash_qty_ib.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from runner.bars import BAR_NS, Bars
from runner.broker import Ev, OrderRequest
from runner.cli import main
from runner.errors import SpecError
from runner.gates import Context, check
from runner.ledger import Ledger, read_ledger
from runner.plan import compile_plan
from runner.policy import Policy
from runner.preflight import day_totals
from runner.sim import SimBroker, SimConfig
from runner.spec import from_mapping, load_text
from runner.tca import order_table, snapshot

S = BAR_NS
T0 = 1_767_623_400 * S  # 2026-01-05T14:30:00Z
BTC = {"symbol": "BTC", "sec_type": "CRYPTO", "exchange": "PAXOS"}
EUR = {"symbol": "EUR", "sec_type": "CASH", "exchange": "IDEALPRO"}


def spec(limits: dict[str, Any] | None = None, **order: Any) -> dict[str, Any]:
    o = {**BTC, "side": "BUY", "cash_qty": 1000, "type": "MKT", "allow_market": True, **order}
    data = {"version": 1, "kind": "one-shot", "order": {k: v for k, v in o.items()
                                                        if v is not None}}
    return {**data, "limits": limits} if limits else data


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_text(text, "s.yaml")
    return e.value.lines


HEAD = "version: 1\nkind: one-shot\norder:\n"


# --- the spec ------------------------------------------------------------------------


def test_exactly_one_of_qty_and_cash_qty() -> None:
    both = HEAD + "  symbol: EUR\n  sec_type: CASH\n  side: BUY\n  qty: 1\n  cash_qty: 5\n" \
                  "  limit: 1.1\n"
    assert errors(both) == ["s.yaml:8:3: order.cash_qty: an order has qty or cash_qty, not "
                            "both (remove one)"]
    neither = HEAD + "  symbol: EUR\n  sec_type: CASH\n  side: BUY\n  limit: 1.1\n"
    assert errors(neither) == ["s.yaml:4:3: order: missing required key 'qty' (or cash_qty: "
                               "the order's size in its currency)"]
    zero = HEAD + "  symbol: EUR\n  sec_type: CASH\n  side: BUY\n  cash_qty: 0\n  limit: 1.1\n"
    assert errors(zero) == ["s.yaml:7:13: order.cash_qty: must be > 0, got 0"]


@pytest.mark.parametrize(("lines", "expected"), [
    ("  symbol: SPY\n  side: BUY\n  cash_qty: 500\n  limit: 10\n",
     "s.yaml:6:3: order.cash_qty: IB takes a cash quantity only for CASH and CRYPTO orders, "
     "not STK; give qty (units) instead"),
    ("  symbol: BTC\n  sec_type: CRYPTO\n  exchange: PAXOS\n  side: SELL\n  cash_qty: 500\n"
     "  limit: 10\n",
     "s.yaml:8:3: order.cash_qty: IB takes a cash quantity for a CRYPTO BUY only; a SELL goes "
     "by quantity: give qty (units) instead"),
    ("  symbol: EUR\n  sec_type: CASH\n  side: BUY\n  cash_qty: 500\n  type: STP\n"
     "  stop: 1.2\n  allow_market: true\n",
     "s.yaml:7:3: order.cash_qty: IB takes a cash quantity for LMT and MKT orders only, not "
     "STP; give qty (units) instead"),
], ids=["stock", "crypto-sell", "stop"])
def test_cash_qty_only_where_ib_takes_it(lines: str, expected: str) -> None:
    assert errors(HEAD + lines) == [expected]


def test_spec_limits_judge_a_cash_order_by_its_cash_and_its_limit() -> None:
    text = HEAD + "  symbol: EUR\n  sec_type: CASH\n  side: SELL\n  cash_qty: 1000\n" \
                  "  limit: 1.25\nlimits:\n  max_qty: 500\n  max_notional: 999\n"
    # 1000 / 1.25 = 800 EUR > 500; the notional is the cash: 1,000 > 999
    assert errors(text) == [
        "s.yaml:7:13: order.cash_qty: 1,000 exceeds limits.max_notional 999",
        "s.yaml:7:13: order.cash_qty: 1,000 buys 800 at the limit 1.25, more than "
        "limits.max_qty 500"]
    fits = from_mapping(spec({"max_qty": 800, "max_notional": 1000}, **EUR, type="LMT",
                             limit=1.25, allow_market=None))
    assert fits.order is not None and (fits.order.qty, fits.order.cash_qty) == (0.0, 1000.0)


# --- the plan ------------------------------------------------------------------------


def test_plan_shows_cash_qty_and_sends_total_quantity_0(tmp_path: Path, monkeypatch,
                                                        capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yaml").write_text(
        "version: 1\nkind: one-shot\norder:\n  symbol: BTC\n  sec_type: CRYPTO\n"
        "  exchange: PAXOS\n  side: BUY\n  cash_qty: 1000\n  type: MKT\n  allow_market: true\n"
        "  tif: IOC\n  tag: b1\nttl_sec: 5\n")
    assert main(["plan", "b.yaml"]) == 0
    assert "  3. place    BUY cashQty=1000 BTC MKT IOC orderRef=b1\n" in capsys.readouterr().out
    assert main(["plan", "b.yaml", "--json"]) == 0
    [p] = json.loads(capsys.readouterr().out)["plans"]
    assert p["order"]["cash_qty"] == 1000 and p["order"]["qty"] == 0
    assert p["order"]["sent"] == {"action": "BUY", "totalQuantity": 0, "cashQty": 1000,
                                  "orderType": "MKT", "tif": "IOC", "outsideRth": False,
                                  "orderRef": "b1"}


def test_cash_qty_flag_of_one_shot(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["one-shot", "--symbol", "EUR", "--sec-type", "CASH", "--side", "SELL",
            "--cash-qty", "50000", "--limit", "1.1", "--tag", "fx1", "--dry-run",
            "--ttl_sec", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    [intent, *_] = read_ledger(tmp_path / "data" / "exec").to_pylist()
    assert (intent["exchange"], intent["side"], intent["qty"], intent["cash_qty"],
            intent["limit"]) == ("IDEALPRO", "SELL", None, 50_000.0, 1.1)
    capsys.readouterr()
    assert main([*argv, "--qty", "1"]) == 2  # typed, even as its default: not dropped
    assert capsys.readouterr().err == ("<command line>: --cash-qty: an order has qty or "
                                       "cash_qty, not both (remove one)\n")


# --- the gates and the day caps ------------------------------------------------------

POLICY = Policy(source="p.yaml", max_qty=0.02, max_notional=900, max_day_notional=2000,
                allow_market=True)
CTX = Context(now_ns=T0, port=7497, accounts=("DU1",), priced=True, reference_px=40_000.0,
              reference_ns=T0 - S, day_orders=0, day_notional=1500.0, market_open=True)


def gate(ctx: Context = CTX, policy: Policy = POLICY, **order: Any) -> list[str]:
    plan = compile_plan(from_mapping(spec(**order)), {}, T0)
    return check(plan, policy, ctx)


def test_the_notional_of_a_cash_order_is_its_cash() -> None:
    # 1000 > 900 per order; 1500 placed today + 1000 = 2500 > 2000; 1000 / 40,000 = 0.025
    # BTC at the reference > max_qty 0.02
    assert gate() == [
        "cash_qty 1,000 buys 0.025 at the reference 40,000.00, more than the policy's max_qty "
        "0.02",
        "notional 1,000 (cash_qty) exceeds the policy's max_notional 900",
        "notional placed today 1,500 + this order 1,000 = 2,500 exceeds the policy's "
        "max_day_notional 2,000"]
    assert gate(cash_qty=800, ctx=dataclasses.replace(CTX, day_notional=1200.0)) == []
    # no reference: the notional is still known, max_qty is not: refused
    blind = dataclasses.replace(CTX, reference_px=None, reference_ns=None)
    blind = dataclasses.replace(blind, day_notional=1200.0)
    no_reference = ("cannot check max_qty of a cash_qty order without a reference price: a "
                    "BUY's limit says the fewest units it buys, not the most (add bars_path)")
    assert gate(cash_qty=800, ctx=blind) == [no_reference]
    # a BUY limit pays at most its limit: 800 / 50,000 = 0.016 is the fewest it buys, so
    # without a reference it cannot be judged either
    assert gate(cash_qty=800, type="LMT", limit=50_000, ctx=blind) == [no_reference]


def test_a_cash_buy_limit_above_the_market_is_judged_at_the_market() -> None:
    """A BUY's units are at most cash / the lower of its limit and the reference: a limit
    of 80,000 over a 40,000 market buys 1000 / 40,000 = 0.025 BTC, over max_qty 0.02."""
    ctx = dataclasses.replace(CTX, day_notional=0.0)
    policy = dataclasses.replace(POLICY, max_notional=None)
    assert gate(cash_qty=1000, type="LMT", limit=80_000, ctx=ctx, policy=policy) == [
        "cash_qty 1,000 buys 0.025 at the reference 40,000.00, more than the policy's max_qty "
        "0.02"]
    assert gate(cash_qty=800, type="LMT", limit=80_000, ctx=ctx, policy=policy) == []  # 0.02
    # below the market the limit is the lower: 1000 / 30,000 = 0.0333...
    assert gate(cash_qty=1000, type="LMT", limit=30_000, ctx=ctx, policy=policy) == [
        "cash_qty 1,000 buys 0.0333 at the limit 30,000.00, more than the policy's max_qty "
        "0.02"]


def test_day_caps_count_a_cash_orders_intent_at_its_cash(tmp_path: Path) -> None:
    with Ledger(tmp_path, "2026-01-05", "r1") as ledger:
        ledger.append({"ts": T0, "tag": "c", "event": "INTENT", "broker": "ib", "qty": None,
                       "cash_qty": 1000.0, "limit": None, "arrival_px": 40_000.0})
        ledger.append({"ts": T0 + S, "tag": "q", "event": "INTENT", "broker": "ib",
                       "qty": 2.0, "limit": 10.0})
    assert day_totals(str(tmp_path), "2026-01-05") == (2, 1000.0 + 2 * 10.0)


def test_a_ledger_of_before_cash_qty_still_reads(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    with Ledger(tmp_path, "2026-01-05", "old") as ledger:
        ledger.append({"ts": T0, "tag": "q", "event": "INTENT", "broker": "ib", "qty": 3.0,
                       "limit": 10.0, "side": "BUY", "symbol": "SPY"})
        ledger.append({"ts": T0 + S, "tag": "q", "event": "FILL", "fill_qty": 3.0,
                       "avg_px": 10.0})
    path = tmp_path / "2026-01-05" / "ledger.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["cash_qty"]), path)
    assert day_totals(str(tmp_path), "2026-01-05") == (1, 30.0)
    [o] = order_table(read_ledger(tmp_path)).to_pylist()
    assert (o["qty"], o["cash_qty"], o["fill_ratio"]) == (3.0, None, 1.0)


# --- the simulator ---------------------------------------------------------------------

# Volume 0.1 BTC a bar: with participation 10% a bar gives at most 0.01 BTC.
BARS = Bars(ts=[T0 + i * S for i in range(4)], open=[40_000.0, 40_010.0, 40_020.0, 40_030.0],
            high=[40_100.0] * 4, low=[39_900.0] * 4, close=[40_000.0] * 4, volume=[0.1] * 4)


def order(cash: float, **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {"tag": "c1", "symbol": "BTC", "sec_type": "CRYPTO",
                              "exchange": "PAXOS", "currency": "USD", "side": "BUY", "qty": 0.0,
                              "order_type": "MKT", "limit": None, "tif": "DAY",
                              "cash_qty": cash, **kw}
    return OrderRequest(**fields)


def sim_events(req: OrderRequest, bars: Bars = BARS) -> list[Any]:
    import asyncio

    async def go() -> list[Any]:
        sim = SimBroker(bars, SimConfig(), T0)
        await sim.place(req)
        out = []
        while (e := await sim.next_event(T0 + 3600 * S)) is not None:
            out.append(e)
        return out

    return asyncio.run(go())


def test_sim_fills_a_cash_order_by_money_bar_by_bar() -> None:
    events = sim_events(order(1000))
    # bar 0: 0.01 x 40,000 = 400 (600 left); bar 1: 0.01 x 40,010 = 400.1 (199.9 left);
    # bar 2: 199.9 / 40,020 = 0.0049950025..., floored to 1e-8: 0.004995 (the cash spent)
    assert [(e.kind, e.last_qty, e.last_px, (e.ts_ns - T0) // S) for e in events[1:]] == [
        (Ev.PARTIAL, 0.01, 40_000.0, 1), (Ev.PARTIAL, 0.01, 40_010.0, 2),
        (Ev.FILL, 0.004995, 40_020.0, 3)]
    assert events[-1].fill_qty == pytest.approx(0.024995, abs=1e-12)


def test_sim_cash_order_that_the_bars_cannot_spend_stays_open() -> None:
    events = sim_events(order(5000))  # 4 bars x 0.01 BTC buy about 1,600
    assert [e.kind for e in events] == [Ev.ACK, *[Ev.PARTIAL] * 4]


def test_sim_cash_fx_sell_at_a_marketable_limit() -> None:
    fx = Bars(ts=[T0], open=[1.12], high=[1.13], low=[1.11], close=[1.12], volume=[1e7])
    events = sim_events(order(1000, symbol="EUR", sec_type="CASH", exchange="IDEALPRO",
                              side="SELL", order_type="LMT", limit=1.1), fx)
    # SELL limit 1.1 below the open 1.12: at the open; 1000 / 1.12 = 892.857142857...
    assert [(e.kind, e.last_qty, e.last_px) for e in events[1:]] == [
        (Ev.FILL, 892.85714285, 1.12)]


# --- the ledger and TCA ----------------------------------------------------------------


def test_tca_of_a_cash_order() -> None:
    flat = Bars(ts=[T0 + i * S for i in range(10)], open=[40_000.0] * 10,
                high=[40_000.0] * 10, low=[40_000.0] * 10, close=[40_000.0] * 10,
                volume=[1.0] * 10)
    snap = snapshot("BUY", 0.0, 0.02, 40_100.0, None, T0 + S, T0 + 2 * S, T0 + 5 * S, flat,
                    cash_qty=1000.0)
    assert snap is not None
    # filled 0.02 x 40,100 = 802 of 1,000; arrival 40,000: +25 bps; IS: the cash bought
    # 0.025 at arrival, 0.005 unfilled at no move: 0.02 x 100 / (0.025 x 40,000) = 20 bps
    assert snap["fill_ratio"] == pytest.approx(0.802)
    assert snap["shortfall_bps"] == pytest.approx(25.0)
    assert snap["is_bps"] == pytest.approx(20.0)


def test_ledger_rows_of_a_dry_run_cash_order_and_its_tca(tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    # BARS and a bar before them: its close, 40,000, is the arrival price at 14:30:00
    cols = {"ts": pa.array([T0 + i * S for i in range(-1, 4)], pa.timestamp("ns", tz="UTC")),
            "open": [40_000.0, *BARS.open], "high": [40_100.0, *BARS.high],
            "low": [39_900.0, *BARS.low], "close": [40_000.0, *BARS.close],
            "volume": [0.1, *BARS.volume]}
    pq.write_table(pa.table(cols), tmp_path / "btc.parquet")
    (tmp_path / "b.yaml").write_text(
        "version: 1\nkind: one-shot\nat: 2026-01-05T14:30:00Z\nbars_path: btc.parquet\n"
        "order:\n  symbol: BTC\n  sec_type: CRYPTO\n  exchange: PAXOS\n  side: BUY\n"
        "  cash_qty: 1000\n  type: MKT\n  allow_market: true\n  tag: b1\nttl_sec: 60\n")
    assert main(["run", "b.yaml", "--dry-run"]) == 0, capsys.readouterr().err
    rows = read_ledger(tmp_path / "data" / "exec").to_pylist()
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "PARTIAL", "FILL",
                                          "PNL_SNAPSHOT"]
    assert {(r["qty"], r["cash_qty"]) for r in rows} == {(None, 1000.0)}
    assert rows[-2]["fill_qty"] == pytest.approx(0.024995)
    [o] = order_table(read_ledger(tmp_path / "data" / "exec")).to_pylist()
    spent = 0.01 * 40_000 + 0.01 * 40_010 + 0.004995 * 40_020  # 999.8999: the cash, floored
    assert (o["cash_qty"], o["qty"], o["state"]) == (1000.0, None, "FILL")
    assert o["fill_ratio"] == pytest.approx(spent / 1000)
    assert rows[-1]["fill_ratio"] == pytest.approx(spent / 1000)
    capsys.readouterr()
    assert main(["tca"]) == 0
    [line] = [t for t in capsys.readouterr().out.splitlines() if t.startswith("b1 ")]
    assert " FILL  0.024995/cash 1000 100% " in line  # 99.99% of the cash, as 0 decimals


def test_the_status_line_of_a_cash_order() -> None:
    from runner.progress import Status, apply

    s = apply(Status("one-shot", "c"), {"event": "INTENT", "ts": T0, "qty": None,
                                        "cash_qty": 1000.0, "tag": "c"}, ttl_sec=None)
    s = apply(s, {"event": "PARTIAL", "ts": T0 + S, "fill_qty": 0.01}, ttl_sec=None)
    assert s.text(T0 + S) == "[one-shot] c PARTIAL 0.01/cash 1000"
