"""`runner tca` on a day of 10k / 100k / 1M ledger rows, through the CLI in a subprocess.

DESIGN §9: `runner tca` on 1,000,000 rows ≤ 1.5× `pq.read_table` of it. The day is
synthetic (bench/_synth.py: 5 events per order, LEDGER_SCHEMA, written as the ledger
writes it). Baseline, same run: a bare `python -c` that imports pyarrow and reads the same
file with `pq.read_table`, the floor for any tool that reads it. Text output goes to
/dev/null; the process still formats every order line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PY,
    Results,
    Row,
    Table,
    cleanup,
    fmt_s,
    interleaved,
    median,
    ratio,
    runner_argv,
    workdir,
)
from _synth import DAY, ROWS_PER_ORDER, write_day  # noqa: E402

TARGET_RATIO = 1.5
SIZES = (10_000, 100_000, 1_000_000)


def collect(args: argparse.Namespace) -> Results:
    root = workdir("tca")
    try:
        return _measure(root, 3 if args.quick else 7)
    finally:
        cleanup(root)


def _measure(root: Path, reps: int) -> Results:
    res = Results("tca")
    rows = []
    for size in SIZES:
        out = Path(f"out-{size}")
        path = write_day(root / out, size)
        read = f"import pyarrow.parquet as pq; pq.read_table({str(path)!r})"
        commands = {
            "baseline": lambda i, read=read: [PY, "-c", read],
            "tca": lambda i, out=out: runner_argv("tca", DAY, "--out-dir", str(out)),
        }
        if size == SIZES[-1]:  # --json only where the target is, to keep run.py short
            commands["tca_json"] = lambda i, out=out: runner_argv(
                "tca", DAY, "--out-dir", str(out), "--json")
        t = interleaved(commands, root, reps)
        m, base = median(t["tca"]), median(t["baseline"])
        mj = median(t["tca_json"]) if "tca_json" in t else None
        rows.append([f"{size:,}", f"{size // ROWS_PER_ORDER:,}", fmt_s(m),
                     fmt_s(mj) if mj else "—",
                     fmt_s(base), ratio(m, base)])
        if size == 1_000_000 and mj is not None:
            res.rows.append(Row("tca", "runner tca on a 1,000,000-row day (CLI, subprocess)",
                                f"≤ {TARGET_RATIO}× baseline",
                                f"{fmt_s(m)} (--json {fmt_s(mj)}, {ratio(mj, base)})",
                                f"{fmt_s(base)} (python: pq.read_table)", ratio(m, base),
                                m <= TARGET_RATIO * base,
                                f"{fmt_s(m - base)} over the read: runner tca's own work "
                                "(runner/tca.py, runner/report.py: per-order figures, then "
                                "every order line; --json serialises them all)"))
        cleanup(root / out)
    res.tables.append(Table("runner tca by day size (CLI wall, medians)",
                            ["rows", "orders", "tca (text)", "tca --json",
                             "baseline: read only", "ratio"], rows))
    res.notes.append(f"{reps} timed runs of each after 1 warm-up, round-robin.")
    return res


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("tca", collect))
