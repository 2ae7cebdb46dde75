"""The fake gateway, driven over TCP by the unmodified ib_async client and by ibapi.

Each ib_async test runs one coroutine with asyncio.run: the gateway and the
client share that loop. Waits are on client events with timeouts, never sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock
from ibclient import connected, error_log, place, run, until

from runner.errors import UsageError
from runner.gateway import (
    Ack,
    Delay,
    DropAfterAck,
    DropBeforeAck,
    Error,
    FakeGateway,
    Fill,
    Reject,
    main,
    place_order_fields,
    wire,
)
from runner.gateway.cli import build_parser
from runner.gateway.contracts import STOCKS
from runner.gateway.values import Contract, Execution, OrderSnapshot, PlacedOrder

ROOT = Path(__file__).resolve().parents[1]
SPY = Stock("SPY", "SMART", "USD")
NS = 1_000_000_000


def next_emit(event: Any) -> asyncio.Future[Any]:
    """A future for the next emit of an eventkit event, subscribed right now."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_emit(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    event += on_emit
    return future


# --------------------------------------------------------------- connect


def test_connect_is_fast_with_every_startup_request_answered(caplog: Any) -> None:
    async def body() -> None:
        async with FakeGateway(accounts=("DU1234567",)) as gw:
            ib = IB()
            t0 = time.perf_counter()
            await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=2)
            elapsed = time.perf_counter() - t0
            try:
                assert elapsed < 0.5
                assert ib.client.serverVersion() == 178
                assert ib.managedAccounts() == ["DU1234567"]
                assert ib.isConnected()
            finally:
                ib.disconnect()
            got = {fields[0] for _, fields in gw.received}
            # startApi, positions, open/completed orders, account updates (+multi), executions
            assert {"71", "61", "5", "99", "6", "76", "7"} <= got
            assert gw.received[0] == (7, ("71", "2", "7", ""))

    with caplog.at_level(logging.INFO, logger="ib_async"):
        run(body())
    assert not [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert "Synchronization complete" in caplog.text


def test_qualify_known_and_unknown_symbols() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            spy, nope = await ib.qualifyContractsAsync(
                Stock("SPY", "SMART", "USD"), Stock("NOPE", "SMART", "USD"))
            assert nope is None
            assert (spy.conId, spy.exchange, spy.primaryExchange) == (756733, "SMART", "ARCA")
            [details] = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
            assert details.timeZoneId == "US/Eastern"
            first_session = details.tradingHours.split(";")[0]
            assert first_session.endswith(":2000") or first_session.endswith(":CLOSED")

    run(body())


# --------------------------------------------------------------- orders


def test_limit_order_is_acked_and_its_fields_reach_the_gateway() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            trade = await place(ib, "probe-1", qty=10, limit=100.25, tif="GTC")
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            assert trade.order.orderRef == "probe-1"
            [(client_id, _)] = gw.frames(3)
            assert client_id == 7
            [sent] = gw.place_orders()
            assert (sent.action, sent.total_quantity, sent.order_type, sent.lmt_price) == (
                "BUY", "10", "LMT", "100.25")
            assert (sent.tif, sent.order_ref) == ("GTC", "probe-1")
            [order] = gw.orders_by_ref("probe-1")
            assert (order.status, order.order.lmt_price, order.order.tif) == (
                "Submitted", 100.25, "GTC")
            assert order.perm_id == trade.order.permId != 0

    run(body())


def test_partial_then_full_fill_with_commissions() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script("f1", [Ack(), Fill(3, 100.5, commission=0.7), Fill(7, 101.0, 1.2)])
            trade = await place(ib, "f1", qty=10, limit=101.0)
            await until(ib, lambda: len(trade.fills) == 2
                        and trade.fills[1].commissionReport.commission > 0)
            assert trade.orderStatus.status == "Filled"
            assert trade.orderStatus.filled == 10
            assert trade.orderStatus.avgFillPrice == pytest.approx((3 * 100.5 + 7 * 101.0) / 10)
            assert [f.execution.shares for f in trade.fills] == [3, 7]
            assert [f.execution.cumQty for f in trade.fills] == [3, 10]
            assert [f.commissionReport.commission for f in trade.fills] == [0.7, 1.2]
            assert all(f.execution.orderRef == "f1" for f in trade.fills)
            [order] = gw.orders_by_ref("f1")
            assert (order.filled, order.commission) == (10, pytest.approx(1.9))

    run(body())


def test_cancel_ends_in_cancelled_with_202() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            trade = await place(ib, "c1", limit=1.0)
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            ib.cancelOrder(trade.order)
            await until(ib, lambda: trade.orderStatus.status == "Cancelled")
            await until(ib, lambda: bool(errors))
            assert errors == [(trade.order.orderId, 202, "Order Canceled - reason:")]
            assert [o.status for o in gw.orders_by_ref("c1")] == ["Cancelled"]

    run(body())


def test_ignored_cancel_leaves_the_order_working() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script("ig", [Ack()], on_cancel="ignore")
            errors = error_log(ib)
            trade = await place(ib, "ig")
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            ib.cancelOrder(trade.order)
            await gw.wait_for(4)
            # A round trip after the cancel: any answer to it would have come first.
            await ib.reqCurrentTimeAsync()
            assert trade.orderStatus.status == "PendingCancel"  # set locally by ib_async
            assert errors == []
            assert [o.status for o in gw.orders_by_ref("ig")] == ["Submitted"]

    run(body())


def test_cancel_racing_a_fill_fills_first_then_10148() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script("race", [Ack(), Fill(10, 99.0, delay=30)], on_cancel="reject_filled")
            errors = error_log(ib)
            trade = await place(ib, "race", qty=10, limit=99.0)
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            ib.cancelOrder(trade.order)
            await until(ib, lambda: bool(errors))
            oid = trade.order.orderId
            assert errors == [(oid, 10148, f"OrderId {oid} that needs to be cancelled cannot be "
                               "cancelled, state: Filled.")]
            assert trade.orderStatus.status == "Filled"
            assert [f.execution.shares for f in trade.fills] == [10]

    run(body())


def test_reject_201_ends_inactive_with_the_reason_in_the_log() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script("rej", [Reject("Insufficient margin")])
            trade = await place(ib, "rej")
            await until(ib, lambda: trade.orderStatus.status == "Inactive")
            assert any(e.errorCode == 201 and "Insufficient margin" in e.message
                       for e in trade.log)
            assert trade.isDone()
            assert [o.status for o in gw.orders_by_ref("rej")] == ["Inactive"]

    run(body())


def test_unknown_cancel_modify_and_duplicate_ids() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            ib.client.cancelOrder(9999)  # an id the gateway never saw
            trade = await place(ib, "m1", qty=10, limit=50.0)
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            trade.order.lmtPrice = 51.5
            ib.placeOrder(trade.contract, trade.order)  # same id, still live: a modify
            await gw.wait_for(3, count=2)
            await ib.reqCurrentTimeAsync()
            assert [o.order.lmt_price for o in gw.orders_by_ref("m1")] == [51.5]
            assert trade.order.lmtPrice == 51.5
            await gw.cancel_from_server("m1")
            await until(ib, lambda: trade.orderStatus.status == "Cancelled")
            # Same id, finished: a duplicate (sent raw: ib_async refuses it client side).
            ib.client.placeOrder(trade.order.orderId, trade.contract, trade.order)
            await until(ib, lambda: len(errors) == 3)
            oid = trade.order.orderId
            assert errors == [
                (9999, 10147, "OrderId 9999 that needs to be cancelled is not found."),
                (oid, 202, "Order Canceled - reason:"),
                (oid, 103, "Duplicate order id"),
            ]

    run(body())


def test_fill_from_outside_and_a_default_script() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script(None, [Ack("PreSubmitted")])
            trade = await place(ib, "ext", qty=5)
            await until(ib, lambda: trade.orderStatus.status == "PreSubmitted")
            execution = await gw.fill("ext", 2, 99.75, commission=0.25)
            await until(ib, lambda: len(trade.fills) == 1
                        and trade.fills[0].commissionReport.commission == 0.25)
            assert trade.orderStatus.status == "Submitted"
            assert (trade.orderStatus.filled, trade.orderStatus.remaining) == (2, 3)
            assert trade.fills[0].execution.execId == execution.exec_id
            with pytest.raises(LookupError):
                await gw.fill("no-such-ref", 1, 1.0)

    run(body())


def test_error_step_with_order_id() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            gw.script("e1", [Error(399, "Order message error"), Delay(0), Ack()])
            errors = error_log(ib)
            trade = await place(ib, "e1")
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            assert errors == [(trade.order.orderId, 399, "Order message error")]

    run(body())


def test_gtd_order_dies_at_its_good_till_date() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            past = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(time.time() - 5))
            trade = await place(ib, "gtd", tif="GTD", goodTillDate=past)
            await until(ib, lambda: trade.orderStatus.status == "Cancelled")
            assert [o.status for o in gw.orders_by_ref("gtd")] == ["Cancelled"]

    run(body())


