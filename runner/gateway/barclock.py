"""Bars mode: the gateway fills orders the way the simulator would, on the wall clock.

Bar time and wall time are tied at one point: the first bar starts at wall
time `start_wall_ns` (by default, when the gateway starts). From there bar time
runs `speed` times as fast as the wall clock. An order acknowledged at wall
time w is matched by `runner.sim.fill_schedule` with ack = bar_now(w), and each
fill is sent when the wall clock reaches the fill's bar time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.gateway.steps import Ack, CancelAt, FillAt, Step
from runner.gateway.values import PlacedOrder

if TYPE_CHECKING:
    from runner.bars import Bars

# IB's fixed-rate pricing for US stocks, as the simulator charges it.
COMMISSION_PER_SHARE = 0.005
MIN_COMMISSION = 1.0
FRACTIONAL_SEC_TYPES = frozenset({"CASH", "CRYPTO"})


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
    """The script bars mode gives an order placed (or modified) at `now_wall_ns`."""
    from runner.sim import fill_schedule, ioc_cancel_ns

    head: tuple[Step, ...] = (Ack(),) if ack else ()
    if order.order_type not in ("LMT", "MKT"):
        return head  # other order types rest, as in the simulator without bars
    ack_bar = clock.bar_now(now_wall_ns)
    limit = order.lmt_price if order.order_type == "LMT" else None
    # The simulator splits CASH and CRYPTO into fractions; everything else trades in
    # whole units, as a stock does.
    sec_type = order.contract.sec_type
    fills = fill_schedule(clock.bars, order.action, remaining, order.order_type, limit,
                          order.tif, ack_bar, participation,
                          sec_type if sec_type in FRACTIONAL_SEC_TYPES else "STK")
    steps: list[Step] = [FillAt(clock.wall_of(ts), qty, px) for ts, qty, px in fills]
    if order.tif == "IOC":
        steps.append(CancelAt(clock.wall_of(ioc_cancel_ns(clock.bars, ack_bar))))
    return head + tuple(steps)
