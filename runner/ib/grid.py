"""The order against its instrument's grids, at qualification, before the INTENT:
prices on IB's market rule, the size on minSize and sizeIncrement (runner.grid).

Which market rule. ContractDetails.marketRuleIds holds one rule id per entry of
validExchanges, in the same order (IB's "Minimum Price Increment" page). The order's
prices are judged by the rule of the exchange it is routed to:

- the order's exchange, when validExchanges lists it. IB lists SMART itself with its own
  rule (US stocks: SMART,AMEX,NYSE,... with 26,26,26,...), and that is the rule a SMART
  order meets: an option class whose exchanges differ can still trade pennies through
  SMART;
- else, for SMART, the primary (listing) exchange's rule;
- else the one rule every exchange shares;
- else no rule can be told: minTick (below).

The rule's ladder is asked once per rule id per session (`reqMarketRuleAsync`, which
waits 1 s for the answer) and kept for the session, answered or not: a run asks at most
once per rule whatever the number of prices it checks.

When the ladder cannot be had (no rule ids, the exchanges and ids not aligned, exchanges
whose rules differ with none chosen, no answer), prices are judged on minTick (the
smallest increment anywhere; a price off it is off every rule), and one line on stderr
says so. With no minTick either, or a priceMagnifier (prices in other units than the
ladder's), prices are not judged here, and one line says that: IB still judges them
(error 110), never silently passed.

What is judged: IB's lmtPrice (the spec's limit, or a peg's cap), the stop (auxPrice of
STP and STP LMT, a trailing stop's first stop: trailStopPrice) and qty. A problem is
OffGrid (exit 2) naming each field with the nearest valid values; nothing is sent.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from runner import grid
from runner.broker import OrderRequest
from runner.errors import OffGrid
from runner.ib.session import Session
from runner.ordertypes import PEGS

# per session: rule id -> its ladder, or None when it could not be read
_RULES: weakref.WeakKeyDictionary[Session, dict[int, grid.Ladder | None]] = \
    weakref.WeakKeyDictionary()


async def details(s: Session, contract: Any) -> Any:
    """The qualified contract's ContractDetails (one request), or None."""
    try:
        found = await asyncio.wait_for(s.ib.reqContractDetailsAsync(contract),
                                       s.conn.timeout_sec)
    except (TimeoutError, ConnectionError):
        return None
    mine = [d for d in found or () if d.contract and d.contract.conId == contract.conId]
    return next(iter(mine or found or ()), None)


async def check(s: Session, d: Any, order: OrderRequest) -> None:
    """OffGrid unless every price and the qty of `order` are on the grids of the
    instrument `d` (its ContractDetails; None: unknown, noted) describes."""
    name = _name(d, order)
    problems = []
    if d is not None and order.cash_qty is None:  # a cash order: IB sizes it from the cash
        problems.append(grid.size_problem(order.qty, d.minSize, d.sizeIncrement, name))
    prices = _prices(order)
    if prices:
        judged = await _grid(s, d, order.exchange, name)
        if judged is not None:
            rule, where, source = judged
            problems += [f"order.{key} {said}" for key, price in prices
                         if (said := grid.price_problem(rule, price, where, source))]
    problems = [p for p in problems if p]
    if problems:
        raise OffGrid(f"{order.tag}: " + "; ".join(problems) + "; nothing was sent",
                      "fix the spec's order (the grids are IB's: its market rule, minSize "
                      "and sizeIncrement)")


def _name(d: Any, order: OrderRequest) -> str:
    return (d.contract.localSymbol if d is not None and d.contract else "") or order.symbol


def _prices(order: OrderRequest) -> list[tuple[str, float]]:
    """The spec's keys and the prices IB will judge: lmtPrice, and the stop."""
    out = []
    if order.limit is not None:
        out.append(("cap" if order.order_type in PEGS else "limit", order.limit))
    if order.stop is not None:
        out.append(("stop", order.stop))
    return out


Judged = tuple[grid.Ladder, str, str] | None  # ladder, the grid's name, its source


async def _grid(s: Session, d: Any, exchange: str, name: str) -> Judged:
    """The ladder to judge by, the grid's name ("of 7203 on SMART") and its source
    ("market rule 9005"); None (said on stderr) when prices are left to IB."""
    if d is None:
        return _left_to_ib(f"{name}: no contract details from the gateway")
    magnifier = grid.given(d.priceMagnifier)
    if magnifier is not None and magnifier != 1:
        return _left_to_ib(f"{name}: priceMagnifier {grid.text(magnifier)} (its prices are "
                           "not in the market rule's units)")
    rule_id, on = pick(d.validExchanges, d.marketRuleIds, exchange,
                       d.contract.primaryExchange if d.contract else "")
    why = f"no market rule for {exchange} in its contract details"
    if rule_id is not None:
        rule = await market_rule(s, rule_id)
        if rule is not None:
            return rule, f"of {name} on {on}", f"market rule {rule_id}"
        why = f"market rule {rule_id} not answered by the gateway"
    tick = grid.given(d.minTick)
    if tick is None:
        return _left_to_ib(f"{name}: {why}, and no minTick")
    _say(f"{name}: {why}; prices checked against minTick {grid.text(tick)} only")
    return (grid.Band(grid.exact(0), tick),), f"of {name}", f"minTick {grid.text(tick)}"


def pick(exchanges: str, rule_ids: str, exchange: str, primary: str
         ) -> tuple[int | None, str]:
    """The rule id for an order routed to `exchange` and the exchange it is that of
    (see the module), or (None, "") when none can be told."""
    names, ids = (exchanges or "").split(","), (rule_ids or "").split(",")
    try:
        numbers = [int(i) for i in ids]
    except ValueError:
        return None, ""
    if len(names) == len(numbers):
        table = dict(zip(names, numbers, strict=True))
        for where in (exchange, primary if exchange == "SMART" else ""):
            if where in table:
                return table[where], where
    if len(set(numbers)) == 1:
        return numbers[0], exchange
    return None, ""


async def market_rule(s: Session, rule_id: int) -> grid.Ladder | None:
    """Rule `rule_id`'s ladder, asked of the gateway once per session (see the module)."""
    known = _RULES.setdefault(s, {})
    if rule_id not in known:
        try:
            answer = await asyncio.wait_for(s.ib.reqMarketRuleAsync(rule_id),
                                            s.conn.timeout_sec)
        except TimeoutError:
            answer = None
        known[rule_id] = grid.ladder(answer) if answer else None
    return known[rule_id]


def _left_to_ib(why: str) -> Judged:
    """None, said: the prices are not judged here."""
    _say(f"{why}: prices not checked against IB's grid before sending (IB checks them)")
    return None


def _say(line: str) -> None:
    from runner.results import say

    say(line)