def test_tuple_steps_and_a_connectivity_notice() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw, client_id=0) as ib:
            assert ("15", "1", "1") in [f for _, f in gw.received]  # clientId 0: auto-open
            gw.script("tup", [("ack", "PreSubmitted"), ("fill", 2, 10.0, 0.5)])
            trade = await place(ib, "tup", qty=2, limit=10.0)
            await until(ib, lambda: trade.orderStatus.status == "Filled")
            errors = error_log(ib)
            await gw.notice(1102)  # restored: ib_async asks for the account summary again
            [(_, request)] = await gw.wait_for(62)
            assert request[3] == "All"
            await ib.reqCurrentTimeAsync()  # a round trip: the 63s and the 64 are in by now
            summary = await ib.accountSummaryAsync()
            assert ("NetLiquidation", "100000.00") in [(v.tag, v.value) for v in summary]
            assert errors[0][:2] == (-1, 1102)
            with pytest.raises(ValueError, match="unknown step"):
                gw.script("bad", [("explode",)])
            with pytest.raises(ValueError, match="on_cancel"):
                gw.script("bad", [], on_cancel="maybe")

    run(body())


# --------------------------------------------------------------- gateway modes


def test_read_only_gateway_answers_321_and_creates_no_order() -> None:
    async def body() -> None:
        async with FakeGateway(read_only=True) as gw:
            async with connected(gw, readonly=True) as ib:
                errors = error_log(ib)
                trade = await place(ib, "ro")
                await until(ib, lambda: bool(errors))
                assert errors[0][:2] == (trade.order.orderId, 321)
                assert "Read-Only" in errors[0][2]
                assert trade.orderStatus.status == "ValidationError"
                assert gw.orders_by_ref("ro") == []
            # Without readonly=True, ib_async asks for open orders and gets a 321 instead
            # (so its open-orders sync times out: hence readonly=True on such gateways).
            ib = IB()
            errors = error_log(ib)
            await ib.connectAsync("127.0.0.1", gw.port, clientId=8, timeout=0.2)
            ib.disconnect()
            assert (8, ("5", "1")) in gw.received
            assert [e[:2] for e in errors if e[1] < 2100] == [(2147483647, 321)]

    run(body())


