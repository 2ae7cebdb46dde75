"""Reading the ledger: a file, a journal, a day folder or the whole out_dir (every day),
with the rows still only in journals; and the reads the gates make under the day lock."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from runner.errors import LedgerError
from runner.ledger.arrow import merge, read_parquet, table_to_rows
from runner.ledger.compact import day_dirs
from runner.ledger.files import flocked, journals, parse_journal
from runner.ledger.schema import (
    DAY_RE,
    JOURNAL_SUFFIX,
    LEDGER_FILE,
    LOCK_FILE,
    check_day,
    ledger_schema,
)


def _is_day_dir(path: Path) -> bool:
    return bool(DAY_RE.match(path.name)) or (path / LEDGER_FILE).exists() or bool(journals(path))


def _read_day(day_dir: Path, schema: pa.Schema) -> pa.Table:
    """ledger.parquet, with the rows of rescue files and journals (live ones too)."""
    ledger = day_dir / LEDGER_FILE
    base = read_parquet(ledger, schema) if ledger.exists() else None
    rescued = [read_parquet(p, schema) for p in sorted(day_dir.glob("ledger.*.parquet"))]
    rows = [row for t in rescued for row in table_to_rows(t)]
    rows += [row for p in journals(day_dir) for row in parse_journal(p)]
    return merge(base, rows, schema)[0]


def read_ledger(
    path_or_dir: str | os.PathLike[str], columns: Iterable[str] | None = None
) -> pa.Table:
    """Every event seen: a ledger file, a journal, a day folder, or the out_dir root
    (all days). Sorted by (ts, run_id, seq); rows still only in journals included.
    `columns` reads only those (and ts, run_id, seq), which is much faster on big days."""
    path, schema = Path(path_or_dir), ledger_schema(columns)
    if path.is_file():
        if path.suffix == JOURNAL_SUFFIX:
            return merge(None, parse_journal(path), schema)[0]
        return read_parquet(path, schema)
    if not path.is_dir():
        raise LedgerError(f"no ledger at {path}")
    days = [path] if _is_day_dir(path) else day_dirs(path)
    tables = [_read_day(d, schema) for d in days]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_day_settled(day_dir: Path, columns: Iterable[str] | None = None) -> pa.Table:
    """A day's events as one consistent snapshot: read under the day's compaction lock, so
    a run committing meanwhile (journal into ledger.parquet, then the journal removed)
    cannot hide its rows between the two reads (what the day caps count)."""
    with flocked(Path(day_dir) / LOCK_FILE):
        return read_ledger(day_dir, columns)


def tags_on_day(out_dir: Path, day: str) -> set[str]:
    """Every tag the day has seen, journals of live runs included (the duplicate guard),
    read under the day's compaction lock like read_day_settled."""
    day_dir = Path(out_dir) / check_day(day)
    if not day_dir.is_dir():
        return set()
    with flocked(day_dir / LOCK_FILE):
        return _tags_in(day_dir)


def _tags_in(day_dir: Path) -> set[str]:
    import pyarrow.compute as pc  # only for a day with files (a dry run's fresh day: none)

    tags: set[str] = set()
    for path in [day_dir / LEDGER_FILE, *sorted(day_dir.glob("ledger.*.parquet"))]:
        if path.exists():
            column = read_parquet(path, ledger_schema(["tag"])).column("tag")
            tags.update(t for t in pc.unique(column).to_pylist() if t is not None)
    for journal in journals(day_dir):
        tags.update(r["tag"] for r in parse_journal(journal) if r.get("tag") is not None)
    return tags
