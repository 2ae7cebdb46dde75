"""The simulator's rule for an order sized in money (`cash_qty`, runner.cashqty).

The bars it trades on and each fill's price are those of a LMT or MKT order of the same
side (runner.sim: which bars, the participation cap, market at the open, a limit at the
open when strictly better, else at the limit on a strict cross; IOC: the first bar only).
Each fill's quantity is what is left of the cash at its price, floored to the
instrument's step (1e-8 for CASH and CRYPTO), and at most the bar's cap: bar by bar, in
decimal, until the cash is spent. The fill that takes what is left (less than a step's
worth may remain unspent) completes the order: a FILL. With 1,000 USD at 40,000 and a cap
of 0.01 BTC a bar: 0.01 (400), 0.01 (400), then 200 / 40,000 = 0.005.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np

from runner.bars import Bars
from runner.broker import OrderRequest
from runner.cashqty import floor_units
from runner.sim import Fill, capped_fills, quantity_scale, tradable_bars


def cash_fills(bars: Bars | None, req: OrderRequest, ack_ns: int, participation: float,
               session: tuple[str, str] | None) -> tuple[list[Fill], bool]:
    """The fills of a cash order acknowledged at `ack_ns` (module rule), and whether they
    spend its cash (the last one completes it)."""
    assert req.cash_qty is not None
    if bars is None:
        return [], False
    sign = 1.0 if req.side == "BUY" else -1.0
    bound = sign * math.inf if req.order_type == "MKT" else float(req.limit or 0.0)
    start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
    stop = start + 1 if req.tif == "IOC" else len(bars)
    scale = quantity_scale(req.sec_type)
    live = tradable_bars(bars, participation, req.sec_type, session)
    idx, take = capped_fills(live, sign * bound, sign > 0, 2**62, start, stop)
    left, out = Decimal(repr(float(req.cash_qty))), list[Fill]()
    for i, steps in zip(idx.tolist(), take.tolist(), strict=True):
        opened = float(bars.open[i])
        px = opened if sign * opened < sign * bound else bound
        price = Decimal(repr(px))
        can = floor_units(left, price)
        units = min(Decimal(int(steps)) / scale, can)
        if units <= 0:
            return out, True
        out.append((int(bars.ts[i]) + bars.interval_ns, float(units), px))
        left -= units * price
        if units == can:
            return out, True
    return out, False
