"""The simulator broker: fill rules, virtual clock, cancels — all hand-computed."""

from __future__ import annotations

import asyncio

import pytest

from runner.bars import BAR_NS, Bars
from runner.broker import BrokerEvent, Ev, OrderRequest
from runner.sim import SimBroker, SimConfig, fill_schedule

T0 = 1_767_623_400 * BAR_NS  # 2026-01-05T14:30:00Z
S = BAR_NS
MS = 1_000_000
END = T0 + 3600 * S  # a deadline after everything

# Six 1 s bars starting at T0. With participation 10% the per-bar caps are
# 100, 50, 200, 30, 500, 99 (floor(0.1 * 990) = 99).
BARS = Bars(
    ts=[T0 + i * S for i in range(6)],
    open=[100.00, 100.02, 100.05, 99.98, 100.10, 100.00],
    high=[100.05, 100.08, 100.10, 100.04, 100.15, 100.06],
    low=[99.97, 100.00, 99.95, 99.94, 100.05, 99.96],
    close=[100.02, 100.05, 99.98, 100.00, 100.10, 100.01],
    volume=[1000, 500, 2000, 300, 5000, 990],
)
# BUY 100.00 crosses (low < 100.00) on bars 0, 2, 3, 5; bar 1's low equals it.
# SELL 100.05 crosses (high > 100.05) on bars 1, 2, 4, 5; bar 0's high equals it.


def order(
    tag: str = "t1",
    side: str = "BUY",
    qty: float = 500,
    limit: float | None = 100.00,
    tif: str = "DAY",
    good_till_ns: int | None = None,
) -> OrderRequest:
    return OrderRequest(
        tag=tag, symbol="SPY", sec_type="STK", exchange="SMART", currency="USD", side=side,
        qty=qty, order_type="LMT" if limit is not None else "MKT", limit=limit, tif=tif,
        good_till_ns=good_till_ns,
    )


def broker(bars: Bars | None = BARS, start_ns: int = T0, **config: object) -> SimBroker:
    return SimBroker(bars, SimConfig(**config), start_ns)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def place(sim: SimBroker, *orders: OrderRequest) -> None:
    async def go() -> None:
        for o in orders:
            await sim.place(o)

    run(go())


def cancel(sim: SimBroker, tag: str = "t1") -> None:
    run(sim.cancel(tag))


def drain(sim: SimBroker, deadline_ns: int = END) -> list[BrokerEvent]:
    async def go() -> list[BrokerEvent]:
        out = []
        while (event := await sim.next_event(deadline_ns)) is not None:
            out.append(event)
        return out

    return run(go())  # type: ignore[return-value]


def brief(events: list[BrokerEvent]) -> list[tuple[str, float, float, float | None]]:
    """(event, seconds after T0, cumulative fill_qty, last_qty) — easy to write by hand."""
    return [(e.kind.value, (e.ts_ns - T0) / S, e.fill_qty, e.last_qty) for e in events]


# --- limit orders ----------------------------------------------------------------


def test_buy_limit_partials_per_bar_with_strict_cross() -> None:
    sim = broker()
    place(sim, order(qty=500))
    assert brief(drain(sim)) == [
        ("ACK", 0, 0, None),
        ("PARTIAL", 1, 100, 100),  # bar 0 ends at T0+1s
        # bar 1: low == limit, no fill
        ("PARTIAL", 3, 300, 200),
        ("PARTIAL", 4, 330, 30),
        # bar 4: low above the limit
        ("PARTIAL", 6, 429, 99),
    ]  # 429 of 500: the order stays live, never FILLs


def test_fill_event_carries_price_avg_and_cumulative_commission() -> None:
    sim = broker()
    place(sim, order(qty=250))
    ack, first, done = drain(sim)
    assert (ack.kind, ack.order_id, ack.perm_id, ack.avg_px, ack.commission) == (
        Ev.ACK, 1, 1_000_000_001, None, None
    )
    assert (first.kind, first.last_px, first.avg_px, first.commission) == (
        Ev.PARTIAL, 100.00, 100.00, 1.0  # max(1.00, 0.005 * 100 = 0.50)
    )
    assert brief([done]) == [("FILL", 3, 250, 150)]
    assert done.avg_px == 100.00
    assert done.commission == pytest.approx(1.25)  # 0.005 * 250


