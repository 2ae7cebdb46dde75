"""`runner plan SPEC --broker`: the plan, plus IB's own preview of the order.

Connects (read-only use: the one message that touches orders is IB's what-if
placeOrder, which creates no order), qualifies the contract, asks IB for the
what-if (margin change, commission estimate, warnings), the contract's liquid
hours and its price (the collar's reference where the bars do not cover now, asked as a
run asks it), then runs the gates with the broker's facts. The plan and the preview are
printed either way; a refusal then exits 2.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from runner.broker import SessionInfo, WhatIf
from runner.gates import account_reasons, check, same_mode
from runner.output import price_text
from runner.plan import Plan, iso, render
from runner.policy import Policy


@dataclass(frozen=True, slots=True)
class Preview:
    """What `plan --broker` learned at the gateway for one plan."""

    account: str | None
    what_if: WhatIf | None  # None for a handshake (no order)
    sessions: tuple[tuple[int, int], ...] | None  # the contract's liquid hours
    now_ns: int
    reference: tuple[float, int] | None = None  # the broker's price (ns when known)
    accounts: tuple[str, ...] = ()  # every account of the session (the gates see all)
    withheld: bool = False  # the what-if was not asked: the gates refuse the account


def plan_with_broker(plans: list[Plan], policy: Policy, as_json: bool, verbose: int) -> int:
    from runner.commands import show_plans

    previews = [asyncio.run(preview(p, verbose)) for p in plans]
    if not as_json:
        print("\n\n".join(render(p) + "\n" + render_preview(v)
                          for p, v in zip(plans, previews, strict=True)))
    refusals = [check(p, policy, _context(p, policy, v))
                for p, v in zip(plans, previews, strict=True)]
    bodies = [_json(p, v) for p, v in zip(plans, previews, strict=True)]
    return show_plans(plans, [policy] * len(plans), refusals, bodies, as_json)


async def preview(plan: Plan, verbose: int = 0) -> Preview:
    from runner.ib import IBBroker

    broker = IBBroker(plan.connection, verbose=verbose)
    try:
        session: SessionInfo = await broker.connect()
        accounts = tuple(session.accounts)
        named = plan.order.account if plan.order is not None else ""
        # the one the order is for: named, or the one account (several: none is chosen)
        account = named or (accounts[0] if len(accounts) == 1 else None)
        if plan.order is None:
            return Preview(account, None, None, broker.now_ns(), accounts=accounts)
        await broker.qualify(plan.order)
        # an account the gates refuse is not sent even as a what-if (IB would answer 321),
        # nor a paper spec's to a login with a live account (or a live one's with a paper)
        withheld = bool(account_reasons(plan, accounts)) or not same_mode(plan, accounts)
        what_if = None if withheld else await broker.what_if(plan.order)
        sessions = await broker.liquid_sessions()
        reference = await _reference(broker)
        return Preview(account, what_if, sessions, broker.now_ns(), reference, accounts,
                       withheld)
    finally:
        await broker.close()


async def _reference(broker: Any) -> tuple[float, int] | None:
    """The broker's price, asked as a run asks it (bounded: a silent gateway has none)."""
    from runner.preflight import REFERENCE_WAIT_SEC

    try:
        return await asyncio.wait_for(broker.reference_price(), REFERENCE_WAIT_SEC)
    except TimeoutError:
        return None


def _context(plan: Plan, policy: Policy, v: Preview) -> Any:
    from runner.bars import load_bars
    from runner.preflight import Guard, in_sessions

    o = plan.order
    bars = load_bars(plan.bars_path, o.symbol if o else None, o.sec_type if o else "STK") \
        if plan.bars_path else None
    guard = Guard(plan, policy, bars, dry_run=False)
    return guard.context(plan.at_ns, v.accounts, in_sessions(v.sessions, plan.at_ns),
                         broker_ref=v.reference)


def _json(plan: Plan, v: Preview) -> dict[str, Any]:
    d = plan.to_dict()
    d["broker"] = {"account": v.account,
                   "what_if": v.what_if.to_dict() if v.what_if else None,
                   "liquid_hours": [[iso(a), iso(b)] for a, b in v.sessions] if v.sessions
                   else None,
                   "reference": {"price": v.reference[0], "at": iso(v.reference[1])}
                   if v.reference else None}
    return d


def render_preview(v: Preview) -> str:
    who = f"account {v.account}" if v.account else "no account chosen"
    lines = [f"  what-if (IB, {who}; no order was created)"]
    w = v.what_if
    if w is None:
        why = "not asked: the gates refuse the order's account" if v.withheld else \
            "no order to preview"
        return lines[0].replace("what-if", "broker") + f"\n    {why}"
    cur = f" {w.currency}" if w.currency else ""
    rows = [("initial margin", w.init_margin_before, w.init_margin_change, w.init_margin_after),
            ("maintenance margin", w.maint_margin_before, w.maint_margin_change,
             w.maint_margin_after),
            ("equity with loan", w.equity_with_loan_before, w.equity_with_loan_change,
             w.equity_with_loan_after)]
    lines += [f"    {name:<20}{_change(b, c, a)}{cur}" for name, b, c, a in rows]
    lines.append(f"    {'commission':<20}{_money(w.commission)}{cur} "
                 f"(min {_money(w.min_commission)}, max {_money(w.max_commission)})")
    if w.warning:
        lines.append(f"    {'warning':<20}{w.warning}")
    ref = price_text(v.reference[0]) if v.reference else "none (the gateway sent no price)"
    lines.append(f"    {'reference price':<20}{ref}")
    return "\n".join(lines)


def _change(before: float | None, change: float | None, after: float | None) -> str:
    sign = "+" if change is not None and change >= 0 else ""
    return f"{_money(before)} {sign}{_money(change)} -> {_money(after)}"


def _money(x: float | None) -> str:
    return "?" if x is None else f"{x:,.2f}"
