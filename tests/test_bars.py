"""Bars: loading rules, error messages, and the point-in-time lookups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.bars import BAR_NS, Bars, load_bars
from runner.errors import DataError

T0 = 1_767_623_400 * BAR_NS  # 2026-01-05T14:30:00Z
S = BAR_NS
SAMPLE = Path(__file__).resolve().parent.parent / "data/live/2026-01-05/bars1s_SPY.parquet"

COLUMNS = {
    "open": [100.00, 100.05, 100.10, 100.20, 100.30],
    "high": [100.10, 100.15, 100.25, 100.35, 100.45],
    "low": [99.95, 100.00, 100.05, 100.15, 100.25],
    "close": [100.00, 100.10, 100.20, 100.30, 100.40],
    "volume": [1000, 2000, 0, 500, 1500],
}
VWAP = [100.01, 100.11, 100.21, 100.31, 100.41]


def ts_array(offsets_s: list[int], type_: pa.DataType | None = None) -> pa.Array:
    values = [T0 + o * S for o in offsets_s]
    return pa.array(values, type=type_ or pa.timestamp("ns", tz="UTC"))


def write(tmp_path: Path, columns: dict[str, object], name: str = "bars.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


def standard(tmp_path: Path, vwap: bool = True, **overrides: object) -> Path:
    columns: dict[str, object] = {"ts": ts_array([0, 1, 2, 3, 4]), **COLUMNS}
    if vwap:
        columns["vwap"] = VWAP
    columns.update(overrides)
    return write(tmp_path, columns)


def error_of(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_bars(path)
    return str(info.value)


# --- loading -----------------------------------------------------------------


def test_load_reads_columns_as_ns_and_float(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    assert bars.ts.dtype == np.int64
    assert bars.ts.tolist() == [T0, T0 + S, T0 + 2 * S, T0 + 3 * S, T0 + 4 * S]
    assert bars.close.dtype == np.float64
    assert bars.volume.tolist() == [1000.0, 2000.0, 0.0, 500.0, 1500.0]
    assert bars.vwap is not None and bars.vwap.tolist() == VWAP
    assert bars.first_ns == T0
    assert bars.last_end_ns == T0 + 5 * S
    assert bars.path == str(tmp_path / "bars.parquet")
    assert len(bars) == 5


def test_vwap_column_is_optional(tmp_path: Path) -> None:
    assert load_bars(standard(tmp_path, vwap=False)).vwap is None


def test_arrays_are_read_only(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    with pytest.raises(ValueError):
        bars.close[0] = 1.0


@pytest.mark.parametrize("alias", ["timestamp", "time", "datetime"])
def test_ts_aliases(tmp_path: Path, alias: str) -> None:
    path = write(tmp_path, {alias: ts_array([0, 1, 2, 3, 4]), **COLUMNS})
    assert load_bars(path).first_ns == T0


def test_naive_timestamp_is_utc(tmp_path: Path) -> None:
    path = write(tmp_path, {"ts": ts_array([0, 1, 2, 3, 4], pa.timestamp("ns")), **COLUMNS})
    assert load_bars(path).first_ns == T0


def test_other_timezone_and_unit_is_the_same_instant(tmp_path: Path) -> None:
    # 09:30 New York written as a tz-aware microsecond timestamp is 14:30 UTC.
    micros = pa.array([(T0 + o * S) // 1000 for o in range(5)], pa.int64())
    ts = micros.cast(pa.timestamp("us", tz="America/New_York"))
    assert load_bars(write(tmp_path, {"ts": ts, **COLUMNS})).first_ns == T0


def test_int64_epoch_ns(tmp_path: Path) -> None:
    ts = pa.array([T0 + o * S for o in range(5)], pa.int64())
    assert load_bars(write(tmp_path, {"ts": ts, **COLUMNS})).last_end_ns == T0 + 5 * S


# --- errors --------------------------------------------------------------------


def test_missing_columns_message_is_exact(tmp_path: Path) -> None:
    path = write(tmp_path, {"time": ts_array([0, 1]), "open": [1.0, 1.0], "low": [1.0, 1.0]})
    assert error_of(path) == (
        f"{path}: missing column(s) high, close, volume; found: time, open, low "
        "(a bars file needs ts (or timestamp/time/datetime/date), open, high, low, close, "
        "volume, in any case)"
    )


def test_missing_ts_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"when": ts_array([0, 1, 2, 3, 4]), **COLUMNS})
    assert error_of(path).startswith(
        f"{path}: missing column(s) ts; found: when, open, high, low, close, volume ("
    )


def test_unsorted_names_the_row(tmp_path: Path) -> None:
    path = standard(tmp_path, ts=ts_array([0, 1, 3, 2, 4]))
    assert error_of(path) == (
        f"{path}: ts not ascending at row 3: 2026-01-05T14:30:02Z after 2026-01-05T14:30:03Z"
        " (sort the bars by ts)"
    )


def test_duplicate_names_both_rows(tmp_path: Path) -> None:
    path = standard(tmp_path, ts=ts_array([0, 1, 1, 2, 3]))
    assert error_of(path) == (
        f"{path}: duplicate ts 2026-01-05T14:30:01Z at rows 1 and 2"
        " (one bar per time: drop or merge the duplicate; bars of several symbols need a symbol"
        " column)"
    )


def test_nan_price_names_column_and_row(tmp_path: Path) -> None:
    path = standard(tmp_path, close=[100.0, 100.1, float("nan"), 100.3, 100.4])
    assert error_of(path) == (
        f"{path}: row 2 (2026-01-05T14:30:02Z): close is NaN or null, not a finite number"
        " (fix or drop that bar)"
    )


def test_numbers_of_any_numeric_type_and_timestamps_of_any_tz_read_exactly(
        tmp_path: Path) -> None:
    """Read without a cast where numpy does it (float64; integers without nulls; ns
    timestamps, whatever their zone: the stored UTC instants), with one elsewhere: every
    value as the float64 / int64 it is."""
    from decimal import Decimal

    columns = {
        "ts": ts_array([0, 1, 2, 3, 4], pa.timestamp("ns", tz="America/New_York")),
        "open": pa.array(COLUMNS["open"], pa.float32()),
        "high": pa.array([Decimal("101.25")] * 5, pa.decimal128(10, 2)),
        "low": pa.array([99, 99, 98, 99, 100], pa.int32()),
        "close": pa.array(COLUMNS["close"], pa.float64()),
        "volume": pa.array([1000, 2**53 + 2, 0, 500, 1500], pa.uint64()),
    }
    bars = load_bars(write(tmp_path, columns))
    assert bars.ts.tolist() == [T0 + k * S for k in range(5)]
    assert bars.open.tolist() == [float(np.float32(v)) for v in COLUMNS["open"]]
    assert bars.high.tolist() == [101.25] * 5
    assert bars.low.tolist() == [99.0, 99.0, 98.0, 99.0, 100.0]
    assert bars.close.tolist() == COLUMNS["close"]
    assert bars.volume.tolist() == [1000.0, float(2**53 + 2), 0.0, 500.0, 1500.0]
    assert all(a.dtype == np.float64 for a in (bars.open, bars.high, bars.low, bars.volume))


def test_null_volume_is_reported_like_nan(tmp_path: Path) -> None:
    path = standard(tmp_path, volume=pa.array([1, 2, 3, None, 5], pa.int64()))
    assert error_of(path) == (
        f"{path}: row 3 (2026-01-05T14:30:03Z): volume is NaN or null, not a finite number"
        " (fix or drop that bar)"
    )


def test_empty_file(tmp_path: Path) -> None:
    columns = {"ts": ts_array([]), **{name: pa.array([], pa.float64()) for name in COLUMNS}}
    path = write(tmp_path, columns)
    assert error_of(path) == f"{path}: no bars (the file has 0 rows)"


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    assert error_of(path) == f"bars file not found: {path} (check bars_path)"


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    path.write_text("ts,open,high,low,close,volume\n")
    assert error_of(path).startswith(f"{path}: not a readable Parquet file (")


def test_string_ts_is_refused(tmp_path: Path) -> None:
    path = standard(tmp_path, ts=["2026-01-05 14:30:0" + str(i) for i in range(5)])
    assert error_of(path) == (
        f"{path}: column 'ts' has type string; expected a timestamp or integer epoch s, ms, µs"
        " or ns (write it as a timestamp, e.g. pandas: df['ts'] = pd.to_datetime(df['ts'],"
        " utc=True))"
    )


def test_errors_are_one_line(tmp_path: Path) -> None:
    path = standard(tmp_path, ts=ts_array([0, 1, 1, 2, 3]))
    assert "\n" not in error_of(path)


# --- lookups -------------------------------------------------------------------


def test_arrival_has_no_look_ahead_at_bar_boundaries(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    assert bars.arrival_at(T0 - 1) is None
    assert bars.arrival_at(T0) is None  # bar 0 has started but not ended
    assert bars.arrival_at(T0 + S - 1) is None
    assert bars.arrival_at(T0 + S) == 100.00  # bar 0 ended exactly now
    assert bars.arrival_at(T0 + 2 * S - 1) == 100.00  # bar 1 still running
    assert bars.arrival_at(T0 + 2 * S) == 100.10
    assert bars.arrival_at(T0 + 2 * S + S // 2) == 100.10
    assert bars.arrival_at(T0 + 3600 * S) == 100.40


def test_vwap_between_uses_vwap_column(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    # [T0+0.5s, T0+2s) overlaps bars 0 and 1; bar 2 starts at t1 and is out.
    expected = (100.01 * 1000 + 100.11 * 2000) / 3000
    assert bars.vwap_between(T0 + S // 2, T0 + 2 * S) == pytest.approx(expected, abs=1e-12)
    assert bars.volume_between(T0 + S // 2, T0 + 2 * S) == 3000.0


def test_vwap_between_falls_back_to_close(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path, vwap=False))
    expected = (100.00 * 1000 + 100.10 * 2000) / 3000
    assert bars.vwap_between(T0 + S // 2, T0 + 2 * S) == pytest.approx(expected, abs=1e-12)


def test_vwap_between_whole_day_and_edges(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    expected = (100.01 * 1000 + 100.11 * 2000 + 100.31 * 500 + 100.41 * 1500) / 5000
    assert bars.vwap_between(T0, T0 + 5 * S) == pytest.approx(expected, abs=1e-12)
    assert bars.volume_between(T0 - 10 * S, T0 + 10 * S) == 5000.0
    # A bar that ended exactly at t0 does not overlap [t0, t1).
    assert bars.volume_between(T0 + S, T0 + S + 1) == 2000.0
    assert bars.vwap_between(T0 - 10 * S, T0) is None  # nothing before the first bar
    assert bars.volume_between(T0 + 5 * S, T0 + 9 * S) == 0.0


def test_empty_window_means_the_bar_containing_t0(tmp_path: Path) -> None:
    bars = load_bars(standard(tmp_path))
    assert bars.vwap_between(T0 + S + 1, T0 + S + 1) == 100.11
    assert bars.vwap_between(T0 + S, T0) == 100.11  # inverted: still the bar at t0
    assert bars.volume_between(T0 + S, T0 + S) == 2000.0
    assert bars.vwap_between(T0 + 2 * S, T0 + 2 * S) is None  # bar 2 traded nothing
    assert bars.vwap_between(T0 + 9 * S, T0 + 9 * S) is None


def test_bars_built_in_memory_are_validated() -> None:
    with pytest.raises(DataError, match=r"^<memory>: duplicate ts"):
        Bars(ts=[T0, T0], open=[1, 1], high=[1, 1], low=[1, 1], close=[1, 1], volume=[1, 1])


# --- the sample day ------------------------------------------------------------


def test_sample_day_is_a_full_regular_session() -> None:
    bars = load_bars(SAMPLE)
    assert len(bars) == 23_400
    assert bars.first_ns == T0  # 09:30 New York
    assert bars.last_end_ns == T0 + 23_400 * S  # 16:00 New York
    assert np.all(np.diff(bars.ts) == S)
    assert bars.open[0] == 473.00
    assert bars.vwap is not None
    assert np.all((bars.low <= bars.vwap) & (bars.vwap <= bars.high))
    assert np.all(bars.volume == np.round(bars.volume))
    cents = np.concatenate([bars.open, bars.high, bars.low, bars.close]) * 100
    assert np.allclose(cents, np.round(cents), atol=1e-6)
