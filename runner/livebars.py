"""The benchmarks of a run that reaches a broker: bars that keep arriving.

A live bars file is a capture that keeps growing. Before connecting it must reach now
(`check_fresh`: it may lag by the capture tolerance, no more); at the INTENT it is read
again (`FileBars.at_intent`) so the arrival is the close of the last bar that ended by
then; after the order ends it is read again, waiting (bounded) until it covers the
order's end, for VWAP, participation and the IS end price (`FileBars.after`).

With `arrival: broker` the arrival is the broker's price (the snapshot the gates asked
for) and the post-trade bars are IB's own 1-second bars over the order's life
(`BrokerBars.after`). Every wait here is bounded; what is missing gives one line and
null figures, never a failure exit.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.errors import DataError
from runner.plan import iso

if TYPE_CHECKING:
    from runner.bars import Bars
    from runner.barsproto import BarsLike

NS = 1_000_000_000
CAPTURE_LAG_SEC = 5.0  # a capture may lag now by max(2 bars, this) and still be live
LIVE_MAX_INTERVAL_SEC = 60  # a live arrival from coarser bars would be that stale
CATCH_UP_SEC = 3.0  # after the order: wait for the file up to 2 bars + this
POLL_SEC = 0.25  # how often a file that has not caught up is read again


def capture_lag_ns(bars: Bars) -> int:
    """How far a live capture's last bar may end before now: max(2 bars, 5 s)."""
    return max(2 * int(bars.interval_ns), int(CAPTURE_LAG_SEC * NS))


def catch_up_ns(bars: Bars) -> int:
    """How long, at most, the file is waited for after the order: 2 bars + 3 s."""
    return 2 * int(bars.interval_ns) + int(CATCH_UP_SEC * NS)


def check_fresh(path: str, bars: Bars, now_ns: int) -> None:
    """A run that reaches a broker and takes its arrival from the bars needs bars covering
    now, else DataError (exit 2): bars of at most LIVE_MAX_INTERVAL_SEC, the first bar
    started by now, the last one ended no more than the capture lag ago and started no
    later than one bar after now (a later one means the file's clock or time zone is
    wrong: such bars would price the order with the past). (With `arrival: broker` the
    file is the dry run's.)"""
    lag = capture_lag_ns(bars)
    interval = int(bars.interval_ns)
    if interval > LIVE_MAX_INTERVAL_SEC * NS:
        cause = (f"its bars are {interval / NS:g} s bars; a live arrival needs bars of at "
                 f"most {LIVE_MAX_INTERVAL_SEC} s")
    elif bars.first_ns > now_ns:
        cause = f"its first bar starts at {iso(bars.first_ns)}, after now ({iso(now_ns)})"
    elif bars.last_end_ns + lag < now_ns:
        cause = (f"its last bar ends at {iso(bars.last_end_ns)}, more than {lag / NS:g} s "
                 f"before now ({iso(now_ns)})")
    elif int(bars.ts[-1]) > now_ns + interval:
        cause = (f"its last bar starts at {iso(int(bars.ts[-1]))}, after now "
                 f"({iso(now_ns)}): is its clock or time zone wrong? (naive timestamps "
                 "are read as UTC)")
    else:
        return
    raise DataError(f"{path}: stale bars for a live run: {cause}; nothing was sent",
                    "point bars_path at today's capture, drop it, or use arrival: broker "
                    "(also the way to rehearse against `runner gateway --bars FILE`)")


