"""Bars mode: the gateway fills orders the way the simulator would, on the wall clock.

Bar time and wall time are tied at one point: the first bar starts at wall
time `start_wall_ns` (by default, when the gateway starts). From there bar time
runs `speed` times as fast as the wall clock. An order acknowledged at wall
time w is matched with ack = bar_now(w) by `runner.sim.fill_schedule` (LMT, MKT) or
`runner.simrules.schedule` (every other type and tif it has rules for), and each fill,
and a cancel by the order's own rule (IOC, FOK, OPG, MOC, LOC), is sent when the wall
clock reaches its bar time. As for LMT and MKT, every bar trades (regular hours or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.broker import OrderRequest
from runner.gateway.steps import Ack, CancelAt, FillAt, Step
from runner.gateway.values import PlacedOrder
from runner.ordertypes import spec_prices

if TYPE_CHECKING:
    from runner.bars import Bars
    from runner.sim import Fill

# IB's fixed-rate pricing for US stocks, as the simulator charges it.
COMMISSION_PER_SHARE = 0.005
MIN_COMMISSION = 1.0
FRACTIONAL_SEC_TYPES = frozenset({"CASH", "CRYPTO"})
# The types runner.sim's own rules cover, and the tifs that send even those to
# runner.simrules' rules (as runner.sim routes them).
PLAIN_TYPES = frozenset({"LMT", "MKT"})
OWN_TIFS = frozenset({"FOK", "OPG"})


@dataclass(frozen=True, slots=True)
class BarClock:
    bars: Bars
    start_wall_ns: int
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")

    def bar_now(self, wall_ns: int) -> int:
        return self.bars.first_ns + round((wall_ns - self.start_wall_ns) * self.speed)

    def wall_of(self, bar_ns: int) -> int:
        return self.start_wall_ns + round((bar_ns - self.bars.first_ns) / self.speed)


def bar_steps(clock: BarClock, order: PlacedOrder, remaining: float, now_wall_ns: int,
              participation: float, ack: bool = True) -> tuple[Step, ...]:
    """The script bars mode gives an order placed (or modified) at `now_wall_ns`: LMT and
    MKT by runner.sim's rules, every other type and tif the simulator has rules for by
    runner.simrules'; one it has none for (or refuses) rests."""
    from runner.sim import fill_schedule, ioc_cancel_ns

    head: tuple[Step, ...] = (Ack(),) if ack else ()
    ack_bar = clock.bar_now(now_wall_ns)
    cancels: list[tuple[int, str]] = []
    if order.cash_qty is not None:  # sized in money: runner.simcash's rule
        fills = _cash_fills(clock.bars, order, ack_bar, participation)
    elif order.order_type in PLAIN_TYPES and order.tif not in OWN_TIFS:
        limit = order.lmt_price if order.order_type == "LMT" else None
        # The simulator splits CASH and CRYPTO into fractions; everything else trades in
        # whole units, as a stock does.
        sec_type = order.contract.sec_type
        fills = fill_schedule(clock.bars, order.action, remaining, order.order_type, limit,
                              order.tif, ack_bar, participation,
                              sec_type if sec_type in FRACTIONAL_SEC_TYPES else "STK")
    else:
        ruled = _by_simrules(clock.bars, order, remaining, ack_bar, participation)
        if ruled is None:
            return head  # rests, as in the simulator without bars
        fills, cancel = ruled
        cancels += [cancel] if cancel is not None else []
    if order.tif == "IOC":
        cancels.append((ioc_cancel_ns(clock.bars, ack_bar), ""))
    end = min(cancels, default=None)
    steps: list[Step] = [FillAt(clock.wall_of(ts), qty, px) for ts, qty, px in fills
                         if end is None or ts <= end[0]]
    if end is not None:
        steps.append(CancelAt(clock.wall_of(end[0]), end[1]))
    return head + tuple(steps)


def _by_simrules(bars: Bars, order: PlacedOrder, remaining: float, ack_bar: int,
                 participation: float) -> tuple[list[Fill], tuple[int, str] | None] | None:
    """runner.simrules' fills and cancel for the order; None when it has no rule for it,
    the order lacks the price its type needs, or the simulator refuses it (`problem`)."""
    from runner import simrules

    if remaining <= 0:
        return None
    c = order.contract
    prices = spec_prices(order.order_type, order.lmt_price, order.aux_price,
                         order.trailing_percent, order.trail_stop_price,
                         order.lmt_price_offset)
    req = OrderRequest(tag=order.order_ref, symbol=c.symbol, sec_type=c.sec_type,
                       exchange=c.exchange, currency=c.currency, side=order.action,
                       qty=remaining, order_type=order.order_type, tif=order.tif,
                       outside_rth=order.outside_rth, account=order.account, **prices)
    if simrules.problem(req):
        return None
    try:
        # Every bar trades, as for LMT and MKT above (the closing and opening auctions
        # are found from the exchange's sessions all the same).
        return simrules.schedule(bars, req, ack_bar, participation, None)
    except ValueError:  # no rule for the type, or a price it needs is missing
        return None


def _cash_fills(bars: Bars, order: PlacedOrder, ack_bar: int,
                participation: float) -> list[Fill]:
    """runner.simcash's fills of a cash order (LMT or MKT; its whole cash_qty), every bar
    trading as for the others."""
    from runner.simcash import cash_fills

    c = order.contract
    req = OrderRequest(tag=order.order_ref, symbol=c.symbol, sec_type=c.sec_type,
                       exchange=c.exchange, currency=c.currency, side=order.action, qty=0.0,
                       order_type=order.order_type, limit=order.lmt_price, tif=order.tif,
                       cash_qty=order.cash_qty)
    return cash_fills(bars, req, ack_bar, participation, None)[0]
