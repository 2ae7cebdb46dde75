"""Bars mode fills every order type and tif the simulator has rules for (runner.simrules),
on the wall clock: the unmodified ib_async client over 127.0.0.1 against the fake gateway
with bars the test builds, and `runner run` against it next to `runner run --dry-run` on
the same bars. Every expected price is worked out here by hand from those bars.

Bar clock: bar 0 starts half a second after the gateway starts, and bar time runs 20
times as fast as the wall clock, so a one-second bar lasts 50 ms and every order is
acknowledged before bar 0: the first bar it may trade on is bar 0.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ib_async import IB, LimitOrder, MarketOrder, Order, Stock, StopLimitOrder, StopOrder
from ibclient import connected, error_log, run, until

from runner.bars import Bars
from runner.broker import OrderRequest
from runner.gateway import FakeGateway
from runner.ledger import read_ledger
from runner.ordertypes import RULES, ib_fields, spec_prices

NS = 1_000_000_000
DAY = 1_767_623_400 * NS  # Monday 2026-01-05 14:30Z, 09:30 New York: the open
SPEED = 20.0


def bars_of(first_ns: int, *ohlcv: tuple[float, float, float, float, float]) -> Bars:
    """One-second bars from `first_ns`, each (open, high, low, close, volume)."""
    o, h, lo, c, v = (np.array(col, dtype=float) for col in zip(*ohlcv, strict=True))
    return Bars(ts=first_ns + np.arange(len(o), dtype=np.int64) * NS, open=o, high=h, low=lo,
                close=c, volume=v)


def bars_gateway(bars: Bars) -> FakeGateway:
    return FakeGateway(bars=bars, bars_start_ns=time.time_ns() + NS // 2, speed=SPEED)


async def spy(ib: IB) -> Any:
    [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    return contract


def done(*trades: Any) -> bool:
    return all(t.orderStatus.status in ("Filled", "Cancelled") for t in trades)


def executions(trade: Any) -> list[tuple[float, float]]:
    return [(f.execution.shares, f.execution.price) for f in trade.fills]


# ------------------------------------------------- the IB fields, back to runner's prices


@pytest.mark.parametrize("order_type", sorted(RULES))
def test_spec_prices_inverts_ib_fields_for_every_type(order_type: str) -> None:
    """What the runner sends (ib_fields) comes back as the prices it sent, type by type."""
    rule = RULES[order_type]
    given = {key: 1.0 + i / 8 for i, key in enumerate(
        (*rule.needs, *rule.may, *rule.one_of[:1]))}
    if order_type in ("MIDPRICE", "REL", "PEG MID") and "cap" in given:
        given["limit"] = given.pop("cap")  # a peg's cap is OrderRequest.limit
    req = OrderRequest(tag="t", symbol="SPY", sec_type="STK", exchange="SMART",
                       currency="USD", side="BUY", qty=1, order_type=order_type,
                       limit=given.pop("limit", None), tif="DAY", **given)
    sent = dict(ib_fields(req))
    back = spec_prices(order_type, sent.get("lmtPrice"), sent.get("auxPrice"),
                       sent.get("trailingPercent"), sent.get("trailStopPrice"),
                       sent.get("lmtPriceOffset"))
    want = {k: getattr(req, k) for k in ("limit", "stop", "trail_amount", "trail_percent",
                                         "offset")}
    assert back == want
    # and with the percent trail instead of the amount
    if order_type in ("TRAIL", "TRAIL LIMIT"):
        pct = dataclasses.replace(req, trail_amount=None, trail_percent=1.5)
        sent = dict(ib_fields(pct))
        assert spec_prices(order_type, None, sent.get("auxPrice"), sent["trailingPercent"],
                           sent.get("trailStopPrice"), sent.get("lmtPriceOffset")) == {
            **want, "trail_amount": None, "trail_percent": 1.5}


# ------------------------------------------------------------------ over the wire


@pytest.mark.parametrize("open1", [100.2, 100.8])
def test_a_stop_triggers_on_the_bar_that_trades_through_and_fills_at_the_stop_or_gap(
        open1: float) -> None:
    stop = 100.5
    bars = bars_of(DAY, (100.0, 100.4, 99.9, 100.0, 1000),   # high under the stop: nothing
                   (open1, 100.9, 100.1, 100.6, 1000),      # high 100.9 >= 100.5: triggers
                   (100.6, 100.7, 100.5, 100.6, 1000))
    by_hand = max(open1, stop)  # the stop, or the open when it gapped over it

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            trade = ib.placeOrder(await spy(ib), StopOrder("BUY", 10, stop, orderRef="stp"))
            await until(ib, lambda: done(trade), timeout=4)
            assert trade.orderStatus.status == "Filled"
            assert executions(trade) == [(10, by_hand)]  # 10 % of 1000 covers it on bar 1

    run(body())


def test_a_percent_trailing_stop_trails_the_highs_and_fills_at_its_stop() -> None:
    """A SELL TRAIL of 1 %: bar 0's stop is 1 % under its open, 100 x 0.99 = 99.00 (its low
    99.90 stays over it); bar 1's trails bar 0's high of 102: 102 x 0.99 = 100.98, and bar
    1's low 100.90 trades through it, from an open of 101.50 above it: filled at 100.98."""
    bars = bars_of(DAY, (100.0, 102.0, 99.9, 101.5, 1000),
                   (101.5, 101.6, 100.9, 101.0, 1000),
                   (101.0, 101.0, 100.0, 100.5, 1000))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            order = Order(action="SELL", totalQuantity=10, orderType="TRAIL",
                          trailingPercent=1.0, orderRef="trail")
            trade = ib.placeOrder(await spy(ib), order)
            await until(ib, lambda: done(trade), timeout=4)
            [snap] = gw.orders_by_ref("trail")
            assert (snap.order.trailing_percent, snap.order.aux_price) == (1.0, None)
            assert executions(trade) == [(10, 100.98)]

    run(body())


