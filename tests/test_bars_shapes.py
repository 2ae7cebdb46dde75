"""Bars files in the shapes people have: one minute of bars written many ways gives the
same dry run; 5-second bars answer by their own length; bad bars are refused by row."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.bars import BAR_NS, Bars, load_bars
from runner.cli import main
from runner.errors import DataError
from runner.ledger import read_ledger

S = BAR_NS
T0 = 1_767_623_400 * S  # 2026-01-05T14:30:00Z, 09:30 New York
N = 60  # one minute of 1 s bars
DIP = {12: 500.0, 17: 800.0}  # bars whose low dips below the limit -> their volume
LIMIT = 100.00
QTY = 200
AT = 10  # the INTENT, seconds after T0
TTL = 20


def minute() -> dict[str, np.ndarray]:
    """SPY's minute: closes 100.10 .. 100.13, lows 100.05 except the DIP bars at 99.95."""
    i = np.arange(N)
    close = 100.10 + 0.01 * (i % 4)
    open_ = close - 0.01
    low = np.where(np.isin(i, list(DIP)), 99.95, 100.05)
    volume = np.array([DIP.get(k, 100.0 * (1 + k % 5)) for k in range(N)])
    return {"ts": T0 + i.astype(np.int64) * S, "open": open_, "high": close + 0.04,
            "low": low, "close": close, "volume": volume, "vwap": (open_ + close) / 2}


def other_symbol() -> dict[str, np.ndarray]:
    """AAPL at the same times: prices the SPY order must never see."""
    bars = minute()
    return {**{k: v + 150.0 for k, v in bars.items() if k not in ("ts", "volume")},
            "ts": bars["ts"], "volume": bars["volume"] * 3}


def table(bars: dict[str, np.ndarray], ts: pa.Array, names: dict[str, str] | None = None,
          **extra: pa.Array) -> pa.Table:
    names = names or {}
    cols = {names.get("ts", "ts"): ts}
    cols.update({names.get(k, k): pa.array(bars[k]) for k in
                 ("open", "high", "low", "close", "volume", "vwap")})
    cols.update(extra)
    return pa.table(cols)


