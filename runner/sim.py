"""The dry-run broker: a virtual clock and deterministic fills from bars.

Rules (DESIGN §5; the README copies them):

- Clock. Virtual, in ns, starting at `start_ns`. `next_event(deadline)` jumps
  to the next scheduled event at or before the deadline, or to the deadline
  itself. It never sleeps and never reads the wall clock; it never runs back.
- Bars. A bar's `ts` is its start; it covers [ts, ts + `bars.interval_ns`) and is
  known once it has ended (ts + interval: 1 s for 1 s bars, 5 s for 5 s bars).
- Ack. `place` at clock t acknowledges at t + `ack_ms` (order ids 1, 2, 3…).
  With `reject: "reason"` the order is rejected at that time instead (REJ,
  message = the reason) and nothing else happens.
- Which bars. Fills are judged only on bars that START at or after the ack, and,
  unless the order has `outside_rth`, only on bars that start inside the
  instrument's regular session (runner.hours: US stocks 09:30-16:00 New York on
  NYSE trading days, 13:00 on early closes; CRYPTO always; IDEALPRO FX Sunday
  17:15 - Friday 17:00 less the daily 17:00-17:15 break). An instrument whose
  calendar is not known trades on every bar.
- Participation cap. A bar gives an order at most participation (10%) × its
  volume, floored to the instrument's quantity step: whole units for STK, 1e-8 for
  CASH and CRYPTO. Computed in decimal on the numbers as written, so 10% of 3.7 BTC
  is 0.37 and 29% of 100 shares is 29. A bar whose cap is 0 (no volume, or a cap
  that rounds to 0) gives nothing. Big orders fill in PARTIALs, bar after bar; the
  fill that completes the order is exactly what was left (0.5 - 0.37 = 0.13).
- Reported when the bar has ended. Every fill is reported at its bar's end
  (ts + interval), whatever its price: the cap is a share of the bar's volume,
  which is known only then (a bar is known once it has ended). So the order's
  end is after the bar it traded in, and that bar is inside TCA's window
  [INTENT, end).
- Market. At each bar's open, within the cap.
- Limit, marketable. A BUY whose limit is strictly above the bar's open (a SELL:
  strictly below) fills at the open, the better price, within the cap. Strict,
  like the touch rule below: a limit equal to the open only touches it, and a
  touch never proves the order traded.
- Limit, otherwise. A BUY fills on a bar whose low is strictly below the limit (a
  SELL: high strictly above); touching the limit is not enough. The fill is at the
  limit price, within the cap.
- IOC. Only the first bar at/after the ack counts; what it gives is filled and
  the rest is cancelled at that bar's end. An IOC with no bar to trade against
  is cancelled at its ack.
- GTD (the TTL backstop). The order is cancelled at `good_till_ns` if still live.
- Cancel. `cancel` at clock t cancels at t + `cancel_ms` (never before the ack),
  carrying the quantity filled so far. Fills scheduled at or before that time
  still happen first; later ones never do. Cancelling an order that is filled,
  cancelled, rejected, already being cancelled or unknown does nothing. With
  `ignore_cancel` the cancel is swallowed and the order keeps filling.
- Cash. An order sized in money (cash_qty, LMT or MKT): the same bars and prices; each
  fill takes what is left of the cash at its price, floored to the step, within the cap,
  until the cash is spent; the fill that takes what is left is its FILL (runner.simcash).
- Other order types and tifs (STP, STP LMT, TRAIL, TRAIL LIMIT, MOC, LOC, MIDPRICE,
  REL, PEG MID; FOK, OPG): runner.simrules. An algo order runs as its parent.
- Commission. Cumulative, max(min_commission, commission_per_share × filled).
- No bars (or none after the ack): the order is acknowledged and never fills.
- Events of all live orders come out in (ts, sequence) order, so equal times
  keep the order in which they were scheduled (ack before fills, fills before
  a cancel at the same instant).
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from runner.bars import Bars
from runner.broker import BrokerEvent, Ev, Lookup, OrderRequest, SessionInfo
from runner.contract import WHOLE_UNITS, ContractTerms
from runner.defaults import spec_default
from runner.hours import sessions

Fill = tuple[int, float, float]  # (event ts ns, last_qty, px)

FRACTION_SCALE = 10**8  # CASH and CRYPTO: quantities in steps of 1 / this (1e-8)
# A float cap this close to a whole step is recomputed in decimal (floor(0.29 * 100)
# would be 28 in binary floating point; it is 29).
_NEAR_STEP = 1e-9
_FIRST_CHUNK = 64  # bars scanned first; each further chunk is 4x bigger
_PERM_ID_BASE = 1_000_000_000
_PLAIN = frozenset({"LMT", "MKT"})  # the order types this module's rules cover
_OWN_TIFS = frozenset({"FOK", "OPG"})  # with their own rules (runner.simrules)
_NS_PER_MS = 1_000_000


def _sim_default(key: str) -> Any:
    return spec_default("sim", key)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The `sim:` block of a spec; its defaults are the spec schema's (runner.defaults)."""

    reject: str | None = None
    ack_ms: float = field(default_factory=lambda: _sim_default("ack_ms"))
    cancel_ms: float = field(default_factory=lambda: _sim_default("cancel_ms"))
    ignore_cancel: bool = field(default_factory=lambda: _sim_default("ignore_cancel"))
    participation: float = field(default_factory=lambda: _sim_default("participation"))
    commission_per_share: float = field(
        default_factory=lambda: _sim_default("commission_per_share"))
    min_commission: float = field(default_factory=lambda: _sim_default("min_commission"))

    def __post_init__(self) -> None:
        if not 0 < self.participation <= 1:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")
        if self.ack_ms < 0 or self.cancel_ms < 0:
            raise ValueError("ack_ms and cancel_ms must be >= 0")


