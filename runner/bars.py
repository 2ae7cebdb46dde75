"""Bars from Parquet, in the shapes people have, and the point-in-time questions asked of them.

Convention (the README's "Bars files" repeats it): a bar's `ts` is its START, UTC.
A bar covers [ts, ts + interval) and is known only once it has ended, at
ts + interval, where the interval is the file's own (measured, below). Every
lookup here honours that, so nothing sees the future: 5-second bars never give
1-second answers.

Reading (`load_bars`):
- Column names in any case. The timestamp is the first of ts, timestamp, time,
  datetime, date; the bar's volume-weighted price is `vwap`, else `average` or `wap` (the
  name in IB's `util.df(reqHistoricalData(...))`); `symbol` is optional.
- A timestamp column of any unit: tz-aware is converted to UTC, naive is read as
  UTC. A date column is midnight UTC (daily bars: a 1-day interval).
- Integer epochs: the unit is told by the magnitude of the first bar's value,
  against 1990-01-01 .. 2100-01-01 UTC in each unit: seconds [6.3e8, 4.1e9),
  ms [6.3e11, 4.1e12), µs [6.3e14, 4.1e15), ns [6.3e17, 4.1e18). The ranges do
  not overlap; a value in none of them, or a later value outside the first's
  unit, is an error naming the row.
- A `symbol` column: only the asked symbol's rows are bars (matched in any case).
  Without a symbol asked, a file of one symbol is read whole and a file of several
  is refused, listing them.
- The interval is the smallest step between consecutive bars; every step must be a
  whole multiple of it (missing bars are fine, bars of mixed lengths are not). One
  bar alone: 1 s, unless the caller says otherwise (`Bars(interval_ns=...)`).

The file is taken as the user wrote it: unsorted or duplicate timestamps, NaN, inf,
null, prices <= 0, negative volume, an open or close outside [low, high] and missing
columns are errors that name the file and the row, never silently repaired. Row
numbers are the file's, 0-based like pandas' `iloc` (also when a symbol column
picked the rows). A `vwap` outside [low, high] is accepted: IB's `average` can sit
slightly outside the bar's range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

BAR_NS = 1_000_000_000  # one second, the interval of a single bar

PRICE_COLUMNS = ("open", "high", "low", "close")
REQUIRED = (*PRICE_COLUMNS, "volume")
ALIASES = {  # our name -> the file's names for it, first match wins (any case)
    "ts": ("ts", "timestamp", "time", "datetime", "date"),
    **{name: (name,) for name in REQUIRED},
    "open": ("open", "open_"),  # open_: ib_async's RealTimeBar (util.df(reqRealTimeBars))
    "vwap": ("vwap", "average", "wap"),  # IB's names: BarData.average, RealTimeBar.wap
    "symbol": ("symbol",),
}
_NEEDS = ("a bars file needs ts (or timestamp/time/datetime/date), open, high, low, close, "
          "volume, in any case")
# Plausible epochs, 1990-01-01 .. 2100-01-01 UTC, in ns; per unit: these // ns per unit.
EPOCH_FROM_NS = 631_152_000 * BAR_NS
EPOCH_UNTIL_NS = 4_102_444_800 * BAR_NS
EPOCH_UNITS = (("s", BAR_NS), ("ms", 1_000_000), ("µs", 1_000), ("ns", 1))  # unit, ns each
SHOWN_SYMBOLS = 5  # symbols listed in a message before "..."
# Each pair (a, b) must hold a <= b in every bar.
OHLC_ORDER = (("low", "high"), ("low", "open"), ("open", "high"), ("low", "close"),
              ("close", "high"))
_FIX_BAR = "fix or drop that bar"


def _iso(ns: int) -> str:
    unit = "s" if ns % BAR_NS == 0 else "ns"
    stamp = np.datetime64(int(ns), "ns")
    return f"{np.datetime_as_string(stamp, unit=unit)}Z"  # type: ignore[call-overload]


def _seconds(ns: int) -> str:
    return f"{ns / BAR_NS:g} s"


def _frozen_array(values: Any, dtype: type) -> np.ndarray:
    # A copy, made read-only, so a frozen Bars really cannot change under us.
    arr: np.ndarray = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Bars:
    """Validated bars: ascending unique `ts` (int64 ns, bar start) and float64 columns.

    `interval_ns`: 0 (the default) = measured from `ts` (one bar: 1 s); a length given
    is checked against `ts` instead. `rows`: each bar's row in its file, for messages."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray | None = None
    path: str = field(default="<memory>")
    interval_ns: int = 0  # each bar covers [ts, ts + interval_ns)
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _frozen_array(self.ts, np.int64))
        if self.rows is not None:
            object.__setattr__(self, "rows", _frozen_array(self.rows, np.int64))
        for name in (*REQUIRED, "vwap"):
            values = getattr(self, name)
            if values is not None:
                object.__setattr__(self, name, _frozen_array(values, np.float64))
        _validate(self)
        object.__setattr__(self, "interval_ns", _interval(self))

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def first_ns(self) -> int:
        return int(self.ts[0])

    @property
    def last_end_ns(self) -> int:
        return int(self.ts[-1]) + self.interval_ns

    def arrival_at(self, t_ns: int) -> float | None:
        """Close of the last bar that ended at or before `t_ns` (ts + interval <= t_ns)."""
        n = int(np.searchsorted(self.ts, t_ns - self.interval_ns, side="right"))
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

    def row(self, i: int) -> int:
        """The file's row (0-based) of bar `i`."""
        return _file_row(self.rows, i)

    def _span(self, t0_ns: int, t1_ns: int) -> tuple[int, int]:
        """Index range of bars with ts + interval > t0 and ts < t1.

        An empty or inverted window (t1 <= t0) means "the instant t0": the one
        bar containing it, so an order that lived 0 ns still has a benchmark.
        """
        lo = int(np.searchsorted(self.ts, t0_ns - self.interval_ns, side="right"))
        if t1_ns > t0_ns:
            return lo, int(np.searchsorted(self.ts, t1_ns, side="left"))
        hi = int(np.searchsorted(self.ts, t0_ns, side="right"))
        return lo, min(hi, lo + 1)


