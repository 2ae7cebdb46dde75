"""Asking the gateway: contracts, what it knows of an order, executions, what-if, hours,
the broker's reference price.

Orders are found by permId, then (client id, order id) with the same orderRef, then
orderRef alone (DESIGN §5). Answers are runner's own values (`Found`, `FillView`,
`WhatIf`); ib_async objects and IB status strings do not leave this package.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.broker import Ev, Lookup, OrderRequest, WhatIf
from runner.errors import GatewayError
from runner.ib.codes import READ_ONLY
from runner.ib.orders import END_OF_STATUS
from runner.ib.session import Session, hint_321
from runner.ordertypes import gtd_string as gtd_string  # IB's goodTillDate text
from runner.ordertypes import ib_fields

IB_UNSET = 1.7976931348623157e308  # IB's "no value" double (e.g. an unknown margin figure)
NS = 1_000_000_000
BAR_NS = NS  # a 1-second bar is known once it has ended, at its start + 1 s
REFERENCE_BARS = "60 S"  # how far back the last 1-second bar is looked for


@dataclass(frozen=True, slots=True)
class Identity:
    """What the ledger knows to find an order by."""

    tag: str
    perm_id: int | None = None
    client_id: int | None = None
    order_id: int | None = None

    def matches(self, ref: str, perm_id: int | None, client_id: int | None,
                order_id: int | None) -> bool:
        if self.perm_id:
            return perm_id == self.perm_id
        if ref != self.tag:
            return False
        if self.order_id and order_id and client_id is not None and self.client_id is not None:
            return (client_id, order_id) == (self.client_id, self.order_id)
        return True


@dataclass(frozen=True, slots=True)
class FillView:
    """One execution as the broker reports it."""

    exec_id: str
    ts_ns: int
    qty: float
    px: float
    cum_qty: float
    avg_px: float
    commission: float | None
    order_id: int | None
    perm_id: int | None
    client_id: int | None


@dataclass
class Found:
    """What the gateway shows of one order right now."""

    state: Lookup
    end: Ev | None = None  # when DONE: how it ended (from its status)
    status: str = ""  # IB's words, for messages only
    fills: list[FillView] = field(default_factory=list)
    client_id: int | None = None
    order_id: int | None = None
    perm_id: int | None = None
    filled: float = 0.0  # the status's filled quantity
    avg_px: float | None = None
    trade: Any = None  # the live order (opaque outside this package)


TORN_LOOKS = 3  # how often one lookup is asked again when its answers disagree


async def find(s: Session, who: Identity) -> Found:
    """The gateway's view of one order: open orders of every client, completed orders,
    executions with their commissions.

    The answers are asked one after another, so an order can end between them: shown
    working by the open orders, ended by its status since, and missing from completed
    orders answered before the end. Such a torn look is asked again (it is neither
    working nor missing); if it stays torn, the order counts as working (seen so, and no
    end confirmed yet) — never UNKNOWN."""
    for _ in range(TORN_LOOKS):
        found, torn = await _look(s, who)
        if not torn:
            return found
    found.state, found.end = Lookup.WORKING, None
    return found


async def _look(s: Session, who: Identity) -> tuple[Found, bool]:
    """One lookup, and whether it is torn (see `find`)."""
    open_trades = list(await s.timed("reqAllOpenOrders", s.ib.reqAllOpenOrdersAsync()))
    done_trades = list(await s.timed("reqCompletedOrders",
                                     s.ib.reqCompletedOrdersAsync(apiOnly=True)))
    fills = await executions(s, who)
    found = Found(Lookup.UNKNOWN, fills=fills)
    for t in done_trades:
        if _is(who, t):
            _note(found, t)
            found.state, found.end = Lookup.DONE, END_OF_STATUS.get(t.orderStatus.status)
    ended_since = [t for t in open_trades if _is(who, t)
                   and t.orderStatus.status in END_OF_STATUS]
    for t in open_trades + list(s.ib.openTrades()):
        if _is(who, t) and t.orderStatus.status not in END_OF_STATUS:
            _note(found, t)
            found.state, found.end, found.trade = Lookup.WORKING, None, t
            break
    if found.state == Lookup.UNKNOWN and ended_since:
        _note(found, ended_since[-1])
        found.trade = ended_since[-1]
        return found, True
    if found.state == Lookup.UNKNOWN and fills:
        last = fills[-1]
        found.client_id, found.order_id, found.perm_id = last.client_id, last.order_id, \
            last.perm_id
    return found, False


def _is(who: Identity, trade: Any) -> bool:
    o = trade.order
    return who.matches(o.orderRef or "", o.permId or None, o.clientId, o.orderId or None)


def _note(found: Found, trade: Any) -> None:
    o, st = trade.order, trade.orderStatus
    found.status = st.status
    found.client_id = o.clientId if o.orderId else found.client_id
    found.order_id = o.orderId or found.order_id
    found.perm_id = o.permId or found.perm_id
    found.filled = max(found.filled, float(st.filled or 0.0))
    found.avg_px = float(st.avgFillPrice) if st.avgFillPrice else found.avg_px


async def executions(s: Session, who: Identity) -> list[FillView]:
    """The order's executions, each with its commission, in the order they happened."""
    from ib_async import ExecutionFilter

    fills = await s.timed("reqExecutions", s.ib.reqExecutionsAsync(ExecutionFilter()))
    mine = {}
    for f in list(fills) + list(s.ib.fills()):
        ex = f.execution
        if who.matches(ex.orderRef or "", ex.permId or None, ex.clientId, ex.orderId or None):
            mine[ex.execId] = _fill_view(f)
    return sorted(mine.values(), key=lambda f: (f.ts_ns, f.exec_id))


