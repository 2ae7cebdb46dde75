"""An order's placeOrder message, encoded before the INTENT's clock starts.

ib_async's `IB.placeOrder` encodes some 115 fields (about 50 µs), writes them to the
socket, then does its bookkeeping (a Trade, a log line that formats the whole Trade).
runner knows every field but one before the INTENT: the order id is reserved and the
contract qualified, and only the GTD backstop's goodTillDate comes from the INTENT's
clock. So the message is encoded early by ib_async's own encoder, with a marker where
goodTillDate goes; `send` fills that in, writes the message, and only then does what
`IB.placeOrder` does for a new order (its log line formatted only if it is shown).

ib_async is pinned (2.1.0): `encode` checks that the marker comes back exactly once;
if not, or if the encoder fails, there is no prepared message and the broker places the
order the usual way (which then reports what is wrong, at the same point as before).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

_MARK = "\x01runner-goodTillDate\x01"  # no field holds a control character


@dataclass(frozen=True, slots=True)
class Prepared:
    """The message of one order (`order_id`), cut where its goodTillDate goes."""

    order_id: int
    head: str
    tail: str
    good_till: str  # the order's goodTillDate when it was encoded (sent if none is given)

    def message(self, good_till: str | None) -> str:
        return self.head + (self.good_till if good_till is None else good_till) + self.tail


def encode(ib: Any, contract: Any, order: Any, order_id: int) -> Prepared | None:
    """The placeOrder message of `order` as ib_async would send it now; None if it cannot
    be cut at goodTillDate (or the client is not connected)."""
    client = ib.client
    if not client.isConnected():
        return None
    good_till = order.goodTillDate
    captured: list[str] = []
    order.orderId, order.goodTillDate = order_id, _MARK
    client.sendMsg = captured.append  # the encoder's output, kept instead of sent
    try:
        client.placeOrder(order_id, contract, order)
    except Exception:  # noqa: BLE001 - placeOrder meets it again at `place`, as before
        return None
    finally:
        del client.sendMsg
        order.goodTillDate = good_till
    if len(captured) != 1 or captured[0].count(_MARK) != 1:
        return None
    head, tail = captured[0].split(_MARK)
    return Prepared(order_id, head, tail, good_till)


def send(ib: Any, contract: Any, order: Any, prepared: Prepared, good_till: str | None) -> Any:
    """Write the prepared message (goodTillDate filled in), then register the order with
    ib_async as `IB.placeOrder` does for a new order; the Trade. None, and nothing sent,
    if ib_async already has a trade under that id (a modification: not for this path).
    ConnectionError if not connected, as from `IB.placeOrder`."""
    from ib_async import OrderStatus, Trade, TradeLogEntry

    client, wrapper = ib.client, ib.wrapper
    if not client.isConnected():
        raise ConnectionError("Not connected")
    key = wrapper.orderKey(wrapper.clientId, prepared.order_id, order.permId)
    if key in wrapper.trades:
        return None
    client.sendMsg(prepared.message(good_till))
    # the bookkeeping of IB.placeOrder, after the bytes are out
    if good_till is not None:
        order.goodTillDate = good_till
    order.clientId, order.orderId = wrapper.clientId, prepared.order_id
    status = OrderStatus(orderId=prepared.order_id, status=OrderStatus.PendingSubmit)
    now = datetime.datetime.now(wrapper.defaultTimezone)
    trade = Trade(contract, order, status, [], [TradeLogEntry(now, status.status)])
    wrapper.trades[key] = trade
    ib._logger.info("placeOrder: New order %s", trade)
    ib.newOrderEvent.emit(trade)
    return trade
