"""Merging journals into the day's ledger.parquet (or, on a big day, a part file of the
run's own rows), under the day lock; and what `runner recover` asks of the day folders."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runner.errors import LedgerError
from runner.ledger.arrow import (
    merge,
    read_parquet,
    rows_to_table,
    sorted_unique_rows,
    table_to_rows,
    write_parquet_atomic,
)
from runner.ledger.files import (
    claim,
    flocked,
    fsync_dir,
    journals,
    parse_journal,
    remove_stale_temps,
)
from runner.ledger.schema import (
    DAY_RE,
    JOURNAL_PREFIX,
    JOURNAL_SUFFIX,
    LEDGER_FILE,
    LOCK_FILE,
    PART_PREFIX,
    check_day,
)

# Below this many rows the day's file is simply rewritten by each run (tens of ms). Above
# it a run writes only its own rows, as a part file (O(its own events), DESIGN §9), and
# the parts are folded into ledger.parquet once there are more than MAX_PARTS of them.
REWRITE_BELOW_ROWS = 100_000
MAX_PARTS = 16


def compact(day_dir: Path, own: Path | None, rescue_tag: str) -> int:
    """Merge `own` and every unclaimed journal into ledger.parquet; rows merged.

    Caller holds the day lock. On an unreadable ledger.parquet the rows go to
    `ledger.<rescue_tag>.parquet`, every journal is kept and LedgerError is raised.
    """
    remove_stale_temps(day_dir)
    claimed = {p: claim(p) for p in journals(day_dir) if p != own}
    paths = [p for p, fd in claimed.items() if fd is not None] + ([own] if own else [])
    try:
        parsed, bad = _parse_all(paths)
        rows = [row for p in parsed for row in parsed[p]]
        count = _write_merged(day_dir, rows, rescue_tag) if rows else 0
        for path in parsed:
            path.unlink(missing_ok=True)
        if parsed:
            fsync_dir(day_dir)
    finally:
        for fd in claimed.values():
            if fd is not None:
                os.close(fd)
    if bad:  # the others are merged; these stay for a person to look at
        raise LedgerError("; ".join(bad), "fix or move it; the other journals were merged")
    return count


def _parse_all(paths: list[Path]) -> tuple[dict[Path, list[dict[str, Any]]], list[str]]:
    parsed: dict[Path, list[dict[str, Any]]] = {}
    bad: list[str] = []
    for path in paths:
        try:
            parsed[path] = parse_journal(path)
        except LedgerError as exc:
            bad.append(exc.message)
    return parsed, bad


def _write_merged(day_dir: Path, rows: list[dict[str, Any]], rescue_tag: str) -> int:
    ledger = day_dir / LEDGER_FILE
    try:
        base_rows = pq.ParquetFile(ledger).metadata.num_rows if ledger.exists() else 0
        parts = sorted(day_dir.glob(f"{PART_PREFIX}*.parquet"))
        if base_rows >= REWRITE_BELOW_ROWS and len(parts) < MAX_PARTS:
            return _write_part(day_dir, rows, rescue_tag)
        base = read_parquet(ledger) if ledger.exists() else None
    except (LedgerError, pa.ArrowException, OSError) as exc:
        why = str(exc) if isinstance(exc, LedgerError) else f"{ledger}: cannot read the " \
            f"ledger ({exc})"
        rescue = day_dir / f"ledger.{rescue_tag}.parquet"
        merged, _ = merge(None, rows)
        write_parquet_atomic(merged, rescue, rescue_tag)
        raise LedgerError(
            f"{why}; left it untouched and wrote {merged.num_rows} rows to {rescue}",
            "the journals are kept; repair or move the unreadable file, then `runner recover`",
        ) from exc
    folded = [row for p in parts for row in table_to_rows(read_parquet(p))]
    merged, count = merge(base, folded + rows)
    if count or parts:
        write_parquet_atomic(merged, ledger, rescue_tag)
    for part in parts:  # their rows are in ledger.parquet now
        part.unlink(missing_ok=True)
    return count


def _write_part(day_dir: Path, rows: list[dict[str, Any]], run_id: str) -> int:
    """A big day: this run's rows go to a part file of their own; ledger.parquet is not
    read or rewritten. Readers merge the parts (and drop any (run_id, seq) seen twice)."""
    part = rows_to_table(sorted_unique_rows(rows))
    write_parquet_atomic(part, day_dir / f"{PART_PREFIX}{run_id}.parquet", run_id)
    return int(part.num_rows)


def merge_leftovers(out_dir: Path, day: str) -> int:
    """Merge the journals of runs that are gone (crashed) into the day's ledger; rows merged."""
    day_dir = Path(out_dir) / check_day(day)
    if not day_dir.is_dir():
        return 0
    with flocked(day_dir / LOCK_FILE):
        return compact(day_dir, None, f"recover-{uuid.uuid4().hex[:8]}")


def leftover_days(out_dir: Path) -> list[str]:
    """Days with journals on disk (crashed or live runs): what `runner recover` visits."""
    root = Path(out_dir)
    return [d.name for d in day_dirs(root) if journals(d)] if root.is_dir() else []


def live_runs(out_dir: Path, day: str) -> set[str]:
    """Runs whose journal is still on disk after a merge: running now (they hold its lock)."""
    day_dir = Path(out_dir) / check_day(day)
    if not day_dir.is_dir():
        return set()
    return {p.name[len(JOURNAL_PREFIX):-len(JOURNAL_SUFFIX)] for p in journals(day_dir)}


def day_dirs(root: Path) -> list[Path]:
    """The YYYY-MM-DD folders under `root`, in date order."""
    return sorted(p for p in root.iterdir() if p.is_dir() and DAY_RE.match(p.name))

