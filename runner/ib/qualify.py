"""Qualification: the one contract IB has for the order's instrument, or a refusal.

The request carries every Contract field the spec gives (runner.contract.ib_contract).
IB answers with every contract that agrees with them; runner takes the answer only when
it is exactly one contract:

- none: GatewayError (exit 3), IB's 200, with what was asked; but when the spec names a
  multiplier and IB has the contract without it, NotQualified (exit 2) saying IB's;
- several: NotQualified (exit 2), the candidates listed by the fields that tell them apart
  (expiry, strike, right, multiplier, trading class, exchanges, currency) with their
  localSymbol and conId, and the fix: contract.con_id, local_symbol or the field they
  differ in;
- one that is not the spec's (its symbol, secType, currency, a full expiry date, strike
  or right other than the spec's: a con_id typed wrong; a multiplier IB says is 100 where
  the spec's notional used 50, or one the spec does not name): NotQualified, nothing
  sent, so that notional, caps and TCA are right before the order leaves.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from runner.broker import OrderRequest
from runner.contract import ContractTerms, ib_contract
from runner.errors import GatewayError, NotQualified
from runner.flags import either
from runner.ib.codes import NO_SECURITY
from runner.ib.session import Session
from runner.output import number_text

SHOWN = 8  # candidates listed in an ambiguity refusal; the rest are counted


async def qualify(s: Session, order: OrderRequest) -> Any:
    """The qualified ib_async Contract of the order's instrument (see the module)."""
    answer = await _ask(s, order, order.contract)
    if answer is None and order.contract.multiplier is not None:
        # IB matches by multiplier too: asked again without it, IB says which it is
        wider = await _ask(s, order, dataclasses.replace(order.contract, multiplier=None))
        if wider is not None:
            raise _other_multiplier(order, wider if isinstance(wider, list) else [wider])
    if isinstance(answer, list):
        raise _ambiguous(order, [c for c in answer if c is not None])
    if answer is None:
        raise GatewayError(
            f"unknown contract {asked(order)} (IB error {NO_SECURITY}: no security definition)",
            "check the symbol, sec_type, exchange, currency and the contract's fields")
    _agrees(order, answer)
    return answer


async def _ask(s: Session, order: OrderRequest, terms: ContractTerms) -> Any:
    """IB's answer: one Contract, a list of them (several matched), or None."""
    from ib_async import Contract

    fields = ib_contract(order.symbol, order.sec_type, order.exchange, order.currency, terms)
    contract = Contract(**dict(fields))  # the Contract's fields are IB's names
    s.ib.errorEvent += s._on_connect_error
    try:
        found = await asyncio.wait_for(s.ib.qualifyContractsAsync(contract, returnAll=True),
                                       s.conn.timeout_sec)
    except TimeoutError:
        raise GatewayError(f"no contract details for {order.symbol} within "
                           f"{s.conn.timeout_sec:g} s", "is the gateway connected "
                           "to IB's servers (sec-def farm)?") from None
    finally:
        s.ib.errorEvent -= s._on_connect_error
    return found[0] if found else None


def instrument(order: OrderRequest) -> tuple[Any, ...]:
    """What qualification was asked about: the request's instrument, all of it."""
    return order.symbol, order.sec_type, order.exchange, order.currency, order.contract


def terms_of(c: Any) -> ContractTerms:
    """The terms of IB's contract (what the ledger records of the one traded)."""
    return ContractTerms(
        con_id=c.conId or 0, expiry=c.lastTradeDateOrContractMonth or "",
        strike=float(c.strike) if c.strike else None, right=c.right or "",
        multiplier=_number(c.multiplier), local_symbol=c.localSymbol or "",
        trading_class=c.tradingClass or "", primary_exchange=c.primaryExchange or "")


def asked(order: OrderRequest) -> str:
    """The request as people read it: `ES FUT CME USD lastTradeDateOrContractMonth=...`."""
    terms = order.contract.describe()
    return f"{order.symbol} {order.sec_type} {order.exchange} {order.currency}" + \
        (f" {terms}" if terms else "")