def _fill_view(fill: Any) -> FillView:
    ex, report = fill.execution, fill.commissionReport
    commission = float(report.commission) if report and report.execId == ex.execId else None
    return FillView(exec_id=ex.execId, ts_ns=int(fill.time.timestamp() * 1e9),
                    qty=float(ex.shares), px=float(ex.price), cum_qty=float(ex.cumQty),
                    avg_px=float(ex.avgPrice), commission=commission,
                    order_id=ex.orderId or None, perm_id=ex.permId or None,
                    client_id=ex.clientId)


# --- previews and facts for the gates -----------------------------------------------------


async def what_if(s: Session, contract: Any, order: OrderRequest) -> WhatIf:
    """IB's what-if preview of the order (margin, commission, warning); IB creates no
    order."""
    failed: list[tuple[int, str]] = []
    refused = asyncio.Event()

    def on_error(req_id: int, code: int, text: str, contract: Any) -> None:
        if req_id > 0:  # the what-if is the only request in flight with an id
            failed.append((code, text))
            refused.set()

    s.ib.errorEvent += on_error
    try:
        state = await _first(s, s.ib.whatIfOrderAsync(contract, ib_order(order)),
                             refused.wait())
    finally:
        s.ib.errorEvent -= on_error
    if failed or state is None:
        code, text = failed[0] if failed else (0, "no answer")
        hint = hint_321(text) if code == READ_ONLY else "check the order and the account"
        raise GatewayError(f"IB refused the what-if of {order.tag}: {code} {text}", hint)
    return _what_if_value(state)


async def _first(s: Session, wanted: Any, failure: Any) -> Any:
    """`wanted`'s result, or None if `failure` comes first; GatewayError on timeout."""
    want, fail = asyncio.ensure_future(wanted), asyncio.ensure_future(failure)
    done, _ = await asyncio.wait({want, fail}, timeout=s.conn.timeout_sec,
                                 return_when=asyncio.FIRST_COMPLETED)
    for task in (want, fail):
        task.cancel()  # a no-op on the one that is done
    if not done:
        raise GatewayError(f"no what-if answer from {s.where} within "
                           f"{s.conn.timeout_sec:g} s", "is the gateway logged in?")
    return want.result() if want in done else None


async def liquid_sessions(s: Session, contract: Any) -> tuple[tuple[int, int], ...] | None:
    """The contract's liquid (regular) trading sessions, [start, end) ns, from IB's
    contract details; None if IB gave none we can read."""
    try:
        details = await asyncio.wait_for(s.ib.reqContractDetailsAsync(contract),
                                         s.conn.timeout_sec)
    except (TimeoutError, ConnectionError):
        return None  # unknown hours: the gate is skipped, the order's own errors remain
    if not details:
        return None
    return parse_hours(details[0].liquidHours, details[0].timeZoneId)