def test_sell_limit_needs_high_strictly_above() -> None:
    sim = broker()
    place(sim, order(side="SELL", qty=1000, limit=100.05))
    assert brief(drain(sim))[1:] == [
        ("PARTIAL", 2, 50, 50),
        ("PARTIAL", 3, 250, 200),
        ("PARTIAL", 5, 750, 500),
        ("PARTIAL", 6, 849, 99),
    ]


def test_limit_touch_only_never_fills() -> None:
    # Bar 1 alone: BUY at its low, SELL at its high — both only touch.
    one = Bars(ts=[T0], open=[100.02], high=[100.08], low=[100.00], close=[100.05],
               volume=[500])
    sim = broker(one)
    place(sim, order("b", "BUY", 10, 100.00), order("s", "SELL", 10, 100.08))
    assert [e.kind for e in drain(sim)] == [Ev.ACK, Ev.ACK]


def test_fills_only_on_bars_starting_at_or_after_the_ack() -> None:
    sim = broker(ack_ms=500)
    place(sim, order(qty=500))
    events = drain(sim)
    assert events[0].ts_ns == T0 + 500 * MS
    assert brief(events)[1:] == [("PARTIAL", 3, 200, 200), ("PARTIAL", 4, 230, 30),
                                 ("PARTIAL", 6, 329, 99)]


def test_ack_exactly_at_a_bar_start_uses_that_bar() -> None:
    sim = broker(start_ns=T0 + 2 * S)
    place(sim, order(qty=10))
    assert brief(drain(sim)) == [("ACK", 2, 0, None), ("FILL", 3, 10, 10)]


def test_bar_whose_cap_rounds_to_zero_gives_nothing() -> None:
    tiny = Bars(ts=[T0, T0 + S], open=[100.0] * 2, high=[100.1] * 2, low=[99.9] * 2,
                close=[100.0] * 2, volume=[9, 20])
    sim = broker(tiny)
    place(sim, order(qty=5, limit=100.0))
    assert brief(drain(sim))[1:] == [("PARTIAL", 2, 2, 2)]  # floor(0.9) = 0, floor(2.0) = 2


def test_participation_setting() -> None:
    sim = broker(participation=0.29)  # caps: 290, 145, 580, ...
    place(sim, order(qty=300))
    assert brief(drain(sim))[1:] == [("PARTIAL", 1, 290, 290), ("FILL", 3, 300, 10)]


def test_participation_cap_is_not_hurt_by_binary_rounding() -> None:
    # 0.29 * 100 is 28.999999999999996 in floating point; the cap is 29 shares.
    one = Bars(ts=[T0], open=[100.0], high=[100.1], low=[99.9], close=[100.0], volume=[100])
    sim = broker(one, participation=0.29)
    place(sim, order(qty=40))
    assert brief(drain(sim))[1:] == [("PARTIAL", 1, 29, 29)]


# --- market orders ---------------------------------------------------------------


