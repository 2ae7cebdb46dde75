"""Qualification: the one contract IB has for the order's instrument, or a refusal.

The request carries every Contract field the spec gives (runner.contract.ib_contract).
IB answers with every contract that agrees with them; runner takes the answer only when
it is exactly one contract:

- none: GatewayError (exit 3), IB's 200, with what was asked;
- several: NotQualified (exit 2), the candidates listed by the fields that tell them apart
  (localSymbol, expiry, strike, right, multiplier, primary exchange, conId) and the fix:
  name one with contract.con_id, local_symbol or the field they differ in;
- one whose symbol or multiplier is not the spec's (a con_id typed wrong, a multiplier IB
  says is 100 where the spec's notional used 50): NotQualified, nothing sent. A contract with
  a multiplier other than 1 needs the spec to name it, so that notional, caps and TCA
  are right before the order leaves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runner.broker import OrderRequest
from runner.contract import ib_contract
from runner.errors import GatewayError, NotQualified
from runner.ib.codes import NO_SECURITY
from runner.ib.session import Session
from runner.output import number_text

SHOWN = 8  # candidates listed in an ambiguity refusal; the rest are counted


async def qualify(s: Session, order: OrderRequest) -> Any:
    """The qualified ib_async Contract of the order's instrument (see the module)."""
    from ib_async import Contract

    contract = Contract(**dict(_request(order)))  # the Contract's fields are IB's names
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
    answer = found[0] if found else None
    if isinstance(answer, list):
        raise _ambiguous(order, [c for c in answer if c is not None])
    if answer is None:
        raise GatewayError(
            f"unknown contract {asked(order)} (IB error {NO_SECURITY}: no security definition)",
            "check the symbol, sec_type, exchange, currency and the contract's fields")
    _agrees(order, answer)
    return answer


def _request(order: OrderRequest) -> list[tuple[str, Any]]:
    return ib_contract(order.symbol, order.sec_type, order.exchange, order.currency,
                       order.contract)


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
        "name one in the spec's contract: with con_id, local_symbol, or "
        + ", ".join(label for label, _ in differ or _TOLD_BY[:1]))


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


def _agrees(order: OrderRequest, c: Any) -> None:
    """NotQualified unless IB's contract is the spec's symbol and multiplier."""
    if c.symbol and c.symbol != order.symbol:
        raise NotQualified(f"contract {asked(order)}: IB says it is {candidate(c)}, not "
                      f"{order.symbol}; nothing was sent",
                      "check contract.con_id (or give the symbol IB has)")
    theirs = _number(c.multiplier)
    ours = order.contract.multiplier
    if ours is None and theirs in (None, 1.0):
        return
    if ours is None:
        raise NotQualified(f"contract {asked(order)}: IB's multiplier is {c.multiplier}, and the "
                      "spec names none (notional and caps were figured at 1); nothing "
                      "was sent", f"add contract.multiplier: {c.multiplier} (a contract: "
                      "block for this instrument)")
    if theirs != ours:
        said = "none" if theirs is None else c.multiplier
        raise NotQualified(f"contract {asked(order)}: IB's multiplier is {said}, the spec's "
                      f"{number_text(ours)}; nothing was sent",
                      "fix contract.multiplier (notional and caps depend on it)")


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