def _ambiguous(order: OrderRequest, candidates: list[Any]) -> NotQualified:
    differ = [f for f in _TOLD_BY if len({getattr(c, f[1]) for c in candidates}) > 1]
    shown = "; ".join(candidate(c, differ) for c in candidates[:SHOWN])
    more = len(candidates) - SHOWN
    if more > 0:
        shown += f"; and {more} more"
    return NotQualified(
        f"ambiguous contract {asked(order)}: IB has {len(candidates)} matches: {shown}; "
        "nothing was sent",
        "name one with " + either([f"contract.{key}" for key in (
            "con_id", "local_symbol", *(label for label, _ in differ or _TOLD_BY[:1]))]))


# (the spec's key, ib_async's Contract field): what tells candidates apart
_TOLD_BY = (("expiry", "lastTradeDateOrContractMonth"), ("strike", "strike"),
            ("right", "right"), ("multiplier", "multiplier"), ("trading_class", "tradingClass"),
            ("exchange", "exchange"), ("primary_exchange", "primaryExchange"),
            ("currency", "currency"), ("sec_type", "secType"))


def candidate(c: Any, fields: Any = _TOLD_BY) -> str:
    """One contract IB offered: its localSymbol and con_id, and `fields` of it."""
    parts = [f"{label} {number_text(v) if isinstance(v, float) else v}"
             for label, name in fields if (v := getattr(c, name))]
    return f"{c.localSymbol or c.symbol} ({', '.join([*parts, f'con_id {c.conId}'])})"


def _other_multiplier(order: OrderRequest, candidates: list[Any]) -> NotQualified:
    shown = "; ".join(candidate(c, _TOLD_BY[:4]) for c in candidates[:SHOWN])
    return NotQualified(
        f"contract {asked(order)}: IB has none with multiplier "
        f"{number_text(order.contract.multiplier)}; without it: {shown}; nothing was sent",
        "fix contract.multiplier (notional and caps depend on it)")


def _agrees(order: OrderRequest, c: Any) -> None:
    """NotQualified unless IB's contract is the spec's: its symbol, secType, currency and
    the option terms given, and its multiplier (1 when IB gives none)."""
    wrong = [(key, theirs) for key, ours, theirs in (
        ("symbol", order.symbol, c.symbol), ("sec_type", order.sec_type, c.secType),
        ("currency", order.currency, c.currency),
        ("expiry", order.contract.expiry if len(order.contract.expiry) == 8 else "",
         c.lastTradeDateOrContractMonth),
        ("strike", order.contract.strike, c.strike or None),
        ("right", order.contract.right, c.right)) if ours and theirs and ours != theirs]
    if wrong:
        said = either([f"{key} {number_text(v) if isinstance(v, float) else v}"
                       for key, v in wrong]).replace(" or ", " and ")
        raise NotQualified(f"contract {asked(order)}: IB's answer is {candidate(c)}, whose "
                           f"{said} {'is' if len(wrong) == 1 else 'are'} not the spec's; "
                           "nothing was sent",
                           "check contract.con_id (or give the fields IB has)")
    theirs, ours = _number(c.multiplier) or 1.0, order.contract.multiplier
    if ours is None and theirs != 1.0:
        raise NotQualified(f"contract {asked(order)}: IB's multiplier is {c.multiplier}, and "
                           "the spec names none (notional and caps were figured at 1); "
                           "nothing was sent", f"add contract.multiplier: {c.multiplier} (a "
                           "contract: block for this instrument)")
    if ours is not None and theirs != ours:
        raise NotQualified(f"contract {asked(order)}: IB's multiplier is "
                           f"{c.multiplier or 'none'}, the spec's {number_text(ours)}; "
                           "nothing was sent",
                           "fix contract.multiplier (notional and caps depend on it)")


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
