"""What is working at the gateway, what is held, and cancelling one order: `runner orders`,
`runner positions`, `runner cancel TAG` at the adapter's edge.

Answers are runner's own values (`WorkingOrder`, `Holding`, `CancelAnswer`); ib_async's
Trade, Position and Contract objects do not leave this module. IB's status strings and
refusal texts travel only as words for messages.

Orders of every client come from reqAllOpenOrders (16). Only the client id that placed
an order can cancel it with cancelOrder (TWS API "Modifying orders"; the fake gateway
answers another client's cancel with 10147), so a cancel goes out from a session with
that client id (`owner_session`). Whether it took is read from the messages as the
gateway sent them (a tap): ib_async 2.1.0 marks its trade Cancelled on 161, 10147 and
10148 alike, which would hide a refused cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.errors import GatewayError
from runner.ib.codes import Kind, classify
from runner.ib.orders import END_OF_STATUS
from runner.ib.queries import IB_UNSET, Found, Identity, find
from runner.ib.session import Session

_UTC_GTD = re.compile(r"^(\d{8})-(\d\d:\d\d:\d\d)$")  # 20260105-14:30:13: UTC
_ZONED_GTD = re.compile(r"^(\d{8}) (\d\d:\d\d:\d\d) (\S+)$")  # 20260105 09:30:13 US/Eastern


@dataclass(frozen=True, slots=True)
class Instrument:
    """The contract of an order or a position, as the gateway names it."""

    con_id: int
    symbol: str
    local_symbol: str  # ESH6, EUR.USD, an OCC option symbol with its spaces as one
    sec_type: str
    exchange: str
    currency: str
    multiplier: float | None  # when not 1 (futures, options)

    @property
    def name(self) -> str:
        """What a person calls it: the local symbol, else the symbol."""
        return self.local_symbol or self.symbol


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """One order the gateway shows working (not Filled, Cancelled or Inactive)."""

    tag: str  # IB's orderRef ("" when the order has none)
    order_id: int  # 0: an order placed in TWS, which no API client can cancel by id
    perm_id: int | None
    client_id: int
    account: str
    contract: Instrument
    side: str
    qty: float
    filled: float
    order_type: str
    limit: float | None
    aux: float | None  # IB's auxPrice: the stop (trigger) price, a trail amount, ...
    tif: str
    good_till_ns: int | None  # a GTD order's expiry, when IB's text says its zone
    outside_rth: bool
    status: str  # IB's words (Submitted, PreSubmitted, PendingCancel, ...)
    cash_qty: float | None = None  # IB's cashQty: an order sized in money (qty 0)

    @property
    def identity(self) -> Identity:
        return Identity(self.tag, self.perm_id, self.client_id, self.order_id or None)


@dataclass(frozen=True, slots=True)
class Holding:
    """One position of one account, as reqPositions reports it."""

    account: str
    contract: Instrument
    position: float
    avg_cost: float  # per unit of position, as IB reports it (x the multiplier)


@dataclass
class CancelAnswer:
    """What the gateway said to one cancelOrder, within the wait."""

    status: str = ""  # the order's last orderStatus since the cancel ("" if none came)
    code: int = 0  # a cancel refusal (161, 10147, 10148, 10149); 0 if none came
    text: str = ""  # IB's text of that refusal

    @property
    def ended(self) -> bool:
        return self.status in END_OF_STATUS


async def working_orders(s: Session) -> list[WorkingOrder]:
    """Every client's working orders (reqAllOpenOrders), each once, in the gateway's order."""
    trades = await s.timed("reqAllOpenOrders", s.ib.reqAllOpenOrdersAsync())
    seen: dict[tuple[int, int, int], WorkingOrder] = {}
    for t in trades:  # a message sent twice (IB does) is one order
        o = t.order
        key = (o.clientId, o.orderId, o.permId)
        if key not in seen and t.orderStatus.status not in END_OF_STATUS:
            seen[key] = _working(t)
    return list(seen.values())


def _working(trade: Any) -> WorkingOrder:
    o, st = trade.order, trade.orderStatus
    return WorkingOrder(
        tag=o.orderRef or "", order_id=int(o.orderId or 0), perm_id=int(o.permId) or None,
        client_id=int(o.clientId), account=o.account or "", contract=_instrument(trade.contract),
        side=o.action, qty=float(o.totalQuantity), filled=float(st.filled or 0.0),
        order_type=o.orderType, limit=_price(o.lmtPrice), aux=_price(o.auxPrice),
        tif=o.tif or "", good_till_ns=gtd_ns(o.goodTillDate or ""),
        outside_rth=bool(o.outsideRth), status=st.status, cash_qty=_price(o.cashQty))


async def holdings(s: Session) -> list[Holding]:
    """Every account's positions (reqPositions), none of size 0."""
    positions = await s.timed("reqPositions", s.ib.reqPositionsAsync())
    out = {(p.account, p.contract.conId): Holding(p.account, _instrument(p.contract),
                                                  float(p.position), float(p.avgCost))
           for p in positions if p.position}
    return list(out.values())


