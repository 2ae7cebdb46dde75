"""The dry-run broker: a virtual clock and deterministic fills from 1 s bars.

Rules (DESIGN §5; the README copies them):

- Clock. Virtual, in ns, starting at `start_ns`. `next_event(deadline)` jumps
  to the next scheduled event at or before the deadline, or to the deadline
  itself. It never sleeps and never reads the wall clock; it never runs back.
- Bars. A bar's `ts` is its start; the bar is known once it has ended (ts + 1 s).
- Ack. `place` at clock t acknowledges at t + `ack_ms` (order ids 1, 2, 3…).
  With `reject: "reason"` the order is rejected at that time instead (REJ,
  message = the reason) and nothing else happens.
- Which bars. Fills are judged only on bars that START at or after the ack.
- Limit. A BUY fills on a bar whose low is strictly below the limit (a SELL:
  high strictly above); touching the limit is not enough. The fill is at the
  limit price, at most floor(participation × bar volume) shares per bar (a bar
  whose cap rounds to 0 gives nothing), so big orders fill in PARTIALs. It is
  reported when the bar has ended: event ts = bar ts + 1 s.
- Market. The whole quantity at the open of the first bar starting at or after
  the ack, event ts = that bar's ts. No participation cap for market orders.
- IOC. Only the first bar at/after the ack counts; what it gives is filled and
  the rest is cancelled at that bar's end. An IOC with no bar to trade against
  is cancelled at its ack.
- GTD (the TTL backstop). The order is cancelled at `good_till_ns` if still live.
- Cancel. `cancel` at clock t cancels at t + `cancel_ms` (never before the ack),
  carrying the quantity filled so far. Fills scheduled at or before that time
  still happen first; later ones never do. Cancelling an order that is filled,
  cancelled, rejected, already being cancelled or unknown does nothing. With
  `ignore_cancel` the cancel is swallowed and the order keeps filling.
- Commission. Cumulative, max(min_commission, commission_per_share × filled).
- No bars (or none after the ack): the order is acknowledged and never fills.
- Events of all live orders come out in (ts, sequence) order, so equal times
  keep the order in which they were scheduled (ack before fills, fills before
  a cancel at the same instant).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from runner.bars import BAR_NS, Bars
from runner.broker import BrokerEvent, Ev, Lookup, OrderRequest, SessionInfo

Fill = tuple[int, float, float]  # (event ts ns, last_qty, px)

# floor(0.29 * 100) would be 28 in binary floating point; this nudge makes it 29.
_CAP_EPS = 1e-9
_FIRST_CHUNK = 64  # bars scanned first; each further chunk is 4x bigger
_PERM_ID_BASE = 1_000_000_000
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The `sim:` block of a spec."""

    reject: str | None = None
    ack_ms: float = 0
    cancel_ms: float = 0
    ignore_cancel: bool = False
    participation: float = 0.10
    commission_per_share: float = 0.005
    min_commission: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.participation <= 1:
            raise ValueError(f"participation must be in (0, 1], got {self.participation}")
        if self.ack_ms < 0 or self.cancel_ms < 0:
            raise ValueError("ack_ms and cancel_ms must be >= 0")


def fill_schedule(
    bars: Bars | None,
    side: str,
    qty: float,
    order_type: str,
    limit: float | None,
    tif: str,
    ack_ns: int,
    participation: float,
) -> list[Fill]:
    """The fills an order acknowledged at `ack_ns` gets, in time order, per the module rules.

    Pure: the same inputs give the same list. Cancels (IOC remainder, TTL, GTD)
    are not applied here; the caller truncates the list at the cancel time.
    """
    if bars is None or qty <= 0:
        return []
    start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
    if start == len(bars):
        return []
    if order_type == "MKT":
        return [(int(bars.ts[start]), float(qty), float(bars.open[start]))]
    if limit is None:
        raise ValueError(f"{order_type} order without a limit price")
    stop = start + 1 if tif == "IOC" else len(bars)
    idx, take = _limit_fills(bars, side, float(qty), limit, start, stop, participation)
    ends = bars.ts[idx] + BAR_NS
    return [(int(t), float(q), float(limit)) for t, q in zip(ends, take, strict=True)]


def _limit_fills(
    bars: Bars, side: str, qty: float, limit: float, start: int, stop: int, participation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bars that fill and the shares each gives, until `qty` is done.

    Scans in geometrically growing chunks, each fully vectorised: a small order
    near the market finishes in the first chunk, and no order costs more than
    a handful of numpy passes over the day.
    """
    crossing = bars.low if side == "BUY" else bars.high
    sign = 1.0 if side == "BUY" else -1.0
    got_idx: list[np.ndarray] = []
    got_qty: list[np.ndarray] = []
    remaining, lo, size = qty, start, _FIRST_CHUNK
    while lo < stop and remaining > 0:
        hi = min(stop, lo + size)
        # BUY: low < limit; SELL: high > limit, i.e. -high < -limit. Strict both ways.
        idx = lo + np.flatnonzero(sign * crossing[lo:hi] < sign * limit)
        cap = np.floor(participation * bars.volume[idx] + _CAP_EPS)
        idx, cap = idx[cap > 0], cap[cap > 0]
        cum = np.cumsum(cap)
        k = int(np.searchsorted(cum, remaining, side="left"))
        if k < len(cum):  # this chunk completes the order at bar idx[k]
            cap = cap[: k + 1].copy()
            cap[k] = remaining - (cum[k - 1] if k else 0.0)
            idx = idx[: k + 1]
        got_idx.append(idx)
        got_qty.append(cap)
        remaining -= float(cap.sum())
        lo, size = hi, size * 4
    if not got_idx:
        return np.empty(0, np.int64), np.empty(0)
    return np.concatenate(got_idx), np.concatenate(got_qty)


def ioc_cancel_ns(bars: Bars | None, ack_ns: int) -> int:
    """When an IOC's unfilled rest is cancelled: end of the first bar at/after the ack."""
    if bars is None:
        return ack_ns
    start = int(np.searchsorted(bars.ts, ack_ns, side="left"))
    return int(bars.ts[start]) + BAR_NS if start < len(bars) else ack_ns


@dataclass(slots=True)
class _Order:
    """One order's mutable book-keeping inside the simulator."""

    req: OrderRequest
    order_id: int
    ack_ns: int
    cutoff_ns: float = math.inf  # fills after this are dropped (cancel / expiry time)
    filled: float = 0.0
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

    async def qualify(self, order: OrderRequest) -> None:
        return None

    async def close(self) -> None:
        return None

    def next_order_id(self) -> int | None:
        return len(self._orders) + 1

    async def place(self, order: OrderRequest) -> None:
        if order.tag in self._orders:
            raise ValueError(f"sim: order tag {order.tag!r} was already placed")
        ack_ns = self._now + _ms_to_ns(self._config.ack_ms)
        state = _Order(req=order, order_id=len(self._orders) + 1, ack_ns=ack_ns)
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
        fills = fill_schedule(
            self._bars, req.side, req.qty, req.order_type, req.limit, req.tif,
            state.ack_ns, cfg.participation,
        )
        for ts_ns, qty, px in fills:
            self._schedule(ts_ns, Ev.FILL, req.tag, fill=(qty, px))
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
        state.filled += item.last_qty
        state.notional += item.last_qty * item.px
        state.done = state.filled >= state.req.qty
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
        filled, cfg = state.filled, self._config
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
