"""The simulator (runner.sim.SimBroker): many orders over a day (or days) of 1 s bars.

DESIGN §9: 10,000 orders over a full day of 1 s bars (23,400) ≤ 2 s. Also a cost curve
over 1k / 10k / 100k orders × 1 / 5 / 20 days of bars, with growth exponents, to show
where the cost stops being linear.

The order flow (seeded, the same every run) is what runner sends, driven the way the
engine drives one order, but many at once on one broker:

- 60% one-shot limits: GTD backstop at TTL + 10 s, cancelled by the driver at TTL
  (1..300 s); limit within ±10 bps of the arrival price (about half marketable);
- 15% IOC limits within ±5 bps; 10% market orders (DAY);
- 15% sanity-cancels: BUY 0.01 DAY, cancelled right after they are placed.

Quantities are log-uniform 1..2,000 shares; sides 50/50; placement times uniform over
the bars. Multi-day bars are the shipped day repeated on consecutive calendar days.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SAMPLE_BARS, Results, Row, Table, fmt_s, median  # noqa: E402

from runner.bars import BAR_NS, Bars, load_bars  # noqa: E402
from runner.broker import OrderRequest  # noqa: E402
from runner.sim import SimBroker, SimConfig  # noqa: E402

TARGET_S = 2.0
DAY_NS = 86_400 * 1_000_000_000
GTD_MARGIN_NS = 10 * 1_000_000_000
CELL_CAP_S = 25.0  # a cost-curve cell projected to take longer is skipped (the 5 min budget)
SUPERLINEAR = 1.15  # growth exponent above which a row is flagged


@dataclass(frozen=True, slots=True)
class Flow:
    """The orders to send: requests, placement times and driver cancel times (or -1)."""

    orders: list[OrderRequest]
    place_ns: np.ndarray
    cancel_ns: np.ndarray


def multi_day(bars: Bars, days: int) -> Bars:
    """`bars` repeated on `days` consecutive calendar days (built in memory)."""
    if days == 1:
        return bars
    shift = np.repeat(np.arange(days, dtype=np.int64) * DAY_NS, len(bars))
    cols = {c: np.tile(getattr(bars, c), days) for c in ("open", "high", "low", "close",
                                                         "volume")}
    return Bars(ts=np.tile(bars.ts, days) + shift, **cols, path=f"<{days} days>")


def make_flow(bars: Bars, n: int, seed: int = 7) -> Flow:
    rng = np.random.default_rng(seed)
    lo, hi = bars.first_ns + BAR_NS, bars.last_end_ns
    place = np.sort(rng.integers(lo, hi, n))
    kind = rng.choice(4, n, p=[0.60, 0.15, 0.10, 0.15])
    sides = np.where(rng.random(n) < 0.5, "BUY", "SELL")
    qty = np.floor(np.exp(rng.uniform(0, math.log(2000), n)))
    offset_bps = rng.uniform(-10, 10, n)
    ttl_ns = rng.integers(1, 301, n) * 1_000_000_000
    idx = np.searchsorted(bars.ts, place - BAR_NS, side="right") - 1
    arrival = bars.close[np.maximum(idx, 0)]
    orders, cancels = [], np.full(n, -1, dtype=np.int64)
    for i in range(n):
        k, side, t = int(kind[i]), str(sides[i]), int(place[i])
        sign = 1 if side == "BUY" else -1
        px = round(float(arrival[i]) * (1 - sign * offset_bps[i] / 1e4), 2)
        common = dict(tag=f"o{i}", symbol="SPY", sec_type="STK", exchange="SMART",
                      currency="USD", side=side, qty=float(qty[i]))
        if k == 0:
            good_till = t + int(ttl_ns[i]) + GTD_MARGIN_NS
            orders.append(OrderRequest(**common, order_type="LMT", limit=px, tif="GTD",
                                       good_till_ns=good_till))
            cancels[i] = t + int(ttl_ns[i])
        elif k == 1:
            px = round(float(arrival[i]) * (1 - sign * offset_bps[i] / 2e4), 2)
            orders.append(OrderRequest(**common, order_type="LMT", limit=px, tif="IOC"))
        elif k == 2:
            orders.append(OrderRequest(**common, order_type="MKT", limit=None, tif="DAY"))
        else:
            orders.append(OrderRequest(**{**common, "side": "BUY"}, order_type="LMT",
                                       limit=0.01, tif="DAY"))
            cancels[i] = t
    return Flow(orders, place, cancels)


async def _drive(broker: SimBroker, flow: Flow) -> int:
    """Place and cancel in time order, draining the broker's events in between."""
    events = 0
    pending: list[tuple[int, int, str]] = []  # (cancel ns, seq, tag)
    for i, order in enumerate(flow.orders):
        t = int(flow.place_ns[i])
        while pending and pending[0][0] <= t:
            at, _, tag = heapq.heappop(pending)
            events += await _drain(broker, at)
            await broker.cancel(tag)
        events += await _drain(broker, t)
        await broker.place(order)
        if flow.cancel_ns[i] >= 0:
            heapq.heappush(pending, (int(flow.cancel_ns[i]), i, order.tag))
    while pending:
        at, _, tag = heapq.heappop(pending)
        events += await _drain(broker, at)
        await broker.cancel(tag)
    return events + await _drain(broker, 2**62)