def _validate(bars: Bars) -> None:
    where = bars.path
    n = len(bars.ts)
    if bars.ts.ndim != 1 or n == 0:
        raise DataError(f"{where}: no bars (the file has 0 rows)")
    for name in (*REQUIRED, "vwap", "rows"):
        values = getattr(bars, name)
        if values is not None and values.shape != bars.ts.shape:
            raise DataError(f"{where}: column '{name}' has {len(values)} rows, ts has {n}")
    _check_order(bars)
    _check_values(bars)


def _check_order(bars: Bars) -> None:
    ts, where = bars.ts, bars.path
    step = np.diff(ts)
    bad = np.flatnonzero(step <= 0)
    if not len(bad):
        return
    i = int(bad[0]) + 1
    if step[i - 1] == 0:
        raise DataError(
            f"{where}: duplicate ts {_iso(ts[i])} at rows {bars.row(i - 1)} and {bars.row(i)}",
            "one bar per time: drop or merge the duplicate; bars of several symbols need a "
            "symbol column",
        )
    raise DataError(
        f"{where}: ts not ascending at row {bars.row(i)}: {_iso(ts[i])} after {_iso(ts[i - 1])}",
        "sort the bars by ts",
    )


def _interval(bars: Bars) -> int:
    """The bar length: the one given, else the smallest step between bars (one bar: 1 s).
    Every step must be a whole multiple of it: gaps are missing bars, other steps are
    bars of another length, which would be read wrong."""
    steps = np.diff(bars.ts)
    smallest = int(np.argmin(steps)) if len(steps) else 0
    interval = bars.interval_ns or (int(steps[smallest]) if len(steps) else BAR_NS)
    bad = np.flatnonzero(steps % interval)
    if len(bad):
        i = int(bad[0])
        measured = ("given" if bars.interval_ns else
                    f"measured at rows {bars.row(smallest)} and {bars.row(smallest + 1)}")
        raise DataError(
            f"{bars.path}: rows {bars.row(i)} and {bars.row(i + 1)} are {_seconds(steps[i])} "
            f"apart, not a whole multiple of the bar interval {_seconds(interval)} ({measured})",
            "bars of one length only: resample the file to one interval",
        )
    return interval