def test_a_trailing_stop_limit_takes_its_limit_from_the_stop_less_its_offset() -> None:
    """A SELL TRAIL LIMIT, trail 0.50, offset 0.10. Bar 0's stop: 100 - 0.5 = 99.50 (low
    99.80 over it). Bar 1's: bar 0's high 101 - 0.5 = 100.50; bar 1 gaps under it, opening
    at 100.30: triggered there, limit 100.50 - 0.10 = 100.40, which 100.30 is not better
    than. Bar 2 opens at 100.45, over the limit: filled at its open. (Without the offset
    the limit would be 100.50, which no later price reaches.)"""
    bars = bars_of(DAY, (100.0, 101.0, 99.8, 100.8, 1000),
                   (100.3, 100.35, 100.2, 100.3, 1000),
                   (100.45, 100.48, 100.4, 100.45, 1000))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            order = Order(action="SELL", totalQuantity=10, orderType="TRAIL LIMIT",
                          auxPrice=0.5, lmtPriceOffset=0.1, orderRef="trail-lmt")
            trade = ib.placeOrder(await spy(ib), order)
            await until(ib, lambda: done(trade), timeout=4)
            [snap] = gw.orders_by_ref("trail-lmt")
            assert (snap.order.aux_price, snap.order.lmt_price_offset) == (0.5, 0.1)
            assert executions(trade) == [(10, 100.45)]

    run(body())


