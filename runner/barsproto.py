"""The one bars protocol: what the engine, TCA and the live benchmarks ask of bars.

`runner.bars.Bars` (a Parquet file), `runner.livebars.Priced` and the broker's own bars
all answer it. Typing only: importable at plan time, without numpy or pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class BarsLike(Protocol):
    """Point-in-time prices: nothing after the instant asked about (runner/bars.py)."""

    def arrival_at(self, t_ns: int) -> float | None: ...

    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None: ...

    def volume_between(self, t0_ns: int, t1_ns: int) -> float: ...


class LiveBars(Protocol):
    """A run that reaches a broker: the bars as of the INTENT and after the order
    (runner/livebars.py: a growing capture file, or the broker's own bars)."""

    @property
    def path(self) -> str | None: ...  # the bars file TCA reads again, if any

    def at_intent(self, now_ns: int) -> BarsLike | None: ...

    async def after(self, intent_ns: int, end_ns: int,
                    say: Callable[[str], None]) -> BarsLike | None: ...