def quantity_scale(sec_type: str) -> int:
    """Quantities of `sec_type` move in steps of 1 / this: 1 for whole-unit instruments
    (STK, FUT, OPT, FOP, CFD: runner.contract), FRACTION_SCALE for the fractional ones
    (CASH, CRYPTO)."""
    return 1 if sec_type in WHOLE_UNITS else FRACTION_SCALE


def fill_schedule(
    bars: Bars | None,
    side: str,
    qty: float,
    order_type: str,
    limit: float | None,
    tif: str,
    ack_ns: int,
    participation: float,
    sec_type: str = "STK",
    session: tuple[str, str] | None = None,
) -> list[Fill]:
    """The fills an order acknowledged at `ack_ns` gets, in time order, per the module rules.

    `session` is the (exchange, currency) whose regular session (with `sec_type`) limits
    the bars the order trades on; None: every bar (outside_rth). Pure: the same inputs
    give the same list. Cancels (IOC remainder, TTL, GTD) are not applied here; the
    caller truncates the list at the cancel time.
    """
    if bars is None or qty <= 0:
        return []
    sign = 1.0 if side == "BUY" else -1.0
    if order_type == "MKT":
        bound = sign * math.inf  # no price bound: every bar is marketable at its open
    elif limit is None:
        raise ValueError(f"{order_type} order without a limit price")
    else:
        bound = limit
    start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
    stop = start + 1 if tif == "IOC" else len(bars)
    scale = quantity_scale(sec_type)
    units = Decimal(repr(float(qty))) * scale
    live = tradable_bars(bars, participation, sec_type, session)
    idx, take = capped_fills(live, sign * bound, sign > 0, math.ceil(units), start, stop)
    if not len(idx):
        return []
    opens = bars.open[idx]
    at_open = sign * opens < sign * bound
    px = np.where(at_open, opens, bound).tolist()
    ts = (bars.ts[idx] + bars.interval_ns).tolist()  # every fill: once its bar has ended
    return list(zip(ts, fill_quantities(take, units, scale), px, strict=True))


