"""One-second bars from Parquet, and the point-in-time questions asked of them.

Convention (the README repeats it): a bar's `ts` is its START, in nanoseconds
since the epoch, UTC. A bar covers [ts, ts + 1 s) and is known only once it has
ended, at ts + 1 s. Every lookup here honours that, so nothing sees the future.

The file is taken as the user wrote it: unsorted or duplicate timestamps, NaNs
and missing columns are errors that name the file and the row, never silently
repaired. Row numbers in messages are 0-based, like pandas' `iloc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

BAR_NS = 1_000_000_000

TS_ALIASES = ("ts", "timestamp", "time", "datetime")
PRICE_COLUMNS = ("open", "high", "low", "close")
REQUIRED = (*PRICE_COLUMNS, "volume")
_NEEDS = "a bars file needs ts (or timestamp/time/datetime), open, high, low, close, volume"


def _iso(ns: int) -> str:
    unit = "s" if ns % BAR_NS == 0 else "ns"
    stamp = np.datetime64(int(ns), "ns")
    return f"{np.datetime_as_string(stamp, unit=unit)}Z"  # type: ignore[call-overload]


def _frozen_array(values: Any, dtype: type) -> np.ndarray:
    # A copy, made read-only, so a frozen Bars really cannot change under us.
    arr: np.ndarray = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Bars:
    """Validated 1 s bars: ascending unique `ts` (int64 ns, bar start) and float64 columns."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray | None = None
    path: str = field(default="<memory>")
    interval_ns: int = BAR_NS  # each bar covers [ts, ts + interval_ns)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _frozen_array(self.ts, np.int64))
        for name in (*REQUIRED, "vwap"):
            values = getattr(self, name)
            if values is not None:
                object.__setattr__(self, name, _frozen_array(values, np.float64))
        _validate(self)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def first_ns(self) -> int:
        return int(self.ts[0])

    @property
    def last_end_ns(self) -> int:
        return int(self.ts[-1]) + BAR_NS

    def arrival_at(self, t_ns: int) -> float | None:
        """Close of the last bar that ended at or before `t_ns` (ts + 1 s <= t_ns)."""
        n = int(np.searchsorted(self.ts, t_ns - BAR_NS, side="right"))
        return float(self.close[n - 1]) if n else None

    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None:
        """Volume-weighted price of the bars overlapping [t0, t1); see `_span`."""
        lo, hi = self._span(t0_ns, t1_ns)
        volume = self.volume[lo:hi]
        total = float(volume.sum())
        if total <= 0:
            return None
        price = (self.vwap if self.vwap is not None else self.close)[lo:hi]
        return float(np.dot(price, volume) / total)

    def volume_between(self, t0_ns: int, t1_ns: int) -> float:
        """Total volume of the bars overlapping [t0, t1); see `_span`."""
        lo, hi = self._span(t0_ns, t1_ns)
        return float(self.volume[lo:hi].sum())

    def _span(self, t0_ns: int, t1_ns: int) -> tuple[int, int]:
        """Index range of bars with ts + 1 s > t0 and ts < t1.

        An empty or inverted window (t1 <= t0) means "the instant t0": the one
        bar containing it, so an order that lived 0 ns still has a benchmark.
        """
        lo = int(np.searchsorted(self.ts, t0_ns - BAR_NS, side="right"))
        if t1_ns > t0_ns:
            return lo, int(np.searchsorted(self.ts, t1_ns, side="left"))
        hi = int(np.searchsorted(self.ts, t0_ns, side="right"))
        return lo, min(hi, lo + 1)


def _validate(bars: Bars) -> None:
    where = bars.path
    n = len(bars.ts)
    if bars.ts.ndim != 1 or n == 0:
        raise DataError(f"{where}: no bars (the file has 0 rows)")
    for name in (*REQUIRED, "vwap"):
        values = getattr(bars, name)
        if values is not None and values.shape != bars.ts.shape:
            raise DataError(f"{where}: column '{name}' has {len(values)} rows, ts has {n}")
    _check_order(bars.ts, where)
    _check_values(bars, where)