def test_a_stop_limit_whose_trigger_gaps_over_its_limit_rests_unfilled() -> None:
    """Both BUY STP LMTs trigger on bar 1 (high 100.9 >= 100.5) at its open 100.80, over
    the stop. Limit 100.85: 100.80 is better, filled there. Limit 100.60: not on the
    trigger bar, and no later open or low is under 100.60: it rests. The SELL LMT 100.95
    is a witness: only bar 2's high (101.0) is over it, so once it fills, every bar that
    could have filled the rest has been played."""
    bars = bars_of(DAY, (100.0, 100.2, 99.9, 100.0, 1000),
                   (100.8, 100.9, 100.7, 100.9, 1000),
                   (100.9, 101.0, 100.7, 100.8, 1000))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            c = await spy(ib)
            rests = ib.placeOrder(c, StopLimitOrder("BUY", 10, 100.6, 100.5, orderRef="rests"))
            fills = ib.placeOrder(c, StopLimitOrder("BUY", 10, 100.85, 100.5, orderRef="fills"))
            witness = ib.placeOrder(c, LimitOrder("SELL", 10, 100.95, orderRef="witness"))
            await until(ib, lambda: done(fills, witness), timeout=4)
            assert executions(witness) == [(10, 100.95)]
            assert executions(fills) == [(10, 100.8)]
            assert (rests.orderStatus.status, rests.fills) == ("Submitted", [])
            assert gw.orders_by_ref("rests")[0].status == "Submitted"

    run(body())


def test_a_market_on_close_fills_at_the_last_regular_bars_close_within_the_cap() -> None:
    """Bars 15:59:58 and 15:59:59 New York (the close is 16:00): the auction is the last,
    at its close 100.20, not its open; 10 % of its volume 50 is 5 of the 10, and the rest
    is cancelled at the bar's end with the simulator's message."""
    close = DAY + int(6.5 * 3600) * NS  # 21:00Z, 16:00 New York
    bars = bars_of(close - 2 * NS, (100.0, 100.1, 99.9, 100.1, 1000),
                   (100.15, 100.3, 100.1, 100.2, 50))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            errors = error_log(ib)
            order = Order(action="BUY", totalQuantity=10, orderType="MOC", orderRef="moc")
            trade = ib.placeOrder(await spy(ib), order)
            await until(ib, lambda: done(trade), timeout=4)
            assert trade.orderStatus.status == "Cancelled"
            assert executions(trade) == [(5, 100.2)]
            assert (trade.order.orderId, 202, "Order Canceled - reason:MOC: rest cancelled "
                    "at the close") in errors

    run(body())


def test_a_fill_or_kill_is_cancelled_when_its_first_bar_cannot_fill_it_all() -> None:
    """Bar 0 gives 10 % of 50 = 5 at its open 100.00 (under both limits): the FOK of 5
    fills there, the FOK of 10 gets nothing and is cancelled at bar 0's end, although bar
    1's volume could have filled it."""
    bars = bars_of(DAY, (100.0, 100.1, 99.9, 100.0, 50),
                   (100.0, 100.1, 99.9, 100.0, 1000))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            errors = error_log(ib)
            c = await spy(ib)
            whole = ib.placeOrder(c, LimitOrder("BUY", 5, 100.05, tif="FOK", orderRef="five"))
            killed = ib.placeOrder(c, LimitOrder("BUY", 10, 100.05, tif="FOK", orderRef="ten"))
            await until(ib, lambda: done(whole, killed), timeout=4)
            assert (whole.orderStatus.status, executions(whole)) == ("Filled", [(5, 100.0)])
            assert (killed.orderStatus.status, killed.fills) == ("Cancelled", [])
            assert (killed.order.orderId, 202, "Order Canceled - reason:FOK: not filled "
                    "in full at once") in errors

    run(body())


def test_an_order_the_simulator_cannot_run_rests_in_bars_mode() -> None:
    """A MOC of EUR.USD (the simulator knows only US stocks' closing auctions) rests, as
    a MKT placed after it is filled at bar 0's open."""
    bars = bars_of(DAY, (1.085, 1.086, 1.084, 1.085, 10_000_000))

    async def body() -> None:
        from ib_async import Forex

        async with bars_gateway(bars) as gw, connected(gw) as ib:
            [eur] = await ib.qualifyContractsAsync(Forex("EURUSD"))
            moc = ib.placeOrder(eur, Order(action="BUY", totalQuantity=20000,
                                           orderType="MOC", orderRef="moc"))
            mkt = ib.placeOrder(eur, MarketOrder("BUY", 20000, orderRef="mkt"))
            await until(ib, lambda: done(mkt), timeout=4)
            assert executions(mkt) == [(20000, 1.085)]
            assert (moc.orderStatus.status, moc.fills) == ("Submitted", [])
            assert gw.orders_by_ref("moc")[0].status == "Submitted"

    run(body())


