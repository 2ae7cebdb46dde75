"""`runner ledger query`: real DuckDB over a three-day ledger written by runner.ledger.

Expected numbers are computed here from the very rows the test writes, and the same
dataset is read by pandas, pyarrow.dataset and DuckDB directly, as the README says.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.ledger import Ledger

try:
    import duckdb
except ImportError:  # CI installs it through the test extra: missing is a failure, not a skip
    pytest.fail("DuckDB is not installed: pip install -e '.[test]' (or '.[sql]')",
                pytrace=False)

NS = 1_000_000_000
DAY0 = 1_767_623_400 * NS  # 2026-01-05 14:30:00 UTC = 09:30 New York
DAYS = ("2026-01-05", "2026-01-06", "2026-01-07")
# day -> runs -> orders (symbol, last_qty of each execution, the last one a FILL unless
# the order is cancelled); two runs on the second day, an unfilled order on the first.
ORDERS: dict[str, list[list[tuple[str, list[float], str]]]] = {
    "2026-01-05": [[("SPY", [100, 50], "FILL"), ("QQQ", [30], "FILL"), ("SPY", [], "CANCEL")]],
    "2026-01-06": [[("SPY", [10, 20, 30], "FILL")], [("SPY", [5], "CANCEL"), ("IWM", [2], "FILL")]],
    "2026-01-07": [[("QQQ", [7, 8], "FILL"), ("IWM", [1], "FILL")]],
}  # fmt: skip

FILLS_SQL = (
    "SELECT date, symbol, count(*) AS fills, sum(last_qty) AS qty FROM ledger "
    "WHERE event IN ('PARTIAL', 'FILL') GROUP BY ALL ORDER BY date, symbol"
)


def order_rows(tag: str, symbol: str, execs: list[float], end: str, t: int) -> list[dict[str, Any]]:
    """INTENT, ACK, an execution a second, the end (FILL carries the last one), a snapshot."""
    qty = sum(execs) + (10 if end == "CANCEL" else 0)
    base = {"tag": tag, "symbol": symbol, "side": "BUY", "qty": qty, "broker": "sim"}
    rows = [{**base, "ts": t, "event": "INTENT"}, {**base, "ts": t + 1, "event": "ACK"}]
    filled = 0.0
    for i, q in enumerate(execs):
        filled += q
        last = i == len(execs) - 1 and end == "FILL"
        rows.append({**base, "ts": t + (i + 1) * NS, "event": "FILL" if last else "PARTIAL",
                     "fill_qty": filled, "last_qty": q, "last_px": 100.0 + i, "avg_px": 100.0})
    if end == "CANCEL":
        rows.append({**base, "ts": t + (len(execs) + 1) * NS, "event": "CANCEL",
                     "fill_qty": filled})
    if filled:
        rows.append({**base, "ts": rows[-1]["ts"], "event": "PNL_SNAPSHOT", "fill_qty": filled,
                     "shortfall_bps": 1.5})
    return rows


@pytest.fixture(scope="module")
def ledger_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Three days written through Ledger (journal, commit), and every row written."""
    out = tmp_path_factory.mktemp("exec")
    written: list[dict[str, Any]] = []
    for d, day in enumerate(DAYS):
        for r, run in enumerate(ORDERS[day]):
            with Ledger(out, day, f"run{d}{r}") as ledger:
                for o, (symbol, execs, end) in enumerate(run):
                    t = DAY0 + d * 86_400 * NS + (r * 100 + o * 10) * NS
                    for row in order_rows(f"o{d}{r}{o}", symbol, execs, end, t):
                        ledger.append(row)
                        written.append({**row, "date": day})
    (out / "not-a-day").mkdir()  # stray folders are not days of the ledger
    return out, written


