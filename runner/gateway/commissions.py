"""What the fake gateway charges for fills it makes itself (bars mode) and quotes in a
what-if: fixed rates by instrument type, in the shape of IB's fixed pricing.

The rates are the fake's, modelled on IB's published fixed rates, not a quote of them.
A US stock pays what the simulator charges (0.005 per share, at least 1.00 per order);
the others pay per contract or a share of the trade's value, where the value is price x
quantity x the contract's multiplier (for USD.JPY, whose base is the dollar: the
quantity). The minimum is per order: an order's commission so far is its rate applied
to everything it filled, and each fill pays the difference. docs/gateway-instruments.md
has the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.gateway.barclock import COMMISSION_PER_SHARE, MIN_COMMISSION
from runner.gateway.values import Contract


@dataclass(frozen=True, slots=True)
class Rate:
    per_unit: float = 0.0  # per share or contract
    of_value: float = 0.0  # a share of the trade's value
    minimum: float = 0.0  # per order
    currency: str = "USD"


DECIMALS = 10  # commissions other than a US stock's are rounded to this (no float noise)
US_STOCK = Rate(per_unit=COMMISSION_PER_SHARE, minimum=MIN_COMMISSION)
RATES: dict[tuple[str, str], Rate] = {  # (secType, currency); "" = any currency
    ("STK", "USD"): US_STOCK,
    ("STK", "JPY"): Rate(of_value=0.0008, minimum=80.0, currency="JPY"),
    ("FUT", ""): Rate(per_unit=0.85),
    ("FOP", ""): Rate(per_unit=0.85),
    ("OPT", ""): Rate(per_unit=0.65, minimum=1.0),
    ("CASH", ""): Rate(of_value=0.00002, minimum=2.0),
    ("CRYPTO", ""): Rate(of_value=0.0018, minimum=1.75),
    ("CFD", ""): Rate(of_value=0.00005, minimum=1.0),
}


def rate_of(c: Contract) -> Rate:
    return RATES.get((c.sec_type, c.currency)) or RATES.get((c.sec_type, ""), US_STOCK)


def order_commission(c: Contract, qty: float, notional: float) -> float:
    """The commission of an order that has filled `qty` for `notional` (sum of shares x
    price, before the multiplier) so far; 0 before its first fill."""
    if qty <= 0:
        return 0.0
    rate = rate_of(c)
    if rate is US_STOCK:  # exactly the simulator's figure
        return max(rate.minimum, rate.per_unit * qty)
    value = qty if c.sec_type == "CASH" and c.symbol == "USD" else notional * c.size_multiplier
    return round(max(rate.minimum, rate.per_unit * qty + rate.of_value * value), DECIMALS)


def fill_commission(c: Contract, filled: float, notional: float, qty: float,
                    px: float) -> float:
    """What a fill of `qty` at `px` pays, on an order that had filled `filled` for
    `notional` before it: the order's commission after, less before."""
    after = order_commission(c, filled + qty, notional + qty * px)
    paid = after - order_commission(c, filled, notional)
    return paid if rate_of(c) is US_STOCK else round(paid, DECIMALS)
