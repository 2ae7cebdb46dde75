"""Live bars and the arrival from IB (issue 13): a run that reaches a broker reads its bars
file again at the INTENT and after the order, refuses a stale one, and with
`arrival: broker` takes the arrival and the post-trade bars from IB.

Everything goes over 127.0.0.1: the project's fake gateway in its own thread, runner (with
the unmodified ib_async client) in-process through `runner.cli.main` (the `cli` fixture).
Expected figures are computed here, by hand, from the bars the test writes and the fills
the gateway made.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.bars import Bars
from runner.gateway import Ack, Fill
from runner.ledger import read_ledger

NS = 1_000_000_000
PLACE = 3  # TWS API message id: placeOrder
ORDER = "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, tif: DAY}\n"
LIMIT, QTY = 100.00, 25  # under every open, over every low: 10 a bar (10 % of 100) at the limit


def market(first_ns: int, n: int) -> Bars:
    """`n` one-second bars from `first_ns`: closes 100.00 .. 100.06 in a cycle, a vwap half
    a cent below the close, lows 99.90 (under LIMIT), volume 100."""
    close = np.round(100 + (np.arange(n) % 7) * 0.01, 2)
    return Bars(ts=first_ns + np.arange(n, dtype=np.int64) * NS, open=close + 0.02,
                high=close + 0.2, low=np.full(n, 99.9), close=close, volume=np.full(n, 100.0),
                vwap=close - 0.005)


def write_atomic(path: Path, bars: Bars, upto: int) -> None:
    """The first `upto` bars to `path` as a capture writes: a temp file, then os.replace."""
    cols = {"ts": pa.array(bars.ts[:upto], pa.timestamp("ns", tz="UTC"))}
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        cols[name] = pa.array(getattr(bars, name)[:upto])
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, path)


class Capture:
    """A thread that keeps a bars file growing: bar i is published half a second before
    it starts (ts - 0.5 s, a capture of forming bars, a little ahead), so the file always
    holds every bar that has ended — and at least one that has not, which the arrival must
    not use (no look-ahead)."""

    def __init__(self, path: Path, bars: Bars) -> None:
        self.path, self.bars = path, bars
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def published(self, wall_ns: int) -> int:
        return int(np.searchsorted(self.bars.ts - NS // 2, wall_ns, side="right"))

    def _run(self) -> None:
        shown = 0
        while not self.stop.is_set():
            upto = self.published(time.time_ns())
            if upto != shown:
                write_atomic(self.path, self.bars, upto)
                shown = upto
            self.stop.wait(0.02)

    def __enter__(self) -> Capture:
        write_atomic(self.path, self.bars, self.published(time.time_ns()))
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def order_rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    table = read_ledger(tmp_path / "data" / "exec")
    return [r for r in table.to_pylist() if r["tag"] == tag]


def by_event(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["event"]: r for r in rows}


def hand_tca(ts: np.ndarray, bars: Bars, intent_ns: int, end_ns: int, arrival: float,
             fills: list[tuple[float, float]]) -> dict[str, float]:
    """DESIGN §6 by hand for a BUY of QTY: bars overlapping [INTENT, end), bar i starting
    at `ts[i]` (the clock the figures are judged on)."""
    filled = sum(q for q, _ in fills)
    avg = sum(q * p for q, p in fills) / filled
    life = (ts + NS > intent_ns) & (ts < end_ns)
    volume = float(bars.volume[life].sum())
    vwap = float((bars.vwap[life] * bars.volume[life]).sum()) / volume
    end_px = float(bars.close[ts + NS <= end_ns][-1])
    is_bps = (filled * (avg - arrival) + (QTY - filled) * (end_px - arrival)) \
        / (QTY * arrival) * 1e4
    return {"avg_px": avg, "fill_qty": filled, "vwap_px": vwap,
            "participation": filled / volume, "shortfall_bps": (avg - arrival) / arrival * 1e4,
            "vwap_slippage_bps": (avg - vwap) / vwap * 1e4, "is_bps": is_bps}


def assert_figures(snap: dict[str, Any], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert snap[key] == pytest.approx(value, abs=1e-9), key


def gateway_fills(gw: Any, tag: str) -> list[tuple[float, float]]:
    return [(e.shares, e.price) for e in gw.executions if e.order_ref == tag]


# ---------------------------------------------------------- a capture that keeps growing


@pytest.fixture
def live_market() -> Bars:
    """Bars on the wall clock: 30 s ago .. 60 s ahead (whole seconds)."""
    return market((time.time_ns() // NS - 30) * NS, 90)


def test_a_growing_capture_prices_the_intent_and_the_whole_order(
        make_gateway, cli, tmp_path, live_market):
    bars = live_market
    gw = make_gateway(bars=bars, bars_start_ns=bars.first_ns)  # bar clock = wall clock
    with Capture(tmp_path / "bars.parquet", bars):
        code, out, err = cli(gw.port, "one-shot", "--qty", str(QTY), "--limit", str(LIMIT),
                             "--ttl_sec", "2.2", "--tag", "live-1",
                             "--bars_path", "bars.parquet")
        intent = order_rows(tmp_path, "live-1")[0]
        # the capture publishes each bar 0.5 s before it starts, so at the INTENT the file
        # held a bar that had not ended: the arrival check below proves it was not used
    assert code == 0, out + err
    rows = order_rows(tmp_path, "live-1")
    events = [r["event"] for r in rows]
    assert events[0] == "INTENT" and events[-2:] == ["CANCEL", "PNL_SNAPSHOT"], events
    intent_ns, end_ns = intent["ts"].value, by_event(rows)["CANCEL"]["ts"].value
    arrival = float(bars.close[bars.ts + NS <= intent_ns][-1])
    assert intent["arrival_px"] == arrival
    assert (intent["arrival_source"], intent["bars_path"]) == ("bars", "bars.parquet")
    fills = gateway_fills(gw, "live-1")
    assert fills and all(p == LIMIT for _, p in fills)
    want = hand_tca(bars.ts, bars, intent_ns, end_ns, arrival, fills)
    snap = by_event(rows)["PNL_SNAPSHOT"]
    assert snap["arrival_px"] == arrival and 0 < want["fill_qty"] < QTY
    assert_figures(snap, want)


def test_bars_ending_yesterday_refuse_a_live_run_before_connecting(
        make_gateway, cli, tmp_path):
    first = (time.time_ns() // NS - 86_400) * NS
    yesterday = market(first, 60)
    write_atomic(tmp_path / "old.parquet", yesterday, 60)
    gw = make_gateway()
    before = time.time_ns()
    code, out, err = cli(gw.port, "one-shot", "--qty", "1", "--limit", "10.00",
                         "--tag", "stale-1", "--bars_path", "old.parquet")
    after = time.time_ns()
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1, err
    from runner.plan import iso

    last_end = iso(first + 60 * NS)
    assert err.startswith(f"runner: old.parquet: stale bars for a live run: its last bar "
                          f"ends at {last_end}, more than 5 s before now ("), err
    shown_now = err.split("before now (")[1].split(")")[0]
    assert iso(before)[:19] <= shown_now[:19] <= iso(after)[:19]
    assert "nothing was sent" in err and "--arrival broker" in err  # a classic command: its flag
    assert [f for _, f in gw.received if f[0] == str(PLACE)] == []
    assert gw.received == []  # not even connected
    assert not (tmp_path / "data").exists()  # no ledger


def refused_before_connecting(gw: Any, tmp_path: Path, code: int, out: str, err: str,
                              why: str) -> None:
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and why in err and "nothing was sent" in err, err
    assert gw.received == []  # not even connected
    assert not (tmp_path / "data").exists()  # no ledger


def test_a_capture_an_hour_ahead_of_now_is_refused(make_gateway, cli, tmp_path):
    """Naive local times (UTC+1) read as UTC: the file's last bar is "now" an hour early,
    so its past would price the order (and the collar). It must not pass as fresh."""
    now_s = time.time_ns() // NS
    ahead = market((now_s - 3600 + 3600) * NS, 60)  # the last hour, stamped an hour late
    write_atomic(tmp_path / "cet.parquet", ahead, 60)
    gw = make_gateway()
    code, out, err = cli(gw.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--tag", "ahead-1", "--bars_path", "cet.parquet")
    refused_before_connecting(gw, tmp_path, code, out, err, "is its clock or time zone wrong?")


def test_daily_bars_are_refused_for_a_live_arrival(make_gateway, cli, tmp_path):
    day = 86_400 * NS
    daily = market((time.time_ns() // day - 5) * day, 6)  # the last bar: today, from 00:00
    daily = Bars(ts=daily.ts[0] + np.arange(6, dtype=np.int64) * day, open=daily.open,
                 high=daily.high, low=daily.low, close=daily.close, volume=daily.volume,
                 vwap=daily.vwap)
    write_atomic(tmp_path / "daily.parquet", daily, 6)
    gw = make_gateway()
    code, out, err = cli(gw.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--tag", "daily-1", "--bars_path", "daily.parquet")
    refused_before_connecting(gw, tmp_path, code, out, err,
                              "its bars are 86400 s bars; a live arrival needs bars of at "
                              "most 60 s")


def test_a_capture_that_stopped_before_the_intent_refuses_the_order(
        make_gateway, cli, tmp_path, monkeypatch):
    """Fresh at the preflight, stale at the INTENT (an earlier document of the file ran
    first): the second order is not sent, and no INTENT of it is written."""
    import runner.livebars

    monkeypatch.setattr(runner.livebars, "CAPTURE_LAG_SEC", 0.5)  # lag: max(2 bars, 0.5 s)
    bars = market((time.time_ns() // NS - 20) * NS, 20)  # its last bar ended just now
    write_atomic(tmp_path / "bars.parquet", bars, 20)
    gw = make_gateway()
    gw.script("first-1", [Ack()])
    doc = ("version: 1\nkind: one-shot\norder: {{symbol: SPY, side: BUY, qty: 1, "
           "limit: 99.00, tif: DAY, tag: {tag}}}\nttl_sec: {ttl}\n{extra}")
    (tmp_path / "two.yaml").write_text(
        doc.format(tag="first-1", ttl=3, extra="") + "---\n"
        + doc.format(tag="second-1", ttl=1, extra="bars_path: bars.parquet\n"),
        encoding="utf-8")
    code, out, err = cli(gw.port, "run", "two.yaml")
    assert code == 2, out + err
    assert "bars.parquet: stale bars for a live run: its last bar ends at" in err, err
    tags = {r["tag"] for r in read_ledger(tmp_path / "data" / "exec").to_pylist()}
    assert tags == {"first-1"}  # the second order has no row: it was never sent
    placed = [f for _, f in gw.received if f[0] == str(PLACE)]
    assert len(placed) == 1


def test_a_capture_that_stops_is_waited_for_bounded_then_used_as_it_is(
        make_gateway, cli, tmp_path):
    bars = market((time.time_ns() // NS - 20) * NS, 20)  # its last bar ended just now
    write_atomic(tmp_path / "bars.parquet", bars, 20)
    gw = make_gateway()
    gw.script("stop-1", [Ack(), Fill(5, 100.04, commission=1.0)])
    t0 = time.monotonic()
    code, out, err = cli(gw.port, "one-shot", "--qty", "10", "--limit", "100.10",
                         "--ttl_sec", "0.5", "--tag", "stop-1", "--bars_path", "bars.parquet")
    took = time.monotonic() - t0
    assert code == 0, out + err
    rows = order_rows(tmp_path, "stop-1")
    intent, end = rows[0], by_event(rows)["CANCEL"]
    iso_last = __import__("runner.plan", fromlist=["iso"]).iso(bars.last_end_ns)
    lines = [x for x in err.splitlines() if "bars.parquet" in x]
    assert len(lines) == 2, err
    assert lines[0].startswith("runner: stop-1: waiting up to 5 s for bars.parquet to cover "
                               "the order's end (")
    assert lines[1].startswith(f"runner: stop-1: bars.parquet still ends at {iso_last}, "
                               "before the order's end (")
    assert lines[1].endswith("after 5 s: VWAP, participation and the IS end price use the "
                             "bars up to then")
    assert 5.0 <= took < 5.0 + 0.5 + 3.0  # the bound, the TTL and the run itself
    snap = by_event(rows)["PNL_SNAPSHOT"]
    arrival = float(bars.close[-1])
    assert intent["arrival_px"] == arrival == snap["arrival_px"]
    # no bar of the file overlaps the order's life: no VWAP, no participation; the IS end
    # price is the last bar's close (the last that ended by the end)
    assert snap["vwap_px"] is None and snap["participation"] is None
    assert end["fill_qty"] == 5
    assert snap["is_bps"] == pytest.approx(
        (5 * (100.04 - arrival) + 5 * (arrival - arrival)) / (10 * arrival) * 1e4, abs=1e-9)


def test_a_capture_file_removed_after_the_order_costs_only_the_new_bars(
        make_gateway, cli, tmp_path):
    bars = market((time.time_ns() // NS - 20) * NS, 20)
    path = tmp_path / "bars.parquet"
    write_atomic(path, bars, 20)
    gw = make_gateway()
    gw.script("gone-1", [Ack(), Fill(5, 100.04, commission=1.0)])

    def remove_once_cancelled() -> None:  # the order is over once its cancel is sent
        gw.wait_for(4, timeout=10.0)
        path.unlink()

    remover = threading.Thread(target=remove_once_cancelled, daemon=True)
    remover.start()
    code, out, err = cli(gw.port, "one-shot", "--qty", "10", "--limit", "100.10",
                         "--ttl_sec", "0.5", "--tag", "gone-1", "--bars_path", "bars.parquet")
    remover.join()
    assert code == 0, out + err
    assert "runner: gone-1: bars.parquet: the bars file went away during the run (No such " \
           "file or directory); TCA uses the bars as read before" in err.splitlines()
    snap = by_event(order_rows(tmp_path, "gone-1"))["PNL_SNAPSHOT"]
    arrival = float(bars.close[-1])
    assert snap["arrival_px"] == arrival
    assert snap["shortfall_bps"] == pytest.approx((100.04 - arrival) / arrival * 1e4, abs=1e-9)


# ----------------------------------------------------------------- arrival: broker


def spec(path: Path, tag: str, qty: int, limit: float, ttl: float,
         bars_path: str | None = None) -> Path:
    extra = f"bars_path: {bars_path}\n" if bars_path else ""
    path.write_text(f"version: 1\nkind: one-shot\narrival: broker\n{extra}order:\n"
                    f"  symbol: SPY\n  side: BUY\n  qty: {qty}\n  limit: {limit:.2f}\n"
                    f"  tif: DAY\n  tag: {tag}\nttl_sec: {ttl}\n", encoding="utf-8")
    return path


@pytest.fixture
def sample_day() -> Iterator[Bars]:
    """Bars of another day (2026-01-05 14:30 UTC on), as `runner gateway --bars F` serves."""
    yield market(1_767_623_400 * NS, 600)


def test_arrival_broker_is_the_gateways_price_on_its_bar_clock(make_gateway, cli, tmp_path,
                                                                sample_day):
    bars = sample_day
    now = (time.time_ns() // NS) * NS
    start = now - 75_500_000_000  # the bar clock started 75.5 s ago: bar now = first + 75.5 s
    gw = make_gateway(bars=bars, bars_start_ns=start, clock=lambda: now)
    spec(tmp_path / "b.yaml", "brk-1", 1, 1.00, 0.3, bars_path=None)
    code, out, err = cli(gw.port, "run", "b.yaml")
    assert code == 0, out + err
    intent = order_rows(tmp_path, "brk-1")[0]
    bar_now = bars.first_ns + (now - start)
    by_hand = float(bars.close[bars.ts + NS <= bar_now][-1])  # bar 74 ended at 75 s
    assert by_hand == float(bars.close[74])
    assert intent["arrival_px"] == by_hand
    assert (intent["arrival_source"], intent["bars_path"]) == ("broker", None)


def test_arrival_broker_prices_the_order_with_the_gateways_bars(make_gateway, cli, tmp_path,
                                                                 sample_day):
    """`runner gateway --bars F` and a spec with `bars_path: F` (for its dry runs) and
    `arrival: broker`: F is of another day, so only the gateway's clock can price it."""
    bars = sample_day
    write_atomic(tmp_path / "day.parquet", bars, len(bars))
    start = (time.time_ns() // NS - 30) * NS  # bar i starts at wall start + i s
    gw = make_gateway(bars=bars, bars_start_ns=start)
    spec(tmp_path / "b.yaml", "brk-2", QTY, LIMIT, 2.2, bars_path="day.parquet")
    before = time.time_ns()
    code, out, err = cli(gw.port, "run", "b.yaml")
    assert code == 0, out + err
    rows = order_rows(tmp_path, "brk-2")
    intent, snap = rows[0], by_event(rows)["PNL_SNAPSHOT"]
    intent_ns, end_ns = intent["ts"].value, by_event(rows)["CANCEL"]["ts"].value
    wall = start + (bars.ts - bars.first_ns)  # the gateway's bar clock, on the wall
    # the snapshot was asked between the start of the run and the INTENT
    seen = {float(bars.close[wall + NS <= t][-1]) for t in range(before, intent_ns + 1,
                                                                  10_000_000)}
    assert intent["arrival_px"] in seen
    assert (intent["arrival_source"], intent["bars_path"]) == ("broker", None)
    fills = gateway_fills(gw, "brk-2")
    assert fills and all(p == LIMIT for _, p in fills)
    want = hand_tca(wall, bars, intent_ns, end_ns, intent["arrival_px"], fills)
    assert 0 < want["fill_qty"] < QTY
    assert_figures(snap, want)


def test_arrival_broker_without_ib_bars_gives_a_line_and_null_figures(make_gateway, cli,
                                                                      tmp_path):
    gw = make_gateway()  # no bars: snapshots from a set quote, historical data 162
    gw.set_quote("SPY", 100.02, bid=100.0, ask=100.02, close=99.0)
    gw.script("brk-3", [Ack(), Fill(4, 100.05, commission=1.0)])
    spec(tmp_path / "b.yaml", "brk-3", 10, 100.10, 0.5)
    code, out, err = cli(gw.port, "run", "b.yaml")
    assert code == 0, out + err
    rows = order_rows(tmp_path, "brk-3")
    intent, snap = rows[0], by_event(rows)["PNL_SNAPSHOT"]
    assert intent["arrival_px"] == 100.01  # the midpoint first
    assert "no 1-second bars from IB for the order's life" in err
    assert snap["vwap_px"] is None and snap["participation"] is None
    assert snap["shortfall_bps"] == pytest.approx((100.05 - 100.01) / 100.01 * 1e4, abs=1e-9)


def test_a_dry_run_with_arrival_broker_prices_with_its_bars(cli, tmp_path, sample_day):
    write_atomic(tmp_path / "day.parquet", sample_day, 600)
    spec(tmp_path / "b.yaml", "dry-1", 1, 1.00, 1, bars_path="day.parquet")
    code, out, err = cli(4002, "run", "b.yaml", "--dry-run")  # nothing is contacted
    assert code == 0, out + err
    intent = order_rows(tmp_path, "dry-1")[0]
    first_end = sample_day.first_ns + NS  # the dry run's clock starts as the first bar ends
    assert intent["ts"].value == first_end
    assert intent["arrival_px"] == float(sample_day.close[0])
    assert (intent["arrival_source"], intent["bars_path"]) == ("bars", "day.parquet")


@pytest.mark.parametrize("text, line", [
    ("kind: one-shot\narrival: bars\n" + ORDER,
     "x.yaml:3:10: arrival: 'bars' needs bars_path (add bars_path, or use arrival: broker)"),
    ("kind: one-shot\narrival: ib\n" + ORDER,
     "x.yaml:3:10: arrival: 'ib' is not one of bars, broker"),
    ("kind: handshake\narrival: broker\n",
     "x.yaml:3:1: arrival: not used by kind handshake; remove it"),
])
def test_the_arrival_key_is_checked(text, line, tmp_path, monkeypatch, capsys):
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text("version: 1\n" + text, encoding="utf-8")
    assert main(["validate", "x.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]