@dataclass(frozen=True, slots=True)
class Tradable:
    """The bars an order may take something from, in time order: inside its session, with
    a cap above 0. Their index in the bars, low, minus high (a SELL crosses where
    -high < -limit) and cap in quantity steps."""

    idx: np.ndarray
    low: np.ndarray
    neg_high: np.ndarray
    cap: np.ndarray


@functools.lru_cache(maxsize=16)
def tradable_bars(bars: Bars, participation: float, sec_type: str,
                  session: tuple[str, str] | None) -> Tradable:
    """The `Tradable` bars of an instrument, computed once per bars file and settings."""
    caps = bar_caps(bars, participation, quantity_scale(sec_type))
    ok = caps > 0
    if session is not None:
        regular = regular_bars(bars, sec_type, *session)
        if regular is not None:
            ok &= regular
    idx = np.flatnonzero(ok)
    return Tradable(idx, bars.low[idx], -bars.high[idx], caps[idx])


def bar_caps(bars: Bars, participation: float, scale: int) -> np.ndarray:
    """Per bar, the most an order may take: floor(participation x volume) in steps of
    1 / `scale`, computed exactly in decimal on the shortest text of each number (the
    float product where it is not within a hair of a step, else the decimal one)."""
    approx = participation * bars.volume * scale
    caps = np.floor(approx)
    near = np.flatnonzero(np.abs(approx - np.round(approx)) <= _NEAR_STEP * np.maximum(approx, 1))
    exact_share = Decimal(repr(participation)) * scale
    for i in near:
        caps[i] = math.floor(exact_share * Decimal(repr(float(bars.volume[i]))))
    return caps


def regular_bars(bars: Bars, sec_type: str, exchange: str, currency: str) -> np.ndarray | None:
    """Which bars start inside a regular session of the instrument (runner.hours); None
    when its calendar is not known (then every bar trades)."""
    found = sessions(sec_type, exchange, currency, bars.first_ns, int(bars.ts[-1]))
    if found is None:
        return None
    mask = np.zeros(len(bars), dtype=bool)
    for opens, closes in found:
        lo, hi = np.searchsorted(bars.ts, [opens, closes], side="left")
        mask[lo:hi] = True
    return mask