def test_live_account_is_reported() -> None:
    async def body() -> None:
        async with FakeGateway(accounts=("U7654321",)) as gw, connected(gw) as ib:
            assert ib.managedAccounts() == ["U7654321"]
            assert [v.value for v in ib.accountValues() if v.tag == "AccountType"]

    run(body())


def test_client_id_in_use_makes_ib_async_time_out() -> None:
    async def body() -> None:
        async with FakeGateway(client_id_in_use={7}) as gw:
            ib = IB()
            t0 = time.perf_counter()
            with pytest.raises(TimeoutError):
                await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=0.4)
            assert time.perf_counter() - t0 < 1.0
            assert gw.received == [(7, ("71", "2", "7", ""))]
            # A clientId held by a live session is refused the same way.
            async with connected(gw, client_id=3):
                with pytest.raises(TimeoutError):
                    await IB().connectAsync("127.0.0.1", gw.port, clientId=3, timeout=0.3)

    run(body())


def test_drop_after_ack_then_reconnect_replays_order_and_executions() -> None:
    async def body() -> None:
        async with FakeGateway() as gw:
            gw.script("d1", [DropAfterAck()])
            ib = IB()
            await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=2)
            gone = next_emit(ib.disconnectedEvent)
            trade = await place(ib, "d1", qty=10, limit=99.5)
            await asyncio.wait_for(gone, 2)
            assert trade.orderStatus.status == "Submitted"
            # While the client is away the order trades; the gateway remembers.
            await gw.fill("d1", 4, 99.5, commission=0.4)
            async with connected(gw, client_id=7) as ib2:
                [open_trade] = ib2.openTrades()
                assert open_trade.order.orderRef == "d1"
                assert open_trade.order.permId == trade.order.permId
                assert (open_trade.orderStatus.status, open_trade.orderStatus.filled) == (
                    "Submitted", 4)
                # Executions came with the connect (reqExecutions), commission attached.
                [fill] = open_trade.fills
                assert (fill.execution.orderRef, fill.execution.shares) == ("d1", 4)
                assert fill.commissionReport.commission == 0.4
                [again] = await ib2.reqExecutionsAsync()
                assert again.execution.execId == fill.execution.execId

    run(body())


