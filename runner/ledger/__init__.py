"""The order ledger: a write-ahead journal per run, compacted into one Parquet file per day.

Layout (DESIGN §6)::

    OUT_DIR/YYYY-MM-DD/ledger.parquet          the day's events, sorted by (ts, run_id, seq)
    OUT_DIR/YYYY-MM-DD/ledger.part-<run>.parquet  on a big day: one run's events (see below)
    OUT_DIR/YYYY-MM-DD/_journal-<run_id>.jsonl one JSON line per event, fsynced, while a run lives
    OUT_DIR/YYYY-MM-DD/.ledger.lock            serialises compaction between processes

A run's cost is O(its own events) (DESIGN §9): while the day holds fewer than
REWRITE_BELOW_ROWS rows, a run's commit rewrites ledger.parquet (milliseconds); beyond that
it writes its rows as a part file, and the run that finds MAX_PARTS parts folds them all
into ledger.parquet. `read_ledger` merges the day file and its parts and drops any
(run_id, seq) seen twice (a fold that crashed before deleting its parts).

Durability: `Ledger.append` returns only once its line is fsynced, so an INTENT is on disk
before the order is sent. `Ledger.commit` merges the journals into `ledger.parquet` under the
day lock (temp file, fsync, `os.replace`, fsync of the directory) and only then deletes them;
a crash at any point leaves either the old file plus journals or the new file plus journals,
and rows are keyed by (run_id, seq), so a second merge doubles nothing. A run holds an
exclusive `flock` on its own journal while it lives, so other runs merge only the journals of
runs that are gone.

Why `_journal-` and `.ledger.lock`: pyarrow, pandas and Spark skip files whose names start
with `_` or `.`, so the out_dir root reads as a dataset of Parquet files as it is::

    import pyarrow.dataset as ds, pyarrow as pa
    days = ds.partitioning(pa.schema([("date", pa.string())]))   # YYYY-MM-DD folders
    ds.dataset("data/exec", format="parquet", partitioning=days).to_table()
    pandas.read_parquet("data/exec")                   # all days, no date column
    duckdb: SELECT * FROM read_parquet('data/exec/*/ledger*.parquet', filename=true)

(`read_ledger` also includes rows that are still only in journals.)

The modules: schema (LEDGER_SCHEMA, the contract, and the file names), event (LedgerEvent,
the typed row the engine and recover write), journal (`Ledger`, one run's journal, and
`RunJournal`, its lifecycle in a run), files (durable writes, journals, locks), arrow
(rows <-> tables, Parquet), compact (merging journals into the day), read (reading it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.ledger.access import check_writable as check_writable
    from runner.ledger.arrow import rows_to_table as rows_to_table
    from runner.ledger.arrow import table_to_rows as table_to_rows
    from runner.ledger.compact import MAX_PARTS as MAX_PARTS
    from runner.ledger.compact import REWRITE_BELOW_ROWS as REWRITE_BELOW_ROWS
    from runner.ledger.compact import leftover_days as leftover_days
    from runner.ledger.compact import live_runs as live_runs
    from runner.ledger.compact import merge_leftovers as merge_leftovers
    from runner.ledger.event import LedgerEvent as LedgerEvent
    from runner.ledger.files import remove_durable as remove_durable
    from runner.ledger.files import write_durable as write_durable
    from runner.ledger.journal import Ledger as Ledger
    from runner.ledger.journal import RunJournal as RunJournal
    from runner.ledger.read import read_day_settled as read_day_settled
    from runner.ledger.read import read_ledger as read_ledger
    from runner.ledger.read import tags_on_day as tags_on_day
    from runner.ledger.schema import COLUMNS as COLUMNS
    from runner.ledger.schema import JOURNAL_PREFIX as JOURNAL_PREFIX
    from runner.ledger.schema import JOURNAL_SUFFIX as JOURNAL_SUFFIX
    from runner.ledger.schema import LEDGER_FILE as LEDGER_FILE
    from runner.ledger.schema import LEDGER_SCHEMA as LEDGER_SCHEMA
    from runner.ledger.schema import LOCK_FILE as LOCK_FILE
    from runner.ledger.schema import PART_PREFIX as PART_PREFIX
    from runner.ledger.schema import SORT_KEYS as SORT_KEYS
    from runner.ledger.schema import journal_path as journal_path
    from runner.ledger.schema import ledger_schema as ledger_schema
    from runner.ledger.schema import trading_date as trading_date

# Each public name and the module that holds it (runner/ledger/<module>.py), imported on
# first use: `LedgerEvent` is pure Python (the engine imports it at start-up), the rest
# brings pyarrow.
_HOME = {
    "COLUMNS": "schema",
    "JOURNAL_PREFIX": "schema",
    "JOURNAL_SUFFIX": "schema",
    "LEDGER_FILE": "schema",
    "LEDGER_SCHEMA": "schema",
    "LOCK_FILE": "schema",
    "PART_PREFIX": "schema",
    "SORT_KEYS": "schema",
    "journal_path": "schema",
    "ledger_schema": "schema",
    "trading_date": "schema",
    "LedgerEvent": "event",
    "rows_to_table": "arrow",
    "table_to_rows": "arrow",
    "check_writable": "access",
    "remove_durable": "files",
    "write_durable": "files",
    "MAX_PARTS": "compact",
    "REWRITE_BELOW_ROWS": "compact",
    "leftover_days": "compact",
    "live_runs": "compact",
    "merge_leftovers": "compact",
    "Ledger": "journal",
    "RunJournal": "journal",
    "read_day_settled": "read",
    "read_ledger": "read",
    "tags_on_day": "read",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
