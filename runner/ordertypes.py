"""IB's order types as runner speaks them: one table for the spec checks
(runner.ordercheck), the plan (what is sent, field by field), the gates (the price an
order is judged by) and the ib adapter (the ib_async Order's fields).

type: spec prices -> IB Order fields; the price bound the gates judge by

- LMT: limit -> lmtPrice; the limit.
- MKT: none; no bound (needs allow_market).
- STP: stop -> auxPrice; the stop (a market order once triggered: needs allow_market).
- STP LMT: stop, limit -> auxPrice, lmtPrice; the limit.
- TRAIL: trail_amount -> auxPrice, or trail_percent -> trailingPercent; stop (the first
  stop, optional) -> trailStopPrice; no bound (needs allow_market).
- TRAIL LIMIT: as TRAIL, and offset -> lmtPriceOffset; the first limit (stop ± offset).
- MOC: none; no bound (needs allow_market). LOC: limit -> lmtPrice; the limit.
- MIDPRICE: cap -> lmtPrice. REL, PEG MID: offset (default 0) -> auxPrice, cap ->
  lmtPrice. Bound: the cap; without one, none (needs allow_market).

A spec's `cap` is IB's lmtPrice, so `OrderRequest.limit` holds it: the ledger's `limit`
column and the gates then see every order's price bound in one place. An order with no
price bound executes at whatever the market gives once it works; like a market order it
needs `allow_market: true` (and the policy's allow_market). IB's algos (algoStrategy
Adaptive, Twap, Vwap) ride on an LMT or MKT parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from runner.output import number_text, price_text

if TYPE_CHECKING:
    from runner.broker import OrderRequest


@dataclass(frozen=True, slots=True)
class TypeRule:
    """The spec prices one order type takes. `one_of`: exactly one of these."""

    needs: tuple[str, ...] = ()
    may: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    market: bool = False  # no price bound, whatever its prices: needs allow_market
    what: str = ""  # why it needs allow_market, for the message


_TRAIL = ("trail_amount", "trail_percent")
RULES: dict[str, TypeRule] = {
    "LMT": TypeRule(needs=("limit",)),
    "MKT": TypeRule(market=True, what="a market order"),
    "STP": TypeRule(needs=("stop",), market=True,
                    what="a stop that becomes a market order when triggered"),
    "STP LMT": TypeRule(needs=("stop", "limit")),
    "TRAIL": TypeRule(one_of=_TRAIL, may=("stop",), market=True,
                      what="a trailing stop that becomes a market order when triggered"),
    "TRAIL LIMIT": TypeRule(one_of=_TRAIL, needs=("offset",), may=("stop",)),
    "MOC": TypeRule(market=True, what="a market order at the close"),
    "LOC": TypeRule(needs=("limit",)),
    "MIDPRICE": TypeRule(may=("cap",)),
    "REL": TypeRule(may=("offset", "cap")),
    "PEG MID": TypeRule(may=("offset", "cap")),
}
TYPES = tuple(RULES)
PRICE_KEYS = ("limit", "stop", "trail_amount", "trail_percent", "offset", "cap")
PEGS = frozenset({"MIDPRICE", "REL", "PEG MID"})  # their cap is IB's lmtPrice
TRAILS = frozenset({"TRAIL", "TRAIL LIMIT"})
AT_THE_CLOSE = frozenset({"MOC", "LOC"})
# The IB algos runner sends, by the spec's key, and their parameters' IB tags.
ALGOS = {"adaptive": "Adaptive", "twap": "Twap", "vwap": "Vwap"}
ALGO_TIME_ZONE = "US/Eastern"  # IB's algo start/end times, as IB's own samples give them


def is_market(o: OrderRequest) -> bool:
    """The order has no price bound once it works (MKT, STP, TRAIL, MOC; a peg without a
    cap): it needs allow_market, in the spec and in the policy."""
    return RULES[o.order_type].market or (o.order_type in PEGS and o.limit is None)


def bound(o: OrderRequest, reference: float | None = None) -> tuple[float | None, str, str]:
    """The worst price the order is known to trade at before it works: (price, the spec
    key it comes from, what messages call it). A STP's stop; a TRAIL LIMIT's first limit
    (its stop, or the reference ± the trail, ± its offset); the limit (or cap) of the
    others. (None, "", "") when only the market will tell: the gates use the reference."""
    if o.order_type == "STP":
        return o.stop, "stop", "stop"
    if o.order_type == "TRAIL LIMIT":
        return _first_trail_limit(o, reference), "offset", "first limit"
    if is_market(o) or o.limit is None:
        return None, "", ""
    key = "cap" if o.order_type in PEGS else "limit"
    return o.limit, key, key


def _first_trail_limit(o: OrderRequest, reference: float | None) -> float | None:
    sign = Decimal(1 if o.side == "BUY" else -1)
    stop = _dec(o.stop)
    if stop is None:
        ref = _dec(reference)
        if ref is None:
            return None
        trail = _dec(o.trail_amount)
        if trail is None:
            trail = ref * (_dec(o.trail_percent) or Decimal(0)) / 100
        stop = ref + sign * trail
    return float(stop + sign * (_dec(o.offset) or Decimal(0)))


def _dec(x: float | None) -> Decimal | None:
    return None if x is None else Decimal(repr(float(x)))


def aux_price(o: OrderRequest) -> float | None:
    """IB's auxPrice: a stop's trigger, a trail's amount, a peg's offset."""
    if o.order_type in ("STP", "STP LMT"):
        return o.stop
    if o.order_type in TRAILS:
        return o.trail_amount
    if o.order_type in ("REL", "PEG MID"):
        return o.offset if o.offset is not None else 0.0
    return None


def ib_fields(o: OrderRequest) -> tuple[tuple[str, Any], ...]:
    """The ib_async Order fields runner sets, in the order the plan shows them; every
    other field keeps ib_async's default (unset). goodTillDate is here once the engine
    has stamped it (`good_till_ns`), or when it is the spec's own and nothing earlier
    (the backstop) can replace it."""
    f: list[tuple[str, Any]] = [("action", o.side), ("totalQuantity", o.qty),
                                ("orderType", o.order_type)]
    if o.cash_qty is not None:
        f.insert(2, ("cashQty", o.cash_qty))
    if o.limit is not None:
        f.append(("lmtPrice", o.limit))
    aux = aux_price(o)
    if aux is not None:
        f.append(("auxPrice", aux))
    if o.order_type in TRAILS:
        if o.trail_percent is not None:
            f.append(("trailingPercent", o.trail_percent))
        if o.stop is not None:
            f.append(("trailStopPrice", o.stop))
    if o.order_type == "TRAIL LIMIT":
        f.append(("lmtPriceOffset", o.offset))
    f.append(("tif", o.tif))
    good_till = o.good_till_ns if o.good_till_ns is not None else (
        o.expiry_ns if o.backstop_sec is None else None)
    if good_till is not None:
        f.append(("goodTillDate", gtd_string(good_till)))
    f += [("outsideRth", o.outside_rth), ("orderRef", o.tag)]
    if o.account:
        f.append(("account", o.account))
    if o.algo:
        f += [("algoStrategy", o.algo), ("algoParams", o.algo_params)]
    return tuple(f)


class Prices(TypedDict):
    """An OrderRequest's price fields."""

    limit: float | None
    stop: float | None
    trail_amount: float | None
    trail_percent: float | None
    offset: float | None


