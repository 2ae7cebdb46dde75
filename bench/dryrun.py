"""`runner run --dry-run` of the shipped one-shot with a 3 s TTL over a full day of 1 s bars.

DESIGN §9: ≤ 0.8 s wall. Baseline: `python -c "import pyarrow.parquet"` in the same run
(the floor for anything that reads Parquet). Each rep writes its ledger to its own folder,
so every run pays the same cost (a fresh day, journal + compaction into a new file).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    HEAVY,
    PY,
    ROOT,
    SAMPLE_DAY,
    Results,
    Row,
    Table,
    cleanup,
    fmt_s,
    imported_heavy,
    interleaved,
    median,
    pct,
    ratio,
    runner_argv,
    top_imports,
    with_sample_bars,
    workdir,
)

TARGET_S = 0.8
SPEC = "specs/one-shot-ttl3.yaml"


def write_spec(root: Path) -> None:
    """The shipped specs/one-shot.yaml with ttl_sec: 3."""
    text = (ROOT / "specs" / "one-shot.yaml").read_text()
    text, n = re.subn(r"(?m)^ttl_sec:.*$", "ttl_sec: 3", text)
    if n != 1:
        raise RuntimeError("specs/one-shot.yaml has no single ttl_sec line to change")
    (root / SPEC).write_text(text)


def collect(args: argparse.Namespace) -> Results:
    reps = 5 if args.quick else 15
    root = workdir("dryrun")
    try:
        shutil.copytree(ROOT / "schemas", root / "schemas")
        (root / "specs").mkdir()
        with_sample_bars(root)
        write_spec(root)
        return _measure(root, reps)
    finally:
        cleanup(root)


def _run(i: int) -> list[str]:
    return runner_argv("run", SPEC, "--dry-run", "--out-dir", f"runs/{i:03d}")


def _measure(root: Path, reps: int) -> Results:
    baseline = [PY, "-c", "import pyarrow.parquet"]
    bars = f"data/live/{SAMPLE_DAY}/bars1s_SPY.parquet"
    read_table = [PY, "-c", f"import pyarrow.parquet as pq; pq.read_table({bars!r})"]
    read_file = [PY, "-c", f"import pyarrow.parquet as pq; pq.ParquetFile({bars!r}).read()"]
    t = interleaved({"baseline": lambda i: baseline, "run": _run,
                     "read_table": lambda i: read_table, "read_file": lambda i: read_file},
                    root, reps)
    m, base = median(t["run"]), median(t["baseline"])
    res = Results("dryrun")
    res.rows.append(Row(
        "dry-run", "runner run --dry-run one-shot, TTL 3 s, 23,400 1 s bars",
        f"≤ {fmt_s(TARGET_S)}", f"{fmt_s(m)} (p90 {fmt_s(pct(t['run'], 90))})",
        f"{fmt_s(base)} (import pyarrow.parquet)", ratio(m, base), m <= TARGET_S,
    ))
    probe = _run(10_000)
    heavy = imported_heavy(probe, root)
    top = top_imports(_run(10_001), root, 8)
    res.tables.append(Table(
        "dry-run: largest top-level imports (python -X importtime, cumulative)",
        ["package", "ms"], [[mod, f"{s * 1e3:.0f}"] for mod, s in top],
        note=f"of {', '.join(HEAVY)} it imports: {', '.join(heavy) or 'none'}",
    ))
    res.tables.append(Table(
        "dry-run floor: reading the same bars file, bare python, same run (medians)",
        ["command", "wall", "imports pandas"],
        [["import pyarrow.parquet", fmt_s(base), "no"],
         ["pq.read_table(bars)  (what runner.bars uses)", fmt_s(median(t["read_table"])),
          _pandas(read_table, root)],
         ["pq.ParquetFile(bars).read()", fmt_s(median(t["read_file"])),
          _pandas(read_file, root)],
         ["runner run --dry-run", fmt_s(m), _pandas(probe, root)]],
        note="pq.read_table goes through pyarrow.dataset, whose import pulls in pandas "
             "(pyarrow's pandas shim); ParquetFile(...).read() reads the same columns without "
             "it. The difference between those two rows is what the dry-run pays for it.",
    ))
    res.notes.append(f"{reps} timed runs after 1 warm-up, round-robin with the baselines.")
    return res


def _pandas(argv: list[str], root: Path) -> str:
    return "yes" if "pandas" in imported_heavy(argv, root) else "no"


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("dryrun", collect))
