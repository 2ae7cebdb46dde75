"""Immutable values the fake gateway passes between its parts (and hands to tests)."""

from __future__ import annotations

from dataclasses import dataclass

DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


@dataclass(frozen=True, slots=True)
class Contract:
    """The contract fields the gateway echoes back in openOrder, execDetails, position.

    `last_trade` (lastTradeDateOrContractMonth), `strike`, `right` and `multiplier` are
    as IB sends them: "", 0.0, "", "" for a stock; `multiplier` is IB's text ("50")."""

    con_id: int
    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    last_trade: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""

    @property
    def size_multiplier(self) -> float:
        """What one unit of quantity is worth in units of price (1 without a multiplier)."""
        return float(self.multiplier) if self.multiplier else 1.0


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """What a placeOrder (3) message asked for; `fields` keeps the raw frame."""

    order_id: int
    contract: Contract
    action: str  # BUY | SELL
    qty: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    good_till_date: str
    fields: tuple[str, ...]
    trail_stop_price: float | None = None  # TRAIL, TRAIL LIMIT: the first stop, if given
    trailing_percent: float | None = None  # TRAIL, TRAIL LIMIT: the trail in percent
    lmt_price_offset: float | None = None  # TRAIL LIMIT: the limit's offset from the stop
    cash_qty: float | None = None  # IB's cashQty: the order's size in money (qty is then 0)


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """One order as the gateway sees it at one moment."""

    client_id: int
    order_id: int
    perm_id: int
    order: PlacedOrder
    status: str
    filled: float
    avg_px: float
    last_fill_px: float
    commission: float  # cumulative
    hidden: bool = False  # lost by a restart (lose_orders): alive, but shown to no one
    spent: float = 0.0  # what the executions cost (a cash order's remaining is its cash less this)

    @property
    def order_ref(self) -> str:
        return self.order.order_ref

    @property
    def remaining(self) -> float:
        return remaining_units(self.order, self.filled, self.spent, self.last_fill_px)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, with its commission; replayed in the reply to reqExecutions (7)."""

    exec_id: str
    time_ns: int
    client_id: int
    order_id: int
    perm_id: int
    order_ref: str
    account: str
    contract: Contract
    side: str  # BOT | SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    commission: float
    corrects: str = ""  # the execId this one corrects (replaces); "" for a plain fill
    commission_reported: bool = True  # False: IB never reports its commission ("absent")
    commission_currency: str = "USD"


def remaining_units(order: PlacedOrder, filled: float, spent: float, last_px: float) -> float:
    """What is left of an order in units, as orderStatus reports it: qty less what filled;
    a cash order's: what is left of its cash buys at its last fill's price (before one,
    its limit), floored to 1e-8 (runner.cashqty); 0 when no price is known yet."""
    if order.cash_qty is None:
        return max(order.qty - filled, 0.0)
    return cash_buys(order, spent, last_px or order.lmt_price or 0.0)


def cash_buys(order: PlacedOrder, spent: float, px: float) -> float:
    """The units what is left of a cash order's cash buys at `px` (0 for no price)."""
    from decimal import Decimal

    from runner.cashqty import floor_units

    assert order.cash_qty is not None
    left = Decimal(repr(float(order.cash_qty))) - Decimal(repr(float(spent)))
    if px <= 0 or left <= 0:
        return 0.0
    return float(floor_units(left, Decimal(repr(float(px)))))
