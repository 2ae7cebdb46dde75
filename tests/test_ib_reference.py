"""The broker's reference price: the fake gateway serves market-data snapshots and
1-second historical bars from its bars (or a quote a test sets).

Everything goes over 127.0.0.1: the gateway runs in its own thread (`make_gateway`),
the unmodified ib_async client on asyncio.run in the
test's thread. Expected prices are computed by hand from the bars the test builds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest
from ib_async import IB, Stock

from runner.bars import Bars
from runner.gateway.wire import ib_time

NS = 1_000_000_000
SPY = Stock("SPY", "SMART", "USD")


def bars_around_now(n: int = 120, back_s: int = 60) -> Bars:
    """`n` one-second bars from `back_s` s ago (whole seconds); closes 100.00, 100.01, ..."""
    first = (time.time_ns() // NS - back_s) * NS
    close = np.round(100 + np.arange(n) * 0.01, 2)
    return Bars(ts=first + np.arange(n, dtype=np.int64) * NS, open=close, high=close + 0.05,
                low=close - 0.05, close=close, volume=1000.0 + np.arange(n))


def frozen_gateway(make_gateway: Callable[..., Any], bars: Bars, at_s: float) -> Any:
    """A gateway with `bars` whose clock stands still `at_s` s after the first bar's start
    (the bar clock starts with the first bar, so bar time = wall time)."""
    now = bars.first_ns + round(at_s * NS)
    return make_gateway(bars=bars, bars_start_ns=bars.first_ns, clock=lambda: now)


def last_ended_close(bars: Bars, now_ns: int) -> float:
    """By hand: the close of the last bar that ended (ts + 1 s) at or before now."""
    return float(bars.close[bars.ts + NS <= now_ns][-1])


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connected_ib(gw: Any) -> tuple[IB, Any]:
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=9, timeout=3)
    [contract] = await ib.qualifyContractsAsync(SPY)
    return ib, contract


# ------------------------------------------------ the gateway, decoded by ib_async itself


def test_a_snapshot_from_the_bars_is_decoded_into_a_ticker(make_gateway):
    bars = bars_around_now()
    gw = frozen_gateway(make_gateway, bars, 75.5)
    last = last_ended_close(bars, bars.first_ns + 75_500_000_000)
    assert last == 100.74  # bar 74 [74 s, 75 s) is the last ended at 75.5 s

    async def body() -> None:
        ib, contract = await connected_ib(gw)
        try:
            [ticker] = await asyncio.wait_for(ib.reqTickersAsync(contract), 3)
        finally:
            ib.disconnect()
        assert (ticker.last, ticker.bid, ticker.ask, ticker.close) == (100.74, 100.73,
                                                                      100.75, 100.74)
        assert (ticker.lastSize, ticker.bidSize, ticker.askSize) == (1074, 100, 100)
        assert (ticker.minTick, ticker.marketDataType) == (0.01, 1)

    run(body())
    [(_, end)] = gw.sent_frames(57)
    ticks = [f for _, f in gw.sent_frames(1)]
    assert end == ("57", "1", ticks[0][2])
    assert [(f[3], f[4]) for f in ticks] == [("4", "100.74"), ("1", "100.73"),
                                             ("2", "100.75"), ("9", "100.74")]
    assert {len(f) for f in ticks} == {7}  # ib_async unpacks exactly 7 fields
    [(_, request)] = gw.frames(1)
    assert len(request) == 20 and request[17] == "1"  # snapshot=1


def test_a_streaming_request_gets_the_ticks_once_and_no_snapshot_end(make_gateway):
    bars = bars_around_now()
    gw = frozen_gateway(make_gateway, bars, 10.2)

    async def body() -> None:
        ib, contract = await connected_ib(gw)
        try:
            ticker = ib.reqMktData(contract)
            while math.isnan(ticker.close):  # the last of the four ticks
                await asyncio.wait_for(ticker.updateEvent, 3)
            assert (ticker.last, ticker.bid, ticker.ask) == (100.09, 100.08, 100.1)
            ib.cancelMktData(contract)
            await asyncio.sleep(0.1)
        finally:
            ib.disconnect()

    run(body())
    assert len(gw.sent_frames(1)) == 4 and gw.sent_frames(57) == []
    assert gw.frames(2)  # the cancel is taken (and needs no answer)


def test_historical_one_second_bars_are_decoded_into_bar_data(make_gateway):
    bars = bars_around_now()
    gw = frozen_gateway(make_gateway, bars, 75.5)
    now = bars.first_ns + 75_500_000_000

    async def body() -> tuple[list[Any], list[Any], list[Any]]:
        ib, contract = await connected_ib(gw)
        try:
            recent = await ib.reqHistoricalDataAsync(contract, "", "60 S", "1 secs", "TRADES",
                                                     useRTH=False, formatDate=2, timeout=3)
            dated = await ib.reqHistoricalDataAsync(contract, "", "5 S", "1 secs", "TRADES",
                                                    useRTH=False, formatDate=1, timeout=3)
            end = ib_time(bars.first_ns + 30 * NS)  # "yyyyMMdd HH:MM:SS UTC"
            earlier = await ib.reqHistoricalDataAsync(contract, end, "10 S", "1 secs",
                                                      "TRADES", useRTH=False, formatDate=2,
                                                      timeout=3)
        finally:
            ib.disconnect()
        return list(recent), list(dated), list(earlier)

    recent, dated, earlier = run(body())
    # by hand: bars that started at or after now - 60 s and ended at or before now
    want = [i for i in range(len(bars))
            if bars.ts[i] >= now - 60 * NS and bars.ts[i] + NS <= now]
    assert want == list(range(16, 75))
    assert [b.close for b in recent] == [float(bars.close[i]) for i in want]
    assert [int(b.date.timestamp()) * NS for b in recent] == [int(bars.ts[i]) for i in want]
    b = recent[-1]
    assert (b.open, b.high, b.low, b.close, b.volume, b.average, b.barCount) == (
        100.74, float(bars.high[74]), float(bars.low[74]), 100.74, 1074.0, 100.74, 1)
    assert [int(x.date.timestamp()) * NS for x in dated] == [int(bars.ts[i])
                                                             for i in range(71, 75)]
    assert dated[-1].date.tzinfo is not None  # `... UTC` dates are read with their zone
    assert [x.close for x in earlier] == [float(bars.close[i]) for i in range(20, 30)]
    [(_, first_request)] = gw.frames(20)[:1]
    assert len(first_request) == 23 and first_request[16:22] == (
        "1 secs", "60 S", "0", "TRADES", "2", "0")
    reply = gw.sent_frames(17)[0][1]
    assert len(reply) == 5 + 8 * len(want)


@pytest.mark.parametrize("bar_size, what, keep", [("5 secs", "TRADES", False),
                                                  ("1 secs", "MIDPOINT", False),
                                                  ("1 secs", "TRADES", True)])
def test_other_historical_requests_get_162_at_once(make_gateway, bar_size, what, keep):
    gw = frozen_gateway(make_gateway, bars_around_now(), 75.5)

    async def body() -> float:
        ib, contract = await connected_ib(gw)
        try:
            t0 = time.perf_counter()
            got = await ib.reqHistoricalDataAsync(contract, "", "60 S", bar_size, what,
                                                  useRTH=False, keepUpToDate=keep, timeout=3)
            assert list(got) == []
            return time.perf_counter() - t0
        finally:
            ib.disconnect()

    assert run(body()) < 0.5
    assert [f[3] for _, f in gw.sent_frames(4) if f[3] == "162"] == ["162"]


def test_without_bars_or_quote_354_and_162_end_the_waits_at_once(gateway):
    async def body() -> float:
        ib, contract = await connected_ib(gateway)
        try:
            t0 = time.perf_counter()
            [ticker] = await asyncio.wait_for(ib.reqTickersAsync(contract), 3)
            bars = await ib.reqHistoricalDataAsync(contract, "", "60 S", "1 secs", "TRADES",
                                                   useRTH=False, timeout=3)
            assert math.isnan(ticker.last) and list(bars) == []
            return time.perf_counter() - t0
        finally:
            ib.disconnect()

    assert run(body()) < 0.5
    assert sorted(f[3] for _, f in gateway.sent_frames(4) if f[2] != "-1") == ["162", "354"]


def test_set_quote_is_what_a_snapshot_shows_and_none_brings_354_back(gateway):
    gateway.set_quote("spy", 412.5, bid=412.49, ask=412.52)

    async def body() -> tuple[Any, Any]:
        ib, contract = await connected_ib(gateway)
        try:
            [first] = await ib.reqTickersAsync(contract)
            seen = (first.last, first.bid, first.ask, first.close)
            gateway.set_quote("SPY", None)
            [again] = await ib.reqTickersAsync(contract)
            return seen, again.last
        finally:
            ib.disconnect()

    seen, later = run(body())
    assert seen[:3] == (412.5, 412.49, 412.52) and math.isnan(seen[3])  # no close given
    assert [f[3] for _, f in gateway.sent_frames(4) if f[3] == "354"] == ["354"]
    assert len(gateway.sent_frames(57)) == 1


def test_set_quote_refuses_what_is_not_a_number(gateway):
    with pytest.raises(ValueError, match="last must be a number"):
        gateway.set_quote("SPY", "100")
    with pytest.raises(ValueError, match="bid must be a number"):
        gateway.set_quote("SPY", 100.0, bid=True)