def _stamp(path: str) -> tuple[int, int, int]:
    """What changes when a capture rewrites the file (temp file + os.replace)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"{path}: the bars file went away during the run ({e.strerror})",
                        "keep the capture's file in place while runs use it") from None
    return st.st_ino, st.st_mtime_ns, st.st_size


class FileBars:
    """A bars capture on disk, read again whenever it changed."""

    def __init__(self, path: str, bars: Bars, load: Callable[[], Bars]) -> None:
        self.path = path
        self.load = load
        self.bars = bars  # the preflight read
        self.stamp: tuple[int, int, int] | None = None  # the file when last read by us

    def at_intent(self, now_ns: int) -> Bars:
        """The file as it is now (read again: ~2.5 ms for a day of bars, taken before the
        INTENT's timestamp), so the arrival sees every bar the capture has written; still
        fresh at `now_ns` (`check_fresh`: a capture that stopped after the preflight must
        not price the order), else DataError and nothing is sent."""
        bars = self._read()
        check_fresh(self.path, bars, now_ns)
        return bars

    def _read(self) -> Bars:
        """Read the file again unless it is unchanged since our last read (one stat)."""
        stamp = _stamp(self.path)
        if stamp != self.stamp:
            self.bars, self.stamp = self.load(), stamp
        return self.bars

    def _reread(self, say: Callable[[str], None]) -> Bars | None:
        """After the order: a file gone or broken now costs the figures it would add,
        never the run: None, said in a line (the caller keeps the last good read)."""
        try:
            return self._read()
        except DataError as e:
            say(f"{e.message}; TCA uses the bars as read before")
            return None

    async def after(self, intent_ns: int, end_ns: int,
                    say: Callable[[str], None]) -> Bars:
        """The file once it covers the order's end (a bar that ended at or after
        `end_ns`), waiting at most `catch_up_ns`; else what it holds then, said in a
        line."""
        bars = self._reread(say)
        if bars is None or bars.last_end_ns >= end_ns:
            return self.bars
        bound = catch_up_ns(bars)
        say(f"waiting up to {bound / NS:g} s for {self.path} to cover the order's end "
            f"({iso(end_ns)}; it ends at {iso(bars.last_end_ns)})")
        give_up = time.monotonic_ns() + bound
        while bars.last_end_ns < end_ns and time.monotonic_ns() < give_up:
            await asyncio.sleep(POLL_SEC)
            if self._reread(say) is None:
                return self.bars
            bars = self.bars
        if bars.last_end_ns < end_ns:
            say(f"{self.path} still ends at {iso(bars.last_end_ns)}, before the order's end "
                f"({iso(end_ns)}), after {bound / NS:g} s: VWAP, participation and the IS "
                "end price use the bars up to then")
        return bars


class BrokerBars:
    """`arrival: broker`: no file; the post-trade bars are the broker's (IB's 1-second
    TRADES bars over the order's life, `IBBroker.order_bars`)."""

    path = None  # no bars file: the INTENT row's bars_path stays empty

    def __init__(self, fetch: Callable[[int, int], Awaitable[Bars | None]]) -> None:
        self.fetch = fetch

    def at_intent(self, now_ns: int) -> None:
        return None  # the arrival is the broker's price, asked before the INTENT

    async def after(self, intent_ns: int, end_ns: int,
                    say: Callable[[str], None]) -> Bars | None:
        """IB's bars from the INTENT to the end of the bar holding the order's end; None
        (said in a line) if IB gave none in time."""
        try:
            bars = await self.fetch(intent_ns, end_ns)
        except DataError as e:
            bars, why = None, f" ({e.message})"
        else:
            why = ""
        if bars is None:
            say(f"no 1-second bars from IB for the order's life ({iso(intent_ns)} .. "
                f"{iso(end_ns)}){why}: VWAP, participation and the IS end price are null")
        return bars


@dataclass(frozen=True, slots=True)
class Priced:
    """What TCA prices an order with: the arrival the INTENT row carries (whatever its
    source: bars or broker), every later price from `bars` (none without them)."""

    intent_ns: int
    arrival_px: float
    bars: BarsLike | None

    def arrival_at(self, t_ns: int) -> float | None:
        if t_ns == self.intent_ns:
            return self.arrival_px
        return self.bars.arrival_at(t_ns) if self.bars is not None else None

    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None:
        return self.bars.vwap_between(t0_ns, t1_ns) if self.bars is not None else None

    def volume_between(self, t0_ns: int, t1_ns: int) -> float:
        return self.bars.volume_between(t0_ns, t1_ns) if self.bars is not None else 0.0
