"""The order's placeOrder message encoded before the INTENT (runner/ib/prepared.py), against
the fake gateway: the frame the gateway receives is the one ib_async's own placeOrder sends
for the same order, field for field; ib_async knows the order afterwards as its own (its
Trade follows the gateway's statuses); IBBroker sends its orders that way, and the usual
way when nothing could be encoded early (no contract qualified when the id was taken)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from ib_async import IB, Stock

from runner.broker import OrderRequest
from runner.ib import IBBroker, gtd_string, prepared, queries
from runner.plan import Connection

NS = 1_000_000_000
PLACE_ORDER = "3"
ORDER_ID = 1  # a placeOrder frame's field 1: the order id (each client has its own)
ACKED = ("PreSubmitted", "Submitted")
SPY = Stock("SPY", "SMART", "USD")


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def gtd_order(tag: str, good_till_ns: int | None = None) -> OrderRequest:
    return OrderRequest(tag, "SPY", "STK", "SMART", "USD", "BUY", 3, "LMT", 101.25, "GTD",
                        backstop_sec=20.0, good_till_ns=good_till_ns)


def next_minute_ns() -> int:
    return (time.time_ns() // NS + 60) * NS


def placed_frames(gw: Any) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == PLACE_ORDER]


async def acked(trade: Any) -> None:
    """Until ib_async's own Trade shows the gateway's acknowledgement."""
    for _ in range(300):
        if trade.orderStatus.status in ACKED:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the trade's status stayed {trade.orderStatus.status}")


async def connected(gw: Any, client_id: int) -> tuple[IB, Any]:
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=3)
    [contract] = await ib.qualifyContractsAsync(SPY)
    return ib, contract


def test_the_prepared_frame_is_the_one_ib_async_sends(gateway):
    """Encoded (goodTillDate left open), sent with it filled in; then ib_async's own
    placeOrder of the same order on another client: the frames differ in the id only."""
    good_till_ns = next_minute_ns()

    async def ours() -> None:
        ib, contract = await connected(gateway, 31)
        try:
            order = queries.ib_order(gtd_order("prep-1"))  # as qualify builds it: no date
            order_id = ib.client.getReqId()
            ready = prepared.encode(ib, contract, order, order_id)
            assert ready is not None and ready.order_id == order_id
            assert order.goodTillDate == ""  # left as it was
            trade = prepared.send(ib, contract, order, ready, gtd_string(good_till_ns))
            await acked(trade)
            # ib_async knows the order as its own: one trade, the real date, its log
            assert ib.trades() == [trade]
            assert (trade.order.orderId, trade.order.clientId) == (order_id, 31)
            assert trade.order.goodTillDate == gtd_string(good_till_ns)
            assert trade.log[0].status == "PendingSubmit"
            # the same id again would be a modification: not sent this way
            assert prepared.send(ib, contract, order, ready, None) is None
        finally:
            ib.disconnect()

    async def theirs() -> None:
        ib, contract = await connected(gateway, 32)
        try:
            await acked(ib.placeOrder(contract, queries.ib_order(gtd_order("prep-1",
                                                                            good_till_ns))))
        finally:
            ib.disconnect()

    run(ours())
    run(theirs())
    first, second = placed_frames(gateway)
    assert len(first) == len(second)
    differ = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    assert differ == [ORDER_ID], [(i, first[i], second[i]) for i in differ]
    assert [p.good_till_date for p in gateway.place_orders()] == [gtd_string(good_till_ns)] * 2


def test_nothing_is_encoded_without_a_connection():
    order = queries.ib_order(gtd_order("prep-off"))
    assert prepared.encode(IB(), SPY, order, 5) is None
    assert order.goodTillDate == "" and not order.orderId


def broker_places(gw: Any, client_id: int, req: OrderRequest, sent: OrderRequest,
                  qualify_first: bool = True) -> int | None:
    """IBBroker: qualify `req`, take the id, place `sent` (req as the engine stamps it),
    until ib_async's Trade is acknowledged; the id."""
    async def main() -> int | None:
        broker = IBBroker(Connection("127.0.0.1", gw.port, client_id=client_id))
        await broker.connect()
        try:
            if qualify_first:
                await broker.qualify(req)
            order_id = broker.next_order_id()
            if not qualify_first:
                await broker.qualify(req)
            await broker.place(sent)
            await acked(broker.session.ib.trades()[0])
            return order_id
        finally:
            await broker.close()

    result: int | None = run(main())
    return result


def test_ib_broker_sends_the_backstop_of_the_intent(gateway):
    good_till_ns = next_minute_ns()
    order_id = broker_places(gateway, 33, gtd_order("prep-gtd"),
                             gtd_order("prep-gtd", good_till_ns))
    [placed] = gateway.place_orders()
    assert (placed.order_ref, placed.tif, placed.good_till_date) == (
        "prep-gtd", "GTD", gtd_string(good_till_ns))
    assert placed_frames(gateway)[0][ORDER_ID] == str(order_id)


def test_ib_broker_sends_a_day_order_with_no_good_till_date(gateway):
    req = OrderRequest("prep-day", "SPY", "STK", "SMART", "USD", "SELL", 2, "LMT", 99.5, "DAY")
    broker_places(gateway, 34, req, req)
    [placed] = gateway.place_orders()
    assert (placed.order_ref, placed.tif, placed.good_till_date) == ("prep-day", "DAY", "")
    assert (placed.action, float(placed.lmt_price)) == ("SELL", 99.5)


def test_an_id_taken_before_the_contract_is_known_goes_out_the_usual_way(gateway):
    """Nothing to encode when the id is taken (no contract yet): place sends the order
    through ib_async's placeOrder, with the same id and backstop."""
    good_till_ns = next_minute_ns()
    order_id = broker_places(gateway, 35, gtd_order("prep-late"),
                             gtd_order("prep-late", good_till_ns), qualify_first=False)
    [placed] = gateway.place_orders()
    assert (placed.order_ref, placed.good_till_date) == ("prep-late", gtd_string(good_till_ns))
    assert placed_frames(gateway)[0][ORDER_ID] == str(order_id)


def test_terms_changed_after_qualify_are_sent_as_changed_never_stale(gateway):
    """What qualify built (and next_order_id encoded) is of the request it was given; a
    request to place that differs in more than the INTENT's goodTillDate is built again, so
    the gateway gets the terms placed (here a limit of 100.75, not the 101.25 qualified)."""
    from dataclasses import replace

    good_till_ns = next_minute_ns()
    changed = replace(gtd_order("prep-new", good_till_ns), limit=100.75, qty=2)
    order_id = broker_places(gateway, 36, gtd_order("prep-new"), changed)
    [placed] = gateway.place_orders()
    assert (float(placed.lmt_price), float(placed.total_quantity)) == (100.75, 2.0)
    assert (placed.order_ref, placed.good_till_date) == ("prep-new", gtd_string(good_till_ns))
    assert placed_frames(gateway)[0][ORDER_ID] == str(order_id)