def epochs(per_unit: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        bars = minute()
        pq.write_table(table(bars, pa.array(bars["ts"] // per_unit, pa.int64())), path)
    return write


def timestamps(unit: str, tz: str | None, name: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        bars = minute()
        per = {"s": S, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
        ts = pa.array(bars["ts"] // per, pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
        if tz != "UTC":
            ts = ts.cast(pa.timestamp(unit, tz=tz)) if tz else ts.cast(pa.int64()).cast(
                pa.timestamp(unit))
        pq.write_table(table(bars, ts, {"ts": name}), path)
    return write


def average(path: Path) -> None:
    bars = minute()
    pq.write_table(table(bars, pa.array(bars["ts"], pa.timestamp("ns", tz="UTC")),
                         {"vwap": "average"}), path)


def capitalised(path: Path) -> None:
    bars = minute()
    names = {k: k.capitalize() for k in bars} | {"ts": "Timestamp", "vwap": "VWAP"}
    pq.write_table(table(bars, pa.array(bars["ts"], pa.timestamp("ns", tz="UTC")), names),
                   path)


def long_format(path: Path) -> None:
    """SPY and AAPL interleaved row by row, with a Symbol column."""
    spy, aapl = minute(), other_symbol()
    both = {k: np.column_stack([spy[k], aapl[k]]).ravel() for k in spy}
    symbols = pa.array(["SPY", "AAPL"] * N)
    pq.write_table(table(both, pa.array(both["ts"], pa.timestamp("ns", tz="UTC")),
                         Symbol=symbols), path)


def ib_bars(path: Path) -> None:
    """IB's own shape: ib_async's BarData through util.df, written by pandas."""
    from ib_async import util
    from ib_async.objects import BarData

    bars, eastern = minute(), ZoneInfo("US/Eastern")
    rows = [BarData(date=dt.datetime.fromtimestamp(int(bars["ts"][k]) // S, eastern),
                    open=bars["open"][k], high=bars["high"][k], low=bars["low"][k],
                    close=bars["close"][k], volume=bars["volume"][k],
                    average=bars["vwap"][k], barCount=7) for k in range(N)]
    util.df(rows).to_parquet(path)


SHAPES: dict[str, Callable[[Path], None]] = {
    "utc_ns": timestamps("ns", "UTC", "ts"),
    "epoch_ns": epochs(1),
    "epoch_us": epochs(10**3),
    "epoch_ms": epochs(10**6),
    "epoch_s": epochs(S),
    "new_york_us_date": timestamps("us", "America/New_York", "date"),
    "naive_ms_timestamp": timestamps("ms", None, "timestamp"),
    "naive_s_datetime": timestamps("s", None, "datetime"),
    "average": average,
    "capitalised": capitalised,
    "long_format": long_format,
    "ib_util_df": ib_bars,
}


def dry_run(folder: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.chdir(folder)
    return main(["run", "s.yaml", "--dry-run", *args])


def one_shot(folder: Path, write: Callable[[Path], None], order: str) -> Path:
    folder.mkdir()
    write(folder / "bars.parquet")
    (folder / "s.yaml").write_text(
        f"version: 1\nkind: one-shot\norder: {{{order}, tag: t1}}\nttl_sec: {TTL}\n"
        "bars_path: bars.parquet\nout_dir: out\n")
    return folder


BUY = f"symbol: SPY, side: BUY, qty: {QTY}, limit: {LIMIT}"


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("run_id", "bars_path")} for r in rows]


# --- acceptance 1: the same minute in every shape gives the same ledger ------------------


def test_every_shape_gives_the_same_ledger(tmp_path, monkeypatch):
    ledgers = {}
    for name, write in SHAPES.items():
        folder = one_shot(tmp_path / name, write, BUY)
        assert dry_run(folder, monkeypatch, "--at", str(T0 // S + AT)) == 0, name
        ledgers[name] = read_ledger(folder / "out").to_pylist()
    reference = comparable(ledgers["utc_ns"])
    for name, rows in ledgers.items():
        assert comparable(rows) == reference, name
    check_by_hand(ledgers["utc_ns"])


def check_by_hand(rows: list[dict]) -> None:
    """The run's figures from the minute itself, by the documented rules."""
    bars = minute()
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "PARTIAL", "CANCEL",
                                          "PNL_SNAPSHOT"]
    intent, end = T0 + AT * S, T0 + (AT + TTL) * S
    arrival = bars["close"][AT - 1]  # bar AT-1 ended exactly at the INTENT
    assert rows[0]["ts"].value == intent and rows[0]["arrival_px"] == arrival
    # bars starting at/after the ACK whose low is below the limit: the DIP bars, each giving
    # 10% of its volume at the limit, reported when the bar ends
    fills = [(r["last_qty"], r["last_px"], r["ts"].value) for r in rows[2:4]]
    assert fills == [(DIP[k] * 0.1, LIMIT, T0 + (k + 1) * S) for k in sorted(DIP)]
    filled = sum(DIP.values()) * 0.1
    assert rows[4]["ts"].value == end and rows[4]["fill_qty"] == filled
    snap = rows[5]
    life = slice(AT, AT + TTL)  # the bars overlapping [INTENT, end)
    vwap = float(np.dot(bars["vwap"][life], bars["volume"][life]) / bars["volume"][life].sum())
    end_px = bars["close"][AT + TTL - 1]  # the last bar ended at the order's end
    assert snap["vwap_px"] == pytest.approx(vwap, abs=1e-12)
    assert snap["shortfall_bps"] == pytest.approx((LIMIT - arrival) / arrival * 1e4, abs=1e-9)
    assert snap["participation"] == pytest.approx(filled / bars["volume"][life].sum())
    is_bps = (filled * (LIMIT - arrival) + (QTY - filled) * (end_px - arrival)) \
        / (QTY * arrival) * 1e4
    assert snap["is_bps"] == pytest.approx(is_bps, abs=1e-9)


def test_loaded_shapes_are_the_same_bars(tmp_path):
    expected = minute()
    for name, write in SHAPES.items():
        path = tmp_path / f"{name}.parquet"
        write(path)
        bars = load_bars(path, "spy")  # the symbol matches in any case
        assert bars.ts.tolist() == expected["ts"].tolist(), name
        for column in ("open", "high", "low", "close", "volume", "vwap"):
            assert getattr(bars, column).tolist() == expected[column].tolist(), (name, column)
        assert bars.interval_ns == S


# --- acceptance 2: 5-second bars answer by their real length -----------------------------


FIVE = 5 * S


def five_second_bars(tmp_path: Path) -> tuple[Path, dict[str, list[float]]]:
    cols = {"close": [50.0, 50.5, 51.0, 51.5], "open": [49.9, 50.1, 50.6, 51.1],
            "high": [50.2, 50.7, 51.2, 51.7], "low": [49.8, 50.0, 50.5, 51.0],
            "volume": [1000.0, 2000.0, 3000.0, 4000.0], "vwap": [50.0, 50.4, 50.9, 51.4]}
    ts = pa.array([T0 + k * FIVE for k in range(4)], pa.timestamp("ns", tz="UTC"))
    path = tmp_path / "bars.parquet"
    pq.write_table(pa.table({"ts": ts, **cols}), path)
    return path, cols


def test_five_second_bars_are_known_when_they_end(tmp_path):
    path, cols = five_second_bars(tmp_path)
    bars = load_bars(path)
    assert bars.interval_ns == FIVE
    assert bars.last_end_ns == T0 + 4 * FIVE
    assert bars.arrival_at(T0 + FIVE - 1) is None  # bar 0 runs until T0 + 5 s
    assert bars.arrival_at(T0 + FIVE) == cols["close"][0]
    # 1 s after bar 1 started it is still running: a 1-second reading would show its close
    assert bars.arrival_at(T0 + FIVE + S) == cols["close"][0]
    assert bars.arrival_at(T0 + 2 * FIVE - 1) == cols["close"][0]
    assert bars.arrival_at(T0 + 2 * FIVE) == cols["close"][1]
    # [T0+6 s, T0+8 s) lies inside bar 1 only
    assert bars.vwap_between(T0 + 6 * S, T0 + 8 * S) == cols["vwap"][1]
    assert bars.volume_between(T0 + 4 * S, T0 + 6 * S) == cols["volume"][0] + cols["volume"][1]
    assert bars.volume_between(T0 + 7 * S, T0 + 7 * S) == cols["volume"][1]


def test_dry_run_on_five_second_bars(tmp_path, monkeypatch):
    path, cols = five_second_bars(tmp_path)
    # ttl 10 s (to T0+17 s): the fill is reported when bar 2 has ended, T0+15 s, which a
    # 3 s TTL (T0+10 s) would cancel first: with 5 s bars no fill is known 3 s after the ACK
    spec = ("version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, qty: 10, "
            "allow_market: true, tag: m5}\nttl_sec: 10\nbars_path: bars.parquet\n"
            "out_dir: out\n")
    (tmp_path / "s.yaml").write_text(spec)
    assert dry_run(tmp_path, monkeypatch, "--at", str(T0 // S + 7)) == 0
    rows = read_ledger(tmp_path / "out").to_pylist()
    intent, fill, snap = rows[0], rows[2], rows[-1]
    # INTENT at T0+7 s: only bar 0 has ended (bar 1 runs to T0+10 s) -> its close
    assert intent["arrival_px"] == cols["close"][0]
    # the market order fills at the open of the first bar starting at/after the ACK: bar 2,
    # reported when it has ended (T0+15 s: 5 s after its start, not 1 s)
    assert (fill["event"], fill["last_px"], fill["ts"].value) == ("FILL", cols["open"][2],
                                                                   T0 + 3 * FIVE)
    # the order lived [T0+7 s, T0+15 s): bar 1 and bar 2, the bar it traded in
    vwap = (cols["vwap"][1] * cols["volume"][1] + cols["vwap"][2] * cols["volume"][2]) / (
        cols["volume"][1] + cols["volume"][2])
    assert snap["vwap_px"] == pytest.approx(vwap, abs=1e-12)
    assert snap["participation"] == pytest.approx(10 / (cols["volume"][1] + cols["volume"][2]))


def test_dry_run_without_at_starts_when_the_first_five_second_bar_ends(tmp_path, monkeypatch):
    path, cols = five_second_bars(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, qty: 1, limit: 1.0, "
        "tag: s5}\nttl_sec: 1\nbars_path: bars.parquet\nout_dir: out\n")
    assert dry_run(tmp_path, monkeypatch) == 0
    intent = read_ledger(tmp_path / "out").to_pylist()[0]
    assert intent["ts"].value == T0 + FIVE and intent["arrival_px"] == cols["close"][0]


def test_gaps_are_missing_bars_but_mixed_lengths_are_refused(tmp_path):
    base = {"open": [10.0] * 4, "high": [10.0] * 4, "low": [10.0] * 4, "close": [10.0] * 4,
            "volume": [1.0] * 4}
    gap = Bars(ts=[T0, T0 + FIVE, T0 + 3 * FIVE, T0 + 4 * FIVE], **base)
    assert gap.interval_ns == FIVE and gap.arrival_at(T0 + 3 * FIVE) == 10.0
    with pytest.raises(DataError) as info:
        Bars(ts=[T0, T0 + FIVE, T0 + FIVE + 7 * S, T0 + 4 * FIVE], **base, path="b.parquet")
    assert str(info.value) == (
        "b.parquet: rows 1 and 2 are 7 s apart, not a whole multiple of the bar interval 5 s "
        "(measured at rows 0 and 1) (bars of one length only: resample the file to one interval)")


def test_one_bar_is_one_second_unless_said_otherwise():
    one = {"open": [10.0], "high": [10.0], "low": [10.0], "close": [10.0], "volume": [1.0]}
    assert Bars(ts=[T0], **one).interval_ns == S
    assert Bars(ts=[T0], **one, interval_ns=FIVE).last_end_ns == T0 + FIVE


BAD = [
    ("high", 2, float("inf"), "row 2 (2026-01-05T14:30:10Z): high is inf, not a finite number"
     " (fix or drop that bar)"),
    ("close", 1, 50.8, "row 1 (2026-01-05T14:30:05Z): close 50.8 is above high 50.7"
     " (every bar needs low <= open, close <= high; fix or drop that bar)"),
    ("low", 3, 51.2, "row 3 (2026-01-05T14:30:15Z): low 51.2 is above open 51.1"
     " (every bar needs low <= open, close <= high; fix or drop that bar)"),
    ("volume", 0, -5.0, "row 0 (2026-01-05T14:30:00Z): volume is -5.0, below 0"
     " (fix or drop that bar)"),
    ("open", 2, float("nan"), "row 2 (2026-01-05T14:30:10Z): open is NaN or null, not a finite"
     " number (fix or drop that bar)"),
    ("vwap", 1, 0.0, "row 1 (2026-01-05T14:30:05Z): vwap is 0.0, not a positive price"
     " (fix or drop that bar)"),
]


@pytest.mark.parametrize(("column", "row", "value", "message"), BAD,
                         ids=[f"{c}-{v}" for c, _, v, _ in BAD])
def test_bad_bars_are_refused_by_the_cli(tmp_path, monkeypatch, capsys, column, row, value,
                                         message):
    path, cols = five_second_bars(tmp_path)
    cols[column][row] = value
    ts = pa.array([T0 + k * FIVE for k in range(4)], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"ts": ts, **cols}), path)
    (tmp_path / "s.yaml").write_text(
        "version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, qty: 1, limit: 1.0, "
        "tag: bad}\nbars_path: bars.parquet\nout_dir: out\n")
    assert dry_run(tmp_path, monkeypatch, "--at", str(T0 // S + 7)) == 2
    out, err = capsys.readouterr()
    assert err == f"runner: bars.parquet: {message}\n"
    assert not (tmp_path / "out").exists()


def test_vwap_outside_the_bar_range_is_accepted(tmp_path):
    path, cols = five_second_bars(tmp_path)
    assert cols["vwap"][0] >= cols["low"][0]
    cols["vwap"][0] = cols["high"][0] + 0.05  # IB's average can sit just outside
    ts = pa.array([T0 + k * FIVE for k in range(4)], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table({"ts": ts, **cols}), path)
    assert load_bars(path).vwap[0] == cols["vwap"][0]


# --- acceptance 3: a dry run on these files imports no pandas ----------------------------


def test_dry_runs_on_every_shape_import_no_pandas(tmp_path):
    folders = [one_shot(tmp_path / name, write, BUY) for name, write in SHAPES.items()]
    script = (
        "import os, sys\n"
        "from runner.cli import main\n"
        f"for folder in {[str(f) for f in folders]!r}:\n"
        "    os.chdir(folder)\n"
        f"    assert main(['run', 's.yaml', '--dry-run', '--at', '{T0 // S + AT}']) == 0\n"
        "    assert os.path.isdir('out/2026-01-05'), folder\n"
        "    assert 'pandas' not in sys.modules, folder\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok"


# --- the reading rules, one by one -------------------------------------------------------


def write_minute(path: Path, ts: pa.Array, names: dict[str, str] | None = None,
                 bars: dict[str, np.ndarray] | None = None, **extra: pa.Array) -> Path:
    """Bars (the minute by default) with `ts` and `extra` columns."""
    pq.write_table(table(bars or minute(), ts, names, **extra), path)
    return path


def error_of(path: Path, symbol: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        load_bars(path, symbol)
    return str(info.value)


def test_an_epoch_in_no_unit_names_the_row(tmp_path):
    ts = pa.array([12_345 + k for k in range(N)], pa.int64())
    path = write_minute(tmp_path / "b.parquet", ts)
    assert error_of(path) == (
        f"{path}: column 'ts' row 0: 12345 is not an epoch from 1990 to 2100 in s, ms, µs or "
        "ns (write epochs since 1970-01-01 UTC, or a timestamp column)")


def test_epochs_in_two_units_are_refused(tmp_path):
    seconds = (minute()["ts"] // S).tolist()
    seconds[3] *= 1000  # written in ms by mistake
    path = write_minute(tmp_path / "b.parquet", pa.array(seconds, pa.int64()))
    assert error_of(path) == (
        f"{path}: column 'ts' row 3: {seconds[3]} is not epoch s from 1990 to 2100 like row 0 "
        "(write every ts in one unit)")


def test_unit_thresholds_are_1990_and_2100(tmp_path):
    first_s, until_s = 631_152_000, 4_102_444_800  # 1990-01-01, 2100-01-01 UTC
    assert dt.datetime.fromtimestamp(first_s, dt.UTC) == dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
    assert dt.datetime.fromtimestamp(until_s, dt.UTC) == dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    one = {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]}
    path = tmp_path / "b.parquet"
    for per_unit in (S, 10**6, 10**3, 1):
        lo, hi = first_s * S // per_unit, until_s * S // per_unit
        for value in (lo, hi - 1):  # the first and last plausible value of the unit
            pq.write_table(pa.table({"ts": pa.array([value], pa.int64()), **one}), path)
            assert load_bars(path).first_ns == value * per_unit
        for value in (lo - 1, hi):  # just outside: plausible in no unit
            pq.write_table(pa.table({"ts": pa.array([value], pa.int64()), **one}), path)
            assert error_of(path).startswith(f"{path}: column 'ts' row 0: {value} is not an ")


def test_a_date_column_is_midnight_utc_and_daily_bars_a_day_long(tmp_path):
    days = pa.array([dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 9)])
    cols = {k: [10.0] * 3 for k in ("open", "high", "low", "close", "volume")}
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"Date": days, **cols}), path)
    bars = load_bars(path)
    assert bars.first_ns == T0 - (14 * 3600 + 30 * 60) * S  # 2026-01-05 00:00 UTC
    assert bars.interval_ns == 86_400 * S  # the weekend gap is 3 days: missing bars


def test_vwap_wins_over_average(tmp_path):
    bars = minute()
    path = write_minute(tmp_path / "b.parquet", pa.array(bars["ts"], pa.int64()),
                        average=pa.array(bars["vwap"] + 1))
    assert load_bars(path).vwap.tolist() == bars["vwap"].tolist()


def test_columns_differing_only_in_case_are_refused(tmp_path):
    path = write_minute(tmp_path / "b.parquet", pa.array(minute()["ts"], pa.int64()),
                        Close=pa.array(minute()["close"]))
    assert error_of(path) == (
        f"{path}: columns 'close' and 'Close' differ only in case (keep one of them)")


def test_out_of_range_timestamp_is_one_line(tmp_path):
    ts = pa.array([10**10 + k for k in range(N)], pa.int64()).cast(pa.timestamp("s"))
    path = write_minute(tmp_path / "b.parquet", ts)  # year 2286: past what ns can hold
    message = error_of(path)
    assert message.startswith(f"{path}: column 'ts': ") and "\n" not in message


def test_several_symbols_and_none_asked(tmp_path):
    path = tmp_path / "long.parquet"
    long_format(path)
    assert error_of(path) == (
        f"{path}: bars of AAPL, SPY and no symbol to pick (run it with an order for one of them"
        " (runner gateway: --symbol), or write one file per symbol)")


def test_a_symbol_with_no_rows_lists_the_first_few(tmp_path):
    n = 7
    bars = {k: np.repeat(v[:1], n) for k, v in minute().items()}
    names = [f"S{k}" for k in range(n)]
    path = write_minute(tmp_path / "b.parquet", pa.array(bars["ts"], pa.int64()), bars=bars,
                        symbol=pa.array(names))
    assert error_of(path, "QQQ") == (
        f"{path}: no bars for QQQ; the file has S0, S1, S2, S3, S4, ... (7 symbols)"
        " (check the order's symbol and the bars file)")


def test_one_symbol_is_read_whole_without_asking(tmp_path):
    bars = minute()
    symbol = pa.array(["SPY"] * N).dictionary_encode()  # as pandas writes a categorical
    path = write_minute(tmp_path / "b.parquet", pa.array(bars["ts"], pa.int64()),
                        symbol=symbol)
    assert load_bars(path).close.tolist() == bars["close"].tolist()


def test_errors_after_a_symbol_filter_name_the_files_rows(tmp_path):
    spy, aapl = minute(), other_symbol()
    both = {k: np.column_stack([spy[k], aapl[k]]).ravel() for k in spy}
    # SPY's bar k is file row 2k; bar 2 (row 4) stamped like bar 1 (row 2): SPY's own
    # indices would be 1 and 2, the messages name the file's rows
    both["ts"][4] = both["ts"][2]
    path = write_minute(tmp_path / "b.parquet", pa.array(both["ts"], pa.int64()), bars=both,
                        symbol=pa.array(["SPY", "AAPL"] * N))
    assert error_of(path, "SPY") == (
        f"{path}: duplicate ts 2026-01-05T14:30:01Z at rows 2 and 4"
        " (one bar per time: drop or merge the duplicate; bars of several symbols need a symbol"
        " column)")


def test_a_symbol_column_must_be_text(tmp_path):
    path = write_minute(tmp_path / "b.parquet", pa.array(minute()["ts"], pa.int64()),
                        symbol=pa.array([1] * N))
    assert error_of(path, "SPY") == (
        f"{path}: column 'symbol' has type int64; expected text (write the symbols as strings)")


def test_the_gateway_needs_a_symbol_for_a_file_of_several(tmp_path, capsys):
    from runner.gateway.cli import main as gateway_main

    path = tmp_path / "long.parquet"
    long_format(path)
    assert gateway_main(["--port", "0", "--bars", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"runner gateway: {path}: bars of AAPL, SPY and no symbol to pick")
    assert err.count("\n") == 1


# --- the callers ask for the order's symbol and use the bars' interval -------------------


def test_the_plot_reads_the_orders_rows_of_a_long_file(tmp_path, monkeypatch, capsys):
    folder = one_shot(tmp_path / "long", long_format, BUY)
    assert dry_run(folder, monkeypatch, "--at", str(T0 // S + AT)) == 0
    capsys.readouterr()
    assert main(["tca", "--out-dir", "out", "--plot", "plots", "--bars", "bars.parquet"]) == 0
    assert capsys.readouterr().err == "wrote plots/t1.png\n"  # no "bars not used: ..."


def test_the_gateways_quote_and_the_reference_wait_for_a_five_second_bar_to_end(tmp_path):
    from runner.gateway.barclock import BarClock
    from runner.gateway.marketdata import bars_between, quote_from_bars
    from runner.preflight import reference

    path, cols = five_second_bars(tmp_path)
    bars = load_bars(path)
    clock = BarClock(bars, start_wall_ns=0)  # wall 0 = T0
    assert quote_from_bars(clock, -1) is None  # before the first bar starts: no trade yet
    inside = quote_from_bars(clock, FIVE - 1)  # inside bar 0: its open, the first trade
    assert inside is not None and inside.last == cols["open"][0] != cols["close"][0]
    assert quote_from_bars(clock, 7 * S).last == cols["close"][0]  # bar 1 runs to T0+10 s
    assert reference(bars, T0 + 7 * S) == (cols["close"][0], T0 + FIVE)
    # historical bars: only those that ended by the wall time asked
    assert [b.close for b in bars_between(clock, 0, 14 * S)] == cols["close"][:2]


def test_plan_broker_reads_the_orders_rows_of_a_long_file(gateway, cli, tmp_path):
    long_format(tmp_path / "bars.parquet")
    (tmp_path / "w.yaml").write_text(
        f"version: 1\nkind: one-shot\norder: {{{BUY}, tag: wl}}\nbars_path: bars.parquet\n")
    code, out, err = cli(gateway.port, "plan", "w.yaml", "--broker")
    assert (code, err) == (0, "")  # not "bars of AAPL, SPY and no symbol to pick"
    assert "what-if (IB, account DU****567; no order was created)" in out


def test_ibs_real_time_bars_are_read_as_five_second_bars(tmp_path):
    """util.df(reqRealTimeBars): time, endTime, open_, high, low, close, volume, wap, count."""
    from ib_async import util
    from ib_async.objects import RealTimeBar

    start = dt.datetime(2026, 1, 5, 14, 30, tzinfo=dt.UTC)
    rows = [RealTimeBar(time=start + dt.timedelta(seconds=5 * k), endTime=-1,
                        open_=100.0 + k, high=101.0 + k, low=99.0 + k, close=100.5 + k,
                        volume=10.0 * (k + 1), wap=100.25 + k, count=3) for k in range(4)]
    util.df(rows).to_parquet(tmp_path / "rt.parquet")
    bars = load_bars(tmp_path / "rt.parquet")
    assert bars.interval_ns == 5 * S and bars.first_ns == int(start.timestamp()) * S
    assert list(bars.open) == [100.0, 101.0, 102.0, 103.0]
    assert list(bars.vwap) == [100.25, 101.25, 102.25, 103.25]  # IB's wap
    t = bars.first_ns + 9 * S  # bar 0 ended at 5 s, bar 1 not until 10 s
    assert bars.arrival_at(t) == 100.5
    assert bars.vwap_between(bars.first_ns, bars.first_ns + 10 * S) == \
        (100.25 * 10 + 101.25 * 20) / 30
