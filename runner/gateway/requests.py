"""The requests clients send that the fake gateway reads field by field (server version 178).

placeOrder, reqMktData and reqHistoricalData, read by position as ib_async 2.1.0 and
the official ibapi write them (TWS_PROTOCOL, "placeOrder (3) as ib_async sends it at
version 178"). `wire` frames them and encodes the replies; this module only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.gateway.contracts import ContractQuery
from runner.gateway.values import Contract, PlacedOrder
from runner.gateway.wire import UNSET_DOUBLE, opt_float, opt_int


def contract_query(fields: Sequence[str], at: int) -> ContractQuery:
    """The 12 contract fields every request writes from index `at` on (conId, symbol,
    secType, lastTradeDateOrContractMonth, strike, right, multiplier, exchange,
    primaryExchange, currency, localSymbol, tradingClass); IndexError if short."""
    f = list(fields[at:at + 12])
    if len(f) < 12:
        raise IndexError(f"{len(f)} contract fields from index {at}")
    return ContractQuery(opt_int(f[0]), f[1], f[2], f[3], opt_float(f[4]) or 0.0, f[5], f[6],
                         f[7], f[8], f[9], f[10], f[11])


# ---------------------------------------------------------------- placeOrder

# placeOrder (3) at 178 has no version field; these indices hold for every order
# (only BAG inserts legs, after index 34). The one table of its layout: the named
# record, the parse and the tests all read it.
PLACE_ORDER_LAYOUT = {
    "order_id": 1, "con_id": 2, "symbol": 3, "sec_type": 4, "last_trade": 5, "strike": 6,
    "right": 7, "multiplier": 8, "exchange": 9, "primary_exchange": 10, "currency": 11,
    "local_symbol": 12, "trading_class": 13,
    "action": 16, "total_quantity": 17, "order_type": 18, "lmt_price": 19, "aux_price": 20,
    "tif": 21, "account": 23, "order_ref": 26, "outside_rth": 33,
}
_P_GTD = 38  # goodTillDate, for every order but a BAG (its legs come before it)
_P_CONTRACT = 2  # its 12 contract fields start at conId
PLACE_ORDER_MIN_FIELDS = 35
# Further on, for every order but a BAG or one with a delta-neutral order type (both
# insert fields before them): trailStopPrice and trailingPercent, then algoStrategy.
_P_DELTA_NEUTRAL_TYPE, _P_TRAIL_STOP, _P_TRAIL_PERCENT = 64, 68, 69
_P_ALGO = 82  # algoStrategy; then (its count and tag/value pairs,) algoId and whatIf
# After whatIf: orderMiscOptions, solicited, randomizeSize, randomizePrice, (PEG BENCH's
# 5 fields,) the conditions' count, (the conditions,) adjustedOrderType, triggerPrice and
# lmtPriceOffset: 8 on from whatIf when there are no conditions.
_WHAT_IF_TO_OFFSET = 8
# Then adjustedStopPrice, adjustedStopLimitPrice, adjustedTrailingAmount,
# adjustableTrailingUnit, extOperator, softDollarTier's name and value, and cashQty.
_WHAT_IF_TO_CASH_QTY = _WHAT_IF_TO_OFFSET + 8
_PEG_BENCH_FIELDS = 5


@dataclass(frozen=True, slots=True)
class PlaceOrderFields:
    """A placeOrder frame's fields by name, each exactly as the client sent it (nothing
    parsed, upper-cased or defaulted: tif and account are "" unless set)."""

    order_id: str
    con_id: str
    symbol: str
    sec_type: str
    last_trade: str
    strike: str
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    action: str
    total_quantity: str
    order_type: str
    lmt_price: str
    aux_price: str
    tif: str
    account: str
    order_ref: str
    outside_rth: str
    good_till_date: str  # "" when absent, and for a BAG
    # The fields of the newer order types; "" (and ()) when absent or not read (a BAG, a
    # delta-neutral order, an order with conditions: their fields come first).
    trail_stop_price: str = ""
    trailing_percent: str = ""
    lmt_price_offset: str = ""
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    cash_qty: str = ""  # 8 on from lmtPriceOffset (after softDollarTier's name and value)


def place_order_fields(fields: Sequence[str]) -> PlaceOrderFields:
    """Name a placeOrder frame's fields; ValueError if it is too short to be one."""
    f = list(fields)
    if len(f) < PLACE_ORDER_MIN_FIELDS:
        raise ValueError(f"placeOrder with {len(f)} fields")
    named: dict[str, Any] = {name: f[at] for name, at in PLACE_ORDER_LAYOUT.items()}
    is_bag = named["sec_type"] == "BAG"
    if not is_bag:
        named.update(_later_fields(f, named["order_type"]))
    return PlaceOrderFields(**named,
                            good_till_date="" if is_bag or len(f) <= _P_GTD else f[_P_GTD])


def _later_fields(f: list[str], order_type: str) -> dict[str, Any]:
    """The trail, algo and lmtPriceOffset fields, read where a plain order has them."""
    if len(f) <= _P_ALGO + 2 or f[_P_DELTA_NEUTRAL_TYPE]:  # short, or moved by a delta-neutral type
        return {}
    out: dict[str, Any] = {"trail_stop_price": f[_P_TRAIL_STOP],
                           "trailing_percent": f[_P_TRAIL_PERCENT],
                           "algo_strategy": f[_P_ALGO]}
    at = _P_ALGO + 2  # whatIf
    if f[_P_ALGO]:
        n = opt_int(f[_P_ALGO + 1])
        out["algo_params"] = tuple((f[_P_ALGO + 2 + 2 * i], f[_P_ALGO + 3 + 2 * i])
                                   for i in range(n))
        at += 1 + 2 * n
    if order_type.upper() in ("PEG BENCH", "PEGBENCH"):
        at += _PEG_BENCH_FIELDS
    conditions = at + _WHAT_IF_TO_OFFSET - 3
    if len(f) > at + _WHAT_IF_TO_OFFSET and opt_int(f[conditions]) == 0:
        out["lmt_price_offset"] = f[at + _WHAT_IF_TO_OFFSET]
        if len(f) > at + _WHAT_IF_TO_CASH_QTY:
            out["cash_qty"] = f[at + _WHAT_IF_TO_CASH_QTY]
    return out