def test_drop_before_ack_leaves_the_order_alive_at_the_gateway() -> None:
    async def body() -> None:
        async with FakeGateway() as gw:
            gw.script("d0", [DropBeforeAck()])
            ib = IB()
            await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=2)
            gone = next_emit(ib.disconnectedEvent)
            trade = await place(ib, "d0")
            await asyncio.wait_for(gone, 2)
            assert trade.orderStatus.status == "PendingSubmit"
            async with connected(gw, client_id=7) as ib2:
                [open_trade] = ib2.openTrades()
                assert (open_trade.order.orderRef, open_trade.orderStatus.status) == (
                    "d0", "Submitted")

    run(body())


def test_drop_all_disconnects_every_client() -> None:
    async def body() -> None:
        async with FakeGateway() as gw, connected(gw, client_id=1) as a, \
                connected(gw, client_id=2) as b:
            gone = [next_emit(ib.disconnectedEvent) for ib in (a, b)]
            await gw.drop_all()
            await asyncio.wait_for(asyncio.gather(*gone), 2)
            assert not a.isConnected() and not b.isConnected()

    run(body())


# --------------------------------------------------------------- bars mode


def test_bars_mode_fills_like_the_simulator_on_the_wall_clock() -> None:
    from runner.bars import Bars

    t0 = 1_767_000_000 * NS
    # Bar 0 never trades through 100; bars 1 and 2 do. 10% of 100 = 10 shares a bar.
    bars = Bars(ts=np.array([t0, t0 + NS, t0 + 2 * NS]),
                open=np.array([101.0, 100.5, 100.0]), high=np.array([101.0, 100.6, 100.2]),
                low=np.array([100.5, 99.9, 99.0]), close=np.array([100.6, 100.0, 99.5]),
                volume=np.array([100.0, 100.0, 100.0]))
    speed = 10.0  # bar seconds per wall second

    async def body() -> None:
        start = time.time_ns() + NS // 2  # bar 0 starts 0.5 s from now, after the ack
        async with FakeGateway(bars=bars, bars_start_ns=start, speed=speed) as gw, \
                connected(gw) as ib:
            trade = await place(ib, "bars", qty=15, limit=100.0)
            await until(ib, lambda: trade.orderStatus.status == "Filled", timeout=3)
            fills = [(f.execution.shares, f.execution.price) for f in trade.fills]
            assert fills == [(10, 100.0), (5, 100.0)]
            await until(ib, lambda: trade.fills[-1].commissionReport.execId != "")
            # IB fixed rate: max(1.00, 0.005/share) on the cumulative 10 then 15 shares.
            assert [f.commissionReport.commission for f in trade.fills] == [1.0, 0.0]
            # A limit fill is known when its bar ends: bar 1 ends at t0 + 2 s bar time.
            first = gw.executions[0].time_ns
            assert first >= start + round(2 * NS / speed)

    run(body())


