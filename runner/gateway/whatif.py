"""What-if orders: IB's preview of an order's margin and commission, as the fake answers it.

A placeOrder with whatIf=1 creates no order. IB answers with one openOrder that
carries whatIf=1, status PreSubmitted, the nine margin figures (before, change,
after for initial margin, maintenance margin and equity with loan), the
commission estimate and any warning; no orderStatus follows. ib_async's
`whatIfOrderAsync` resolves on that openOrder once initMarginChange is a number.

The model is simple and documented rather than IB's: Reg T on stocks, initial
margin 50% and maintenance 25% of the position's value (price x quantity x the
contract's multiplier, for every instrument alike), equity with loan = the account's
net liquidation value, IB's fixed-rate commission (a US stock's capped at 1% of its
value; other instruments at the rates of `commissions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runner.gateway.barclock import COMMISSION_PER_SHARE, MIN_COMMISSION
from runner.gateway.commissions import US_STOCK, order_commission, rate_of
from runner.gateway.values import Contract, PlacedOrder

INITIAL_RATE = 0.50  # Reg T initial margin on stocks
MAINTENANCE_RATE = 0.25
MAX_COMMISSION_RATE = 0.01  # fixed-rate pricing caps commission at 1% of trade value
NOMINAL_PX = 100.0  # a market order with no bars to price it: IB would use its quote
WHAT_IF_STATUS = "PreSubmitted"


@dataclass(frozen=True, slots=True)
class WhatIfReply:
    """The order-state fields of a what-if answer (openOrder indices 85-99)."""

    init_before: float
    maint_before: float
    equity_before: float
    init_change: float
    maint_change: float
    commission: float
    min_commission: float
    max_commission: float
    currency: str = "USD"
    warning: str = ""

    @property
    def init_after(self) -> float:
        return self.init_before + self.init_change

    @property
    def maint_after(self) -> float:
        return self.maint_before + self.maint_change


def what_if(order: PlacedOrder, price: float | None, equity: float,
            positions: Iterable[tuple[Contract, float, float]]) -> WhatIfReply:
    """Margin and commission of `order` at `price` (its limit, or the market's)."""
    px = order.lmt_price or price or NOMINAL_PX
    held = sum(abs(pos) * cost * c.size_multiplier for c, pos, cost in positions)
    c = order.contract
    value = order.qty * px * c.size_multiplier
    rate = rate_of(c)
    commission = (fixed_rate_commission(order.qty, px) if rate is US_STOCK
                  else order_commission(c, order.qty, order.qty * px))
    init_before, init_change = held * INITIAL_RATE, value * INITIAL_RATE
    warning = ""
    if init_before + init_change > equity:
        warning = (f"Insufficient equity: initial margin {init_before + init_change:,.2f} "
                   f"would exceed equity with loan value {equity:,.2f}")
    return WhatIfReply(
        init_before=init_before, maint_before=held * MAINTENANCE_RATE, equity_before=equity,
        init_change=init_change, maint_change=value * MAINTENANCE_RATE, commission=commission,
        min_commission=commission, max_commission=commission, currency=rate.currency,
        warning=warning,
    )


def fixed_rate_commission(qty: float, px: float) -> float:
    """IB fixed rate for US stocks: 0.005/share, at least 1.00, at most 1% of value."""
    return min(max(MIN_COMMISSION, COMMISSION_PER_SHARE * qty), MAX_COMMISSION_RATE * qty * px)
