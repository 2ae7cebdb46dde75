"""Orders sized in money: `order.cash_qty`, IB's Order.cashQty ("buy 1,000 USD of BTC").

IB takes a cash quantity for FX (CASH at IDEALPRO: the amount is in the pair's second
currency, the order's `currency`) and for crypto (CRYPTO at PAXOS) BUY orders, LMT and
MKT; a crypto SELL goes by quantity (IB: "You must set Cash Quantity" is for a crypto MKT
BUY; its sells are in coins). An order has `qty` or `cash_qty`, never both. A cash order
is sent as totalQuantity 0 and cashQty (as ib_async sends it); its notional IS its
cash_qty; its units, for max_qty, are cash_qty / its limit (or the reference).

In the ledger a cash order's rows carry `cash_qty` and a null `qty` (it has no size in
units); `fill_qty` is the units filled, and its TCA fill_ratio is the filled notional
(fill_qty x avg_px) / cash_qty. Only the broker's order status says it ended: a filled
quantity can never be compared with a size it does not have (`all_filled`).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.broker import OrderRequest
    from runner.yamldoc import Doc

SIDES = {"CASH": ("BUY", "SELL"), "CRYPTO": ("BUY",)}  # what IB takes a cashQty for
TYPES = ("LMT", "MKT")
STEP = Decimal("1e-8")  # the simulator's and the fake gateway's unit step for CASH, CRYPTO
EPS = 1e-9


def check(doc: Doc, order: dict[str, Any], kind: str) -> None:
    """Exactly one of qty and cash_qty; cash_qty only where IB takes it."""
    if ("qty" in order) == ("cash_qty" in order):
        if "qty" in order:
            doc.error(("order", "cash_qty"), "an order has qty or cash_qty, not both "
                      "(remove one)", key=True)
        else:
            doc.error(("order",), "missing required key 'qty' (or cash_qty: the order's "
                      "size in its currency)")
        return
    if "cash_qty" not in order:
        return
    sec_type, side = order["sec_type"], order["side"]
    if sec_type not in SIDES:
        doc.error(("order", "cash_qty"), f"IB takes a cash quantity only for CASH and CRYPTO "
                  f"orders, not {sec_type}; give qty (units) instead", key=True)
    elif side not in SIDES[sec_type]:
        doc.error(("order", "cash_qty"), f"IB takes a cash quantity for a {sec_type} BUY "
                  f"only; a {side} goes by quantity: give qty (units) instead", key=True)
    elif kind not in TYPES:
        doc.error(("order", "cash_qty"), f"IB takes a cash quantity for LMT and MKT orders "
                  f"only, not {kind}; give qty (units) instead", key=True)


def notional(o: OrderRequest, price: float | None) -> float | None:
    """The order's notional: its cash_qty; else qty x multiplier x `price` (None without)."""
    if o.cash_qty is not None:
        return o.cash_qty
    return None if price is None else o.qty * o.multiplier * price


def size_text(o: OrderRequest) -> str:
    """How the order's size reads in the plan: `1` or `cashQty=1000`."""
    from runner.output import number_text

    return f"cashQty={number_text(o.cash_qty)}" if o.cash_qty is not None \
        else number_text(o.qty)


def units(cash: float, price: float) -> float:
    """The units `cash` buys at `price`, floored to STEP (what max_qty judges)."""
    return float(floor_units(Decimal(repr(float(cash))), Decimal(repr(float(price)))))


def floor_units(cash: Decimal, price: Decimal) -> Decimal:
    return (cash / price).quantize(STEP, rounding=ROUND_FLOOR)


def row_notional(row: dict[str, Any]) -> float:
    """An INTENT row's notional, for the day caps: cash_qty, else qty x multiplier x its
    limit (or arrival price for a market order)."""
    if row.get("cash_qty") is not None:
        return float(row["cash_qty"])
    price = row["limit"] or row["arrival_px"] or 0.0
    return float(row["qty"] * (row["multiplier"] or 1.0) * price)


def all_filled(intent: dict[str, Any], fill_qty: float) -> bool:
    """Whether `fill_qty` is all of the order of the INTENT row: never said of a cash
    order (only the broker's status knows)."""
    if intent.get("cash_qty") is not None or intent.get("qty") is None:
        return False
    return bool(fill_qty >= intent["qty"] - EPS)