async def _drain(broker: SimBroker, until_ns: int) -> int:
    n = 0
    while await broker.next_event(until_ns) is not None:
        n += 1
    return n


def run_once(bars: Bars, flow: Flow) -> tuple[float, int]:
    """Wall seconds and events for one pass of `flow` over a fresh broker."""
    broker = SimBroker(bars, SimConfig(), start_ns=bars.first_ns + BAR_NS)
    t0 = time.perf_counter()
    events = asyncio.run(_drive(broker, flow))
    return time.perf_counter() - t0, events


def collect(args: argparse.Namespace) -> Results:
    day = load_bars(SAMPLE_BARS)
    res = Results("sim")
    reps = 3 if args.quick else 7
    flow = make_flow(day, 10_000)
    runs = [run_once(day, flow) for _ in range(reps)]
    m = median([s for s, _ in runs])
    res.rows.append(Row("simulator", "10,000 orders over 23,400 1 s bars", f"≤ {fmt_s(TARGET_S)}",
                        f"{fmt_s(m)} ({runs[0][1]:,} events)", ok=m <= TARGET_S,
                        note=f"{m / 10_000 * 1e6:.0f} µs per order (no floor in DESIGN §9); "
                             "cost curve in the sim section"))
    res.tables.append(_curve(day, quick=args.quick))
    res.notes.append(f"headline: median of {reps} runs; curve cells: best of up to 3 runs "
                     "(1 run for cells over 5 s).")
    return res


def _curve(day: Bars, quick: bool) -> Table:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    days_list = (1, 5) if quick else (1, 5, 20)
    secs: dict[tuple[int, int], float | None] = {}
    rows = []
    for days in days_list:
        bars = multi_day(day, days)
        for n in sizes:
            guess = _projection(secs, n, days, sizes, days_list)
            if guess is not None and guess > CELL_CAP_S:
                secs[(n, days)] = None
                rows.append([f"{n:,}", str(days), f"skipped (projected ≥ {guess:.0f} s)",
                             "—", "—", "—"])
                continue
            flow = make_flow(bars, n)
            best, events = run_once(bars, flow)
            for _ in range(2 if best < 5 else 0):
                best = min(best, run_once(bars, flow)[0])
            secs[(n, days)] = best
            rows.append([f"{n:,}", str(days), fmt_s(best), f"{best / n * 1e6:.0f}",
                         f"{events:,}", _growth(secs, n, days, sizes, days_list)])
    return Table(
        "Simulator cost curve (orders × days of 1 s bars, 23,400 bars a day)",
        ["orders", "days", "wall", "µs/order", "events", "growth exponent"], rows,
        note=_curve_note(secs, sizes, days_list),
    )


def _prev(items: tuple[int, ...], x: int) -> int | None:
    i = items.index(x)
    return items[i - 1] if i else None


def _exp(t1: float | None, t0: float | None, x1: int, x0: int) -> float | None:
    if not t1 or not t0:
        return None
    return math.log(t1 / t0) / math.log(x1 / x0)


def _growth(secs: dict, n: int, days: int, sizes: tuple, days_list: tuple) -> str:
    """log(t)/log(size) against the previous orders size and the previous days size;
    1.0 = linear. '!' marks super-linear."""
    parts = []
    pn, pd = _prev(sizes, n), _prev(days_list, days)
    if pn is not None:
        e = _exp(secs.get((n, days)), secs.get((pn, days)), n, pn)
        if e is not None:
            parts.append(f"orders {e:.2f}{'!' if e > SUPERLINEAR else ''}")
    if pd is not None:
        e = _exp(secs.get((n, days)), secs.get((n, pd)), days, pd)
        if e is not None:
            parts.append(f"days {e:.2f}{'!' if e > SUPERLINEAR else ''}")
    return ", ".join(parts) or "—"


def _projection(secs: dict, n: int, days: int, sizes: tuple, days_list: tuple) -> float | None:
    """A guess of a cell's time from its measured neighbours, assuming linear growth."""
    pn, pd = _prev(sizes, n), _prev(days_list, days)
    by_n = secs.get((pn, days)) if pn else None
    by_d = secs.get((n, pd)) if pd else None
    guesses = []
    if by_n:
        guesses.append(by_n * n / pn)
    if by_d:
        guesses.append(by_d * days / pd)
    return min(guesses) if guesses else None


def _curve_note(secs: dict, sizes: tuple, days_list: tuple) -> str:
    flagged = []
    for n, days in secs:
        g = _growth(secs, n, days, sizes, days_list)
        if "!" in g:
            flagged.append(f"{n:,} orders × {days} d ({g})")
    head = ("Growth exponent: log(time ratio)/log(size ratio) against the previous row with "
            "the same days (orders) and the same orders (days); 1.0 = linear, ! = super-linear "
            f"(> {SUPERLINEAR}). ")
    return head + ("Super-linear: " + "; ".join(flagged) if flagged else "No super-linear cell.")


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("sim", collect))