def test_a_modified_stop_is_matched_again_from_its_new_stop() -> None:
    """A BUY STP at 101 would not trigger on these bars (highs up to 100.7); modified to
    100.5 while bar 0 has not started, it fills on bar 1 at 100.50."""
    bars = bars_of(DAY, (100.0, 100.4, 99.9, 100.0, 1000),
                   (100.2, 100.7, 100.1, 100.6, 1000))

    async def body() -> None:
        async with bars_gateway(bars) as gw, connected(gw) as ib:
            c = await spy(ib)
            order = StopOrder("BUY", 10, 101.0, orderRef="mod")
            trade = ib.placeOrder(c, order)
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            order.auxPrice = 100.5
            ib.placeOrder(c, order)
            await until(ib, lambda: done(trade), timeout=4)
            assert executions(trade) == [(10, 100.5)]
            assert gw.orders_by_ref("mod")[0].order.aux_price == 100.5

    run(body())


# ------------------------------------------------------------- runner against it


def fills_of(out: Path, tag: str) -> list[tuple[str, float, float, float, float]]:
    return [(r["event"], r["last_qty"], r["last_px"], r["fill_qty"], r["avg_px"])
            for r in read_ledger(out).to_pylist()
            if r["tag"] == tag and r["event"] in ("PARTIAL", "FILL")]


def test_a_stop_one_shot_fills_against_the_bars_gateway_as_in_its_dry_run(
        make_gateway: Any, cli: Any, tmp_path: Path) -> None:
    """The same spec and bars, `runner run` against `runner gateway --bars` and `runner
    run --dry-run`: 120 flat bars at 100.00, then bar 60 trades through the BUY stop at
    100.50 (high 100.70, open 100.20): 10 filled at 100.50 on that bar in both."""
    n, k = 120, 60
    o = np.full(n, 100.0)
    h, lo, c = o + 0.05, o - 0.05, o.copy()
    o[k:], h[k:], lo[k:], c[k:] = 100.6, 100.65, 100.55, 100.6
    o[k], h[k], lo[k] = 100.2, 100.7, 100.1
    ts = DAY + np.arange(n, dtype=np.int64) * NS
    pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), "open": o,
                             "high": h, "low": lo, "close": c,
                             "volume": np.full(n, 1000.0)}), tmp_path / "bars.parquet")
    bars = Bars(ts=ts, open=o, high=h, low=lo, close=c, volume=np.full(n, 1000.0))
    # bar 60 starts 3 s after the gateway: long after runner's order is acknowledged. The
    # bars are in regular hours, where the dry run trades; its virtual clock starts as bar
    # 0 ends, so its TTL must outlast bar 60's end, 60 s on.
    start = time.time_ns()
    gw = make_gateway(bars=bars, bars_start_ns=start, speed=SPEED)
    (tmp_path / "stp.yaml").write_text(
        "version: 1\nkind: one-shot\narrival: broker\nbars_path: bars.parquet\n"
        "order: {symbol: SPY, side: BUY, qty: 10, type: STP, stop: 100.5, "
        "allow_market: true, tif: DAY, tag: stp-e2e}\nttl_sec: 90\n", encoding="utf-8")
    code, out, err = cli(gw.port, "run", "stp.yaml", "--out-dir", "live")
    assert code == 0, out + err
    [ack] = [r for r in read_ledger(tmp_path / "live").to_pylist() if r["event"] == "ACK"]
    assert ack["ts"].value < start + k * NS / SPEED  # acknowledged before bar 60 started
    code, out, err = cli(gw.port, "run", "stp.yaml", "--dry-run", "--out-dir", "dry")
    assert code == 0, out + err
    want = [("FILL", 10.0, 100.5, 10.0, 100.5)]
    assert fills_of(tmp_path / "live", "stp-e2e") == want
    assert fills_of(tmp_path / "dry", "stp-e2e") == want
