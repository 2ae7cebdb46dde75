"""The simulator's rules for the order types and times in force beyond LMT, MKT and IOC
(runner.sim keeps those; the README's simulator section repeats all of them). Bars hold
no quotes and no auctions, so some rules are approximations, and say so.

As for every order: fills are judged on the bars runner.sim lets an order trade on (at
or after the ack, inside the regular session unless outside_rth, a cap above 0), within
the participation cap, each reported at its bar's end. Derived prices (a trailing stop,
a peg) are rounded to 10 decimals, so 99.97 + 0.5 is 100.47, not 100.46999999999999.

- STP. Triggers on the first bar that trades at or through the stop: for a BUY a high
  at or above it, for a SELL a low at or below. That bar fills at the stop, or at its
  open when it opened beyond the stop (a gap); later bars fill as a market order does,
  at each open.
- STP LMT. Triggers as STP. On the trigger bar it fills at the trigger price (the stop,
  or the gapped open) only if that is strictly better than the limit; from the next bar
  on it is a limit order (runner.sim's limit rules).
- TRAIL. The stop trails the best price so far: for a BUY the lowest of the earlier
  bars' lows and this bar's open, plus trail_amount (or times 1 + trail_percent / 100);
  a SELL mirrors it (the highest of the highs and the open, less the trail). A first
  stop given (`stop`, IB's trailStopPrice) holds until the trail improves on it. Each
  bar is judged against its own stop, as STP.
- TRAIL LIMIT. Triggers as TRAIL; its limit is the stop at the trigger plus its offset
  (a SELL: less), then as STP LMT.
- MOC, LOC. The closing auction is one bar: the last regular bar of the first session
  that closes after the ack (it must reach the close), at its close; a LOC only if that
  close is strictly better than its limit. Within the cap; the rest is cancelled at that
  bar's end. Bars that do not reach the close give nothing.
- OPG. The opening auction is one bar: the first bar of the first session that opens
  at or after the ack, at its open; an LMT only if that open is strictly better than
  its limit. Within the cap; the rest is cancelled at that bar's end.
- FOK. Only the first bar at or after the ack counts (as IOC): the order fills in full
  on it, if that bar gives it all, else not at all; it is cancelled at that bar's end.
- MIDPRICE, REL, PEG MID. Bars have no quotes: each bar's open stands for the whole
  quote (bid = ask = midpoint = open). At each bar the peg is priced from its open:
  MIDPRICE at it, PEG MID at it less the offset (a SELL: plus), REL at it plus the
  offset (a SELL: less), never beyond the cap; the bar is then judged as for a limit at
  that price (marketable at the open when strictly better, else filled at the peg's
  price on a strict cross).
- Algos run as their parent LMT or MKT order (runner.sim); the plan says so.
- Not simulated, refused before anything runs (`problem`): MOC, LOC and OPG of an
  instrument whose exchange sessions runner does not know (it knows US stocks').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from runner.bars import Bars
from runner.broker import OrderRequest
from runner.errors import UsageError
from runner.hours import calendar_for, sessions
from runner.ordertypes import AT_THE_CLOSE, PEGS, TRAILS
from runner.sim import (
    Fill,
    fill_quantities,
    fill_schedule,
    ioc_cancel_ns,
    quantity_scale,
    tradable_bars,
)

Cancel = tuple[int, str]  # when the rest is cancelled, and the message
_DECIMALS = 10


def refuse_unsimulable(req: OrderRequest, where: str) -> None:
    """UsageError (exit 2, before anything runs) for an order bars cannot simulate."""
    why = problem(req)
    if why:
        raise UsageError(f"{where}: {why}; nothing was run",
                         "rehearse it against the fake gateway, or use another order type")


def problem(req: OrderRequest) -> str:
    """Why bars cannot simulate this order ("" when they can)."""
    if req.cash_qty is not None and req.tif == "FOK":
        return "the simulator has no rule for a cash_qty order with tif FOK"
    auction = "the closing auction" if req.order_type in AT_THE_CLOSE else "the opening auction"
    if (req.order_type in AT_THE_CLOSE or req.tif == "OPG") and not (
            req.sec_type == "STK" and calendar_for(req.sec_type, req.exchange, req.currency)):
        what = f"tif {req.tif}" if req.tif == "OPG" else f"type {req.order_type}"
        return (f"the simulator cannot run {what}: it finds {auction} from the exchange's "
                f"sessions, and knows those of US stocks only, not of {req.sec_type} "
                f"{req.symbol} on {req.exchange}")
    return ""


def schedule(bars: Bars | None, req: OrderRequest, ack_ns: int, participation: float,
             session: tuple[str, str] | None) -> tuple[list[Fill], Cancel | None]:
    """The fills of an order acknowledged at `ack_ns` (module rules), and when its rest
    is cancelled by its own rule (FOK, OPG, MOC, LOC), if it is."""
    if req.tif == "FOK":
        return _fill_or_kill(bars, req, ack_ns, participation, session)
    if bars is None:
        return [], None
    if req.tif == "OPG" or req.order_type in AT_THE_CLOSE:
        return _auction(bars, req, ack_ns, participation)
    w = _Window.of(bars, req, ack_ns, participation, session)
    if req.order_type in ("STP", "STP LMT"):
        limit = w.s * req.limit if req.limit is not None else 0.0
        ok, px = w.stop(np.full(len(w.so), w.s * _req(req.stop)),
                        (lambda k: limit) if req.order_type == "STP LMT" else None)
    elif req.order_type in TRAILS:
        stops, offset = w.trail(req), _req(req.offset, 0.0)
        ok, px = w.stop(stops, (lambda k: float(stops[k]) + offset)
                        if req.order_type == "TRAIL LIMIT" else None)
    elif req.order_type in PEGS:
        ok, px = w.peg(req)
    else:
        raise ValueError(f"the simulator has no rule for {req.order_type}")
    return w.fills(ok, px, req), None


def _req(x: float | None, default: float | None = None) -> float:
    value = x if x is not None else default
    if value is None:
        raise ValueError("an order without the price its type needs")
    return value


@dataclass(frozen=True, slots=True)
class _Window:
    """The bars an order may trade on from its ack, in signed prices: s = +1 for a BUY
    and -1 for a SELL, so that `lower is better` for both. so: the opens; fav: the best
    price each bar traded at (a BUY's low); adv: the worst (a BUY's high)."""

    bars: Bars
    idx: np.ndarray
    cap: np.ndarray
    s: float
    so: np.ndarray
    fav: np.ndarray
    adv: np.ndarray

    @classmethod
    def of(cls, bars: Bars, req: OrderRequest, ack_ns: int, participation: float,
           session: tuple[str, str] | None) -> _Window:
        live = tradable_bars(bars, participation, req.sec_type, session)
        start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
        lo = int(np.searchsorted(live.idx, start, side="left"))
        s = 1.0 if req.side == "BUY" else -1.0
        low, high = live.low[lo:], -live.neg_high[lo:]
        idx = live.idx[lo:]
        return cls(bars, idx, live.cap[lo:], s, s * bars.open[idx],
                   low if s > 0 else -high, high if s > 0 else -low)

    def stop(self, stops: np.ndarray,
             limit_at: Callable[[int], float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A stop (signed `stops`, one per bar) that triggers as the module says, then
        trades as a market order, or as a limit at `limit_at(k)` (signed) when it
        triggered on bar k."""
        ok = np.zeros(len(self.so), dtype=bool)
        px = np.zeros(len(self.so))
        hit = np.flatnonzero(self.adv >= stops)
        if not len(hit):
            return ok, px
        k = int(hit[0])
        trigger = max(float(self.so[k]), float(stops[k]))  # the stop, or a gapped open
        px[k] = self.s * trigger
        if limit_at is None:
            ok[k:], px[k + 1:] = True, self.s * self.so[k + 1:]
            return ok, px
        bound = limit_at(k)
        ok[k] = trigger < bound
        ok[k + 1:], px[k + 1:] = self.limit(np.full(len(self.so) - k - 1, bound), k + 1)
        return ok, px

    def limit(self, bounds: np.ndarray, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """runner.sim's limit rule, bar by bar from `first`, each bar with its own signed
        limit: at the open when strictly better, else at the limit on a strict cross."""
        so, fav = self.so[first:], self.fav[first:]
        marketable = so < bounds
        ok = marketable | (fav < bounds)
        return ok, self.s * np.where(marketable, so, bounds)

    def trail(self, req: OrderRequest) -> np.ndarray:
        """Each bar's signed stop: the best price before it (and its own open) plus the
        trail, never worse than a first stop given."""
        earlier = np.concatenate(([np.inf], np.minimum.accumulate(self.fav)[:-1]))
        best = np.minimum(self.so, earlier)
        if req.trail_amount is not None:
            stops = best + req.trail_amount
        else:
            price = self.s * best
            stops = self.s * price * (1 + self.s * _req(req.trail_percent) / 100)
        if req.stop is not None:
            stops = np.minimum(stops, self.s * req.stop)
        rounded: np.ndarray = self.s * np.round(self.s * stops, _DECIMALS)
        return rounded

    def peg(self, req: OrderRequest) -> tuple[np.ndarray, np.ndarray]:
        offset = req.offset or 0.0
        shift = {"MIDPRICE": 0.0, "PEG MID": -offset, "REL": offset}[req.order_type]
        pegs = self.so + shift  # signed (lower is better): PEG MID less aggressive, REL more
        if req.limit is not None:
            pegs = np.minimum(pegs, self.s * req.limit)
        return self.limit(self.s * np.round(self.s * pegs, _DECIMALS))

    def fills(self, ok: np.ndarray, px: np.ndarray, req: OrderRequest) -> list[Fill]:
        scale = quantity_scale(req.sec_type)
        units = Decimal(repr(float(req.qty))) * scale
        at = np.flatnonzero(ok)
        cum = np.cumsum(self.cap[at])
        k = int(np.searchsorted(cum, float(units), side="left"))
        at = at[: k + 1]
        if not len(at):
            return []
        ts = (self.bars.ts[self.idx[at]] + self.bars.interval_ns).tolist()
        prices = [float(round(Decimal(repr(float(p))), _DECIMALS)) for p in px[at]]
        return list(zip(ts, fill_quantities(self.cap[at], units, scale), prices, strict=True))


def _fill_or_kill(bars: Bars | None, req: OrderRequest, ack_ns: int, participation: float,
                  session: tuple[str, str] | None) -> tuple[list[Fill], Cancel]:
    """IOC's one bar, all or nothing."""
    cancel = (ioc_cancel_ns(bars, ack_ns), "FOK: not filled in full at once")
    fills = fill_schedule(bars, req.side, req.qty, req.order_type, req.limit, "IOC", ack_ns,
                          participation, req.sec_type, session)
    got = sum(Decimal(repr(q)) for _, q, _ in fills)
    return (fills if got >= Decimal(repr(float(req.qty))) else []), cancel


def _auction(bars: Bars, req: OrderRequest, ack_ns: int,
             participation: float) -> tuple[list[Fill], Cancel | None]:
    """One bar, at its open (OPG) or its close (MOC, LOC), within the cap."""
    opening = req.tif == "OPG"
    found = sessions(req.sec_type, req.exchange, req.currency, ack_ns, int(bars.ts[-1]))
    windows = [w for w in found or () if (w[0] >= ack_ns if opening else w[1] > ack_ns)]
    j = _auction_bar(bars, windows[0], opening, ack_ns) if windows else None
    if j is None:
        return [], None
    name = "OPG" if opening else req.order_type
    cancel = (int(bars.ts[j]) + bars.interval_ns,
              f"{name}: rest cancelled {'after the open' if opening else 'at the close'}")
    live = tradable_bars(bars, participation, req.sec_type, (req.exchange, req.currency))
    at = int(np.searchsorted(live.idx, j))
    price = float(bars.open[j] if opening else bars.close[j])
    sign = 1.0 if req.side == "BUY" else -1.0
    priced = req.limit is None or sign * price < sign * req.limit
    if at == len(live.idx) or int(live.idx[at]) != j or not priced:
        return [], cancel
    scale = quantity_scale(req.sec_type)
    units = Decimal(repr(float(req.qty))) * scale
    take = live.cap[at:at + 1]
    [qty] = fill_quantities(np.minimum(take, float(units)), units, scale)
    return [(cancel[0], qty, price)], cancel


def _auction_bar(bars: Bars, window: tuple[int, int], opening: bool, ack_ns: int) -> int | None:
    """The bar of a session's opening (its first) or closing auction (its last, if it
    reaches the close); None when the bars have none."""
    opens, closes = window
    if opening:
        j = int(np.searchsorted(bars.ts, opens, side="left"))
        return j if j < len(bars) and bars.ts[j] < closes else None
    j = int(np.searchsorted(bars.ts, closes, side="left")) - 1
    if j < 0 or bars.ts[j] < max(opens, ack_ns) or bars.ts[j] + bars.interval_ns < closes:
        return None
    return j