def query_json(capsys: pytest.CaptureFixture[str], out: Path, sql: str) -> dict[str, Any]:
    assert main(["ledger", "query", sql, "--out-dir", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fills_per_symbol_per_day_over_three_days(ledger_root, capsys) -> None:
    out, written = ledger_root
    count: Counter[tuple[str, str]] = Counter()
    qty: defaultdict[tuple[str, str], float] = defaultdict(float)
    for row in written:
        if row["event"] in ("PARTIAL", "FILL"):
            count[row["date"], row["symbol"]] += 1
            qty[row["date"], row["symbol"]] += row["last_qty"]
    expected = [[d, s, count[d, s], qty[d, s]] for d, s in sorted(count)]
    assert len({d for d, _ in count}) == 3  # the data really spans three days

    doc = query_json(capsys, out, FILLS_SQL)

    assert doc == {"version": 1, "command": "ledger query", "ok": True,
                   "columns": ["date", "symbol", "fills", "qty"], "rows": expected}


def test_every_column_and_the_date_are_there(ledger_root, capsys) -> None:
    out, written = ledger_root
    doc = query_json(capsys, out, "SELECT date, tag, event, ts, run_id, seq FROM ledger "
                     "WHERE tag = 'o110' ORDER BY seq")
    rows = [r for r in written if r["tag"] == "o110"]
    assert doc["rows"] == [
        ["2026-01-06", "o110", r["event"], _iso(r["ts"]), "run11", i + 1]
        for i, r in enumerate(rows)
    ]


def _iso(ts_ns: int) -> str:
    from datetime import UTC, datetime

    text = datetime.fromtimestamp(ts_ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    micros = ts_ns % NS // 1000  # DuckDB hands Python microseconds
    return text + (f".{micros:06d}" if micros else "") + "Z"


def test_text_output_is_an_aligned_table(ledger_root, capsys) -> None:
    out, written = ledger_root
    per_day = Counter(r["date"] for r in written)
    sql = "SELECT date, count(*) AS events FROM ledger GROUP BY date ORDER BY date"

    assert main(["ledger", "query", sql, "--out-dir", str(out)]) == 0

    width = max(len("events"), *(len(str(n)) for n in per_day.values()))
    expected = [f"date        {'events':>{width}}"]
    expected += [f"{day}  {per_day[day]:>{width}}" for day in DAYS]
    assert capsys.readouterr().out.splitlines() == expected


def test_bad_sql_is_a_one_line_error_exit_2(ledger_root, capsys) -> None:
    out, _ = ledger_root
    assert main(["ledger", "query", "SELECT nope FROM ledger", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runner: SQL: ") and "nope" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment"])
def test_a_query_with_no_statement_is_a_usage_error(ledger_root, capsys, sql) -> None:
    out_dir, _ = ledger_root
    assert main(["ledger", "query", sql, "--out-dir", str(out_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("runner: SQL: no statement in the query (")
    assert err.count("\n") == 1


def test_no_ledger_days_exit_2(tmp_path, capsys) -> None:
    assert main(["ledger", "query", "SELECT 1", "--out-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"runner: no ledger days (YYYY-MM-DD/ledger.parquet) under {tmp_path} "
        "(give the ledger root with --out-dir)\n")


def test_pandas_pyarrow_and_duckdb_read_the_same_dataset(ledger_root) -> None:
    """The README's claim: the out_dir root is a dataset as it is (lock and journal
    files are skipped by their leading `.` / `_`)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    out, written = ledger_root
    per_day = Counter(r["date"] for r in written)
    assert list((out / DAYS[0]).glob(".*"))  # the lock file is there to be skipped

    frame = pd.read_parquet(out)
    days = ds.partitioning(pa.schema([("date", pa.string())]))
    table = ds.dataset(out, format="parquet", partitioning=days).to_table()
    glob = str(out / "*" / "ledger.parquet")
    with duckdb.connect() as con:
        duck = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()

    assert len(frame) == table.num_rows == duck[0] == len(written)
    assert Counter(table.column("date").to_pylist()) == per_day


def test_a_ledger_of_before_the_contract_columns_has_them_as_null(tmp_path, capsys) -> None:
    """A day written before con_id, multiplier, ... existed (the file has none of them):
    the view still has every column of the schema, null there."""
    import pyarrow.parquet as pq

    from runner.ledger.schema import COLUMNS

    new = ("con_id", "local_symbol", "expiry", "strike", "right", "multiplier", "cash_qty", "stop",
           "trail_amount", "trail_percent", "offset", "algo")
    with Ledger(tmp_path, "2026-01-05", "old") as ledger:
        for row in order_rows("t", "SPY", [5], "FILL", DAY0):
            ledger.append(row)
    path = tmp_path / "2026-01-05" / "ledger.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(list(new)), path)
    doc = query_json(capsys, tmp_path, "SELECT * FROM ledger WHERE event = 'FILL'")
    assert doc["columns"] == [*COLUMNS, "date"]
    [row] = doc["rows"]
    assert [row[doc["columns"].index(c)] for c in new] == [None] * len(new)
    assert row[doc["columns"].index("last_qty")] == 5
