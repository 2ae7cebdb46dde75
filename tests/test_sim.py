"""The simulator broker: fill rules, virtual clock, cancels — all hand-computed."""

from __future__ import annotations

import asyncio
from dataclasses import replace

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
# BUY 100.00 crosses (low < 100.00) on bars 0, 2, 3, 5; bar 1's low equals it. It is
# marketable (limit strictly above the open) on bar 3 only (open 99.98): bars 0 and 5 open
# at exactly 100.00, which is a touch, not marketable.
# SELL 100.05 crosses (high > 100.05) on bars 1, 2, 4, 5; bar 0's high equals it. It is
# marketable (limit strictly below the open) on bar 4 only (open 100.10).


def order(
    tag: str = "t1",
    side: str = "BUY",
    qty: float = 500,
    limit: float | None = 100.00,
    tif: str = "DAY",
    good_till_ns: int | None = None,
    **instrument: object,
) -> OrderRequest:
    fields: dict[str, object] = {"symbol": "SPY", "sec_type": "STK", "exchange": "SMART",
                                 "currency": "USD", **instrument}
    return OrderRequest(
        tag=tag, side=side, qty=qty, order_type="LMT" if limit is not None else "MKT",
        limit=limit, tif=tif, good_till_ns=good_till_ns, **fields,  # type: ignore[arg-type]
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
    events = drain(sim)
    assert brief(events) == [
        ("ACK", 0, 0, None),
        ("PARTIAL", 1, 100, 100),  # bar 0 ends at T0+1s
        # bar 1: low == limit, no fill
        ("PARTIAL", 3, 300, 200),  # bar 2, at its end
        ("PARTIAL", 4, 330, 30),  # bar 3 opens below the limit: at its open, at its end
        # bar 4: low above the limit
        ("PARTIAL", 6, 429, 99),
    ]  # 429 of 500: the order stays live, never FILLs
    assert [e.last_px for e in events[1:]] == [100.00, 100.00, 99.98, 100.00]


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
    events = drain(sim)
    assert brief(events)[1:] == [
        ("PARTIAL", 2, 50, 50),
        ("PARTIAL", 3, 250, 200),  # bar 2 opens at the limit: a touch, filled at the limit
        ("PARTIAL", 5, 750, 500),  # bar 4 opens above the limit: at its open 100.10, at its end
        ("PARTIAL", 6, 849, 99),
    ]
    assert [e.last_px for e in events[1:]] == [100.05, 100.05, 100.10, 100.05]


@pytest.mark.parametrize("open_px", [100.02, 100.00, 100.08])
def test_limit_touch_only_never_fills(open_px: float) -> None:
    # Bar 1 alone: BUY at its low, SELL at its high — both only touch, also when the bar
    # opens at the limit (a limit equal to the open is not marketable).
    one = Bars(ts=[T0], open=[open_px], high=[100.08], low=[100.00], close=[100.05],
               volume=[500])
    sim = broker(one)
    place(sim, order("b", "BUY", 10, 100.00), order("s", "SELL", 10, 100.08))
    assert [e.kind for e in drain(sim)] == [Ev.ACK, Ev.ACK]


def test_fills_only_on_bars_starting_at_or_after_the_ack() -> None:
    sim = broker(ack_ms=500)
    place(sim, order(qty=500))
    events = drain(sim)
    assert events[0].ts_ns == T0 + 500 * MS
    # bars 2, 3 and 5 (bar 0 started before the ack), each at its end
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


def test_market_bigger_than_the_cap_fills_bar_after_bar_at_each_open() -> None:
    sim = broker(start_ns=T0 + S // 2)
    place(sim, order(qty=5000, limit=None))  # more than bars 1..5 give: 50+200+30+500+99
    events = drain(sim)
    # at each bar's open, reported at its end: bar i at T0 + (i + 1) s
    assert brief(events) == [("ACK", 0.5, 0, None), ("PARTIAL", 2, 50, 50),
                             ("PARTIAL", 3, 250, 200), ("PARTIAL", 4, 280, 30),
                             ("PARTIAL", 5, 780, 500), ("PARTIAL", 6, 879, 99)]
    assert [e.last_px for e in events[1:]] == [100.02, 100.05, 99.98, 100.10, 100.00]
    last = events[-1]
    notional = 50 * 100.02 + 200 * 100.05 + 30 * 99.98 + 500 * 100.10 + 99 * 100.00
    assert last.avg_px == pytest.approx(notional / 879, rel=1e-12)
    assert last.commission == pytest.approx(0.005 * 879)


def test_market_order_skips_bars_that_traded_nothing() -> None:
    quiet = Bars(ts=[T0 + i * S for i in range(4)], open=[100.0, 100.1, 100.2, 100.3],
                 high=[100.5] * 4, low=[99.5] * 4, close=[100.0] * 4, volume=[0, 9, 0, 400])
    sim = broker(quiet)
    place(sim, order(qty=30, limit=None))  # caps: 0, floor(0.9) = 0, 0, 40
    events = drain(sim)
    assert brief(events) == [("ACK", 0, 0, None), ("FILL", 4, 30, 30)]  # bar 3, at its end
    assert events[-1].last_px == 100.3


def test_market_order_on_bars_that_never_trade_never_fills() -> None:
    dead = Bars(ts=[T0, T0 + S], open=[100.0] * 2, high=[100.0] * 2, low=[100.0] * 2,
                close=[100.0] * 2, volume=[0, 0])
    sim = broker(dead)
    place(sim, order(qty=1_000_000, limit=None))
    assert brief(drain(sim)) == [("ACK", 0, 0, None)]


# --- marketable limits ------------------------------------------------------------


def test_marketable_buy_limit_fills_at_the_open_within_the_cap() -> None:
    sim = broker(start_ns=T0 + 3 * S)
    place(sim, order(qty=40, limit=100.20))
    # bar 3 opens at 99.98 < 100.20: 30 (its cap) at 99.98, reported at its end (4 s); bar 4
    # opens at 100.10 < 100.20: the other 10 at 100.10, at its end (5 s)
    events = drain(sim)
    assert brief(events) == [("ACK", 3, 0, None), ("PARTIAL", 4, 30, 30), ("FILL", 5, 40, 10)]
    assert [e.last_px for e in events[1:]] == [99.98, 100.10]
    assert events[-1].avg_px == pytest.approx((30 * 99.98 + 10 * 100.10) / 40, rel=1e-12)


def test_marketable_sell_limit_fills_at_the_open() -> None:
    sim = broker(start_ns=T0 + 4 * S)
    place(sim, order(side="SELL", qty=20, limit=99.00))
    events = drain(sim)
    assert brief(events) == [("ACK", 4, 0, None), ("FILL", 5, 20, 20)]  # at bar 4's end
    assert events[-1].last_px == 100.10  # the open, better than the 99.00 limit


def test_market_sell_at_bar_start_fills_at_that_open() -> None:
    sim = broker(start_ns=T0 + 3 * S)
    place(sim, order(side="SELL", qty=7, limit=None))
    events = drain(sim)
    assert brief(events) == [("ACK", 3, 0, None), ("FILL", 4, 7, 7)]  # at bar 3's end
    assert events[1].last_px == 99.98  # bar 3's open


# --- quantity steps: whole shares for STK, 1e-8 for CASH and CRYPTO ----------------


def crypto(qty: float, limit: float | None = None) -> OrderRequest:
    return order("c1", qty=qty, limit=limit, symbol="BTC", sec_type="CRYPTO",
                 exchange="PAXOS", currency="USD")


BTC_BARS = Bars(ts=[T0, T0 + S, T0 + 2 * S], open=[90_000.0, 90_010.0, 90_020.0],
                high=[90_050.0] * 3, low=[89_950.0] * 3, close=[90_000.0] * 3,
                volume=[3.7, 3.7, 3.7])


def test_crypto_caps_are_fractional_and_exact() -> None:
    sim = broker(BTC_BARS)
    place(sim, crypto(0.5))  # 10% of 3.7 BTC = 0.37 a bar
    events = drain(sim)
    assert [(e.kind, e.last_qty, e.fill_qty) for e in events[1:]] == [
        (Ev.PARTIAL, 0.37, 0.37), (Ev.FILL, 0.13, 0.5)]
    assert [e.last_px for e in events[1:]] == [90_000.0, 90_010.0]
    assert events[-1].avg_px == pytest.approx((0.37 * 90_000 + 0.13 * 90_010) / 0.5, rel=1e-12)


def test_a_fractional_cap_floors_to_the_step() -> None:
    # 10% of 0.123456789 is 0.0123456789: floored to 1e-8 steps, 0.01234567 a bar.
    fine = Bars(ts=[T0, T0 + S], open=[100.0] * 2, high=[101.0] * 2, low=[99.0] * 2,
                close=[100.0] * 2, volume=[0.123456789] * 2)
    assert fill_schedule(fine, "BUY", 0.02, "MKT", None, "DAY", T0, 0.10, "CRYPTO") == [
        (T0 + S, 0.01234567, 100.0), (T0 + 2 * S, 0.00765433, 100.0)]  # at each bar's end


def test_fx_caps_are_fractional_too() -> None:
    fx = Bars(ts=[T0], open=[1.1], high=[1.2], low=[1.0], close=[1.1], volume=[12_345.5])
    assert fill_schedule(fx, "SELL", 5000, "MKT", None, "DAY", T0, 0.10, "CASH") == [
        (T0 + S, 1234.55, 1.1)]  # at the bar's end


def test_stock_caps_stay_whole_shares() -> None:
    assert fill_schedule(BTC_BARS, "BUY", 0.5, "MKT", None, "DAY", T0, 0.10, "STK") == []


# --- bar length --------------------------------------------------------------------


def test_five_second_bars_are_judged_by_their_real_length() -> None:
    five = Bars(ts=[T0, T0 + 5 * S], open=[100.0, 100.0], high=[100.5] * 2, low=[99.5] * 2,
                close=[100.0] * 2, volume=[1000, 1000], interval_ns=5 * S)
    sim = broker(five)
    place(sim, order(qty=150, limit=100.00, tif="IOC"), order("t2", qty=150, limit=99.90))
    assert [(e.tag, *brief([e])[0]) for e in drain(sim)] == [
        ("t1", "ACK", 0, 0, None), ("t2", "ACK", 0, 0, None),
        ("t1", "PARTIAL", 5, 100, 100),  # known when the bar has ended, 5 s after its start
        ("t1", "CANCEL", 5, 100, None),  # the IOC's rest, at the first bar's end
        ("t2", "PARTIAL", 5, 100, 100),  # same instant: scheduled after t1's
        ("t2", "FILL", 10, 150, 50),
    ]


# --- regular trading hours (runner.hours) -------------------------------------------

CLOSE = T0 + (6 * 3600 + 30 * 60) * S  # 2026-01-05 16:00:00 New York
# 15:59:55 .. 16:00:09: nothing trades below 100.00 before the close, everything after
AROUND_CLOSE = Bars(ts=[CLOSE + i * S for i in range(-5, 10)], open=[100.5] * 15,
                    high=[101.0] * 15, low=[100.5] * 5 + [99.5] * 10, close=[100.5] * 15,
                    volume=[1000] * 15)


def test_bars_after_the_close_do_not_fill_without_outside_rth() -> None:
    sim = broker(AROUND_CLOSE, start_ns=CLOSE - 5 * S)  # a DAY order at 15:59:55
    place(sim, order(qty=150, limit=100.00), order("m", qty=10, limit=None))
    # the market order fills at 15:59:55's open; the limit never crosses before 16:00, and
    # the bars after it (the 10 s TTL runs to 16:00:05) do not count
    assert [(e.tag, e.kind) for e in drain(sim, CLOSE + 5 * S)] == [
        ("t1", Ev.ACK), ("m", Ev.ACK), ("m", Ev.FILL)]


def test_bars_after_the_close_fill_with_outside_rth() -> None:
    sim = broker(AROUND_CLOSE, start_ns=CLOSE - 5 * S)
    place(sim, replace(order(qty=150, limit=100.00), outside_rth=True))
    close = (CLOSE - T0) / S
    assert brief(drain(sim, CLOSE + 5 * S)) == [
        ("ACK", close - 5, 0, None),  # 15:59:55
        ("PARTIAL", close + 1, 100, 100),  # the 16:00:00 bar, at its end
        ("FILL", close + 2, 150, 50),
    ]


def test_a_pre_market_market_order_waits_for_the_open() -> None:
    early = Bars(ts=[T0 - 2 * S, T0 - S, T0], open=[99.0, 99.5, 100.0], high=[101.0] * 3,
                 low=[98.0] * 3, close=[100.0] * 3, volume=[1000] * 3)
    sim = broker(early, start_ns=T0 - 2 * S)  # 09:29:58
    place(sim, order(qty=10, limit=None))
    events = drain(sim)
    assert brief(events) == [("ACK", -2, 0, None), ("FILL", 1, 10, 10)]  # 09:30:00's end
    assert events[-1].last_px == 100.0  # 09:30:00's open


def test_an_early_close_ends_the_trading_at_13_00() -> None:
    early = 1_795_802_399 * S  # 2026-11-27 12:59:59 EST (17:59:59Z), the day after Thanksgiving
    bars = Bars(ts=[early, early + S, early + 2 * S], open=[100.0] * 3, high=[101.0] * 3,
                low=[99.0] * 3, close=[100.0] * 3, volume=[0, 1000, 1000])
    sim = broker(bars, start_ns=early)
    place(sim, order(qty=10, limit=None), replace(order("x", qty=10, limit=None),
                                                  outside_rth=True))
    # 12:59:59 traded nothing; from 13:00 only the outside_rth order trades (the 13:00:00
    # bar, reported at its end, 13:00:01)
    assert [(e.tag, e.kind, (e.ts_ns - early) / S) for e in drain(sim, early + 10 * S)] == [
        ("t1", Ev.ACK, 0), ("x", Ev.ACK, 0), ("x", Ev.FILL, 2)]


def test_an_unknown_calendar_trades_every_bar() -> None:
    sim = broker(AROUND_CLOSE, start_ns=CLOSE - 5 * S)
    place(sim, order(qty=150, limit=100.00, exchange="TSE", currency="CAD"))
    assert [e.kind for e in drain(sim, CLOSE + 5 * S)] == [Ev.ACK, Ev.PARTIAL, Ev.FILL]


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
    # The fill at exactly T0+3s (bar 2's end) is kept; bar 3's (at its open, reported at its
    # end, 4 s) and bar 5's (6 s) are dropped: bar 3 had not ended when the cancel came.
    assert brief(before + after) == [
        ("ACK", 0, 0, None),
        ("PARTIAL", 1, 100, 100),
        ("PARTIAL", 3, 300, 200),
        ("CANCEL", 3, 300, None),
    ]
    assert after[-1].avg_px == pytest.approx((100 * 100.00 + 200 * 100.00) / 300, rel=1e-12)
    assert after[-1].commission == pytest.approx(0.005 * 300)


def test_cancel_latency_lets_earlier_fills_through() -> None:
    sim = broker(cancel_ms=1500)
    place(sim, order(qty=500))
    assert len(drain(sim, T0 + 2500 * MS)) == 2  # ACK, PARTIAL at 1 s
    cancel(sim)  # at 2.5 s, effective at 4.0 s
    assert brief(drain(sim)) == [
        ("PARTIAL", 3, 300, 200),
        ("PARTIAL", 4, 330, 30),  # bar 3's end, the cancel's instant: kept, before it
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
        (T0 + 4 * S, 30.0, 99.98),  # bar 3, at its open, reported at its end
        (T0 + 6 * S, 99.0, 100.00),
    ]
    assert fill_schedule(BARS, "SELL", 60, "LMT", 100.05, "IOC", T0, 0.10) == []
    assert fill_schedule(BARS, "BUY", 9, "MKT", None, "DAY", T0 + 1, 0.10) == [
        (T0 + 2 * S, 9.0, 100.02)  # bar 1 (the first to start after the ack), at its end
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