def test_market_fills_whole_qty_at_next_open() -> None:
    sim = broker(start_ns=T0 + S // 2)
    place(sim, order(qty=5000, limit=None))  # 10x bar 1's volume: no cap for market
    ack, fill = drain(sim)
    assert brief([ack, fill]) == [("ACK", 0.5, 0, None), ("FILL", 1, 5000, 5000)]
    assert (fill.last_px, fill.avg_px, fill.commission) == (100.02, 100.02, 25.0)


def test_market_sell_at_bar_start_fills_at_that_open() -> None:
    sim = broker(start_ns=T0 + 3 * S)
    place(sim, order(side="SELL", qty=7, limit=None))
    events = drain(sim)
    assert brief(events) == [("ACK", 3, 0, None), ("FILL", 3, 7, 7)]
    assert events[1].last_px == 99.98


# --- IOC -------------------------------------------------------------------------


def test_ioc_partial_then_cancel_at_bar_end() -> None:
    sim = broker()
    place(sim, order(qty=150, tif="IOC"))
    events = drain(sim)
    assert brief(events) == [("ACK", 0, 0, None), ("PARTIAL", 1, 100, 100),
                             ("CANCEL", 1, 100, None)]
    assert events[-1].message == "IOC: rest cancelled"
    assert events[-1].avg_px == 100.00


def test_ioc_complete_fill_has_no_cancel() -> None:
    sim = broker()
    place(sim, order(qty=80, tif="IOC"))
    assert brief(drain(sim)) == [("ACK", 0, 0, None), ("FILL", 1, 80, 80)]


def test_ioc_no_cross_cancels_after_first_bar_only() -> None:
    # Acked at 0.5 s, the first bar is bar 1 (low == limit); bar 2 would cross but is not looked at.
    sim = broker(ack_ms=500)
    place(sim, order(qty=10, tif="IOC"))
    assert brief(drain(sim)) == [("ACK", 0.5, 0, None), ("CANCEL", 2, 0, None)]


def test_ioc_without_bars_cancels_at_ack() -> None:
    sim = broker(None)
    place(sim, order(qty=10, tif="IOC"))
    assert brief(drain(sim)) == [("ACK", 0, 0, None), ("CANCEL", 0, 0, None)]


# --- cancels, TTL and the clock -------------------------------------------------


def test_ttl_cancel_keeps_fills_up_to_the_cancel_instant() -> None:
    sim = broker()
    place(sim, order(qty=500))
    before = drain(sim, T0 + 3 * S)  # the TTL deadline
    assert sim.now_ns() == T0 + 3 * S
    cancel(sim)
    after = drain(sim)
    # The fill at exactly T0+3s is kept; the ones at 4 s and 6 s are dropped.
    assert brief(before + after) == [
        ("ACK", 0, 0, None),
        ("PARTIAL", 1, 100, 100),
        ("PARTIAL", 3, 300, 200),
        ("CANCEL", 3, 300, None),
    ]
    assert after[-1].avg_px == 100.00 and after[-1].commission == 1.5


def test_cancel_latency_lets_earlier_fills_through() -> None:
    sim = broker(cancel_ms=1500)
    place(sim, order(qty=500))
    assert len(drain(sim, T0 + 2500 * MS)) == 2  # ACK, PARTIAL at 1 s
    cancel(sim)  # at 2.5 s, effective at 4.0 s
    assert brief(drain(sim)) == [
        ("PARTIAL", 3, 300, 200),
        ("PARTIAL", 4, 330, 30),
        ("CANCEL", 4, 330, None),
    ]


def test_ack_latency() -> None:
    sim = broker(ack_ms=250)
    place(sim, order(qty=10, limit=99.00))
    assert drain(sim, T0 + 249 * MS) == []
    assert sim.now_ns() == T0 + 249 * MS
    assert brief(drain(sim)) == [("ACK", 0.25, 0, None)]


def test_cancel_before_the_ack_comes_after_it() -> None:
    sim = broker(ack_ms=1000)
    place(sim, order(qty=10, limit=99.00))
    cancel(sim)
    assert brief(drain(sim)) == [("ACK", 1, 0, None), ("CANCEL", 1, 0, None)]


def test_ignore_cancel_keeps_filling() -> None:
    sim = broker(ignore_cancel=True)
    place(sim, order(qty=500))
    drain(sim, T0 + 2 * S)
    cancel(sim)
    assert brief(drain(sim)) == [("PARTIAL", 3, 300, 200), ("PARTIAL", 4, 330, 30),
                                 ("PARTIAL", 6, 429, 99)]


def test_cancel_of_done_or_unknown_orders_emits_nothing() -> None:
    sim = broker()
    place(sim, order(qty=250))
    drain(sim)  # filled at 3 s
    cancel(sim)
    cancel(sim, "no-such-tag")
    assert drain(sim) == []


def test_second_cancel_is_a_no_op() -> None:
    sim = broker(None)
    place(sim, order())
    drain(sim, T0 + S)
    cancel(sim)
    cancel(sim)
    assert brief(drain(sim)) == [("CANCEL", 1, 0, None)]
    cancel(sim)
    assert drain(sim) == []


def test_gtd_expires_at_good_till() -> None:
    sim = broker()
    place(sim, order(qty=500, tif="GTD", good_till_ns=T0 + 2500 * MS))
    events = drain(sim)
    assert brief(events) == [("ACK", 0, 0, None), ("PARTIAL", 1, 100, 100),
                             ("CANCEL", 2.5, 100, None)]
    assert events[-1].message == "GTD: expired"


def test_reject() -> None:
    sim = broker(reject="No trading permissions", ack_ms=20)
    place(sim, order())
    events = drain(sim)
    assert brief(events) == [("REJ", 0.02, 0, None)]
    assert events[0].message == "No trading permissions"
    cancel(sim)
    assert drain(sim) == []


def test_no_bars_acks_and_never_fills() -> None:
    sim = broker(None)
    place(sim, order(limit=1_000_000.0), order("m", limit=None))
    assert brief(drain(sim, T0 + 3600 * S)) == [("ACK", 0, 0, None), ("ACK", 0, 0, None)]
    assert sim.now_ns() == T0 + 3600 * S


def test_no_bar_after_the_ack_never_fills() -> None:
    sim = broker(start_ns=T0 + 6 * S)  # the last bar started at T0+5s
    place(sim, order(qty=10, limit=200.0), order("m", limit=None))
    assert [e.kind for e in drain(sim)] == [Ev.ACK, Ev.ACK]


def test_clock_jumps_to_deadline_and_never_runs_back() -> None:
    sim = broker(start_ns=T0 + 10 * S)
    assert drain(sim, T0 + 20 * S) == []
    assert sim.now_ns() == T0 + 20 * S
    assert drain(sim, T0) == []
    assert sim.now_ns() == T0 + 20 * S


def test_orders_interleave_in_time_order() -> None:
    sim = broker()
    place(sim, order("a", "BUY", 250, 100.00), order("b", "SELL", 60, 100.05))
    events = drain(sim)
    assert [(e.tag, e.kind.value, (e.ts_ns - T0) / S, e.fill_qty) for e in events] == [
        ("a", "ACK", 0, 0),
        ("b", "ACK", 0, 0),
        ("a", "PARTIAL", 1, 100),
        ("b", "PARTIAL", 2, 50),
        ("a", "FILL", 3, 250),  # same instant: a was scheduled first
        ("b", "FILL", 3, 60),
    ]
    assert [e.order_id for e in events[:2]] == [1, 2]


def test_same_inputs_same_events() -> None:
    def scenario() -> list[BrokerEvent]:
        sim = broker(ack_ms=3, cancel_ms=7)
        place(sim, order("a", qty=500), order("b", "SELL", 1000, 100.05), order("c", limit=None))
        events = drain(sim, T0 + 4 * S)
        cancel(sim, "a")
        return events + drain(sim)

    assert scenario() == scenario()


def test_connect_reports_the_account() -> None:
    info = run(SimBroker(BARS, SimConfig(), T0, account="DU123").connect())
    assert info.accounts == ("DU123",)  # type: ignore[attr-defined]


def test_config_rejects_impossible_participation() -> None:
    with pytest.raises(ValueError, match="participation"):
        SimConfig(participation=0)


# --- the pure schedule the fake gateway reuses ------------------------------------


def test_fill_schedule_is_the_same_rule() -> None:
    assert fill_schedule(BARS, "BUY", 500, "LMT", 100.00, "DAY", T0, 0.10) == [
        (T0 + 1 * S, 100.0, 100.00),
        (T0 + 3 * S, 200.0, 100.00),
        (T0 + 4 * S, 30.0, 100.00),
        (T0 + 6 * S, 99.0, 100.00),
    ]
    assert fill_schedule(BARS, "SELL", 60, "LMT", 100.05, "IOC", T0, 0.10) == []
    assert fill_schedule(BARS, "BUY", 9, "MKT", None, "DAY", T0 + 1, 0.10) == [
        (T0 + S, 9.0, 100.02)
    ]
    assert fill_schedule(None, "BUY", 9, "MKT", None, "DAY", T0, 0.10) == []


def test_fill_schedule_spans_many_chunks() -> None:
    # 1,000 bars, only every 100th crosses: the scan must walk past several chunks.
    n = 1000
    low = [99.0 if i % 100 == 99 else 100.5 for i in range(n)]
    bars = Bars(ts=[T0 + i * S for i in range(n)], open=[101.0] * n, high=[101.0] * n,
                low=low, close=[101.0] * n, volume=[1000] * n)
    fills = fill_schedule(bars, "BUY", 950, "LMT", 100.0, "DAY", T0, 0.10)
    assert fills == [(T0 + (i + 1) * S, 100.0, 100.0) for i in range(99, 999, 100)] + [
        (T0 + 1000 * S, 50.0, 100.0)
    ]
