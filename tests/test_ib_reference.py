"""The broker's reference price: the fake gateway serves market-data snapshots and
1-second historical bars from its bars (or a quote a test sets), and runner's ib
package reads them (`IBBroker.reference_price`).

Everything goes over 127.0.0.1: the gateway runs in its own thread (`make_gateway`),
the unmodified ib_async client (directly, or inside IBBroker) on asyncio.run in the
test's thread. Expected prices are computed by hand from the bars the test builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np
import pytest
from ib_async import IB, Stock

from runner.bars import Bars
from runner.broker import OrderRequest
from runner.errors import GatewayError
from runner.gateway import handlers
from runner.gateway.wire import ib_time
from runner.ib import IBBroker
from runner.plan import Connection

NS = 1_000_000_000
SPY = Stock("SPY", "SMART", "USD")
IB_NO_VALUES = (-1.0, 0.0, math.nan, 1.7976931348623157e308)


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


def with_broker(gw: Any, body: Callable[[IBBroker], Awaitable[Any]],
                timeout_sec: float = 3.0, symbol: str = "SPY") -> Any:
    """Connect an IBBroker to `gw`, qualify `symbol`, run `body(broker)`, close."""
    async def main() -> Any:
        broker = IBBroker(Connection("127.0.0.1", gw.port, client_id=21,
                                     timeout_sec=timeout_sec))
        await broker.connect()
        try:
            await broker.qualify(OrderRequest("ref-1", symbol, "STK", "SMART", "USD", "BUY",
                                              1, "LMT", 10.0, "DAY"))
            return await body(broker)
        finally:
            await broker.close()

    return run(main())


def reference(gw: Any, timeout_sec: float = 3.0) -> tuple[Any, float]:
    """(reference_price(), seconds it took)."""
    async def body(broker: IBBroker) -> tuple[Any, float]:
        t0 = time.perf_counter()
        got = await broker.reference_price()
        return got, time.perf_counter() - t0

    result: tuple[Any, float] = with_broker(gw, body, timeout_sec)
    return result


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
            give_up = asyncio.get_running_loop().time() + 3
            while math.isnan(ticker.close):  # the last of the four ticks
                # an update may have fired before this wait began: wait briefly, look again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ticker.updateEvent, 0.05)
                assert asyncio.get_running_loop().time() < give_up, "no close tick"
            assert (ticker.last, ticker.bid, ticker.ask) == (100.09, 100.08, 100.1)
            ib.cancelMktData(contract)
        finally:
            ib.disconnect()

    run(body())
    assert len(gw.sent_frames(1)) == 4 and gw.sent_frames(57) == []
    assert gw.wait_for(2)  # the cancel is taken (and needs no answer)


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


# ------------------------------------------------ IBBroker.reference_price


def test_with_bars_the_reference_is_the_last_ended_bar_close(make_gateway):
    bars = bars_around_now()
    gw = frozen_gateway(make_gateway, bars, 75.5)
    before = time.time_ns()
    (price, known_ns), _ = reference(gw)
    assert price == last_ended_close(bars, bars.first_ns + 75_500_000_000) == 100.74
    assert before <= known_ns <= time.time_ns()  # a snapshot is known when it arrives


def test_inside_the_first_bar_the_price_is_its_open(make_gateway):
    """A gateway just started has a last price, as real ones do: the first bar's open
    (its first trade), not its close, which is not known before the bar ends."""
    around = bars_around_now()
    bars = Bars(ts=around.ts, open=around.close - 0.02, high=around.high, low=around.low,
                close=around.close, volume=around.volume)  # open 99.98, close 100.00
    gw = frozen_gateway(make_gateway, bars, 0.5)
    (price, _), _ = reference(gw)
    assert price == 99.98
    assert gw.sent_frames(17) == []  # the snapshot answered: no historical bars asked


def test_with_bars_on_the_live_clock(make_gateway):
    bars = bars_around_now()
    gw = make_gateway(bars=bars, bars_start_ns=bars.first_ns)  # bar clock = wall clock
    before = time.time_ns()
    (price, _), _ = reference(gw)
    after = time.time_ns()
    assert price in {last_ended_close(bars, before), last_ended_close(bars, after)}


@pytest.mark.parametrize("no_value", IB_NO_VALUES)
def test_no_value_ticks_fall_back_to_the_last_one_second_bar(make_gateway, no_value):
    bars = bars_around_now()
    gw = frozen_gateway(make_gateway, bars, 75.5)
    gw.set_quote("SPY", no_value, bid=no_value, ask=no_value, close=no_value)
    (price, known_ns), _ = reference(gw)
    # by hand: bar 74 is the last that ended at 75.5 s; known at its end, 75 s
    assert (price, known_ns) == (100.74, bars.first_ns + 75 * NS)
    [(_, request)] = gw.frames(20)
    assert request[16:22] == ("1 secs", "60 S", "0", "TRADES", "2", "0")


def test_with_set_quote_only_its_midpoint_comes_first(gateway):
    gateway.set_quote("SPY", 101.23, bid=101.2, ask=101.3, close=99.0)
    before = time.time_ns()
    (price, known_ns), _ = reference(gateway)
    assert price == (101.2 + 101.3) / 2 and before <= known_ns <= time.time_ns()


@pytest.mark.parametrize("quote, want", [
    ((None, 101.2, 101.3, 99.0), 101.25),  # no last: the midpoint
    ((-1.0, 101.2, 101.3, 99.0), 101.25),  # IB's -1 last is none
    ((math.nan, 101.2, -1.0, 99.0), 99.0),  # one side missing: the close
    ((None, 101.3, 101.2, 99.0), 99.0),  # a crossed quote is no midpoint
    ((None, None, None, 98.5), 98.5),
    ((101.23, None, None, 99.0), 101.23),  # no quote: the last price
    ((101.23, 101.3, 101.2, 99.0), 101.23),  # a crossed quote: the last price
    ((None, 101.2, None, None), None),
    ((1.7976931348623157e308, 0.0, 0.0, math.nan), None),
])
def test_a_quote_without_a_last_price(gateway, quote, want):
    last, bid, ask, close = quote
    gateway.set_quote("SPY", last, bid=bid, ask=ask, close=close)
    got, _ = reference(gateway)
    assert (got[0] if got else None) == want


def test_with_neither_it_is_none_in_well_under_a_second(gateway):
    got, took = reference(gateway)
    assert got is None and took < 0.5, took
    assert sorted(f[3] for _, f in gateway.sent_frames(4) if f[2] != "-1") == ["162", "354"]


def test_no_stale_price_from_an_earlier_snapshot(gateway):
    """ib_async keeps one Ticker per contract; a later snapshot without data must not
    show the earlier one's price."""
    async def body(broker: IBBroker) -> list[Any]:
        gateway.set_quote("SPY", 100.5)
        first = await broker.reference_price()
        gateway.set_quote("SPY", None)
        second = await broker.reference_price()
        gateway.set_quote("SPY", None, bid=99.0, ask=99.5)
        third = await broker.reference_price()
        return [x[0] if x else None for x in (first, second, third)]

    assert with_broker(gateway, body) == [100.5, None, 99.25]