def _check_values(bars: Bars) -> None:
    for name in (*REQUIRED, "vwap"):
        values = getattr(bars, name)
        if values is None:
            continue
        _first_bad(bars, ~np.isfinite(values), name, "not a finite number")
        if name == "volume":
            _first_bad(bars, values < 0, name, "below 0")
        else:
            _first_bad(bars, values <= 0, name, "not a positive price")
    for low, high in OHLC_ORDER:
        _first_above(bars, low, high)


def _first_bad(bars: Bars, mask: np.ndarray, name: str, what: str) -> None:
    bad = np.flatnonzero(mask)
    if len(bad):
        i = int(bad[0])
        value = float(getattr(bars, name)[i])
        shown = "NaN or null" if np.isnan(value) else repr(value)
        raise DataError(f"{_at(bars, i)}: {name} is {shown}, {what}", _FIX_BAR)


def _first_above(bars: Bars, low: str, high: str) -> None:
    lows, highs = getattr(bars, low), getattr(bars, high)
    bad = np.flatnonzero(lows > highs)
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{_at(bars, i)}: {low} {float(lows[i])!r} is above {high} {float(highs[i])!r}",
            f"every bar needs low <= open, close <= high; {_FIX_BAR}",
        )


def _at(bars: Bars, i: int) -> str:
    return f"{bars.path}: row {bars.row(i)} ({_iso(bars.ts[i])})"


# --------------------------------------------------------------------- reading a file


def load_bars(path: str | Path, symbol: str | None = None, sec_type: str = "STK") -> Bars:
    """Read bars from a Parquet file (module docstring: the shapes read), `symbol`'s rows
    only if the file has a symbol column; raise DataError with a one-line reason if unusable.
    A future's or an option's bars cannot be picked by symbol (every ES expiry is ES, an
    option's symbol is its underlying's): for those a file with a symbol column is refused."""
    where = str(path)
    if not Path(path).is_file():
        raise DataError(f"bars file not found: {where}", "check bars_path")
    table, columns = _read(path, where)
    if table.num_rows == 0:
        raise DataError(f"{where}: no bars (the file has 0 rows)")
    if "symbol" in columns and sec_type not in BY_SYMBOL:
        raise DataError(f"{where}: a column '{columns['symbol']}' names its rows by symbol, "
                        f"which does not tell one {sec_type} of {symbol} from another (nor an "
                        "option from its underlying); nothing was sent",
                        "give a file of this contract's bars only, without a symbol column")
    rows = (_symbol_rows(table.column(columns["symbol"]), columns["symbol"], symbol, where)
            if "symbol" in columns else None)
    got = {name: _floats(table.column(columns[name]), columns[name], where, rows)
           for name in (*REQUIRED, "vwap") if name in columns}
    return Bars(ts=_ts_ns(table.column(columns["ts"]), columns["ts"], where, rows),
                open=got["open"], high=got["high"], low=got["low"], close=got["close"],
                volume=got["volume"], vwap=got.get("vwap"), path=where, rows=rows)


BY_SYMBOL = ("STK", "CASH", "CRYPTO", "CFD")  # instruments a symbol names alone


