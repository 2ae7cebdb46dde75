"""Pre-trade gates: one pure function from (plan, policy, context) to every reason to refuse.

No I/O here. The caller gathers the facts into a `Context`: nothing but the spec and
the policy for `validate`; the kill switch and the port for `plan`; the ledger's day
totals, the reference price and (dry run) the calendar's hours before a run connects; and
the broker's accounts and the contract's liquid hours right before the INTENT. A fact
left as None is unknown and its gates are skipped, so the same function serves every
stage and each stage refuses what it can know.

The reference price is the exception that fails closed: once it has been looked up
(`priced`), having none is a fact, not an unknown. Then a policy price collar
(`max_slippage_bps`) refuses a limit order it cannot judge, and a SELL sanity-cancel is
refused (without a reference nothing shows it is above the market; a SELL at 0.01 is
marketable). A BUY sanity-cancel without one still goes: far below any market is what
its default limit of 0.01 is. A reference that is not a positive finite price (IB
sends -1 for "no price") counts as none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner import cashqty
from runner.broker import OrderRequest
from runner.errors import Refused as Refused  # re-exported: callers raise gates.Refused
from runner.ordertypes import bound, is_market
from runner.output import message_number as fmt
from runner.output import message_price as px
from runner.plan import Plan, iso
from runner.policy import Policy

NS = 1_000_000_000
Key = tuple[str, ...]  # the spec key a reason is about, for file:line:col in `validate`


@dataclass(frozen=True, slots=True)
class Context:
    """What is known about the world when the gates run. None: not known (yet)."""

    now_ns: int
    port: int | None = None  # the gateway port to be used; None in a dry run
    accounts: tuple[str, ...] = ()  # every account the session manages, once connected
    priced: bool = False  # the reference price was looked up (None below: there is none)
    reference_px: float | None = None
    reference_ns: int | None = None  # when that price was known (its bar's end)
    reference_source: str | None = None  # where it came from: "bars" | "broker" (messages)
    broker_px: float | None = None  # the broker's price too, when the reference is the bars'
    day_orders: int | None = None  # orders placed at IB today, from the ledger
    day_notional: float | None = None
    kill_switch: bool = False
    market_open: bool | None = None  # liquid hours (IB) or the exchange calendar (dry run)


@dataclass(frozen=True, slots=True)
class Reason:
    key: Key
    text: str


def check(plan: Plan, policy: Policy, ctx: Context) -> list[str]:
    """Every reason the plan's order must not be sent, in a fixed order; [] to go."""
    return [r.text for r in reasons(plan, policy, ctx)]