def test_market_and_ioc_orders_in_bars_mode() -> None:
    from runner.bars import Bars

    t0 = 1_767_000_000 * NS
    bars = Bars(ts=np.array([t0, t0 + NS]), open=np.array([50.0, 51.0]),
                high=np.array([50.5, 51.5]), low=np.array([49.5, 50.5]),
                close=np.array([50.2, 51.2]), volume=np.array([1000.0, 1000.0]))

    async def body() -> None:
        start = time.time_ns() + NS // 2  # bar 0 starts after the ack
        async with FakeGateway(bars=bars, bars_start_ns=start, speed=20) as gw, \
                connected(gw) as ib:
            [contract] = await ib.qualifyContractsAsync(SPY)
            # market: 10% of each bar's 1000 at its open, 100 @ 50.0 then 100 @ 51.0
            trade = ib.placeOrder(contract, MarketOrder("SELL", 200, orderRef="mkt"))
            # IOC: bar 0 gives 10% of its 1000 below the limit; the rest dies at its end.
            ioc = ib.placeOrder(contract, LimitOrder("BUY", 150, 50.0, tif="IOC",
                                                     orderRef="ioc"))
            await until(ib, lambda: trade.orderStatus.status == "Filled"
                        and ioc.orderStatus.status == "Cancelled", timeout=3)
            assert [(f.execution.side, f.execution.shares, f.execution.price)
                    for f in trade.fills] == [("SLD", 100, 50.0), ("SLD", 100, 51.0)]
            [snap] = gw.orders_by_ref("mkt")
            assert (snap.status, snap.avg_px) == ("Filled", (100 * 50.0 + 100 * 51.0) / 200)
            assert [(f.execution.shares, f.execution.price) for f in ioc.fills] == [(100, 50.0)]
            assert (ioc.orderStatus.filled, ioc.orderStatus.remaining) == (100, 50)

    run(body())


# --------------------------------------------------------------- official ibapi client


class _IbapiApp:
    """EWrapper + EClient recording callbacks; waits on a condition, never sleeps."""

    def __init__(self) -> None:
        from ibapi.client import EClient
        from ibapi.wrapper import EWrapper

        app = self

        class Wrapper(EWrapper):
            def nextValidId(self, orderId: int) -> None:  # noqa: N802, N803
                app.record("nextValidId", orderId)

            def managedAccounts(self, accountsList: str) -> None:  # noqa: N802, N803
                app.record("managedAccounts", accountsList)

            def openOrder(self, orderId: int, contract: Any, order: Any,  # noqa: N802, N803
                          orderState: Any) -> None:  # noqa: N803
                app.record("openOrder", orderId, order.orderRef, order.lmtPrice,
                           orderState.status)

            def orderStatus(self, orderId: int, status: str, *rest: Any) -> None:  # noqa: N802, N803
                app.record("orderStatus", orderId, status)

            def error(self, reqId: int, errorTime: int, errorCode: int,  # noqa: N803
                      errorString: str, advancedOrderRejectJson: str = "") -> None:  # noqa: N803
                app.record("error", reqId, errorCode)

        self.events: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()
        self.client = EClient(Wrapper())

    def record(self, *event: Any) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[tuple[Any, ...]], bool], timeout: float = 3.0) -> Any:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(predicate(e) for e in self.events), timeout)
            assert ok, self.events
            return next(e for e in self.events if predicate(e))