def _read(path: str | Path, where: str) -> tuple[pa.Table, dict[str, str]]:
    """The columns we read, and our name -> the file's name for each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which
        # imports pandas (~200 ms of a dry run's start-up)
        parquet = pq.ParquetFile(path)
        columns = _resolve_columns(parquet.schema_arrow.names, where)
        return parquet.read(columns=list(columns.values())), columns
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{where}: not a readable Parquet file ({reason})") from None


def _resolve_columns(names: list[str], where: str) -> dict[str, str]:
    """Our name -> the file's column for it (any case, first alias present); raise naming
    the required columns that are absent, or two columns that differ only in case."""
    by_lower: dict[str, str] = {}
    wanted = {alias for aliases in ALIASES.values() for alias in aliases}
    for name in names:
        if name.lower() in wanted and name.lower() in by_lower:
            raise DataError(f"{where}: columns '{by_lower[name.lower()]}' and '{name}' differ "
                            "only in case", "keep one of them")
        by_lower[name.lower()] = name
    columns = {ours: next(by_lower[a] for a in aliases if a in by_lower)
               for ours, aliases in ALIASES.items() if any(a in by_lower for a in aliases)}
    missing = [name for name in ("ts", *REQUIRED) if name not in columns]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)}; found: {', '.join(names)}",
            _NEEDS,
        )
    return columns


def _symbol_rows(col: pa.ChunkedArray, name: str, symbol: str | None, where: str) -> np.ndarray:
    """The file rows of `symbol` (any case); no symbol asked: every row of a one-symbol file."""
    codes, names = _codes(col, name, where)
    present = sorted(names[code] for code in np.unique(codes[codes >= 0]))
    if not present:
        raise DataError(f"{where}: column '{name}' is empty (no symbol in any row)",
                        "fill it, or drop the column")
    if symbol is None and len(present) == 1:
        return np.flatnonzero(codes >= 0)
    if symbol is None:
        raise DataError(f"{where}: bars of {_listed(present)} and no symbol to pick",
                        "run it with an order for one of them (runner gateway: --symbol), "
                        "or write one file per symbol")
    keys = [i for i, text in enumerate(names) if text.casefold() == symbol.casefold()]
    rows = np.flatnonzero(np.isin(codes, keys))
    if not len(rows):
        raise DataError(f"{where}: no bars for {symbol}; the file has {_listed(present)}",
                        "check the order's symbol and the bars file")
    return rows


def _codes(col: pa.ChunkedArray, name: str, where: str) -> tuple[np.ndarray, list[str]]:
    """A text column as per-row codes (-1: null) into its distinct values."""
    import pyarrow as pa

    arr = col.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise DataError(f"{where}: column '{name}' has type {arr.type}; expected text",
                            "write the symbols as strings")
        arr = arr.dictionary_encode()
    names = arr.dictionary.to_pylist()
    indices = arr.indices.cast(pa.int64())
    if indices.null_count:
        return np.array([-1 if c is None else c for c in indices.to_pylist()], np.int64), names
    return _numpy(indices), names


def _listed(symbols: list[str]) -> str:
    shown = ", ".join(symbols[:SHOWN_SYMBOLS])
    return f"{shown}, ... ({len(symbols)} symbols)" if len(symbols) > SHOWN_SYMBOLS else shown


def _ts_ns(col: pa.ChunkedArray, name: str, where: str, rows: np.ndarray | None) -> np.ndarray:
    """Epoch ns of the bars: from a timestamp (tz-aware, or naive = UTC) or date column of
    any unit, or from integer epochs (unit by magnitude, `_epoch_unit`)."""
    import pyarrow as pa

    kind = col.type
    try:
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            # the stored integers are ns already: no cast (pyarrow.compute, whose import
            # costs a dry run ~25 ms)
            return _take(_null_free(col, name, where), rows)
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            # Arrow stores tz-aware timestamps as UTC instants, and naive ones (and dates)
            # we read as UTC, so the raw integer is what we want once the unit is ns.
            return _take(_null_free(col.cast(pa.timestamp("ns", tz=getattr(kind, "tz", None)))
                                    .cast(pa.int64()), name, where), rows)
        if pa.types.is_integer(kind):
            epochs = _take(_null_free(col.cast(pa.int64()), name, where), rows)
            return _epoch_ns(epochs, name, where, rows)
    except pa.ArrowInvalid as e:  # out of range for ns (before 1677, after 2262), uint64
        raise DataError(f"{where}: column '{name}': {str(e).splitlines()[0]}") from None
    raise DataError(
        f"{where}: column '{name}' has type {kind}; expected a timestamp or integer epoch "
        "s, ms, µs or ns",
        f"write it as a timestamp, e.g. pandas: df['{name}'] = pd.to_datetime(df['{name}'], "
        "utc=True)",
    )


def _null_free(col: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    if col.null_count:
        row = int(np.flatnonzero(_numpy(col.is_null()))[0])
        raise DataError(f"{where}: null in column '{name}' at row {row}")
    return _numpy(col)


def _epoch_ns(epochs: np.ndarray, name: str, where: str, rows: np.ndarray | None) -> np.ndarray:
    """Integer epochs in ns, their unit told by the first value (see the module docstring);
    every value must be a plausible epoch in that unit."""
    row = _file_row(rows, 0)
    unit = _epoch_unit(int(epochs[0]))
    if unit is None:
        raise DataError(f"{where}: column '{name}' row {row}: {int(epochs[0])} is not an epoch "
                        "from 1990 to 2100 in s, ms, µs or ns",
                        "write epochs since 1970-01-01 UTC, or a timestamp column")
    label, ns_each = unit
    bad = np.flatnonzero(~_plausible(epochs, ns_each))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where}: column '{name}' row {_file_row(rows, i)}: {int(epochs[i])} is "
                        f"not epoch {label} from 1990 to 2100 like row {row}",
                        "write every ts in one unit")
    return epochs * ns_each


def _epoch_unit(value: int) -> tuple[str, int] | None:
    """(unit, ns per unit) of the one unit in which `value` is 1990 .. 2100, else None."""
    return next(((label, ns_each) for label, ns_each in EPOCH_UNITS
                 if _plausible(np.int64(value), ns_each)), None)


def _plausible(epochs: Any, ns_each: int) -> Any:
    """Whether each epoch, in units of `ns_each` ns, is from 1990 to 2100."""
    return (EPOCH_FROM_NS // ns_each <= epochs) & (epochs < EPOCH_UNTIL_NS // ns_each)


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def _file_row(rows: np.ndarray | None, i: int) -> int:
    return int(rows[i]) if rows is not None else i


def _numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numpy view of a null-free fixed-width column. pyarrow's own to_numpy() imports
    pandas (~0.2 s of a dry run's start-up); reading the data buffer does not."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_boolean(arr.type) or arr.null_count:
        return np.asarray(arr.to_pylist())
    # a timestamp as its stored integers (its pandas dtype would import pandas)
    dtype = np.dtype(np.int64 if pa.types.is_timestamp(arr.type) else arr.type.to_pandas_dtype())
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset)


def _floats(col: pa.ChunkedArray, name: str, where: str, rows: np.ndarray | None) -> np.ndarray:
    import pyarrow as pa

    kind = col.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)
            or pa.types.is_decimal(kind)):
        raise DataError(f"{where}: column '{name}' has type {kind}; expected numbers")
    # Nulls become NaN here and are reported by the finite check with their row. No cast
    # where numpy does it (pyarrow.compute, whose import costs a dry run ~25 ms).
    if kind == pa.float64():
        return _take(_numpy(col), rows)
    if pa.types.is_integer(kind) and not col.null_count:
        return _take(_numpy(col).astype(np.float64), rows)
    return _take(_numpy(col.cast(pa.float64())), rows)