def reasons(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    if plan.order is None:
        return []  # a handshake sends nothing
    out: list[Reason] = []
    for gate in GATES:
        out += gate(plan, policy, ctx)
    return out


# --- the gates, in the order their reasons are listed -------------------------------


def _kill_switch(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    if not ctx.kill_switch:
        return []
    switches = " or ".join(policy.kill_switches or (str(policy.kill_switch),))
    return [Reason((), f"kill switch {switches} is present: every order is refused "
                       f"(remove the file to trade again){policy.origin('kill_switch')}")]


def _live(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    if plan.mode == "live" and not policy.allow_live:
        return [Reason(("mode",), "mode: live is not allowed by the policy (allow_live: false)"
                                  f"{policy.origin('allow_live')}")]
    return []


def _port_and_account(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    """Port, accounts and mode must agree; any disagreement blocks everything. Every
    account the session manages counts, not only the one the order would go to: a paper
    run on a gateway logged into any live account is refused (paper ids start with D)."""
    port_is = _port_kind(policy, ctx.port)
    out = []
    if port_is is not None and port_is != plan.mode:
        out.append(Reason(("mode",), f"port {ctx.port} is a {port_is} port but the spec says "
                                     f"mode: {plan.mode}"
                                     f"{policy.origin(f'{port_is}_ports', ctx.port)}"))
    for account_is in ("paper", "live"):
        named = [a for a in ctx.accounts if _account_kind(a) == account_is]
        if not named:
            continue
        who = (f"account {named[0]} is a {account_is} account" if len(named) == 1 else
               f"accounts {', '.join(named[:-1])} and {named[-1]} are {account_is} accounts")
        if port_is is not None and port_is != account_is:
            out.append(Reason((), f"{who} but port {ctx.port} is a {port_is} port"
                                  f"{policy.origin(f'{port_is}_ports', ctx.port)}"))
        if account_is != plan.mode:
            out.append(Reason(("mode",), f"{who} but the spec says mode: {plan.mode}"))
    return out


def _order_account(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    return account_reasons(plan, ctx.accounts)


def account_reasons(plan: Plan, accounts: tuple[str, ...]) -> list[Reason]:
    """The account the order is for: of the spec's mode; once the session's accounts are
    known (connected), one of them, and named when there are several: IB's default
    account is never picked silently. (The session's other accounts: _port_and_account.)"""
    o = plan.order
    assert o is not None
    key = ("order", "account")
    if not o.account:
        if len(accounts) < 2:
            return []
        return [Reason(("order",), f"the gateway manages {len(accounts)} accounts "
                                   f"({', '.join(accounts)}): say which with order.account")]
    out = []
    kind = _account_kind(o.account)
    if kind != plan.mode and o.account not in accounts:  # a managed one: _port_and_account
        out.append(Reason(key, f"order.account {o.account} is a {kind} account (paper ids "
                               f"start with D) but the spec says mode: {plan.mode}"))
    if accounts and o.account not in accounts:
        out.append(Reason(key, f"order.account {o.account} is not an account the gateway "
                               f"manages ({', '.join(accounts)}); name one of those, or "
                               "connect to the gateway that manages it"))
    return out


def same_mode(plan: Plan, accounts: tuple[str, ...]) -> bool:
    """Every account of the session is of the spec's mode (paper ids start with D)."""
    return all(_account_kind(a) == plan.mode for a in accounts)


def _account_kind(account: str) -> str:
    return "paper" if account.startswith("D") else "live"


def _port_kind(policy: Policy, port: int | None) -> str | None:
    if port in policy.live_ports:
        return "live"
    if port in policy.paper_ports:
        return "paper"
    return None


def _allowlists(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    o = plan.order
    assert o is not None
    out = []
    if policy.symbols is not None and o.symbol not in policy.symbols:
        out.append(Reason(("order", "symbol"), f"symbol {o.symbol} is not in the policy's "
                                               f"symbols ({', '.join(policy.symbols)})"
                                               f"{policy.origin('symbols', o.symbol)}"))
    if policy.sec_types is not None and o.sec_type not in policy.sec_types:
        out.append(Reason(("order", "sec_type"), f"sec_type {o.sec_type} is not in the "
                                                 f"policy's sec_types "
                                                 f"({', '.join(policy.sec_types)})"
                                                 f"{policy.origin('sec_types', o.sec_type)}"))
    elif policy.sec_types is None and o.sec_type not in UNNAMED_SEC_TYPES:
        out.append(Reason(("order", "sec_type"), f"sec_type {o.sec_type} needs a policy that "
                                                 f"names it: {policy.name} has no sec_types, "
                                                 "which allows STK, CASH and CRYPTO only "
                                                 f"(add sec_types: [..., {o.sec_type}] to a "
                                                 "policy file, or give --policy FILE)"))
    return out


# What a policy without sec_types allows: the instruments a spec could name before
# contract: (issue 16). A future's or an option's risk is not its premium's, so a policy
# written for stocks never lets one through unnamed: absent is never wider than before.
UNNAMED_SEC_TYPES = ("STK", "CASH", "CRYPTO")


def _size(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    o = plan.order
    assert o is not None
    out = []
    if o.cash_qty is not None:
        out += cash_units(plan, policy, _cash_price(plan, ctx))
    elif policy.max_qty is not None and o.qty > policy.max_qty:
        out.append(Reason(("order", "qty"), f"qty {fmt(o.qty)} exceeds the policy's max_qty "
                                            f"{fmt(policy.max_qty)}{policy.origin('max_qty')}"))
    if is_market(o) and not policy.allow_market:
        out.append(Reason(("order",), "market orders are not allowed by the policy "
                                      f"(allow_market: false){policy.origin('allow_market')}"
                                      + ("" if o.order_type == "MKT" else
                                         f"; a {o.order_type} order has no price bound")))
    return out + _notional(plan, policy, ctx)


def _cash_price(plan: Plan, ctx: Context) -> tuple[float | None, str]:
    """The price a cash order's units are judged at: a SELL's limit (it sells at or above
    it: the most it can sell is cash / limit); a BUY's lower of its limit and the
    reference (it pays at most its limit, and the market's lower price buys more, as a
    market order's units are judged at the reference); a BUY limit without a reference:
    none (cash / limit is the fewest it buys, not the most)."""
    o = plan.order
    assert o is not None
    if o.side == "SELL" or o.limit is None:
        return _price(plan, ctx)
    ref = _usable(ctx.reference_px)
    if ref is None:
        return None, ""
    return (ref, f"reference {px(ref)}") if ref < o.limit else (o.limit, f"limit {px(o.limit)}")


def cash_units(plan: Plan, policy: Policy, priced: tuple[float | None, str]) -> list[Reason]:
    """max_qty (the policy's and the spec's) of a cash order: judged at cash_qty / the
    price of _cash_price; without one, refused."""
    o = plan.order
    assert o is not None and o.cash_qty is not None
    caps = [(name, cap) for name, cap in (
        (f"the policy's max_qty{policy.origin('max_qty')}", policy.max_qty),
        ("limits.max_qty", plan.limits.max_qty)) if cap is not None]
    price, basis = priced
    if caps and price is None:
        return [Reason(("order", "cash_qty"), "cannot check max_qty of a cash_qty order without "
                       "a reference price: a BUY's limit says the fewest units it buys, not "
                       "the most (add bars_path)")]
    if price is None:
        return []
    got = cashqty.units(o.cash_qty, price)
    return [Reason(("order", "cash_qty"), f"cash_qty {fmt(o.cash_qty)} buys {fmt(got)} at the "
                   f"{basis}, more than {name} {fmt(cap)}") for name, cap in caps if got > cap]


def _notional(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    """Per-order notional against the policy (and, for a market order, whose price only
    the reference knows, against the spec's own limits.max_notional)."""
    o = plan.order
    assert o is not None
    named = [("the policy's max_notional", policy.max_notional, policy.origin("max_notional"))]
    if bound(o)[0] is None:  # an order with a fixed price bound: checked when it loaded
        named.append(("limits.max_notional", plan.limits.max_notional, ""))
    caps = [(name, cap, origin) for name, cap, origin in named if cap is not None]
    price, basis = _price(plan, ctx)
    if o.cash_qty is not None:
        price, basis = 1.0, "cash_qty"
    if price is None:
        if ctx.priced and (caps or policy.max_day_notional is not None):
            return [Reason(("order",), "cannot check the notional of a market order without a "
                                       "reference price (add bars_path, or use a limit order)")]
        return []
    notional = cashqty.notional(o, price) or 0.0
    return [Reason(("order",), f"notional {fmt(notional)} ({units(o)}{basis}) exceeds {name} "
                               f"{fmt(cap)}{origin}") for name, cap, origin in caps
            if notional > cap]


def units(o: OrderRequest) -> str:
    """How a notional is figured, before its price: `qty x ` or `qty x multiplier 50 x `."""
    if o.cash_qty is not None:
        return ""
    return "qty x " if o.multiplier == 1 else f"qty x multiplier {fmt(o.multiplier)} x "


def _price(plan: Plan, ctx: Context) -> tuple[float | None, str]:
    """The price the notional is judged at: the order's price bound (its limit, a STP's
    stop, a cap; runner.ordertypes.bound), else the reference."""
    o = plan.order
    assert o is not None
    ref = _usable(ctx.reference_px)
    price, _, name = bound(o, ref)
    if price is not None:
        return price, f"{name} {px(price)}"
    if ref is not None:
        return ref, f"reference {px(ref)}"
    return None, ""


def _usable(price: float | None) -> float | None:
    """A reference price to judge by, or None: IB's -1 (no price), 0, NaN are none."""
    return price if price is not None and math.isfinite(price) and price > 0 else None


def _reference(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    if not ctx.priced:
        return []
    ref = _usable(ctx.reference_px)
    if ref is None:
        return _no_reference(plan, policy, ctx)
    if _stale(policy, ctx):
        age = (ctx.now_ns - (ctx.reference_ns or ctx.now_ns)) / NS
        return [Reason(("bars_path",), f"reference price {px(ref)}{_from(ctx)} is "
                                       f"{_age(age)} old; the policy allows "
                                       f"{fmt(policy.max_reference_age_sec or 0)} s "
                                       "(max_reference_age_sec)"
                                       f"{policy.origin('max_reference_age_sec')}")]
    return _collars(plan, policy, ref, _from(ctx))


def _from(ctx: Context) -> str:
    return f" (from the {ctx.reference_source})" if ctx.reference_source else ""


def _no_reference(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    """The reference was looked up and there is none: what cannot be judged is refused."""
    o = plan.order
    assert o is not None
    if policy.broker_reference and ctx.port is not None:
        return [Reason(("bars_path",), "the broker gave no reference price, and the policy "
                                       "judges prices only on the broker's (broker_reference: "
                                       "true); is market data enabled for this account?"
                                       f"{policy.origin('broker_reference')}")]
    if policy.require_reference:
        return [Reason(("bars_path",), "no reference price, and the policy requires one "
                                       "(require_reference: true); add bars_path"
                                       f"{policy.origin('require_reference')}")]
    price, _, name = bound(o)
    if price is None:
        return []  # a market order: _notional says what it cannot check without a price
    if plan.kind == "one-shot" and policy.max_slippage_bps is not None:
        return [Reason(("bars_path",), f"{o.side} {name} {px(price)} cannot be checked "
                                       "against the policy's price collar "
                                       f"(max_slippage_bps {fmt(policy.max_slippage_bps)}): "
                                       "there is no reference price; add bars_path with "
                                       "bars that cover the order"
                                       f"{policy.origin('max_slippage_bps')}")]
    if plan.kind == "sanity-cancel" and o.sec_type != "STK":
        return [Reason(("bars_path",), f"sanity-cancel {o.side} limit {px(price)} "
                                       f"({o.sec_type}) cannot be shown to be far from the "
                                       "market: there is no reference price, and a far "
                                       "out-of-the-money option (or any non-stock) may trade "
                                       "at any price; add bars_path with bars that cover the "
                                       "order")]
    if plan.kind == "sanity-cancel" and o.side == "SELL":
        return [Reason(("order", "side"), f"sanity-cancel SELL limit {px(price)} cannot be "
                                          "shown to be above the market: there is no "
                                          "reference price, and a SELL below the market "
                                          "fills; add bars_path with bars that cover the "
                                          "order, or use side BUY (a BUY far below the "
                                          "market cannot fill)")]
    return []


def _disagree(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    """A bars file that disagrees with the broker about the price by more than the sanity
    distance is not this instrument's market now (another symbol, day, or a made-up file):
    the gates will not judge by it."""
    bars, broker = _usable(ctx.reference_px), _usable(ctx.broker_px)
    if ctx.reference_source != "bars" or bars is None or broker is None:
        return []
    apart = abs(bars - broker) / broker * 1e4
    if apart <= policy.min_sanity_distance_bps:
        return []
    return [Reason(("bars_path",), f"the bars' price {px(bars)} is {apart:,.1f} bps from the "
                                   f"broker's {px(broker)}, more than "
                                   f"{fmt(policy.min_sanity_distance_bps)} bps: is bars_path "
                                   "this symbol's capture of today?"
                                   f"{policy.origin('min_sanity_distance_bps')}")]


def _stale(policy: Policy, ctx: Context) -> bool:
    if policy.max_reference_age_sec is None or ctx.reference_ns is None:
        return False
    return ctx.now_ns - ctx.reference_ns > policy.max_reference_age_sec * NS


def _collars(plan: Plan, policy: Policy, ref: float, source: str = "") -> list[Reason]:
    """Price collar and sanity distance; both need a fresh reference (a stale one is
    already a reason, and prices judged on it would mislead). A sanity-cancel must be
    on the passive side, BUY below and SELL above the reference, by at least
    min_sanity_distance_bps: on the wrong side its distance counts as negative."""
    o = plan.order
    assert o is not None
    price, key, name = bound(o, ref)  # a STP's stop, a TRAIL LIMIT's first limit, a cap
    if price is None:
        return []
    sign = 1 if o.side == "BUY" else -1
    through = sign * (price - ref) / ref * 1e4  # > 0: the price crosses the reference
    where = "above" if price >= ref else "below"
    passive = "below" if o.side == "BUY" else "above"
    head = f"{o.side} {name} {px(price)} is {abs(through):,.1f} bps {where} the reference " \
           f"{px(ref)}{source}"
    out = []
    cap = policy.max_slippage_bps
    if plan.kind == "one-shot" and cap is not None and through > cap:
        out.append(Reason(("order", key), f"{head}; the policy allows {fmt(cap)} bps "
                                              "(max_slippage_bps)"
                                              f"{policy.origin('max_slippage_bps')}"))
    need = policy.min_sanity_distance_bps
    if plan.kind == "sanity-cancel" and -through < need:
        side = ", on the side that fills" if through > 0 else ""
        out.append(Reason(("order", "limit"), f"sanity-cancel {head}{side}; it must be at least "
                                              f"{fmt(need)} bps {passive} so it cannot fill "
                                              "(min_sanity_distance_bps)"
                                              f"{policy.origin('min_sanity_distance_bps')}"))
    return out




def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:,.0f} h"
    return f"{seconds / 86400:,.0f} days"


def _day_caps(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    o = plan.order
    assert o is not None
    out = []
    cap = policy.max_day_orders
    if cap is not None and ctx.day_orders is not None and ctx.day_orders + 1 > cap:
        n = ctx.day_orders
        out.append(Reason((), f"{n} order{'s' if n != 1 else ''} placed today + this one "
                              f"exceeds the policy's max_day_orders {cap}"
                              f"{policy.origin('max_day_orders')}"))
    limit = policy.max_day_notional
    this = cashqty.notional(o, _price(plan, ctx)[0])
    if limit is not None and ctx.day_notional is not None and this is not None:
        total = ctx.day_notional + this
        if total > limit:
            out.append(Reason((), f"notional placed today {fmt(ctx.day_notional)} + this order "
                                  f"{fmt(this)} = {fmt(total)} exceeds "
                                  "the policy's "
                                  f"max_day_notional {fmt(limit)}"
                                  f"{policy.origin('max_day_notional')}"))
    return out


def _hours(plan: Plan, policy: Policy, ctx: Context) -> list[Reason]:
    o = plan.order
    assert o is not None
    if ctx.market_open is not False or o.outside_rth or o.tif in ("GTC", "OPG"):
        return []  # an OPG order is placed before the open it waits for
    return [Reason(("order", "tif"), f"the market is closed at {iso(ctx.now_ns)} (outside "
                                     "regular trading hours); set order.outside_rth: true to "
                                     "send the order anyway")]


GATES = (_kill_switch, _live, _port_and_account, _order_account, _allowlists, _size, _reference,
         _disagree, _day_caps, _hours)