def place_order_query(fields: Sequence[str]) -> ContractQuery:
    """The contract a placeOrder names, as sent."""
    return contract_query(fields, _P_CONTRACT)


def is_what_if(fields: Sequence[str]) -> bool:
    """Whether a placeOrder asks for a what-if preview. Read after an empty algoStrategy
    at 82 (plain orders: whatIf at 84); an algo order moves it by 1 + 2 x its params."""
    f = list(fields)
    at = _P_ALGO + 2
    if len(f) > _P_ALGO and f[_P_ALGO]:
        at += 1 + 2 * opt_int(f[_P_ALGO + 1])
    return len(f) > at and f[at] == "1"


def parse_place_order(fields: Sequence[str], default_account: str) -> PlacedOrder:
    """Read a placeOrder frame by position; raises ValueError/IndexError if malformed."""
    p = place_order_fields(fields)
    contract = Contract(
        con_id=opt_int(p.con_id),
        symbol=p.symbol.upper(),
        sec_type=p.sec_type or "STK",
        exchange=p.exchange or "SMART",
        primary_exchange=p.primary_exchange,
        currency=p.currency or "USD",
        local_symbol=p.local_symbol,
        trading_class=p.trading_class,
        last_trade=p.last_trade,
        strike=opt_float(p.strike) or 0.0,
        right=p.right,
        multiplier=p.multiplier,
    )
    return PlacedOrder(
        order_id=int(p.order_id),
        contract=contract,
        action=p.action.upper(),
        qty=float(p.total_quantity or 0),
        order_type=p.order_type.upper(),
        lmt_price=opt_float(p.lmt_price),
        aux_price=opt_float(p.aux_price),
        tif=p.tif.upper() or "DAY",
        account=p.account or default_account,
        order_ref=p.order_ref,
        outside_rth=p.outside_rth == "1",
        good_till_date=p.good_till_date,
        fields=tuple(fields),
        trail_stop_price=opt_float(p.trail_stop_price),
        trailing_percent=opt_float(p.trailing_percent),
        lmt_price_offset=opt_float(p.lmt_price_offset),
        cash_qty=_set(opt_float(p.cash_qty)),
    )


def _set(x: float | None) -> float | None:
    """A double as set: the official ibapi writes an unset one as 1.7976931348623157e+308."""
    return None if x is None or x >= _UNSET else x


_UNSET = float(UNSET_DOUBLE)


# ---------------------------------------------------------------- market data

# reqMktData (1) as ib_async sends it at 178:
# `1,11,reqId,<12 contract fields>,deltaNeutral(0|1[,conId,delta,price]),genericTicks,
#  snapshot,regulatorySnapshot,mktDataOptions`; BAG contracts add legs after the contract.
_M_REQ_ID, _M_CONTRACT, _M_DNC = 2, 3, 15
# reqHistoricalData (20), no version field: `20,reqId,<12 contract fields>,includeExpired,
# endDateTime,barSizeSetting,durationStr,useRTH,whatToShow,formatDate,[BAG legs,]
# keepUpToDate,chartOptions`.
_H_REQ_ID, _H_CONTRACT = 1, 2
_H_END, _H_BAR_SIZE, _H_DURATION, _H_WHAT, _H_FORMAT, _H_KEEP = 15, 16, 17, 19, 20, 21


@dataclass(frozen=True, slots=True)
class MarketDataRequest:
    req_id: int
    contract: ContractQuery
    snapshot: bool


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    req_id: int
    contract: ContractQuery
    end: str  # endDateTime as sent; "" means now
    bar_size: str
    duration: str
    what_to_show: str
    format_date: int  # 1: `yyyyMMdd HH:mm:ss zone`, 2: epoch seconds
    keep_up_to_date: bool


def parse_market_data(fields: Sequence[str]) -> MarketDataRequest:
    """Read a reqMktData frame; ValueError/IndexError if malformed."""
    f = list(fields)
    c = _M_CONTRACT
    sec_type = f[c + 2]
    at = _M_DNC
    if sec_type == "BAG":
        at += 1 + 4 * int(f[at])
    at += 4 if f[at] == "1" else 1  # the delta-neutral flag, and its 3 fields if set
    return MarketDataRequest(int(f[_M_REQ_ID]), contract_query(f, c), snapshot=f[at + 1] == "1")


def parse_historical(fields: Sequence[str]) -> HistoricalRequest:
    """Read a reqHistoricalData frame; ValueError/IndexError if malformed."""
    f = list(fields)
    c = _H_CONTRACT
    sec_type = f[c + 2]
    keep = _H_KEEP + (1 + 4 * int(f[_H_KEEP]) if sec_type == "BAG" else 0)
    return HistoricalRequest(
        int(f[_H_REQ_ID]), contract_query(f, c), end=f[_H_END],
        bar_size=" ".join(f[_H_BAR_SIZE].split()), duration=f[_H_DURATION],
        what_to_show=f[_H_WHAT].upper(), format_date=opt_int(f[_H_FORMAT], 1),
        keep_up_to_date=len(f) > keep and f[keep] == "1")