def ib_order(o: OrderRequest) -> Any:
    """The ib_async Order: the fields of runner.ordertypes.ib_fields (the ones the plan
    shows), algoParams as TagValues; every other field keeps ib_async's default."""
    from ib_async import Order, TagValue

    order = Order()
    for name, value in ib_fields(o):
        if name == "algoParams":
            value = [TagValue(tag, text) for tag, text in value]
        setattr(order, name, value)
    return order


def _what_if_value(state: Any) -> WhatIf:
    """ib_async's OrderState (IB's strings; 1.7976931348623157E308 = unset) -> WhatIf."""
    n = _ib_number
    return WhatIf(
        init_margin_before=n(state.initMarginBefore), init_margin_change=n(state.initMarginChange),
        init_margin_after=n(state.initMarginAfter), maint_margin_before=n(state.maintMarginBefore),
        maint_margin_change=n(state.maintMarginChange),
        maint_margin_after=n(state.maintMarginAfter),
        equity_with_loan_before=n(state.equityWithLoanBefore),
        equity_with_loan_change=n(state.equityWithLoanChange),
        equity_with_loan_after=n(state.equityWithLoanAfter), commission=n(state.commission),
        min_commission=n(state.minCommission), max_commission=n(state.maxCommission),
        currency=state.commissionCurrency or "", warning=state.warningText or "",
    )


def _ib_number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x >= IB_UNSET or x != x else x


def parse_hours(text: str, tz_id: str) -> tuple[tuple[int, int], ...] | None:
    """IB's liquidHours (`20250106:0930-20250106:1600;20250111:CLOSED`, in the contract's
    timeZoneId) -> sessions as [start, end) ns UTC; None if unreadable."""
    try:
        tz = ZoneInfo(tz_id)
        sessions = []
        for part in filter(None, (text or "").split(";")):
            if part.endswith(":CLOSED"):
                continue
            start, end = part.split("-")
            sessions.append((_ib_local_ns(start, tz), _ib_local_ns(end, tz)))
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return tuple(sessions) if text else None


def _ib_local_ns(text: str, tz: ZoneInfo) -> int:
    local = datetime.strptime(text, "%Y%m%d:%H%M").replace(tzinfo=tz)
    return int(local.timestamp()) * 1_000_000_000


# --- the broker's reference price ----------------------------------------------------------


async def reference(s: Session, contract: Any) -> tuple[float, int] | None:
    """The broker's reference price of a qualified contract and the instant it was known
    (ns since the epoch, UTC): a market-data snapshot (the bid/ask midpoint, else last,
    else the close), else the close of the last 1-second TRADES bar of the past minute
    (known at the bar's end). IB's "no value" prices (-1, 0, nan, 1.79e308) are none.

    None when the gateway has no such data (354 / 162 end each wait at once; a request
    the gateway leaves unanswered costs the connection's timeout). GatewayError only when
    the connection is not there or breaks meanwhile."""
    if not s.connected:
        raise GatewayError(f"cannot ask {s.where} for a reference price: not connected",
                           "is the gateway running and logged in?")
    try:
        return await _snapshot_price(s, contract) or await _last_bar_price(s, contract)
    except ConnectionError as e:  # ib_async: "Not connected" / "Socket disconnect"
        raise GatewayError(f"connection to {s.where} lost while asking for a reference "
                           f"price ({e})", "is the gateway running and logged in?") from None


async def _snapshot_price(s: Session, contract: Any) -> tuple[float, int] | None:
    """reqMktData snapshot=1 until tickSnapshotEnd (57) or an error for it (354 ...)."""
    ib = s.ib
    req_id = ib.client.getReqId()
    done = ib.wrapper.startReq(req_id, contract)  # type: ignore[no-untyped-call]
    ticker = ib.wrapper.startTicker(req_id, contract, "snapshot")
    _forget_prices(ticker)  # ib_async keeps one Ticker per contract: no stale price
    try:
        ib.client.reqMktData(req_id, contract, "", True, False, [])  # type: ignore[no-untyped-call]
        await asyncio.wait_for(done, s.conn.timeout_sec)
    except TimeoutError:
        if s.connected:
            ib.client.cancelMktData(req_id)  # type: ignore[no-untyped-call]
        return None
    finally:
        ib.wrapper.endTicker(ticker, "snapshot")
        ib.wrapper.reqId2Ticker.pop(req_id, None)  # a late tick goes nowhere
    price = _midpoint(ticker.bid, ticker.ask) or _ib_price(ticker.last) \
        or _ib_price(ticker.close)
    if price is None:
        return None
    seen = ticker.time
    return price, int(seen.timestamp() * NS) if seen is not None else time.time_ns()


