"""TCA arithmetic (runner/tca.py) on real bars (runner.bars.load_bars over a Parquet file
the test writes), and `runner tca` (runner/report.py) over ledgers the tests build.
Every expected number is worked out here from the bars and rows the test made."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from runner import arrowtext, report
from runner.bars import Bars, load_bars
from runner.cli import main
from runner.jsondoc import BPS, MONEY, PRICE, RATIO
from runner.ledger import Ledger, read_ledger, rows_to_table
from runner.tca import glob_regex, order_table, snapshot, totals

S = 1_000_000_000
T0 = 1_767_623_400 * S  # 2026-01-05 14:30:00 UTC, the first bar's start


def write_bars(path: Path, close: list[float], volume: list[float]) -> Path:
    """1 s bars from T0, high/low 0.05 either side of the close, open = high (so a BUY
    limit below the high is never marketable at the open); no vwap column: the VWAP
    benchmark uses the closes."""
    c = np.array(close)
    pq.write_table(pa.table({
        "ts": pa.array([T0 + i * S for i in range(len(close))], pa.timestamp("ns", tz="UTC")),
        "open": c + 0.05, "high": c + 0.05, "low": c - 0.05, "close": c,
        "volume": np.array(volume, dtype=float),
    }), path)  # fmt: skip
    return path


CLOSE = [100.00, 100.10, 100.20, 100.05, 99.90]
VOLUME = [1000, 2000, 500, 1500, 1000]


@pytest.fixture
def bars(tmp_path: Path) -> Bars:
    return load_bars(write_bars(tmp_path / "bars.parquet", CLOSE, VOLUME))


# The product's window rule (runner/bars.py): arrival at t = close of the last bar that
# ENDED at or before t (bar i ends at T0 + (i+1) s); VWAP and volume over [t0, t1) take
# every bar that overlaps it: ts + 1 s > t0 and ts < t1.
INTENT = T0 + 2_500_000_000  # bars 0 and 1 have ended: arrival = CLOSE[1] = 100.10
END = T0 + 4_200_000_000  # overlapping [INTENT, END): bars 2 (2-3 s), 3 (3-4 s), 4 (4-5 s)
ARRIVAL = 100.10
END_PX = 100.05  # the last bar ended by END is bar 3
WINDOW_VOLUME = 500 + 1500 + 1000
VWAP = (100.20 * 500 + 100.05 * 1500 + 99.90 * 1000) / WINDOW_VOLUME  # 100.025


def approx(x: float) -> Any:
    return pytest.approx(x, rel=0, abs=1e-9)


def to(decimals: int, x: float) -> Any:
    """x as `--json` gives it: rounded to `decimals` (runner.jsondoc.DECIMALS)."""
    return pytest.approx(x, rel=0, abs=0.5 * 10.0**-decimals)


def test_the_window_rule_the_product_implements(bars: Bars) -> None:
    assert bars.arrival_at(T0 + 2 * S) == 100.10  # bar 1 ended at exactly 2 s: known
    assert bars.arrival_at(T0 + 2 * S - 1) == 100.00  # 1 ns earlier it had not
    assert bars.arrival_at(T0 + S - 1) is None  # no bar has ended yet
    assert bars.vwap_between(INTENT, END) == approx(VWAP)  # 100.025
    assert bars.volume_between(INTENT, END) == WINDOW_VOLUME == 3000
    # A window of no length is the instant: the one bar containing it (bar 2).
    assert bars.vwap_between(INTENT, INTENT) == 100.20
    assert bars.volume_between(INTENT, INTENT) == 500


def test_buy_partly_filled(bars: Bars) -> None:
    got = snapshot("BUY", 10, 6, 100.12, 1.2, INTENT, INTENT + 300_000_000, END, bars)
    assert got == {
        "arrival_px": ARRIVAL,
        "avg_px": 100.12,
        "fill_qty": 6,
        "fill_ratio": approx(0.6),
        "shortfall_bps": approx(0.02 / 100.10 * 1e4),  # 1.998 bps paid over arrival
        "vwap_px": approx(100.025),
        "vwap_slippage_bps": approx((100.12 - 100.025) / 100.025 * 1e4),
        # 6 filled 0.02 above arrival, 4 unfilled while the price fell 0.05: a net gain
        "is_bps": approx((6 * 0.02 + 4 * (END_PX - ARRIVAL)) / (10 * 100.10) * 1e4),
        "fees_bps": approx(1.2 / (6 * 100.12) * 1e4),
        "participation": approx(6 / 3000),
        "ms_to_first_fill": approx(300.0),
        "ms_to_done": approx(1700.0),
        "commission": 1.2,
    }


def test_sell_costs_are_positive_when_selling_below_the_benchmark(bars: Bars) -> None:
    got = snapshot("SELL", 10, 10, 100.00, None, INTENT, INTENT + 1, END, bars)
    assert got is not None
    assert got["shortfall_bps"] == approx(0.10 / 100.10 * 1e4)  # sold 0.10 below arrival
    assert got["vwap_slippage_bps"] == approx(0.025 / 100.025 * 1e4)
    assert got["is_bps"] == approx(10 * 0.10 / (10 * 100.10) * 1e4)  # all filled: IS = shortfall
    assert got["fill_ratio"] == 1.0 and got["fees_bps"] is None and got["commission"] is None
    assert got["participation"] == approx(10 / 3000)
    assert got["ms_to_first_fill"] == approx(1e-6)


def test_an_order_of_no_length_is_judged_on_the_bar_it_lived_in(bars: Bars) -> None:
    got = snapshot("BUY", 4, 4, 100.2, None, INTENT, INTENT, INTENT, bars)
    assert got is not None
    assert got["vwap_px"] == 100.20 and got["vwap_slippage_bps"] == approx(0.0)
    assert got["participation"] == approx(4 / 500)
    assert got["ms_to_done"] == 0.0 and got["ms_to_first_fill"] == 0.0


@pytest.mark.parametrize(
    "args, with_bars",
    [
        (("BUY", 10, 6, 100.12, None, INTENT, None, END), False),  # no bars
        (("BUY", 10, 0, None, None, INTENT, None, END), True),  # nothing filled
        (("BUY", 10, 2, 100.0, None, T0 + 900_000_000, None, END), True),  # no bar ended yet
        (("BUY", 10, 2, None, None, INTENT, None, END), True),  # no average price
    ],
)
def test_no_snapshot_without_a_fill_and_an_arrival(
    args: tuple[Any, ...], with_bars: bool, bars: Bars
) -> None:
    assert snapshot(*args, bars if with_bars else None) is None


def test_figures_that_need_bars_after_the_file_ends_are_none(bars: Bars) -> None:
    # INTENT at 6 s, after the last bar (4-5 s) ended: arrival = its close, 99.90; no bar
    # overlaps the order's life, so no VWAP and no volume; first fill unknown.
    intent = T0 + 6 * S
    got = snapshot("BUY", 4, 4, 100.0, None, intent, None, intent + 100_000_000, bars)
    assert got is not None
    assert got["arrival_px"] == 99.90
    assert got["vwap_px"] is None and got["vwap_slippage_bps"] is None
    assert got["participation"] is None and got["ms_to_first_fill"] is None
    assert got["is_bps"] == approx(4 * 0.10 / (4 * 99.90) * 1e4)
    assert got["ms_to_done"] == approx(100.0)


# ----------------------------------------------------------------------------- per order


def order_rows(currency: str | None = "USD") -> list[dict[str, Any]]:
    def row(i: int, run: str, tag: str, event: str, **kw: Any) -> dict[str, Any]:
        return {"ts": T0 + i * S, "run_id": run, "seq": i, "tag": tag, "event": event,
                "currency": currency, **kw}  # fmt: skip

    a = {"symbol": "SPY", "side": "BUY", "qty": 10.0}
    b = {"symbol": "QQQ", "side": "SELL", "qty": 5.0}
    return [
        row(1, "r1", "A", "INTENT", **a, arrival_px=99.9),
        row(2, "r1", "A", "ACK", **a),
        row(3, "r1", "B", "INTENT", **b),
        row(4, "r1", "A", "PARTIAL", fill_qty=4.0, avg_px=100.0, commission=0.4),
        row(5, "r1", "A", "FILL", fill_qty=10.0, avg_px=100.02, commission=1.0),
        row(6, "r1", "A", "PNL_SNAPSHOT", arrival_px=100.0, shortfall_bps=2.0,
            vwap_px=100.01, vwap_slippage_bps=1.0, is_bps=2.0, fees_bps=10.0,
            participation=0.1, ms_to_first_fill=3000.0, ms_to_done=4000.0, fill_qty=10.0),
        row(7, "r1", "B", "PARTIAL", fill_qty=2.0, avg_px=400.0, commission=0.5),
        row(8, "r1", "B", "CANCEL", fill_qty=2.0),
        row(9, "r1", "B", "PNL_SNAPSHOT", shortfall_bps=-3.0, arrival_px=399.0, is_bps=5.0,
            fees_bps=6.25, fill_qty=2.0),
        row(10, "r2", "A", "INTENT", symbol="SPY", side="BUY", qty=1.0),  # same tag, new run
        row(11, "r2", "A", "REJ", message="201 - no margin"),
        row(12, "r2", "C", "INTENT", symbol="SPY", side="BUY", qty=1.0),
        row(13, "r2", "C", "ACK"),
    ]  # fmt: skip


def order(run: str, tag: str, sym: str, side: str, qty: float, state: str, fill: float,
          **figures: Any) -> dict[str, Any]:  # fmt: skip
    none = dict.fromkeys(("avg_px", "arrival_px", "vwap_px", "shortfall_bps",
                          "vwap_slippage_bps", "is_bps", "fees_bps", "participation",
                          "ms_to_first_fill", "ms_to_done", "commission"))  # fmt: skip
    return {"run_id": run, "tag": tag, "symbol": sym, "local_symbol": None, "expiry": None,
            "strike": None, "right": None, "side": side, "currency": "USD",
            "qty": qty, "cash_qty": None, "multiplier": None, "state": state, "fill_qty": fill,
            "fill_ratio": fill / qty, **none, **figures}  # fmt: skip


EXPECTED_ORDERS = [
    order("r1", "A", "SPY", "BUY", 10.0, "FILL", 10.0, avg_px=100.02, arrival_px=100.0,
          vwap_px=100.01, shortfall_bps=2.0, vwap_slippage_bps=1.0, is_bps=2.0, fees_bps=10.0,
          participation=0.1, ms_to_first_fill=3000.0, ms_to_done=4000.0, commission=1.0),
    order("r1", "B", "QQQ", "SELL", 5.0, "CANCEL", 2.0, avg_px=400.0, arrival_px=399.0,
          shortfall_bps=-3.0, is_bps=5.0, fees_bps=6.25, commission=0.5),
    order("r2", "A", "SPY", "BUY", 1.0, "REJ", 0.0),
    order("r2", "C", "SPY", "BUY", 1.0, "OPEN", 0.0),
]  # fmt: skip
# Filled notional: A 10 x 100.02 = 1000.2, B 2 x 400 = 800: the weights of the bps totals.
EXPECTED_TOTALS = {
    "currency": "USD",
    "orders": 4,
    "filled_orders": 2,
    "fill_qty": 12.0,
    "notional": approx(1000.2 + 800.0),
    "commission": approx(1.5),
    "shortfall_bps": approx((1000.2 * 2.0 + 800 * -3.0) / 1800.2),
    "vwap_slippage_bps": approx(1.0),  # only A has one
    "is_bps": approx((1000.2 * 2.0 + 800 * 5.0) / 1800.2),
    "fees_bps": approx((1000.2 * 10.0 + 800 * 6.25) / 1800.2),
}


def test_order_table_and_notional_weighted_totals() -> None:
    orders = order_table(rows_to_table(order_rows()))
    assert orders.to_pylist() == EXPECTED_ORDERS
    assert totals(orders, "USD") == EXPECTED_TOTALS


def test_order_table_takes_rows_in_any_order() -> None:
    rows = order_rows()
    shuffled = [rows[i] for i in np.random.default_rng(7).permutation(len(rows))]
    orders = order_table(rows_to_table(shuffled))
    assert orders.to_pylist() == EXPECTED_ORDERS
    assert totals(orders, "USD") == EXPECTED_TOTALS


def test_totals_of_nothing() -> None:
    assert totals(order_table(rows_to_table([])), "EUR") == {
        "currency": "EUR", "orders": 0, "filled_orders": 0, "fill_qty": 0.0, "notional": 0.0,
        "commission": 0.0, "shortfall_bps": None, "vwap_slippage_bps": None, "is_bps": None,
        "fees_bps": None,
    }  # fmt: skip


# ----------------------------------------------------------------------------- report


def write_day(out: Path, day: str = "2026-01-05", rows: list[dict[str, Any]] | None = None,
              run_id: str = "r1") -> None:  # fmt: skip
    with Ledger(out, day, run_id) as ledger:
        for r in rows if rows is not None else order_rows():
            if r["run_id"] == "r1":
                ledger.append({k: v for k, v in r.items() if k not in ("run_id", "seq")})


def test_tca_report_text(tmp_path: Path) -> None:
    write_day(tmp_path)
    out = io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "tag", "run", "symbol", "side", "state", "fill/qty", "fill", "avg_px", "arrival",
        "vwap", "short", "vwsl", "is", "fees", "part", "s1st", "sdone", "comm",
    ]  # fmt: skip
    assert lines[1].split() == [  # prices and money to the cent at least, as recorded
        "A", "r1", "SPY", "BUY", "FILL", "10/10", "100%", "100.02", "100.00", "100.01", "2.0",
        "1.0", "2.0", "10.0", "10.0%", "3.0", "4.0", "1.00",
    ]  # fmt: skip
    assert lines[2].split() == [
        "B", "r1", "QQQ", "SELL", "CANCEL", "2/5", "40%", "400.00", "399.00", "—", "-3.0",
        "—", "5.0", "6.2", "—", "—", "—", "0.50",
    ]  # fmt: skip  (6.25 rounds half to even: 6.2)
    assert lines[1].index("SPY") == lines[0].index("symbol") == lines[2].index("QQQ")  # aligned
    assert lines[1].index("FILL") == lines[0].index("state")
    assert all(len(line) <= 120 for line in lines[:3])
    short, is_, fees = ((1000.2 * a + 800 * b) / 1800.2 for a, b in ((2, -3), (2, 5), (10, 6.25)))
    assert lines[3] == (
        "TOTAL USD orders=2 filled=2 fill_qty=12 notional=1800.20 comm=1.50 "
        f"bps: short={short:.1f} vwsl=1.0 is={is_:.1f} fees={fees:.1f}"
    )
    assert len(lines) == 4


def test_tca_report_json(tmp_path: Path) -> None:
    write_day(tmp_path)
    out = io.StringIO()
    path = str(tmp_path / "2026-01-05" / "ledger.parquet")
    assert report.tca_report(path, "x", True, out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["version"] == 2
    assert [o["tag"] for o in doc["orders"]] == ["A", "B"]
    assert doc["orders"][1] == EXPECTED_ORDERS[1]
    [usd] = doc["totals"]
    assert usd["currency"] == "USD"
    assert usd["shortfall_bps"] == to(BPS, (1000.2 * 2.0 - 800 * 3.0) / 1800.2)


def test_tca_report_with_no_ledger_exits_2(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out, err=err) == 2
    assert err.getvalue() == (
        f"runner: no ledger events found at {tmp_path} "
        "(give a ledger file, a date YYYY-MM-DD, or --out-dir)\n"
    )


# ----------------------------------------------------------------------------- a real run


def test_tca_json_of_a_dry_run_carries_every_figure(tmp_path: Path, monkeypatch, capsys) -> None:
    # BUY 1,000 at 100.12, TTL 3 s, on bars whose lows are close - 0.05 and whose opens
    # (close + 0.05) are all above the limit. The simulator (DESIGN §5): the INTENT is at
    # 1 s (the first bar has ended: arrival = its close, 100.00); bar 1 (low 100.05 <
    # 100.12) fills 10% of its 2,000 = 200 at the limit, at its end (2 s); bars 2, 3 and
    # 4 (lows 100.15, 100.20, 100.25; bar 4 starts at the cancel) do not trade; the TTL
    # cancels at 4 s. Commission
    # max(1.00, 0.005 x 200) = 1.00.
    monkeypatch.chdir(tmp_path)
    write_bars(tmp_path / "bars.parquet", [100.00, 100.10, 100.20, 100.25, 100.30, 100.00],
               [1000, 2000, 500, 1500, 1000, 800])
    assert main(["one-shot", "--symbol", "SPY", "--qty", "1000", "--limit", "100.12",
                 "--ttl_sec", "3", "--bars_path", "bars.parquet", "--tag", "t1", "--dry-run",
                 "--out_dir", "exec"]) == 0
    capsys.readouterr()
    assert main(["tca", "--out-dir", "exec", "--json"]) == 0
    [got] = json.loads(capsys.readouterr().out)["orders"]
    # Over the order's life [1 s, 4 s): bars 1, 2, 3; at its end bar 3 (3-4 s) has ended.
    vwap = (100.10 * 2000 + 100.20 * 500 + 100.25 * 1500) / 4000
    assert {k: got[k] for k in ("state", "fill_qty", "avg_px", "arrival_px")} == {
        "state": "CANCEL", "fill_qty": 200, "avg_px": 100.12, "arrival_px": 100.00}
    assert got["fill_ratio"] == to(RATIO, 200 / 1000)
    assert got["shortfall_bps"] == to(BPS, 0.12 / 100.00 * 1e4)
    assert got["vwap_px"] == to(PRICE, vwap)
    assert got["vwap_slippage_bps"] == to(BPS, (100.12 - vwap) / vwap * 1e4)
    assert got["is_bps"] == to(BPS, (200 * 0.12 + 800 * 0.25) / (1000 * 100.00) * 1e4)
    assert got["fees_bps"] == to(BPS, 1.00 / (200 * 100.12) * 1e4)
    assert got["participation"] == to(RATIO, 200 / 4000)
    assert got["ms_to_first_fill"] == approx(1000.0) and got["ms_to_done"] == approx(3000.0)
    assert got["currency"] == "USD" and got["commission"] == 1.00


def test_a_marketable_fill_at_a_bars_open_counts_that_bar(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    # The review's case. BUY 100 at 100.08 on bars whose opens are close + 0.05: the
    # INTENT is at 1 s (bar 0 has ended: arrival 100.00); bar 1 (1-2 s) traded 1 share, a
    # cap of floor(0.1 x 1) = 0: nothing; bar 2 (2-3 s) opens at 100.02 + 0.05 = 100.07,
    # below the limit: marketable, it fills all 100 (its cap is 10% of 1,000) at that open.
    # That fill is known when bar 2 has ended, at 3 s, so the order's life [1 s, 3 s)
    # holds bar 1 AND bar 2, the bar it traded in. (Reported at bar 2's start, 2 s, the
    # window would be bar 1 alone: vwap 100.01 and participation 100 / 1 = 10,000%.)
    monkeypatch.chdir(tmp_path)
    close, volume = [100.00, 100.01, 100.02, 100.03], [1000, 1, 1000, 1000]
    write_bars(tmp_path / "bars.parquet", close, volume)
    assert main(["one-shot", "--symbol", "SPY", "--qty", "100", "--limit", "100.08",
                 "--ttl_sec", "3", "--bars_path", "bars.parquet", "--tag", "mk", "--dry-run",
                 "--out_dir", "exec"]) == 0
    capsys.readouterr()
    rows = read_ledger(tmp_path / "exec").to_pylist()
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "FILL", "PNL_SNAPSHOT"]
    fill, snap = rows[2], rows[3]
    open_2 = close[2] + 0.05  # the bars' open, as write_bars makes it
    assert (fill["last_qty"], fill["last_px"], fill["ts"].value) == (100, open_2, T0 + 3 * S)
    vwap = (close[1] * volume[1] + close[2] * volume[2]) / (volume[1] + volume[2])
    assert snap["arrival_px"] == close[0] and snap["avg_px"] == open_2
    assert snap["vwap_px"] == approx(vwap)
    assert snap["vwap_slippage_bps"] == approx((open_2 - vwap) / vwap * 1e4)
    assert snap["participation"] == approx(100 / (volume[1] + volume[2]))  # 100 / 1,001
    assert snap["participation"] <= 0.10  # within the simulator's participation cap
    assert snap["ms_to_first_fill"] == approx(2000.0) and snap["ms_to_done"] == approx(2000.0)


# ----------------------------------------------------------------------------- many days


def day_rows(day_s: int, currency: str | None, orders: list[tuple[str, str, str, float, float,
             float, float, float]]) -> list[dict[str, Any]]:  # fmt: skip
    """(tag, symbol, side, qty, fill, avg_px, commission, shortfall_bps) -> ledger rows."""
    rows = []
    for i, (tag, symbol, side, qty, fill, avg, comm, shortfall) in enumerate(orders):
        at = T0 + day_s * S + i * 10 * S
        base = {"run_id": "r1", "tag": tag, "symbol": symbol, "side": side, "qty": qty,
                "currency": currency}  # fmt: skip
        rows += [
            {**base, "ts": at, "event": "INTENT"},
            {**base, "ts": at + S, "event": "FILL", "fill_qty": fill, "avg_px": avg,
             "commission": comm},
            {**base, "ts": at + S, "event": "PNL_SNAPSHOT", "fill_qty": fill, "avg_px": avg,
             "shortfall_bps": shortfall},
        ]  # fmt: skip
    return rows


DAY = 86_400


@pytest.fixture
def three_days(tmp_path: Path) -> Path:
    """USD stock orders on the 5th and 7th, EUR ones on the 6th and 7th, an order of an
    old ledger (no currency) on the 8th."""
    write_day(tmp_path, "2026-01-05", day_rows(0, "USD", [
        ("u1", "SPY", "BUY", 100, 100, 470.0, 1.0, 2.0),
        ("u2", "QQQ", "SELL", 50, 50, 400.0, 1.0, -1.0)]))
    write_day(tmp_path, "2026-01-06", day_rows(DAY, "EUR", [
        ("e1", "SAP", "BUY", 20, 10, 150.0, 3.0, 4.0)]))
    write_day(tmp_path, "2026-01-07", day_rows(2 * DAY, "EUR", [
        ("e2", "SAP", "SELL", 30, 30, 152.0, 2.0, 1.0)]) + day_rows(2 * DAY + 100, "USD", [
        ("u3", "SPY", "BUY", 10, 10, 471.0, 1.0, 5.0)]))
    write_day(tmp_path, "2026-01-08", day_rows(3 * DAY, None, [
        ("o1", "SPY", "BUY", 1, 1, 472.0, 1.0, 9.0)]))
    return tmp_path  # fmt: skip


def test_three_days_total_each_currency_apart(three_days: Path, capsys) -> None:
    code = main(["tca", "--out-dir", str(three_days), "--from", "2026-01-05", "--to",
                 "2026-01-07", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [o["tag"] for o in doc["orders"]] == ["u1", "u2", "e1", "e2", "u3"]
    eur, usd = doc["totals"]
    # EUR: e1 10 x 150 = 1,500 (4 bps), e2 30 x 152 = 4,560 (1 bps)
    assert eur == {"currency": "EUR", "orders": 2, "filled_orders": 2, "fill_qty": 40.0,
                   "notional": 6060.0, "commission": 5.0,
                   "shortfall_bps": to(BPS, (1500 * 4 + 4560 * 1) / 6060),
                   "vwap_slippage_bps": None, "is_bps": None, "fees_bps": None}  # fmt: skip
    # USD: u1 100 x 470 = 47,000 (2), u2 50 x 400 = 20,000 (-1), u3 10 x 471 = 4,710 (5)
    assert usd["currency"] == "USD" and usd["orders"] == 3 and usd["fill_qty"] == 160.0
    assert usd["notional"] == to(MONEY, 71710.0) and usd["commission"] == 3.0
    assert usd["shortfall_bps"] == to(BPS, (47000 * 2 - 20000 * 1 + 4710 * 5) / 71710)


def test_a_ledger_without_currencies_is_its_own_group(three_days: Path, capsys) -> None:
    assert main(["tca", "--out-dir", str(three_days), "--from", "2026-01-07"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # e2 and u3 on the 7th, o1 on the 8th: EUR, USD, then the unrecorded currency
    assert [line.split()[0] for line in lines[1:]] == ["e2", "TOTAL", "u3", "TOTAL", "o1",
                                                       "TOTAL"]  # fmt: skip
    assert [line.split()[1] for line in lines if line.startswith("TOTAL")] == [
        "EUR", "USD", "currency?"]
    assert "notional=472.00 " in lines[-1] and lines[-1].endswith("short=9.0 vwsl=— is=— fees=—")


@pytest.mark.parametrize("flags, tags", [
    (["--to", "2026-01-06"], ["u1", "u2", "e1"]),
    (["--from", "2026-01-06", "--to", "2026-01-06"], ["e1"]),
    (["--from", "2026-01-05", "--symbol", "SAP"], ["e1", "e2"]),
    (["--from", "2026-01-05", "--side", "sell"], ["u2", "e2"]),
    (["--from", "2026-01-05", "--tag", "u?"], ["u1", "u2", "u3"]),
    (["--from", "2026-01-05", "--tag", "e*", "--side", "BUY"], ["e1"]),
    (["--from", "2026-01-05", "--tag", "u"], []),
    (["2026-01-07"], ["e2", "u3"]),
])  # fmt: skip
def test_filters(three_days: Path, capsys, flags: list[str], tags: list[str]) -> None:
    assert main(["tca", "--out-dir", str(three_days), "--json", *flags]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [o["tag"] for o in doc["orders"]] == tags
    assert sum(t["orders"] for t in doc["totals"]) == len(tags)


@pytest.mark.parametrize("flags, message", [
    (["--from", "2026-13-01"],
     "runner: --from 2026-13-01: not a date (month must be in 1..12) "
     "(give YYYY-MM-DD, e.g. 2026-01-05)"),
    (["--to", "5 Jan"], "runner: --to 5 Jan: not a date (not YYYY-MM-DD) "
     "(give YYYY-MM-DD, e.g. 2026-01-05)"),
    (["--from", "2026-01-07", "--to", "2026-01-05"],
     "runner: --from 2026-01-07 is after --to 2026-01-05 (swap them)"),
    (["2026-01-05", "--from", "2026-01-05"],
     "runner: both a target (2026-01-05) and --from/--to given "
     "(give one: a ledger or date, or a --from/--to range)"),
])  # fmt: skip
def test_bad_range_exit_2_one_line(three_days: Path, capsys, flags: list[str],
                                   message: str) -> None:  # fmt: skip
    assert main(["tca", "--out-dir", str(three_days), *flags]) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""


def test_a_range_with_no_days_exit_2(three_days: Path, capsys) -> None:
    assert main(["tca", "--out-dir", str(three_days), "--from", "2026-02-01"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"runner: no ledger events found at {three_days} from 2026-02-01 to the last day "
        "(check --from/--to and --out-dir)"]


def test_glob_regex_keeps_other_characters_literal() -> None:
    assert glob_regex("a.b*-?") == r"^a\.b.*\-.$"


@pytest.mark.parametrize("tags", [
    ['plain', 'quote"d', "back\\slash", "ünï €", None],
    ["new\nline", "tab\there", "ok"],  # control characters: json's own escapes
])  # fmt: skip
def test_json_objects_read_back_as_the_rows(tags: list[str | None]) -> None:
    n = len(tags)
    numbers = [0.1 + 0.2, 1e-7, 1e300, -0.0, None, 1434.0, 2.5][:n]
    table = pa.table({"tag": pa.array(tags, pa.string()), "x": pa.array(numbers, pa.float64()),
                      "q": pa.array(list(range(n)), pa.int64())})
    text = arrowtext.json_objects(table)
    assert json.loads(text) == table.to_pylist()
    assert text.isascii()  # ünï €: \u escapes, as runner.output.json_text writes them
    assert arrowtext.json_objects(table.slice(0, 0)) == "[]"


# ----------------------------------------------------------------------------- speed


def test_runner_tca_imports_no_pandas(tmp_path: Path) -> None:
    """`runner tca` groups with numpy and builds Arrow constants from buffers: pandas
    (0.2 s, pulled in by Table.group_by and by pyarrow given plain Python values) is
    never imported, in text or JSON, with filters (DESIGN §9)."""
    import subprocess
    import sys

    write_day(tmp_path)
    script = ("import sys, json; from runner.cli import main; code = main(sys.argv[1:]); "
              "sys.stderr.write(json.dumps([code, 'pandas' in sys.modules]))")
    for extra in ([], ["--json"], ["--tag", "A*", "--symbol", "SPY", "--side", "buy"]):
        proc = subprocess.run([sys.executable, "-c", script, "tca", "--out-dir",
                               str(tmp_path), *extra], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert json.loads(proc.stderr) == [0, False], extra
        assert proc.stdout.startswith(("tag ", '{"command":"tca"'))


def test_order_table_matches_arrow_group_by_on_nulls_and_interleaving() -> None:
    """Per order: the first non-null of symbol/side/currency/qty, the last terminal
    event, the largest fill (NaN skipped), the last non-null of avg_px/arrival_px/
    commission and of each figure on a PNL_SNAPSHOT row; as Arrow's own group_by says,
    over orders whose rows interleave and whose columns have gaps. Orders come in order
    of first appearance (group_by's own order is its hash table's)."""
    rng = np.random.default_rng(7)
    n = 3000
    events = ["INTENT", "ACK", "PARTIAL", "FILL", "CANCEL", "REJ", "PNL_SNAPSHOT", None]

    def gappy(values: np.ndarray) -> list[Any]:
        return [None if rng.random() < 0.3 else v for v in values.tolist()]

    fills = rng.random(n) * 10
    fills[rng.random(n) < 0.05] = np.nan
    rows = [{"ts": T0 + i, "run_id": f"r{r}", "seq": i, "tag": f"t{t}", "event": e,
             "symbol": s, "side": d, "currency": c, "qty": q, "fill_qty": f, "avg_px": a,
             "arrival_px": ap, "commission": cm, "vwap_px": v, "is_bps": b}
            for i, (r, t, e, s, d, c, q, f, a, ap, cm, v, b) in enumerate(zip(
                rng.integers(0, 40, n), rng.integers(0, 30, n),
                [events[k] for k in rng.integers(0, len(events), n)],
                gappy(np.array(["SPY", "QQQ"])[rng.integers(0, 2, n)]),
                gappy(np.array(["BUY", "SELL"])[rng.integers(0, 2, n)]),
                gappy(np.array(["USD", "EUR"])[rng.integers(0, 2, n)]),
                gappy(rng.integers(0, 5, n).astype(float)), gappy(fills),
                *(gappy(rng.random(n)) for _ in range(5)), strict=True))]  # fmt: skip
    table = rows_to_table(rows)
    got = order_table(table)
    keys = list(zip(table["run_id"].to_pylist(), table["tag"].to_pylist(), strict=True))
    assert list(zip(got["run_id"].to_pylist(), got["tag"].to_pylist(), strict=True)) == \
        list(dict.fromkeys(keys))

    terminal = pc.is_in(table["event"], value_set=pa.array(["FILL", "CANCEL", "REJ"]))
    snap = pc.equal(table["event"], "PNL_SNAPSHOT")
    state = pc.if_else(terminal, table["event"], None)
    frame = table.append_column("state", state).append_column(
        "snap_vwap", pc.if_else(snap, table["vwap_px"], None)).append_column(
        "snap_is", pc.if_else(snap, table["is_bps"], None))
    aggs = [("symbol", "first"), ("side", "first"), ("currency", "first"), ("qty", "first"),
            ("state", "last"), ("fill_qty", "max"), ("avg_px", "last"),
            ("arrival_px", "last"), ("commission", "last"), ("snap_vwap", "last"),
            ("snap_is", "last")]  # fmt: skip
    want = {(r["run_id"], r["tag"]): r for r in frame.group_by(
        ["run_id", "tag"], use_threads=False).aggregate(aggs).to_pylist()}

    def same(a: Any, b: Any) -> bool:
        return a == b or (a != a and b != b)  # NaN == NaN here

    for o in got.to_pylist():
        w = want[(o["run_id"], o["tag"])]
        assert o["state"] == (w["state_last"] or "OPEN")
        assert same(o["fill_qty"], 0.0 if w["fill_qty_max"] is None else w["fill_qty_max"])
        for name, agg in [("symbol", "first"), ("side", "first"), ("currency", "first"),
                          ("qty", "first"), ("avg_px", "last"), ("arrival_px", "last"),
                          ("commission", "last")]:  # fmt: skip
            assert same(o[name], w[f"{name}_{agg}"]), (name, o, w)
        assert same(o["vwap_px"], w["snap_vwap_last"]) and same(o["is_bps"], w["snap_is_last"])


@pytest.mark.parametrize("decimals", [1, 2])
def test_fixed_decimals_round_half_to_even_on_the_scaled_value(decimals: int) -> None:
    rng = np.random.default_rng(3)
    values = [*(rng.normal(0, 50, 2000).round(4)).tolist(), 0.05, -0.05, 0.15, 0.25, -0.0,
              -0.04, 0.0, 1e9 + 0.5, -123.45, None]  # fmt: skip
    scale = 10**decimals

    def want(v: float | None) -> str | None:
        if v is None:
            return None
        units = round(v * scale)  # half to even, as pc.round
        whole, part = divmod(abs(units), scale)
        return f"{'-' if units < 0 else ''}{whole}.{part:0{decimals}d}"

    column = pa.chunked_array([pa.array(values[:7]), pa.array(values[7:])]).slice(3)
    assert arrowtext.fixed(column, decimals).to_pylist() == [want(v) for v in values[3:]]


def test_orders_that_start_at_one_instant_come_by_tag_then_run_id(tmp_path: Path) -> None:
    """`runner tca` sorts orders by their first event, then tag, then run_id: scenario
    runs at one --at start together, and their order must not depend on random run ids."""
    starts = [("r1", "b", T0), ("r3", "a", T0), ("r2", "a", T0), ("r0", "c", T0 - S)]
    rows = [{"ts": t + i, "run_id": run, "seq": i + 1, "tag": tag, "event": event,
             "symbol": "SPY", "side": "BUY", "qty": 1.0, "currency": "USD"}
            for run, tag, t in starts for i, event in enumerate(("INTENT", "CANCEL"))]
    orders = order_table(rows_to_table(rows))
    assert [(o["tag"], o["run_id"]) for o in orders.to_pylist()] == [
        ("c", "r0"), ("a", "r2"), ("a", "r3"), ("b", "r1")]  # (by time, run: c, b, a, a)
    for run in ("r1", "r3", "r2", "r0"):
        with Ledger(tmp_path, "2026-01-05", run) as ledger:
            for r in rows:
                if r["run_id"] == run:
                    ledger.append({k: v for k, v in r.items() if k not in ("run_id", "seq")})
    out = io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out) == 0
    assert [line.split()[:2] for line in out.getvalue().splitlines()[1:5]] == [
        ["c", "r0"], ["a", "r2"], ["a", "r3"], ["b", "r1"]]


def test_tca_text_shows_the_recorded_digits(tmp_path: Path) -> None:
    """65000.05 is not 65000.1 (%g), 1,000,000 is not 1e+06, an average with float
    noise is shown to its 10 decimals; bps keep one decimal."""
    base = {"run_id": "r1", "tag": "x", "symbol": "BTC", "side": "BUY",
            "qty": 1_000_000.0, "currency": "USD"}
    write_day(tmp_path, rows=[
        {**base, "ts": T0, "event": "INTENT", "limit": 65000.05, "arrival_px": 65000.05},
        {**base, "ts": T0 + S, "event": "PARTIAL", "fill_qty": 0.5,
         "avg_px": 65000.05 + 1e-11, "commission": 0.7 + 0.7},
        {**base, "ts": T0 + S, "event": "PNL_SNAPSHOT", "fill_qty": 0.5, "shortfall_bps": 0.25,
         "vwap_px": 65000.1},
    ], run_id="0123456789")  # fmt: skip
    out = io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out) == 0
    header, line, total = out.getvalue().splitlines()
    assert line.split() == ["x", "01234567", "BTC", "BUY", "OPEN", "0.5/1000000", "0%",
                            "65000.05", "65000.05", "65000.10", "0.2", "—", "—", "—", "—",
                            "—", "—", "1.40"]  # fmt: skip  (0.25 bps: half to even)
    assert total == ("TOTAL USD orders=1 filled=1 fill_qty=0.5 notional=32500.025 comm=1.40 "
                     "bps: short=0.2 vwsl=— is=— fees=—")


def test_a_total_that_rounds_to_zero_is_shown_as_zero_not_minus_zero() -> None:
    from runner.report import totals_line

    line = totals_line({"currency": "USD", "orders": 1, "filled_orders": 1, "fill_qty": 1.0,
                        "notional": 100.0, "commission": 0.0004, "shortfall_bps": -0.0034,
                        "vwap_slippage_bps": 0.0, "is_bps": None, "fees_bps": 0.04})
    assert " short=0.0 vwsl=0.0 is=\u2014 fees=0.0" in line and "-0.0" not in line


def test_ledger_show_prices_carry_their_instruments_decimals(tmp_path: Path) -> None:
    """As `runner plan` shows them: a sub-dollar stock limit to 4 decimals, FX to 5 (a yen
    quote 3), others 2; a price recorded with more digits keeps them all."""
    def intent(i: int, tag: str, sec_type: str, currency: str, limit: float) -> dict[str, Any]:
        return {"ts": T0 + i * S, "run_id": "r1", "seq": i, "tag": tag, "event": "INTENT",
                "symbol": "X", "side": "BUY", "qty": 1.0, "limit": limit,
                "sec_type": sec_type, "currency": currency}

    write_day(tmp_path, rows=[intent(1, "a", "STK", "USD", 0.01),
                              intent(2, "b", "CASH", "USD", 1.0851),
                              intent(3, "c", "CASH", "JPY", 150.1),
                              intent(4, "d", "STK", "USD", 10.0),
                              intent(5, "e", "STK", "USD", 473.030041841)])
    out, err = io.StringIO(), io.StringIO()
    assert report.ledger_show(None, str(tmp_path), False, out=out, err=err) == 0
    shown = [line.split("@")[1].strip() for line in out.getvalue().splitlines()]
    assert shown == ["0.0100", "1.08510", "150.100", "10.00", "473.030041841"]