def _check_order(ts: np.ndarray, where: str) -> None:
    step = np.diff(ts)
    bad = np.flatnonzero(step <= 0)
    if not len(bad):
        return
    row = int(bad[0]) + 1
    if step[row - 1] == 0:
        raise DataError(
            f"{where}: duplicate ts {_iso(ts[row])} at rows {row - 1} and {row}",
            "one bar per second; drop or merge the duplicate",
        )
    raise DataError(
        f"{where}: ts not ascending at row {row}: {_iso(ts[row])} after {_iso(ts[row - 1])}",
        "sort the bars by ts",
    )


def _check_values(bars: Bars, where: str) -> None:
    for name in (*REQUIRED, "vwap"):
        values = getattr(bars, name)
        if values is None:
            continue
        _first_bad(np.isnan(values), where, bars.ts, f"NaN (or null) in column '{name}'")
        if name == "volume":
            _first_bad(values < 0, where, bars.ts, "negative volume")
        else:
            _first_bad(values <= 0, where, bars.ts, f"price <= 0 in column '{name}'")
    _first_bad(bars.low > bars.high, where, bars.ts, "low above high")


def _first_bad(mask: np.ndarray, where: str, ts: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(mask)
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{where}: {what} at row {row} ({_iso(ts[row])})")


def load_bars(path: str | Path) -> Bars:
    """Read 1 s bars from a Parquet file; raise DataError with a one-line reason if unusable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    if not Path(path).is_file():
        raise DataError(f"bars file not found: {where}", "check bars_path")
    try:
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which
        # imports pandas (~200 ms of a dry run's start-up)
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        ts_name, missing = _resolve_columns(names)
        if missing:
            raise DataError(
                f"{where}: missing column(s) {', '.join(missing)}; found: {', '.join(names)}",
                _NEEDS,
            )
        wanted = [ts_name, *REQUIRED, *(["vwap"] if "vwap" in names else [])]
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{where}: not a readable Parquet file ({reason})") from None
    if table.num_rows == 0:
        raise DataError(f"{where}: no bars (the file has 0 rows)")
    prices: dict[str, Any] = {name: _floats(table.column(name), name, where)
                              for name in REQUIRED}  # Any: Bars also has int fields
    return Bars(
        ts=_ts_ns(table.column(ts_name), ts_name, where),
        **prices,
        vwap=_floats(table.column("vwap"), "vwap", where) if "vwap" in names else None,
        path=where,
    )


def _resolve_columns(names: list[str]) -> tuple[str, list[str]]:
    """The ts column's name (first alias present) and the required columns that are absent."""
    ts_name = next((alias for alias in TS_ALIASES if alias in names), "")
    missing = [] if ts_name else ["ts"]
    missing += [name for name in REQUIRED if name not in names]
    return ts_name or "ts", missing


def _ts_ns(col: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    """Epoch ns from a timestamp column (tz-aware, or naive = UTC) or int64 epoch ns."""
    import pyarrow as pa

    kind = col.type
    if pa.types.is_timestamp(kind):
        # Arrow stores tz-aware timestamps as UTC instants, and naive ones we read
        # as UTC, so the raw integer is what we want once the unit is ns.
        col = col.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64())
    elif pa.types.is_integer(kind):
        col = col.cast(pa.int64())
    else:
        raise DataError(
            f"{where}: column '{name}' has type {kind}; expected a timestamp or int64 epoch ns"
        )
    if col.null_count:
        row = int(np.flatnonzero(_numpy(col.is_null()))[0])
        raise DataError(f"{where}: null in column '{name}' at row {row}")
    return _numpy(col)


def _numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A numpy view of a null-free fixed-width column. pyarrow's own to_numpy() imports
    pandas (~0.2 s of a dry run's start-up); reading the data buffer does not."""
    import pyarrow as pa

    arr = col.combine_chunks()
    if pa.types.is_boolean(arr.type) or arr.null_count:
        return np.asarray(arr.to_pylist())
    dtype = np.dtype(arr.type.to_pandas_dtype())
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset)


def _floats(col: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    import pyarrow as pa

    kind = col.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)
            or pa.types.is_decimal(kind)):
        raise DataError(f"{where}: column '{name}' has type {kind}; expected numbers")
    # Nulls become NaN here and are reported by the NaN check with their row.
    return _numpy(col.cast(pa.float64()))