def capped_fills(
    live: Tradable, threshold: float, buy: bool, needed: int, start: int, stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bars in [start, stop) that fill and the steps each gives, until
    `needed` steps are reached (the last bar's full cap is returned; `fill_quantities` cuts it).

    A tradable bar fills when its low (a SELL: minus its high) is strictly below
    `threshold` (the limit, signed; infinite for a market order). Scans in geometrically
    growing chunks, each fully vectorised: a small order near the market finishes in the
    first chunk, and no order costs more than a handful of numpy passes over the day.
    """
    crossing = live.low if buy else live.neg_high
    lo, end = np.searchsorted(live.idx, [start, stop], side="left").tolist()
    got: list[np.ndarray] = []
    remaining, size = float(needed), _FIRST_CHUNK
    while lo < end and remaining > 0:
        hi = min(end, lo + size)
        at = lo + np.flatnonzero(crossing[lo:hi] < threshold)  # strict: a touch is no fill
        cum = np.cumsum(live.cap[at])
        k = int(np.searchsorted(cum, remaining, side="left"))
        if k < len(cum):  # this chunk completes the order at bar at[k]
            at, cum = at[: k + 1], cum[: k + 1]
        got.append(at)
        remaining -= float(cum[-1]) if len(cum) else 0.0
        lo, size = hi, size * 4
    at = np.concatenate(got) if got else np.empty(0, np.int64)
    return live.idx[at], live.cap[at]


def fill_quantities(take: np.ndarray, units: Decimal, scale: int) -> list[float]:
    """The fills' quantities from their steps: each bar's cap, except that the bar that
    completes the order gives exactly what was left (decimal: 0.5 - 0.37 is 0.13)."""
    out: list[float] = (take / scale).tolist()
    if len(take) and float(take.sum()) >= units:
        out[-1] = float((units - Decimal(int(take[:-1].sum()))) / scale)
    return out


def ioc_cancel_ns(bars: Bars | None, ack_ns: int) -> int:
    """When an IOC's unfilled rest is cancelled: end of the first bar at/after the ack."""
    if bars is None:
        return ack_ns
    start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
    return int(bars.ts[start]) + bars.interval_ns if start < len(bars) else ack_ns


@dataclass(slots=True)
class _Order:
    """One order's mutable book-keeping inside the simulator."""

    req: OrderRequest
    order_id: int
    ack_ns: int
    cutoff_ns: float = math.inf  # fills after this are dropped (cancel / expiry time)
    filled: Decimal = Decimal(0)  # summed in decimal: 0.37 + 0.13 is 0.5 exactly
    # what completes it: its qty; a cash order's fills when they spend it (else never)
    target: Decimal | None = None
    notional: float = 0.0
    done: bool = False  # FILL, CANCEL or REJ has been emitted
    cancelling: bool = False

    @property
    def perm_id(self) -> int:
        return _PERM_ID_BASE + self.order_id


@dataclass(order=True, slots=True)
class _Scheduled:
    ts_ns: int
    seq: int
    kind: Ev = field(compare=False)
    tag: str = field(compare=False)
    last_qty: float = field(default=0.0, compare=False)
    px: float = field(default=0.0, compare=False)
    message: str = field(default="", compare=False)


class SimBroker:
    """The `sim` broker (implements runner.broker.Broker) on a virtual clock."""

    name = "sim"

    def __init__(
        self, bars: Bars | None, config: SimConfig, start_ns: int, account: str = "SIM"
    ) -> None:
        self._bars = bars
        self._config = config
        self._now = int(start_ns)
        self._account = account
        self._orders: dict[str, _Order] = {}
        self._queue: list[_Scheduled] = []
        self._seq = 0

    def now_ns(self) -> int:
        return self._now

    async def connect(self) -> SessionInfo:
        return SessionInfo(accounts=(self._account,), server_time_ns=self._now)

    async def qualify(self, order: OrderRequest) -> ContractTerms | None:
        return None  # the spec's terms are the contract's

    async def close(self) -> None:
        return None

    def next_order_id(self) -> int | None:
        return len(self._orders) + 1

    async def place(self, order: OrderRequest) -> None:
        if order.tag in self._orders:
            raise ValueError(f"sim: order tag {order.tag!r} was already placed")
        ack_ns = self._now + _ms_to_ns(self._config.ack_ms)
        state = _Order(req=order, order_id=len(self._orders) + 1, ack_ns=ack_ns,
                       target=None if order.cash_qty is not None else Decimal(repr(order.qty)))
        self._orders[order.tag] = state
        if self._config.reject is not None:
            self._schedule(ack_ns, Ev.REJ, order.tag, message=self._config.reject)
            return
        self._schedule(ack_ns, Ev.ACK, order.tag)
        self._schedule_fills(state)

    async def cancel(self, tag: str) -> None:
        state = self._orders.get(tag)
        if state is None or state.done or state.cancelling or self._config.ignore_cancel:
            return
        state.cancelling = True
        at = max(self._now + _ms_to_ns(self._config.cancel_ms), state.ack_ns)
        self._cancel_at(state, at, "")

    async def lookup(self, tag: str) -> Lookup:
        state = self._orders.get(tag)
        if state is None:
            return Lookup.UNKNOWN
        return Lookup.DONE if state.done else Lookup.WORKING

    def pending(self) -> bool:
        return False  # the simulator's commissions come with their fills

    def reconnecting_now(self) -> bool:
        return False

    def missing_commissions(self) -> list[str]:
        return []

    async def next_event(self, deadline_ns: int) -> BrokerEvent | None:
        while self._queue and self._queue[0].ts_ns <= deadline_ns:
            item = heapq.heappop(self._queue)
            event = self._fire(item)
            if event is not None:
                self._now = max(self._now, item.ts_ns)
                return event
        self._now = max(self._now, deadline_ns)
        return None

    def _schedule_fills(self, state: _Order) -> None:
        req, cfg = state.req, self._config
        session = None if req.outside_rth else (req.exchange, req.currency)
        if req.cash_qty is not None:  # an order sized in money: runner.simcash's rule
            from runner.simcash import cash_fills

            fills, spent = cash_fills(self._bars, req, state.ack_ns, cfg.participation, session)
            state.target = sum((Decimal(repr(q)) for _, q, _ in fills), Decimal(0)) \
                if spent else None
            cancel = None
        elif req.order_type not in _PLAIN or req.tif in _OWN_TIFS:  # runner.simrules' rules
            from runner import simrules

            fills, cancel = simrules.schedule(self._bars, req, state.ack_ns,
                                              cfg.participation, session)
        else:
            fills, cancel = fill_schedule(
                self._bars, req.side, req.qty, req.order_type, req.limit, req.tif,
                state.ack_ns, cfg.participation, req.sec_type, session,
            ), None
        for ts_ns, qty, px in fills:
            self._schedule(ts_ns, Ev.FILL, req.tag, fill=(qty, px))
        if cancel is not None:
            self._cancel_at(state, *cancel)
        if req.tif == "IOC":
            self._cancel_at(state, ioc_cancel_ns(self._bars, state.ack_ns), "IOC: rest cancelled")
        elif req.tif == "GTD" and req.good_till_ns is not None:
            self._cancel_at(state, max(req.good_till_ns, state.ack_ns), "GTD: expired")

    def _cancel_at(self, state: _Order, at_ns: int, message: str) -> None:
        # The earliest cancel wins: a later TTL cancel never revives dropped fills.
        if at_ns < state.cutoff_ns:
            state.cutoff_ns = at_ns
            self._schedule(at_ns, Ev.CANCEL, state.req.tag, message=message)

    def _schedule(
        self, ts_ns: int, kind: Ev, tag: str, fill: tuple[float, float] = (0.0, 0.0),
        message: str = "",
    ) -> None:
        self._seq += 1
        item = _Scheduled(ts_ns, self._seq, kind, tag, fill[0], fill[1], message)
        heapq.heappush(self._queue, item)

    def _fire(self, item: _Scheduled) -> BrokerEvent | None:
        """Turn a due item into an event, or None if a cancel or completion made it moot."""
        state = self._orders[item.tag]
        if state.done or (item.kind == Ev.FILL and item.ts_ns > state.cutoff_ns):
            return None
        if item.kind == Ev.FILL:
            return self._fill_event(state, item)
        if item.kind == Ev.CANCEL and item.ts_ns != state.cutoff_ns:
            return None  # superseded by an earlier cancel
        state.done = item.kind in (Ev.REJ, Ev.CANCEL)
        return self._event(state, item.kind, item.ts_ns, message=item.message)

    def _fill_event(self, state: _Order, item: _Scheduled) -> BrokerEvent:
        state.filled += Decimal(repr(item.last_qty))
        state.notional += item.last_qty * item.px
        state.done = state.target is not None and state.filled >= state.target
        kind = Ev.FILL if state.done else Ev.PARTIAL
        return self._event(state, kind, item.ts_ns, last=(item.last_qty, item.px))

    def _event(
        self,
        state: _Order,
        kind: Ev,
        ts_ns: int,
        last: tuple[float, float] | None = None,
        message: str = "",
    ) -> BrokerEvent:
        filled, cfg = float(state.filled), self._config
        return BrokerEvent(
            kind=kind,
            ts_ns=ts_ns,
            tag=state.req.tag,
            order_id=state.order_id,
            perm_id=state.perm_id,
            fill_qty=filled,
            avg_px=state.notional / filled if filled else None,
            commission=(
                max(cfg.min_commission, cfg.commission_per_share * filled) if filled else None
            ),
            last_qty=last[0] if last else None,
            last_px=last[1] if last else None,
            message=message,
        )


def _ms_to_ns(ms: float) -> int:
    return round(ms * _NS_PER_MS)