def test_official_ibapi_client_handshakes_places_and_cancels(gateway: Any) -> None:
    from ibapi.contract import Contract as IbContract
    from ibapi.order import Order
    from ibapi.order_cancel import OrderCancel

    app = _IbapiApp()
    app.client.connect("127.0.0.1", gateway.port, 11)
    reader = threading.Thread(target=app.client.run, daemon=True)
    reader.start()
    try:
        assert app.client.serverVersion() == 178
        order_id = app.wait(lambda e: e[0] == "nextValidId")[1]
        assert app.wait(lambda e: e[0] == "managedAccounts")[1] == "DU1234567"
        contract = IbContract()
        contract.symbol, contract.secType, contract.exchange, contract.currency = (
            "SPY", "STK", "SMART", "USD")
        order = Order()
        order.action, order.orderType, order.totalQuantity = "BUY", "LMT", Decimal(5)
        order.lmtPrice, order.tif, order.orderRef = 1.25, "DAY", "ibapi-1"
        app.client.placeOrder(order_id, contract, order)
        assert app.wait(lambda e: e[0] == "openOrder") == (
            "openOrder", order_id, "ibapi-1", 1.25, "Submitted")
        app.wait(lambda e: e[:3] == ("orderStatus", order_id, "Submitted"))
        app.client.cancelOrder(order_id, OrderCancel())
        app.wait(lambda e: e[:3] == ("orderStatus", order_id, "Cancelled"))
        app.wait(lambda e: e[0] == "error" and e[1:] == (order_id, 202))
        assert [o.status for o in gateway.orders_by_ref("ibapi-1")] == ["Cancelled"]
    finally:
        app.client.disconnect()
        reader.join(2)


# --------------------------------------------------------------- wire layouts


def _snapshot() -> OrderSnapshot:
    contract = STOCKS["SPY"].contract()
    placed = PlacedOrder(5, contract, "BUY", 10, "LMT", 100.0, None, "DAY", "DU1", "r", False,
                         "", ())
    return OrderSnapshot(7, 5, 1_000_001, placed, "Submitted", 3, 100.0, 100.0, 1.0)


def test_message_layouts_have_the_exact_field_counts() -> None:
    snap = _snapshot()
    execution = Execution("e1", 0, 7, 5, 1_000_001, "r", "DU1", snap.order.contract, "BOT",
                          3, 100.0, 3, 100.0, 1.0)
    assert len(wire.open_order(snap)) == 127
    assert wire.open_order(snap)[85] == "Submitted"  # status sits at index 85
    assert len(wire.completed_order(snap, 0)) == 96
    assert len(wire.order_status(snap)) == 12
    assert len(wire.exec_details(-1, execution)) == 32
    assert len(wire.commission_report(execution)) == 8
    assert len(wire.error(-1, 2104, "x")) == 6
    assert len(wire.position("DU1", Contract(1, "X"), 1, 1)) == 16
    assert len(wire.contract_details(1, STOCKS["SPY"], "SMART", ("", ""))) == 40
    assert wire.num(10.0) == "10" and wire.num(2.5) == "2.5" and wire.num(None) == ""


# placeOrder (3) at 178 by index, written out from TWS_PROTOCOL ("placeOrder (3) as
# ib_async sends it at version 178"), apart from the gateway's own table on purpose.
PLACE_ORDER_178 = {
    "order_id": 1, "con_id": 2, "symbol": 3, "sec_type": 4, "exchange": 9,
    "primary_exchange": 10, "currency": 11, "local_symbol": 12, "trading_class": 13,
    "action": 16, "total_quantity": 17, "order_type": 18, "lmt_price": 19, "aux_price": 20,
    "tif": 21, "account": 23, "order_ref": 26, "outside_rth": 33, "good_till_date": 38,
}


def test_place_order_fields_name_the_178_layout_as_ib_async_sends_it() -> None:
    gtd = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(time.time() + 3600))

    async def body() -> None:
        async with FakeGateway() as gw, connected(gw) as ib:
            [contract] = await ib.qualifyContractsAsync(SPY)
            ib.placeOrder(contract, LimitOrder("SELL", 7, 100.25, orderRef="layout-1",
                                               tif="GTD", goodTillDate=gtd, outsideRth=True,
                                               account="DU1234567"))
            [(_, fields)] = await gw.wait_for(3)
            named = place_order_fields(fields)
            assert {k: getattr(named, k) for k in PLACE_ORDER_178} == {
                k: fields[i] for k, i in PLACE_ORDER_178.items()}
            assert (named.symbol, named.action, named.total_quantity, named.order_type,
                    named.lmt_price, named.aux_price, named.tif, named.good_till_date,
                    named.outside_rth, named.account, named.order_ref) == (
                "SPY", "SELL", "7", "LMT", "100.25", "", "GTD", gtd, "1", "DU1234567",
                "layout-1")
            assert gw.place_orders() == [named]

    run(body())
    with pytest.raises(ValueError, match="placeOrder with 34 fields"):
        place_order_fields(["3"] * 34)


