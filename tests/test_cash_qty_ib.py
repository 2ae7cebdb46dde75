"""order.cash_qty over the wire: `runner run SPEC` through the unmodified ib_async client
to the fake gateway (127.0.0.1, a free port). The placeOrder fields the gateway got
(cashQty set, totalQuantity 0), its fills capped by the cash, the end from its Filled
status, the ledger rows and TCA. Every expected number is worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.gateway import Ack, Fill
from runner.ledger import read_ledger


def run_cash(cli: Any, gateway: Any, tmp_path: Path, tag: str,
             order: str) -> tuple[Any, list[dict[str, Any]]]:
    path = tmp_path / f"{tag}.yaml"
    path.write_text("version: 1\nkind: one-shot\n"
                    f"order: {{tag: {tag}, {order}}}\nttl_sec: 1\nout_dir: out\n")
    code, out, err = cli(gateway.port, "run", str(path))
    assert code == 0, out + err
    [placed] = [p for p in gateway.place_orders() if p.order_ref == tag]
    rows = [r for r in read_ledger(tmp_path / "out").to_pylist() if r["tag"] == tag]
    return placed, rows


def fills(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["event"], r["last_qty"], r["last_px"]) for r in rows
            if r["event"] in ("PARTIAL", "FILL")]


def test_a_btc_cash_buy_fills_by_money(gateway: Any, cli: Any, tmp_path: Path) -> None:
    # 1,000 USD: 0.01 at 40,000 costs 400; 600 left buys 600 / 40,010 = 0.01499625 (floored
    # to 1e-8; the script asks 0.02), which leaves 0.0000375... : less than a step, Filled
    gateway.script("btc-1", [Ack(), Fill(0.01, 40_000.0, commission=1.0),
                             Fill(0.02, 40_010.0, commission=1.0)])
    placed, rows = run_cash(cli, gateway, tmp_path, "btc-1",
                            "symbol: BTC, sec_type: CRYPTO, exchange: PAXOS, side: BUY, "
                            "cash_qty: 1000, type: MKT, allow_market: true, tif: IOC")
    assert (placed.sec_type, placed.order_type, placed.tif) == ("CRYPTO", "MKT", "IOC")
    assert float(placed.total_quantity) == 0 and float(placed.cash_qty) == 1000
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert fills(rows) == [("PARTIAL", 0.01, 40_000.0), ("FILL", 0.01499625, 40_010.0)]
    assert {(r["qty"], r["cash_qty"]) for r in rows} == {(None, 1000.0)}
    assert rows[-1]["fill_qty"] == pytest.approx(0.02499625, abs=1e-12)
    spent = 0.01 * 40_000 + 0.01499625 * 40_010  # 999.9999625
    assert rows[-1]["avg_px"] == pytest.approx(spent / 0.02499625)
    # what the gateway told ib_async: Filled, nothing left in units
    _, status = gateway.sent_frames(3)[-1]  # (client id, fields)
    assert (status[2], float(status[4])) == ("Filled", 0.0)
    assert float(status[3]) == pytest.approx(0.02499625, abs=1e-12)


def test_a_cash_order_that_is_not_spent_stays_open_until_its_ttl(gateway: Any, cli: Any,
                                                                 tmp_path: Path) -> None:
    # 50,000 USD of EUR.USD, sold at 1.1: 30,000 EUR is 33,000 USD; 17,000 USD is left
    # (15,454.54545454 EUR at 1.1), so the order works on: orderStatus remaining 15454.54...
    gateway.script("fx-1", [Ack(), Fill(30_000, 1.1, commission=2.0)])
    placed, rows = run_cash(cli, gateway, tmp_path, "fx-1",
                            "symbol: EUR, sec_type: CASH, exchange: IDEALPRO, side: SELL, "
                            "cash_qty: 50000, limit: 1.1")
    assert (placed.sec_type, placed.action, placed.lmt_price) == ("CASH", "SELL", "1.1")
    assert float(placed.total_quantity) == 0 and float(placed.cash_qty) == 50_000
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "CANCEL"]
    assert fills(rows) == [("PARTIAL", 30_000.0, 1.1)]
    assert rows[-1]["fill_qty"] == 30_000.0
    after_fill = [f for _, f in gateway.sent_frames(3) if f[2] == "Submitted"
                  and float(f[3]) == 30_000]
    assert after_fill and float(after_fill[0][4]) == pytest.approx(15_454.54545454, abs=1e-8)


def test_tca_of_cash_orders_at_the_gateway(gateway: Any, cli: Any, tmp_path: Path) -> None:
    # 50,000 USD of EUR.USD at 1.1: 30,000 EUR (33,000 USD), then the script's 30,000 is
    # capped at 17,000 / 1.1 = 15,454.54545454 EUR: 45,454.54545454 EUR, 49,999.99999999 USD
    gateway.script("fx-2", [Ack(), Fill(30_000, 1.1, commission=2.0),
                            Fill(30_000, 1.1, commission=1.0)])
    _, rows = run_cash(cli, gateway, tmp_path, "fx-2",
                       "symbol: EUR, sec_type: CASH, exchange: IDEALPRO, side: SELL, "
                       "cash_qty: 50000, limit: 1.1")
    assert fills(rows) == [("PARTIAL", 30_000.0, 1.1), ("FILL", 15_454.54545454, 1.1)]
    code, out, err = cli(gateway.port, "tca", "--out-dir", "out", "--json")
    assert code == 0, err
    [o] = json.loads(out)["orders"]
    assert (o["tag"], o["state"], o["qty"], o["cash_qty"]) == ("fx-2", "FILL", None, 50_000)
    assert o["fill_qty"] == pytest.approx(45_454.54545454)
    assert o["fill_ratio"] == pytest.approx(45_454.54545454 * 1.1 / 50_000, abs=1e-6)


def test_the_end_comes_from_the_filled_status_in_either_order(gateway: Any, cli: Any,
                                                              tmp_path: Path) -> None:
    # The orderStatus (Filled) before the last execution: the tracker waits for the
    # executions the status counts, then ends FILL on that one (not on a qty of 0).
    gateway.script("btc-2", [Ack(), Fill(0.01, 40_000.0, commission=1.0),
                             Fill(0.02, 40_010.0, commission=1.0, status_first=True)])
    _, rows = run_cash(cli, gateway, tmp_path, "btc-2",
                       "symbol: BTC, sec_type: CRYPTO, exchange: PAXOS, side: BUY, "
                       "cash_qty: 1000, type: MKT, allow_market: true, tif: IOC")
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert fills(rows) == [("PARTIAL", 0.01, 40_000.0), ("FILL", 0.01499625, 40_010.0)]


# ------------------------------------------------------ the fake gateway, by ib_async alone


def test_bars_mode_fills_a_cash_order_by_money() -> None:
    import time

    import numpy as np
    from ib_async import Crypto, MarketOrder
    from ibclient import connected, run, until

    from runner.bars import Bars
    from runner.gateway import FakeGateway

    ns = 1_000_000_000
    day = 1_767_623_400 * ns
    # volume 0.1 a bar: 10% is 0.01 BTC. 0.01 x 40,000 = 400; 0.01 x 40,010 = 400.1;
    # 199.9 left / 40,020 = 0.0049950025, floored to 1e-8: 0.004995
    bars = Bars(ts=day + np.arange(4, dtype=np.int64) * ns,
                open=np.array([40_000.0, 40_010.0, 40_020.0, 40_030.0]),
                high=np.full(4, 40_100.0), low=np.full(4, 39_900.0),
                close=np.full(4, 40_000.0), volume=np.full(4, 0.1))

    async def body() -> None:
        gw_ = FakeGateway(bars=bars, bars_start_ns=time.time_ns() + ns // 2, speed=20.0)
        async with gw_ as gw, connected(gw) as ib:
            [btc] = await ib.qualifyContractsAsync(Crypto("BTC", "PAXOS", "USD"))
            trade = ib.placeOrder(btc, MarketOrder("BUY", 0, cashQty=1000, orderRef="c"))
            await until(ib, lambda: trade.orderStatus.status == "Filled", timeout=4)
            assert [(f.execution.shares, f.execution.price) for f in trade.fills] == [
                (0.01, 40_000.0), (0.01, 40_010.0), (0.004995, 40_020.0)]
            [placed] = gw.place_orders()
            assert (float(placed.total_quantity), float(placed.cash_qty)) == (0, 1000)

    run(body())


def test_the_fake_refuses_a_cash_quantity_where_the_contract_lists_no_cashqty() -> None:
    from ib_async import CFD, LimitOrder
    from ibclient import connected, error_log, run, until

    from runner.gateway import FakeGateway

    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            [cfd] = await ib.qualifyContractsAsync(CFD("IBUS500", "SMART", "USD"))
            seen = error_log(ib)
            trade = ib.placeOrder(cfd, LimitOrder("BUY", 0, 6000.0, cashQty=50_000))
            await until(ib, lambda: bool(seen), timeout=3)
            assert [(code, text) for _, code, text in seen] == [
                (201, "Order rejected - reason:Cash quantity orders are not supported for "
                      "this contract")]
            assert trade.orderStatus.filled == 0 and not gw.executions

    run(body())


def test_orders_lists_a_working_cash_order_by_its_cash(gateway: Any, cli: Any) -> None:
    import asyncio

    from ib_async import IB, Forex, LimitOrder

    async def place() -> None:  # another API client places it, and leaves it working
        ib = IB()
        await ib.connectAsync("127.0.0.1", gateway.port, clientId=3, timeout=5)
        try:
            [eur] = await ib.qualifyContractsAsync(Forex("EURUSD"))
            trade = ib.placeOrder(eur, LimitOrder("SELL", 0, 1.2, cashQty=50_000,
                                                  orderRef="fx-w", tif="GTC"))
            while trade.orderStatus.status != "Submitted":
                await asyncio.wait_for(trade.statusEvent, 5)
        finally:
            ib.disconnect()

    asyncio.run(asyncio.wait_for(place(), 20))
    code, out, err = cli(gateway.port, "orders")
    assert code == 0, err
    [line] = [t.split() for t in out.splitlines() if t.startswith("fx-w ")]
    assert line[6:9] == ["SELL", "0/cash", "50000"]
    code, out, err = cli(gateway.port, "orders", "--json")
    [o] = json.loads(out)["orders"]
    assert (o["qty"], o["cash_qty"], o["limit"]) == (0, 50_000, 1.2)