def test_an_unanswered_snapshot_costs_the_timeout_then_is_cancelled(gateway, monkeypatch):
    monkeypatch.setitem(handlers.HANDLERS, "1", lambda gw, session, fields: None)
    got, took = reference(gateway, timeout_sec=0.5)
    assert got is None and 0.5 <= took < 1.5, took
    [(_, cancel)] = gateway.frames(2)  # cancelMktData for the snapshot's reqId
    [(_, request)] = gateway.frames(1)
    assert cancel == ("2", "2", request[2])


def test_a_lost_connection_is_a_gateway_error(gateway):
    async def body(broker: IBBroker) -> None:
        gateway.drop_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while broker.session.connected and loop.time() < deadline:
            await asyncio.sleep(0.01)
        with pytest.raises(GatewayError, match="not connected"):
            await broker.reference_price()

    with_broker(gateway, body)


def test_reference_price_needs_a_qualified_contract():
    broker = IBBroker(Connection("127.0.0.1", 1, client_id=21))
    with pytest.raises(RuntimeError, match="qualify"):
        run(broker.reference_price())


def test_ibs_one_second_bars_of_a_thin_name_stay_one_second_bars() -> None:
    """reqHistoricalData "1 secs" leaves out seconds without trades: bars at 0, 2 and 4 s
    are 1 s bars with gaps, not 2 s bars (which would price a second late)."""
    from datetime import UTC, datetime

    from ib_async import BarData

    from runner.ib.queries import ib_bars

    t0 = 1_767_623_400
    data = [BarData(date=datetime.fromtimestamp(t0 + s, UTC), open=c, high=c, low=c, close=c,
                    volume=100.0, average=c, barCount=1)
            for s, c in ((0, 100.0), (2, 101.0), (4, 102.0))]
    bars = ib_bars(data, t0 * NS, (t0 + 10) * NS)
    assert bars is not None and bars.interval_ns == NS
    assert bars.arrival_at(t0 * NS + 3_500_000_000) == 101.0  # the 2 s bar ended at 3 s
    assert bars.last_end_ns == (t0 + 5) * NS