async def _last_bar_price(s: Session, contract: Any) -> tuple[float, int] | None:
    """The last 1-second bar with a price from historical data (epoch-second dates)."""
    timeout = s.conn.timeout_sec
    try:
        bars = await asyncio.wait_for(s.ib.reqHistoricalDataAsync(
            contract, "", REFERENCE_BARS, "1 secs", "TRADES", useRTH=False, formatDate=2,
            timeout=timeout), timeout + 1.0)
    except TimeoutError:
        return None
    for bar in reversed(list(bars or ())):
        price, start = _ib_price(bar.close), bar.date
        if price is not None and isinstance(start, datetime):
            return price, int(start.timestamp()) * NS + BAR_NS
    return None


def _forget_prices(ticker: Any) -> None:
    for name in ("last", "bid", "ask", "close"):
        setattr(ticker, name, math.nan)
    ticker.time = None


def _midpoint(bid: Any, ask: Any) -> float | None:
    b, a = _ib_price(bid), _ib_price(ask)
    if b is None or a is None or b > a:  # a crossed quote is no reference
        return None
    return round((b + a) / 2, 10)


def _ib_price(value: Any) -> float | None:
    """A price IB sent, or None for its "no value" (-1, 0, nan, inf, 1.79e308)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and 0 < x < IB_UNSET else None


# --- the broker's bars over an order's life (arrival: broker) ------------------------------


async def order_bars(s: Session, contract: Any, start_ns: int, end_ns: int) -> Any:
    """IB's 1-second TRADES bars from the bar before the one holding `start_ns` (so a
    price that ended by any instant of the order is there) to the end of the bar holding
    `end_ns` (asked once that bar has ended), as a `runner.bars.Bars` whose vwap is IB's
    bar average; None if IB sent none within the connection's timeout (no data, pacing:
    162 ends the wait at once)."""
    first = start_ns // BAR_NS * BAR_NS - BAR_NS
    last_end = end_ns // BAR_NS * BAR_NS + BAR_NS
    await asyncio.sleep(max(0.0, (last_end - time.time_ns()) / NS))  # < 1 s: let it end
    timeout = s.conn.timeout_sec
    try:
        got = await asyncio.wait_for(s.ib.reqHistoricalDataAsync(
            contract, gtd_string(last_end), f"{(last_end - first) // NS} S", "1 secs",
            "TRADES", useRTH=False, formatDate=2, timeout=timeout), timeout + 1.0)
    except TimeoutError:
        return None
    return ib_bars(list(got or ()), first, last_end)


def ib_bars(bars: list[Any], first_ns: int, end_ns: int) -> Any:
    """ib_async BarData (epoch-second dates) within [first_ns, end_ns) -> Bars; a bar
    without a price (no trade) is left out, and an average IB leaves unset is the close.
    None if no bar is left."""
    from runner.bars import Bars

    rows = []
    for bar in bars:
        start = int(bar.date.timestamp()) * NS if isinstance(bar.date, datetime) else None
        prices = [_ib_price(x) for x in (bar.open, bar.high, bar.low, bar.close)]
        if start is None or not first_ns <= start < end_ns or None in prices:
            continue
        rows.append((start, *prices, max(float(bar.volume), 0.0),
                     _ib_price(bar.average) or prices[3]))
    if not rows:
        return None
    import numpy as np

    cols = np.array(rows, dtype=np.float64).T
    return Bars(ts=np.array([r[0] for r in rows], dtype=np.int64), open=cols[1],
                high=cols[2], low=cols[3], close=cols[4], volume=cols[5], vwap=cols[6],
                path="IB reqHistoricalData", interval_ns=NS)  # asked for "1 secs": a thin
    # name's bars skip seconds without trades, which must not read as longer bars
