"""The spec checks of an order's type, prices, time in force and algo (beyond the
schema): each problem once, at its key's line, with the fix.

- The type: `order.type`, else LMT with a limit and MKT without (today's specs, as
  they were). Each type takes the prices of runner.ordertypes.RULES and no others.
- No price bound (MKT, STP, TRAIL, MOC; a peg without a cap): needs allow_market.
- A sanity-cancel is a limit order far from the market: type LMT, a resting tif.
- tif GTD needs good_till (ISO 8601 with an offset, or epoch seconds; whole seconds) and
  good_till needs GTD. OPG and FOK are for MKT and LMT orders; MOC and LOC are DAY.
- The TTL backstop is never dropped quietly: a one-shot MOC, LOC or OPG (which IB does
  not take as GTD) must say `ttl_backstop: false`.
- An algo: exactly one of adaptive, twap, vwap, on an LMT or MKT order, tif DAY; its
  times are HH:MM[:SS] text, the end after the start.
"""

from __future__ import annotations

from typing import Any

from runner.errors import RunnerError
from runner.flags import either
from runner.ordertypes import ALGOS, PEGS, PRICE_KEYS, RULES, TYPES
from runner.yamldoc import Doc

_WHAT = {
    "limit": "the limit price", "stop": "the trigger price", "offset": "the limit's distance "
    "from the stop", "cap": "the price cap",
}
_RESTING_TIFS = ("DAY", "GTC", "GTD")
_TIMES = ("start", "end")


def order_type(order: dict[str, Any]) -> str:
    """The order's type: as given, else LMT with a limit and MKT without."""
    given = order.get("type")
    if given is not None:
        return str(given)
    return "LMT" if order.get("limit") is not None else "MKT"


def check_type(doc: Doc, data: dict[str, Any]) -> tuple[float | None, str]:
    """Record every problem of the order's type, prices, tif and algo on `doc`; the
    price the spec's limits judge it by and its name ("limit", "stop", "cap"), or
    (None, "") when only the market will say."""
    order = data["order"]
    if "type" in order:
        _check_prices(doc, data, str(order["type"]))
    else:
        _untyped(doc, data)
    kind = order_type(order)
    _check_ticks(doc, order)
    _check_tif(doc, data, kind)
    if "algo" in order:
        _check_algo(doc, order, kind)
    return _judged(order, kind)


def _untyped(doc: Doc, data: dict[str, Any]) -> None:
    """No type: today's rules (a limit, or a market order with allow_market)."""
    order = data["order"]
    typed = [key for key in PRICE_KEYS if key != "limit" and key in order]
    for key in typed:
        takers = [t for t in TYPES if key in _takes(t)]
        doc.error(("order", key), f"needs order.type: {either(takers)} "
                                  f"(e.g. type: {takers[0]})")
    if order.get("limit") is not None or typed:  # typed: the type is the fix to name
        return
    if data["kind"] == "sanity-cancel":
        doc.error(("order",), "sanity-cancel needs a limit far from the market "
                              "(add order.limit, e.g. 0.01 for a BUY)")
    elif not order["allow_market"]:
        doc.error(("order",), "no limit: a market order needs `allow_market: true` "
                              "(or add order.limit)")


def _takes(kind: str) -> tuple[str, ...]:
    rule = RULES[kind]
    return rule.needs + rule.may + rule.one_of


def _check_prices(doc: Doc, data: dict[str, Any], kind: str) -> None:
    order, rule = data["order"], RULES[kind]
    if data["kind"] == "sanity-cancel" and kind != "LMT":
        doc.error(("order", "type"), "sanity-cancel places a limit order far from the "
                                     "market: use type LMT (or leave type out)")
        return
    for key in PRICE_KEYS:
        if key in order and key not in _takes(kind):
            doc.error(("order", key), f"not used by type {kind}; remove it", key=True)
    for key in rule.needs:
        if key not in order:
            doc.error(("order",), f"type {kind} needs order.{key} ({_WHAT[key]})")
    given = [k for k in rule.one_of if k in order]
    if rule.one_of and len(given) != 1:
        if given:
            doc.error(("order", given[-1]), f"give order.{' or order.'.join(rule.one_of)}, "
                                            "not both")
        else:
            doc.error(("order",), f"type {kind} needs order.{' or order.'.join(rule.one_of)}")
    if not order["allow_market"]:
        _needs_allow_market(doc, order, kind)


def _needs_allow_market(doc: Doc, order: dict[str, Any], kind: str) -> None:
    rule = RULES[kind]
    if rule.market:
        doc.error(("order", "type"), f"type {kind} is {rule.what}: it needs "
                                     "`allow_market: true`")
    elif kind in PEGS and "cap" not in order:
        doc.error(("order", "type"), f"type {kind} without a cap has no price bound: add "
                                     "order.cap, or `allow_market: true`")