def test_frame_round_trip_and_version_negotiation() -> None:
    framed = wire.frame(["15", "1", "DU1"])
    assert framed == struct.pack(">I", 9) + b"15\x001\x00DU1\x00"
    assert wire.split_fields(framed[4:]) == ["15", "1", "DU1"]
    assert wire.negotiate(b"v157..178") == 178
    assert wire.negotiate(b"v100..226 +PACEAPI") == 178
    assert wire.negotiate(b"v100..176") is None
    assert wire.parse_ib_time("20250102 14:30:05 UTC") == 1_735_828_205 * NS
    assert wire.parse_ib_time("20250102-14:30:05") == 1_735_828_205 * NS
    assert wire.parse_ib_time("soon") is None


# --------------------------------------------------------------- command line


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(UsageError):
        FakeGateway(host="0.0.0.0")
    assert main(["--host", "192.0.2.1", "--port", "0"]) == 2


def test_gateway_help_has_a_line_and_the_default_for_every_flag() -> None:
    parser = build_parser()
    flags = [a for a in parser._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(flags) == 11
    for action in flags:
        assert action.help, action.option_strings
        shown = re.search(r"\(default: ([^;,)]+)", action.help % dict(vars(action)))
        assert shown, action.option_strings
        if action.dest == "account":  # appended to, so the default is the gateway's own
            expected = FakeGateway().accounts[0]
        else:
            expected = {None: "none", False: "off"}.get(action.default, str(action.default))
        assert shown.group(1) == expected, action.option_strings


def test_gateway_help_through_runner_lists_every_flag() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "gateway", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    for action in build_parser()._actions:
        assert action.option_strings[-1] in done.stdout
    assert " ".join(done.stdout.split()).count("(default: ") == 11  # unwrapped


@pytest.mark.parametrize("args, why", [
    (["--port", "99999"], "--port: '99999' is not a port (0-65535)"),
    (["--port"], "--port: expected one argument"),
    (["--speed", "0"], "--speed: '0' is not a speed (a number > 0)"),
    (["--speed", "nan"], "--speed: 'nan' is not a speed (a number > 0)"),
    (["--speed", "fast"], "--speed: 'fast' is not a number"),
    (["--participation", "1.5"], "--participation: '1.5' is not a share in (0, 1]"),
    (["--hours", "late"], "--hours: 'late' is not open, regular or closed"),
    (["--hours", "regualr"],
     "--hours: 'regualr' is not open, regular or closed; did you mean regular?"),
    (["--symbol", "SPY"], "--symbol: only with --bars (it picks the rows of the bars file)"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_a_gateway_usage_error_is_one_line_and_exit_2(args: list[str], why: str,
                                                      capsys: Any) -> None:
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 2
    assert capsys.readouterr() == ("", f"runner gateway: {why} (see `runner gateway --help`)\n")


def test_a_gateway_usage_error_through_runner_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "runner", "gateway", "--port", "99999"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("runner gateway: --port: '99999' is not a port (0-65535) "
                           "(see `runner gateway --help`)\n")


def test_gateway_bars_errors_name_the_flag(tmp_path: Path) -> None:
    missing = tmp_path / "none.parquet"
    done = subprocess.run([sys.executable, "-m", "runner", "gateway", "--port", "0",
                           "--bars", str(missing)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"runner gateway: bars file not found: {missing} (check --bars)\n"


def test_gateway_command_serves_until_sigterm() -> None:
    code = "from runner.gateway import main; raise SystemExit(main(['--port', '0']))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "fake TWS gateway listening on 127.0.0.1:"
        assert line.startswith(prefix), (line, proc.stderr.read() if proc.stderr else "")
        assert line.endswith(" (server version 178, account DU****567)")
        port = int(line[len(prefix):].split(" ")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178")
            size = struct.unpack(">I", _read_exactly(sock, 4))[0]
            assert wire.split_fields(_read_exactly(sock, size))[0] == "178"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data
