"""What a gateway refuses in an order before the order exists, given its instrument.

In this order (the first one found is the answer; docs/gateway-instruments.md, "Orders"):

- an index (data only): 412 "The contract is not available for trading.";
- a fractional size for an instrument the API trades in whole units (stocks, futures,
  options, CFDs): 10243, IB's text;
- a size below the instrument's minSize or off its sizeIncrement (a Tokyo lot of 100,
  a crypto step of 1e-8): 201 "Order rejected - reason:..." in the fake's words; an order
  sized by cashQty instead (totalQuantity 0): its instrument's order types must list
  CASHQTY (201, the same way);
- a price off the market rule's grid: 110 "The price does not conform to the minimum
  price variation for this contract." The limit price is checked whenever one is
  given, the aux price where it is a trigger price (STP, STP LMT, LIT, MIT), and a
  trailing stop's first stop (trailStopPrice) when it is given.

Each is one error with reqId = orderId and no order: IB never accepted it.

Before the instrument, the account (`account_refusal`): an order naming an account the
login does not manage, or naming none where it manages several, gets 321 "Error
validating request" with IB's cause, as users of the API report it: "Invalid account
code" (deephaven-examples/deephaven-ib#50), "You must specify an account."
(Komnomnomnom/swigibpy#43, a login with two accounts).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from runner.gateway import wire
from runner.gateway.instruments import Instrument
from runner.gateway.rules import on_grid
from runner.gateway.values import PlacedOrder

TRIGGER_AUX_TYPES = frozenset({"STP", "STP LMT", "LIT", "MIT"})
INVALID_ACCOUNT = "Error validating request.-'cq' : cause - Invalid account code"
NO_ACCOUNT = "Error validating request.-'le' : cause - You must specify an account."


def account_refusal(accounts: tuple[str, ...], named: str) -> tuple[int, str] | None:
    """IB's error (321, text) for an order naming account `named` ("": none) at a login
    managing `accounts`, or None when it may go (one account and none named: that one)."""
    if named and named not in accounts:
        return wire.VALIDATION, INVALID_ACCOUNT
    if not named and len(accounts) > 1:
        return wire.VALIDATION, NO_ACCOUNT
    return None


def refusal(i: Instrument, order: PlacedOrder) -> tuple[int, str] | None:
    """IB's error (code, text) for `order` on `i`, or None when it may be placed."""
    if i.data_only:
        return wire.NOT_TRADABLE, wire.ERROR_TEXT[wire.NOT_TRADABLE]
    size = _cash_problem(i, order) if order.cash_qty is not None else _size_problem(i, order.qty)
    if size is not None:
        return size
    prices = [order.lmt_price]
    if order.order_type in TRIGGER_AUX_TYPES:
        prices.append(order.aux_price)
    prices.append(order.trail_stop_price)  # only trailing orders carry one
    if any(p is not None and not on_grid(i.rule_id, p) for p in prices):
        return wire.OFF_GRID, wire.ERROR_TEXT[wire.OFF_GRID]
    return None


def _cash_problem(i: Instrument, order: PlacedOrder) -> tuple[int, str] | None:
    """A cash quantity (its totalQuantity 0 is no size): the instrument's order types must
    list CASHQTY, and the amount be above 0."""
    assert order.cash_qty is not None
    if "CASHQTY" not in i.order_types.split(","):
        why = "Cash quantity orders are not supported for this contract"
    elif order.cash_qty <= 0:
        why = f"The cash quantity {wire.num(order.cash_qty)} is not above 0"
    else:
        return None
    return wire.ORDER_REJECTED, wire.ERROR_TEXT[wire.ORDER_REJECTED].format(why)


def _size_problem(i: Instrument, qty: float) -> tuple[int, str] | None:
    text = wire.num(qty)
    try:
        q = Decimal(repr(float(qty)))
        if q != q.to_integral_value() and not i.api_fractional:
            return wire.FRACTIONAL_REFUSED, wire.ERROR_TEXT[wire.FRACTIONAL_REFUSED]
        if q < Decimal(i.min_size):
            why = f"The order size {text} is below {i.min_size}, the minimum size of this " \
                  "contract"
        elif q % Decimal(i.size_increment) != 0:
            why = (f"The order size {text} is not a multiple of {i.size_increment}, the size "
                   "increment of this contract")
        else:
            return None
    except (InvalidOperation, ValueError):
        why = f"The order size {text} is not a number"
    return wire.ORDER_REJECTED, wire.ERROR_TEXT[wire.ORDER_REJECTED].format(why)
