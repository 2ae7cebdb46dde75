"""`runner run --dry-run` of the shipped one-shot with a 3 s TTL over a full day of 1 s bars.

DESIGN §9: ≤ 1.6× `python -c "import yaml, jsonschema, pyarrow.parquet"` measured in the
same run (the floor for anything that reads a YAML spec, checks it against its JSON Schema
and reads Parquet). Each rep writes its ledger to its own folder, so every run pays the
same cost (a fresh day, journal + compaction into a new file).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
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
    self_import_times,
    top_imports,
    with_sample_bars,
    workdir,
)

TARGET_RATIO = 1.6
FLOOR = "import yaml, jsonschema, pyarrow.parquet"
SPEC = "specs/one-shot-ttl3.yaml"
BEYOND_SHOWN = 6
IMPORT_SAMPLES = 5


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
    baseline = [PY, "-c", FLOOR]
    bars = f"data/live/{SAMPLE_DAY}/bars1s_SPY.parquet"
    read_table = [PY, "-c", f"{FLOOR} as pq; pq.read_table({bars!r})"]
    read_file = [PY, "-c", f"{FLOOR} as pq; pq.ParquetFile({bars!r}).read()"]
    t = interleaved({"baseline": lambda i: baseline, "run": _run,
                     "read_table": lambda i: read_table, "read_file": lambda i: read_file},
                    root, reps)
    m, base = median(t["run"]), median(t["baseline"])
    # every probe in a folder of its own: a second run into the same day merges into rows
    # that are there, which is another (heavier) path than the timed runs'
    beyond, imports = _beyond_floor(root, lambda k: _run(10_000 + k), baseline, m - base)
    syncs, synced = _fsyncs(root, [_run(10_200 + k) for k in range(IMPORT_SAMPLES)])
    res = Results("dryrun")
    res.rows.append(Row(
        "dry-run", "runner run --dry-run one-shot, TTL 3 s, 23,400 1 s bars",
        f"≤ {TARGET_RATIO}× baseline", f"{fmt_s(m)} (p90 {fmt_s(pct(t['run'], 90))})",
        f"{fmt_s(base)} ({FLOOR})", ratio(m, base), m <= TARGET_RATIO * base,
        f"{fmt_s(m - base)} over the floor: {fmt_s(imports)} importing what the floor does "
        f"not ({beyond.rows[0][0]} {beyond.rows[0][1]}, {beyond.rows[1][0]} "
        f"{beyond.rows[1][1]}, …), {fmt_s(m - base - imports)} the run's own work (of it, "
        f"its {syncs} fsyncs: {fmt_s(synced)}, median of {IMPORT_SAMPLES} probes)",
    ))
    heavy = imported_heavy(_run(10_100), root)
    top = top_imports(_run(10_101), root, 8)
    res.tables.append(Table(
        "dry-run: largest top-level imports (python -X importtime, cumulative)",
        ["package", "ms"], [[mod, f"{s * 1e3:.0f}"] for mod, s in top],
        note=f"of {', '.join(HEAVY)} it imports: {', '.join(heavy) or 'none'}",
    ))
    res.tables.append(Table(
        "dry-run floor: reading the same bars file, bare python, same run (medians)",
        ["command", "wall", "imports pandas"],
        [[FLOOR, fmt_s(base), "no"],
         ["pq.read_table(bars)", fmt_s(median(t["read_table"])),
          _pandas(read_table, root)],
         ["pq.ParquetFile(bars).read()  (what runner.bars uses)", fmt_s(median(t["read_file"])),
          _pandas(read_file, root)],
         ["runner run --dry-run", fmt_s(m), _pandas(_run(10_102), root)]],
        note="pq.read_table goes through pyarrow.dataset, whose import pulls in pandas "
             "(pyarrow's pandas shim); ParquetFile(...).read() reads the same columns without "
             "it. The difference between those two rows is what the dry-run pays for it.",
    ))
    res.tables.append(beyond)
    res.notes.append(f"{reps} timed runs after 1 warm-up, round-robin with the baselines.")
    return res


def _beyond_floor(root: Path, run: Callable[[int], list[str]], floor: list[str],
                  gap: float) -> tuple[Table, float]:
    """Where the dry run's time over the floor goes: the modules it imports that the
    floor does not (own import time, by package), and what is left, its own work; and
    the seconds of those imports."""
    floor_modules = self_import_times(floor, root)
    samples: dict[str, list[float]] = {}
    for k in range(IMPORT_SAMPLES):
        extra: dict[str, float] = {}
        for module, own in self_import_times(run(k), root).items():
            if module not in floor_modules:
                package = module.split(".")[0]
                extra[package] = extra.get(package, 0.0) + own
        for package, own in extra.items():
            samples.setdefault(package, []).append(own)
    ranked = sorted(((p, median(xs)) for p, xs in samples.items()), key=lambda kv: -kv[1])
    shown = [[package, fmt_s(own)] for package, own in ranked[:BEYOND_SHOWN]]
    rest = sum(own for _, own in ranked[BEYOND_SHOWN:])
    imports = sum(own for _, own in ranked)
    return Table(
        "dry-run over its floor: imports the floor does not make (own time, by package), "
        "then the work",
        ["what", "time"],
        [*shown, [f"{len(ranked) - BEYOND_SHOWN} other packages", fmt_s(rest)],
         ["all imports beyond the floor", fmt_s(imports)],
         ["the run's work (median gap over the floor, less those imports)",
          fmt_s(gap - imports)]],
        note=f"Import figures: medians of {IMPORT_SAMPLES} runs under -X importtime (which "
             "slows imports a little); the gap is the median wall difference of the timed "
             "runs. On a loaded machine the two can disagree.",
    ), imports


def _fsyncs(root: Path, runs: list[list[str]]) -> tuple[int, float]:
    """How many fsyncs a dry run makes (journal, its events, the day's file, the folders)
    and the median of their total time over `runs`: the part of its own work that a busy
    disk stretches, and that the floor (no writes) never pays."""
    totals, count = [], 0
    for argv in runs:
        assert argv[:3] == [PY, "-m", "runner"]
        code = ("import os, sys, time\n"
                "spent = []\n"
                "def fsync(fd, _fsync=os.fsync):\n"
                "    t = time.perf_counter(); _fsync(fd); spent.append(time.perf_counter() - t)\n"
                "os.fsync = fsync\n"
                "from runner.cli import main\n"
                f"code = main({argv[3:]!r})\n"
                "print(len(spent), sum(spent), file=sys.stderr)\n"
                "sys.exit(code)\n")
        proc = subprocess.run([PY, "-c", code], cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fsync probe failed: {proc.stderr[-2000:]}")
        n, total = proc.stderr.split()[-2:]
        count, totals = int(n), [*totals, float(total)]
    return count, median(totals)


def _pandas(argv: list[str], root: Path) -> str:
    return "yes" if "pandas" in imported_heavy(argv, root) else "no"


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("dryrun", collect))
