from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner import report
from runner.ledger import Ledger, rows_to_table
from runner.tca import snapshot, summarize

S = 1_000_000_000
T0 = 1_767_623_400 * S  # 2026-01-05 14:30:00 UTC


class ArrayBars:
    """The three methods runner/bars.py provides, over arrays the test builds.

    A bar's ts is its start; it is known once it has ended (ts + 1 s)."""

    def __init__(self, close: list[float], volume: list[float]) -> None:
        self.end = T0 + S * np.arange(1, len(close) + 1)
        self.close = np.array(close)
        self.volume = np.array(volume, dtype=float)

    def arrival_at(self, t_ns: int) -> float | None:
        known = np.searchsorted(self.end, t_ns, side="right")  # bars ended at or before t
        return float(self.close[known - 1]) if known else None

    def _between(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        return (self.end > t0_ns) & (self.end <= t1_ns)

    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None:
        inside = self._between(t0_ns, t1_ns)
        volume = self.volume[inside].sum()
        return float((self.close[inside] * self.volume[inside]).sum() / volume) if volume else None

    def volume_between(self, t0_ns: int, t1_ns: int) -> float:
        return float(self.volume[self._between(t0_ns, t1_ns)].sum())


BARS = ArrayBars(
    close=[100.00, 100.10, 100.20, 100.05, 99.90], volume=[1000, 2000, 500, 1500, 1000]
)
INTENT = T0 + 2_500_000_000  # bars 0 and 1 have ended: arrival = 100.10
END = T0 + 4_200_000_000  # bars 2 and 3 ended during the order; price at the end = 100.05
VWAP = (100.20 * 500 + 100.05 * 1500) / 2000  # 100.0875 over 2,000 shares


def approx(x: float) -> Any:
    return pytest.approx(x, rel=0, abs=1e-9)


def test_buy_partly_filled() -> None:
    got = snapshot("BUY", 10, 6, 100.12, 1.2, INTENT, INTENT + 300_000_000, END, BARS)
    assert got is not None
    assert got == {
        "arrival_px": 100.10,
        "avg_px": 100.12,
        "fill_qty": 6,
        "fill_ratio": approx(0.6),
        "shortfall_bps": approx(0.02 / 100.10 * 1e4),  # 1.998 bps paid over arrival
        "vwap_px": approx(100.0875),
        "vwap_slippage_bps": approx((100.12 - 100.0875) / 100.0875 * 1e4),
        # 6 filled 0.02 above arrival, 4 unfilled while the price fell 0.05: a net gain
        "is_bps": approx((6 * 0.02 + 4 * -0.05) / (10 * 100.10) * 1e4),
        "fees_bps": approx(1.2 / (6 * 100.12) * 1e4),
        "participation": approx(6 / 2000),
        "ms_to_first_fill": approx(300.0),
        "ms_to_done": approx(1700.0),
        "commission": 1.2,
    }
    assert got["vwap_px"] == approx(VWAP)


def test_sell_costs_are_positive_when_selling_below_the_benchmark() -> None:
    got = snapshot("SELL", 10, 10, 100.00, None, INTENT, INTENT + 1, END, BARS)
    assert got is not None
    assert got["shortfall_bps"] == approx(0.10 / 100.10 * 1e4)  # sold 0.10 below arrival
    assert got["vwap_slippage_bps"] == approx(0.0875 / 100.0875 * 1e4)
    assert got["is_bps"] == approx(10 * 0.10 / (10 * 100.10) * 1e4)  # all filled: IS = shortfall
    assert got["fill_ratio"] == 1.0 and got["fees_bps"] is None and got["commission"] is None
    assert got["participation"] == approx(10 / 2000)
    assert got["ms_to_first_fill"] == approx(1e-6)


@pytest.mark.parametrize(
    "args",
    [
        ("BUY", 10, 6, 100.12, None, INTENT, None, END, None),  # no bars
        ("BUY", 10, 0, None, None, INTENT, None, END, BARS),  # nothing filled
        ("BUY", 10, 2, 100.0, None, T0 + 900_000_000, None, END, BARS),  # no bar ended yet
        ("BUY", 10, 2, None, None, INTENT, None, END, BARS),  # no average price
    ],
)
def test_no_snapshot_without_a_fill_and_an_arrival(args: tuple[Any, ...]) -> None:
    assert snapshot(*args) is None


def test_figures_that_need_missing_data_are_none() -> None:
    # The order ends before another bar ends: no VWAP, no volume; first fill unknown.
    got = snapshot("BUY", 4, 4, 100.2, None, INTENT, None, INTENT + 100_000_000, BARS)
    assert got is not None
    assert got["vwap_px"] is None and got["vwap_slippage_bps"] is None
    assert got["participation"] is None and got["ms_to_first_fill"] is None
    assert got["is_bps"] == approx(4 * 0.1 / (4 * 100.10) * 1e4)
    assert got["ms_to_done"] == approx(100.0)


# ----------------------------------------------------------------------------- summary


def order_rows() -> list[dict[str, Any]]:
    def row(i: int, run: str, tag: str, event: str, **kw: Any) -> dict[str, Any]:
        return {"ts": T0 + i * S, "run_id": run, "seq": i, "tag": tag, "event": event, **kw}

    a = {"symbol": "SPY", "side": "BUY", "qty": 10.0}
    b = {"symbol": "QQQ", "side": "SELL", "qty": 5.0}
    return [
        row(1, "r1", "A", "INTENT", **a, arrival_px=99.9),
        row(2, "r1", "A", "ACK", **a),
        row(3, "r1", "B", "INTENT", **b),
        row(4, "r1", "A", "PARTIAL", fill_qty=4.0, avg_px=100.0, commission=0.4),
        row(5, "r1", "A", "FILL", fill_qty=10.0, avg_px=100.02, commission=1.0),
        row(6, "r1", "A", "PNL_SNAPSHOT", arrival_px=100.0, shortfall_bps=2.0,
            vwap_slippage_bps=1.0, fill_qty=10.0),
        row(7, "r1", "B", "PARTIAL", fill_qty=2.0, avg_px=400.0, commission=0.5),
        row(8, "r1", "B", "CANCEL", fill_qty=2.0),
        row(9, "r1", "B", "PNL_SNAPSHOT", shortfall_bps=-3.0, arrival_px=399.0, fill_qty=2.0),
        row(10, "r2", "A", "INTENT", symbol="SPY", side="BUY", qty=1.0),  # same tag, new run
        row(11, "r2", "A", "REJ", message="201 - no margin"),
        row(12, "r2", "C", "INTENT", symbol="SPY", side="BUY", qty=1.0),
        row(13, "r2", "C", "ACK"),
    ]  # fmt: skip


def order(run: str, tag: str, sym: str, side: str, qty: float, state: str, fill: float,
          avg: float | None = None, arr: float | None = None, sf: float | None = None,
          vs: float | None = None, comm: float | None = None) -> dict[str, Any]:  # fmt: skip
    return {
        "run_id": run, "tag": tag, "symbol": sym, "side": side, "qty": qty, "state": state,
        "fill_qty": fill, "avg_px": avg, "arrival_px": arr, "shortfall_bps": sf,
        "vwap_slippage_bps": vs, "commission": comm,
    }  # fmt: skip


EXPECTED_ORDERS = [
    order("r1", "A", "SPY", "BUY", 10.0, "FILL", 10.0, 100.02, 100.0, 2.0, 1.0, 1.0),
    order("r1", "B", "QQQ", "SELL", 5.0, "CANCEL", 2.0, 400.0, 399.0, -3.0, None, 0.5),
    order("r2", "A", "SPY", "BUY", 1.0, "REJ", 0.0),
    order("r2", "C", "SPY", "BUY", 1.0, "OPEN", 0.0),
]
EXPECTED_TOTALS = {
    "orders": 4,
    "filled_orders": 2,
    "fill_qty": 12.0,
    "notional": approx(10 * 100.02 + 2 * 400.0),
    "commission": approx(1.5),
    "shortfall_bps": approx((10 * 2.0 + 2 * -3.0) / 12),  # weighted by fill_qty
    "vwap_slippage_bps": approx(1.0),  # only A has one
}


def test_summarize_per_order_and_weighted_totals() -> None:
    orders, totals = summarize(rows_to_table(order_rows()))
    assert orders == EXPECTED_ORDERS
    assert totals == EXPECTED_TOTALS


def test_summarize_takes_pandas_and_rows_in_any_order() -> None:
    rows = order_rows()
    shuffled = [rows[i] for i in np.random.default_rng(7).permutation(len(rows))]
    assert summarize(rows_to_table(shuffled).to_pandas()) == (EXPECTED_ORDERS, EXPECTED_TOTALS)


def test_summarize_of_nothing() -> None:
    orders, totals = summarize(rows_to_table([]))
    assert orders == []
    assert totals == {
        "orders": 0, "filled_orders": 0, "fill_qty": 0.0, "notional": 0.0, "commission": 0.0,
        "shortfall_bps": None, "vwap_slippage_bps": None,
    }  # fmt: skip


# ----------------------------------------------------------------------------- report


def write_day(out: Path) -> None:
    with Ledger(out, "2026-01-05", "r1") as ledger:
        for r in order_rows():
            if r["run_id"] == "r1":
                ledger.append({k: v for k, v in r.items() if k not in ("run_id", "seq")})


def test_tca_report_text(tmp_path: Path) -> None:
    write_day(tmp_path)
    out = io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "tag", "symbol", "side", "qty", "state", "fill_qty", "avg_px", "arrival", "shortfall",
        "vwap_slip", "commission",
    ]  # fmt: skip
    assert lines[1].split() == [
        "A", "SPY", "BUY", "10", "FILL", "10", "100.02", "100", "2.00", "1.00", "1"
    ]  # fmt: skip
    assert lines[2].split() == [
        "B", "QQQ", "SELL", "5", "CANCEL", "2", "400", "399", "-3.00", "—", "0.5"
    ]  # fmt: skip
    assert lines[3] == (
        "TOTAL orders=2 filled=2 fill_qty=12 notional=1800.20 commission=1.50 "
        "shortfall=1.17bps vwap_slippage=1.00bps"
    )


def test_tca_report_json(tmp_path: Path) -> None:
    write_day(tmp_path)
    out = io.StringIO()
    assert (
        report.tca_report(str(tmp_path / "2026-01-05" / "ledger.parquet"), "x", True, out=out) == 0
    )
    doc = json.loads(out.getvalue())
    assert doc["version"] == 1
    assert [o["tag"] for o in doc["orders"]] == ["A", "B"]
    assert doc["orders"][1] == EXPECTED_ORDERS[1]
    assert doc["totals"]["shortfall_bps"] == approx((10 * 2.0 - 2 * 3.0) / 12)


def test_tca_report_with_no_ledger_exits_2(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report.tca_report(None, str(tmp_path), False, out=out, err=err) == 2
    assert err.getvalue() == (
        f"runner: no ledger events found at {tmp_path}\n"
        "  hint: give a ledger file, a date YYYY-MM-DD, or --out-dir\n"
    )