def _check_ticks(doc: Doc, order: dict[str, Any]) -> None:
    """A US stock's prices on IB's US grid, at validate. Every other instrument's grid is
    IB's market rule, known only from the gateway: runner.ib.grid judges it at
    qualification (a Tokyo stock's ladder is not the US one)."""
    if (order["sec_type"], order["currency"]) != ("STK", "USD"):
        return
    from runner.spec import tick_problem  # spec imports this module

    for key in ("limit", "stop", "cap"):
        if order.get(key) is not None:
            problem = tick_problem(order[key])
            if problem:
                doc.error(("order", key), problem)


def _check_tif(doc: Doc, data: dict[str, Any], kind: str) -> None:
    order, tif = data["order"], data["order"]["tif"]
    if data["kind"] == "sanity-cancel" and tif not in _RESTING_TIFS:
        doc.error(("order", "tif"), "sanity-cancel needs a resting order: use DAY or GTC")
    if tif == "GTD" and "good_till" not in order:
        doc.error(("order", "tif"), "tif GTD needs order.good_till (when it expires: ISO 8601 "
                                    "with an offset, e.g. 2026-01-05T16:00:00-05:00)")
    if "good_till" in order:
        _check_good_till(doc, order, tif)
    if tif in ("OPG", "FOK") and kind not in ("LMT", "MKT"):
        doc.error(("order", "tif"), f"tif {tif} is for LMT and MKT orders, not type {kind}")
    if kind in ("MOC", "LOC") and tif != "DAY":
        doc.error(("order", "tif"), f"type {kind} works until the close: tif must be DAY")
    if data["kind"] == "one-shot" and data["ttl_backstop"]:
        _check_backstop(doc, kind, tif)


def _check_good_till(doc: Doc, order: dict[str, Any], tif: str) -> None:
    if tif != "GTD":
        doc.error(("order", "good_till"), "only tif GTD uses good_till; set tif: GTD, or "
                                          "remove it", key=True)
        return
    try:
        ns = good_till_ns(order["good_till"])
    except RunnerError as e:
        doc.errors.append((doc.mark(("order", "good_till")), str(e)))
        return
    if ns % 1_000_000_000:
        doc.error(("order", "good_till"), "IB's goodTillDate is in whole seconds; drop the "
                                          "fraction")


def good_till_ns(value: Any) -> int:
    """A spec's good_till as ns since the epoch (the grammar of --at)."""
    from runner.plan import parse_at  # plan imports the spec modules

    return parse_at(str(value), "order.good_till")


def _check_backstop(doc: Doc, kind: str, tif: str) -> None:
    """IB takes MOC/LOC as DAY orders and an opening order as OPG, never as GTD."""
    if kind in ("MOC", "LOC"):
        doc.error(("order", "type"), f"type {kind} goes to IB as a DAY order (IB takes no GTD "
                                     "for it), so the TTL backstop cannot be sent: the order "
                                     "works at IB until the close even if runner stops; set "
                                     "ttl_backstop: false to accept that")
    elif tif == "OPG":
        doc.error(("order", "tif"), "tif OPG cannot carry the TTL backstop (IB takes an "
                                    "opening order only as OPG): the order works at IB until "
                                    "the open even if runner stops; set ttl_backstop: false "
                                    "to accept that")


def _check_algo(doc: Doc, order: dict[str, Any], kind: str) -> None:
    algo = order["algo"]
    if len(algo) != 1:
        doc.error(("order", "algo"), f"give exactly one of {either(list(ALGOS))}")
        return
    if kind not in ("LMT", "MKT"):
        doc.error(("order", "algo"), f"an algo rides on an LMT or MKT order, not type {kind}")
    if order["tif"] != "DAY":
        doc.error(("order", "tif"), "an algo order works within the day: tif must be DAY")
    name, params = next(iter(algo.items()))
    for key in _TIMES:
        value = params.get(key)
        if isinstance(value, int):
            doc.error(("order", "algo", name, key),
                      f"YAML 1.1 reads an unquoted time such as 15:30 as a number (got "
                      f"{value}); quote it, e.g. \"15:30\"")
    start, end = params.get("start"), params.get("end")
    if isinstance(start, str) and isinstance(end, str) and _seconds(end) <= _seconds(start):
        doc.error(("order", "algo", name, "end"), f"{end} is not after start {start}")


def _seconds(text: str) -> int:
    parts = [int(p) for p in text.split(":")] + [0]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def _judged(order: dict[str, Any], kind: str) -> tuple[float | None, str]:
    if kind == "STP":
        return order.get("stop"), "stop"
    if kind in PEGS:
        return order.get("cap"), "cap"
    if kind in ("LMT", "STP LMT", "LOC"):
        return order.get("limit"), "limit"
    return None, ""
