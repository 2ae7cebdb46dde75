"""Market data the fake gateway serves: a quote (reqMktData) and 1-second bars
(reqHistoricalData), from its bars on the bar clock, or from a quote a test set.

A bar [ts, ts + bars.interval_ns) is known once it has ended, so "now" shows the close of the
last bar that ended at or before the bar clock's now (as `Bars.arrival_at`) — inside the
first bar, its open (a gateway just started still has a last price); the quote around
it is one tick either side (bid = last - 0.01, ask = last + 0.01).
Historical bars are dated on the gateway's wall clock (`BarClock.wall_of`), the
clock its fills, executions and reqCurrentTime use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.gateway.barclock import BarClock

if TYPE_CHECKING:
    from runner.bars import Bars

NS = 1_000_000_000
STK_TICK = 0.01
QUOTE_SIZE = 100.0  # the bid / ask size shown with a quote (ib_async: size 0 = no bid)
ONE_SECOND_BARS = "1 secs"
_DURATION = re.compile(r"(\d+)\s+([SDWMY])")
_UNIT_S = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 31 * 86_400, "Y": 366 * 86_400}


@dataclass(frozen=True, slots=True)
class Quote:
    """What a market-data snapshot shows; None: that tick is not sent."""

    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    close: float | None = None
    last_size: float = 0.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One historical bar as sent: its start on the gateway's wall clock."""

    start_wall_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float


def check_price(name: str, value: float | None) -> float | None:
    """A price a test sets: any float (IB's "no value" -1, nan, 1.79e308 included, so a
    client can be shown them), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number or None, got {value!r}")
    return float(value)


def quote_from_bars(clock: BarClock, wall_ns: int) -> Quote | None:
    """The quote at wall time `wall_ns`: last = close of the last bar that ended at or
    before the bar clock's now. Inside the first bar (a gateway just started) it is that
    bar's open, the first trade, known from the bar's start, as a real gateway always has a
    last price; None only before the first bar starts."""
    bars, now = clock.bars, clock.bar_now(wall_ns)
    i = _last_ended(bars, now)
    if i is None:
        if now < bars.first_ns:
            return None
        last, size = float(bars.open[0]), 0.0
    else:
        last, size = float(bars.close[i]), float(bars.volume[i])
    return Quote(last=last, bid=round(last - STK_TICK, 2), ask=round(last + STK_TICK, 2),
                 close=last, last_size=size)


def duration_ns(text: str) -> int | None:
    """IB's durationStr (`60 S`, `1 D`, `2 W`, ...) in ns; None if unreadable."""
    match = _DURATION.fullmatch(text.strip().upper())
    if not match or int(match.group(1)) <= 0:
        return None
    return int(match.group(1)) * _UNIT_S[match.group(2)] * NS


def bars_between(clock: BarClock, start_wall_ns: int, end_wall_ns: int) -> list[Bar]:
    """The bars that started at or after `start_wall_ns` and ended at or before
    `end_wall_ns` (wall clock), oldest first."""
    bars = clock.bars
    lo_bar, hi_bar = clock.bar_now(start_wall_ns), clock.bar_now(end_wall_ns)
    lo = int(_searchsorted(bars, lo_bar, "left"))
    hi = int(_searchsorted(bars, hi_bar - bars.interval_ns, "right"))
    out = []
    for i in range(lo, hi):
        wap = bars.vwap[i] if bars.vwap is not None else bars.close[i]
        out.append(Bar(clock.wall_of(int(bars.ts[i])), float(bars.open[i]),
                       float(bars.high[i]), float(bars.low[i]), float(bars.close[i]),
                       float(bars.volume[i]), float(wap) if math.isfinite(wap) else 0.0))
    return out


def _last_ended(bars: Bars, bar_now_ns: int) -> int | None:
    n = int(_searchsorted(bars, bar_now_ns - bars.interval_ns, "right"))
    return n - 1 if n else None


def _searchsorted(bars: Bars, t_ns: int, side: str) -> int:
    import numpy as np

    return int(np.searchsorted(bars.ts, t_ns, side=side))  # type: ignore[call-overload]