def spec_prices(order_type: str, lmt: float | None, aux: float | None,
                trailing_percent: float | None = None, trail_stop: float | None = None,
                lmt_offset: float | None = None) -> Prices:
    """`ib_fields` the other way, by the module's table: an IB order's lmtPrice, auxPrice,
    trailingPercent, trailStopPrice and lmtPriceOffset as the OrderRequest's prices. What
    the fake gateway gives the simulator for an order a client placed."""
    trail = order_type in TRAILS
    stop = offset = None
    if order_type in ("STP", "STP LMT"):
        stop = aux
    elif trail:
        stop = trail_stop
    if order_type in ("REL", "PEG MID"):
        offset = aux
    elif order_type == "TRAIL LIMIT":
        offset = lmt_offset
    return {"limit": lmt, "stop": stop, "trail_amount": aux if trail else None,
            "trail_percent": trailing_percent if trail else None, "offset": offset}


def gtd_string(t_ns: int) -> str:
    """IB's goodTillDate in UTC: `yyyyMMdd-HH:mm:ss`."""
    return datetime.fromtimestamp(t_ns // 1_000_000_000, UTC).strftime("%Y%m%d-%H:%M:%S")


def describe_prices(o: OrderRequest, decimals: int) -> str:
    """The order type and its prices for the plan's place step: `LMT 10.00` and `MKT` as
    always; the other types as the IB fields that carry them (`STP LMT lmtPrice=10.05
    auxPrice=10.00`), then the algo and its parameters."""
    if o.order_type == "LMT" and o.limit is not None:
        text = f"LMT {price_text(o.limit, decimals)}"
    else:
        shown = [f"{name}={_value_text(name, value, decimals)}" for name, value in ib_fields(o)
                 if name in _PRICE_FIELDS]
        text = " ".join([o.order_type, *shown])
    if o.algo:
        params = " ".join(f"{tag}={value!r}" if " " in value else f"{tag}={value}"
                          for tag, value in o.algo_params)
        text += f" algoStrategy={o.algo}" + (f" {params}" if params else "")
    return text


_PRICE_FIELDS = ("lmtPrice", "auxPrice", "trailingPercent", "trailStopPrice", "lmtPriceOffset")
_AMOUNTS = ("trailingPercent",)  # a percentage, not a price: shown as written


def _value_text(name: str, value: Any, decimals: int) -> str:
    if name in _AMOUNTS:
        return number_text(value)
    return price_text(value, decimals)


def simulated_as(o: OrderRequest) -> str | None:
    """What the simulator runs an algo order as: its parent type (bars cannot run IB's
    algos); None for an order that is not an algo."""
    return o.order_type if o.algo else None


def algo_request(algo: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A spec's `algo:` (its defaults filled) as IB's algoStrategy and algoParams, every
    value as the text IB reads: times as `HH:MM:SS US/Eastern`, flags as 1 or 0."""
    (name, p), = algo.items()
    params: list[tuple[str, str]] = []
    if name == "adaptive":
        params.append(("adaptivePriority", p["priority"]))
    if name == "twap":
        params.append(("strategyType", p["strategy"]))
    if name == "vwap":
        params.append(("maxPctVol", number_text(float(p["max_pct_vol"]))))
    for key, tag in (("start", "startTime"), ("end", "endTime")):
        if key in p:
            params.append((tag, f"{_hms(p[key])} {ALGO_TIME_ZONE}"))
    flags = (("allow_past_end", "allowPastEndTime"), ("no_take_liq", "noTakeLiq"),
             ("speed_up", "speedUp"))
    params += [(tag, "1" if p[key] else "0") for key, tag in flags if key in p]
    return ALGOS[name], tuple(params)


def _hms(text: str) -> str:
    return text if text.count(":") == 2 else f"{text}:00"