def _instrument(c: Any) -> Instrument:
    return Instrument(con_id=int(c.conId), symbol=c.symbol, local_symbol=_spaced(c.localSymbol),
                      sec_type=c.secType, exchange=c.exchange or c.primaryExchange,
                      currency=c.currency, multiplier=_multiplier(c.multiplier))


def _price(value: Any) -> float | None:
    """A price IB sent, or None for its "no value" (1.7976931348623157E308, nan)."""
    x = float(value) if value is not None and value != "" else math.nan
    return x if math.isfinite(x) and abs(x) < IB_UNSET else None


def _multiplier(text: Any) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x not in (0.0, 1.0) else None


def _spaced(text: str) -> str:
    """An OCC option symbol (`SPY   260116C00600000`) with its runs of spaces as one."""
    return " ".join((text or "").split())


def gtd_ns(text: str) -> int | None:
    """IB's goodTillDate (`yyyyMMdd-HH:mm:ss` UTC, or `yyyyMMdd HH:mm:ss ZONE`) in ns UTC;
    None when empty or in a zone it does not name (TWS's local time)."""
    utc, zoned = _UTC_GTD.match(text), _ZONED_GTD.match(text)
    try:
        if utc:
            at = datetime.strptime(" ".join(utc.groups()), "%Y%m%d %H:%M:%S").replace(tzinfo=UTC)
        elif zoned:
            day, clock, zone = zoned.groups()
            at = datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S") \
                .replace(tzinfo=ZoneInfo(zone))
        else:
            return None
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return int(at.timestamp()) * 1_000_000_000


# --- cancelling -------------------------------------------------------------------------


class Canceller:
    """Cancels orders from one session (its client id's orders only) and hears the answer:
    an end status, or a refusal code, as the gateway sent them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._waiting: dict[int, tuple[CancelAnswer, asyncio.Event]] = {}
        session.tap(self)

    async def cancel(self, order: WorkingOrder) -> tuple[CancelAnswer, Found]:
        """Send cancelOrder, wait (IB_CANCEL_TIMEOUT at most) for an end or a refusal, then
        ask the gateway what it shows of the order: that is the answer, not a code."""
        answer, heard = CancelAnswer(), asyncio.Event()
        self._waiting[order.order_id] = (answer, heard)
        try:
            self.session.cancel(order.order_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), self.session.conn.cancel_timeout_sec)
        finally:
            del self._waiting[order.order_id]
        return answer, await find(self.session, order.identity)

    # the tap: every decoded message, before ib_async's bookkeeping (ib_async's names)
    def orderStatus(self, order_id: int, status: str, *rest: Any) -> None:  # noqa: N802
        waiting = self._waiting.get(order_id)
        if waiting is not None:
            waiting[0].status = status
            if status in END_OF_STATUS:
                waiting[1].set()

    def execDetails(self, *args: Any) -> None:  # noqa: N802
        pass

    def commissionReport(self, *args: Any) -> None:  # noqa: N802
        pass

    def error(self, req_id: int, code: int, text: str, *rest: Any) -> None:
        waiting = self._waiting.get(req_id)
        if waiting is not None and classify(code).kind == Kind.CANCEL_REFUSED:
            waiting[0].code, waiting[0].text = code, text
            waiting[1].set()


async def owner_session(s: Session, client_id: int, verbose: int = 0) -> Session:
    """`s` if it has `client_id`, else a new session with it (only the client that placed an
    order can cancel it). GatewayError naming the client id if that connection fails."""
    if client_id == s.client_id:
        return s
    other = Session(replace(s.conn, client_id=client_id), verbose)
    try:
        await other.connect()
    except GatewayError as e:
        await other.close()
        raise GatewayError(f"the order was placed by client id {client_id}, which only that "
                           f"client can cancel, and connecting as it failed: {e.message}",
                           "close that client, or cancel the order in TWS") from None
    return other
