"""Shared helpers for the bench scripts: timing, subprocess CLI runs, result rows.

Each bench script is runnable alone (`python bench/X.py`) and prints its figures; with
`--json FILE` it also writes them as JSON, which `bench/run.py` turns into BENCHMARKS.md.
Benchmarks are not tests: they measure, they never assert.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SAMPLE_DAY = "2026-01-05"
SAMPLE_BARS = ROOT / "data" / "live" / SAMPLE_DAY / "bars1s_SPY.parquet"
HEAVY = ("pandas", "pyarrow", "ib_async", "numpy")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the BENCHMARKS.md summary table."""

    area: str
    name: str
    target: str
    measured: str
    baseline: str = "—"
    ratio: str = "—"
    ok: bool | None = None  # None: no target to pass or fail
    note: str = ""  # where the time over the baseline goes


@dataclass(frozen=True, slots=True)
class Table:
    """A free-form table (cost curves, breakdowns) with a note under it."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(slots=True)
class Results:
    area: str
    rows: list[Row] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "rows": [asdict(r) for r in self.rows],
            "tables": [asdict(t) for t in self.tables],
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------- stats


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def pct(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: a value that was actually observed."""
    ordered = sorted(xs)
    k = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[k]


def fmt_s(seconds: float) -> str:
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "—"


def time_call(fn: Callable[[], Any], reps: int) -> list[float]:
    """Wall seconds of `reps` calls (setup belongs outside `fn`)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- subprocesses


def run_timed(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall seconds of one subprocess, from spawn to exit; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode} in {cwd}: {proc.stderr.decode()[-2000:]}"
        )
    return elapsed


def interleaved(
    commands: dict[str, Callable[[int], Sequence[str]]],
    cwd: Path,
    reps: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time several commands round-robin, so drift (page cache, CPU boost, a neighbour's
    load) hits all of them alike; the first `warmup` rounds are thrown away. Each command
    is a function of the rep number, so a rep can use its own output folder."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + reps):
        for name, argv in commands.items():
            t = run_timed(argv(i), cwd)
            if i >= warmup:
                times[name].append(t)
    return times


def runner_argv(*args: str) -> list[str]:
    return [PY, "-m", "runner", *args]


def _importtime(argv: Sequence[str], cwd: Path) -> list[tuple[float, float, str]]:
    """(self seconds, cumulative seconds, name indented by depth) of every module a command
    imports, from `python -X importtime`; raises if the command fails."""
    assert argv[0] == PY
    proc = subprocess.run(
        [PY, "-X", "importtime", *argv[1:]], cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    out = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, cum, name = line[len("import time:"):].split("|")
        if own.strip().isdigit():  # not the header
            out.append((int(own) / 1e6, int(cum) / 1e6, name[1:]))
    return out


def imported_heavy(argv: Sequence[str], cwd: Path) -> list[str]:
    """Which of HEAVY a command imports (top-level names)."""
    names = {name.strip().split(".")[0] for _, _, name in _importtime(argv, cwd)}
    return sorted(n for n in HEAVY if n in names)


def self_import_times(argv: Sequence[str], cwd: Path) -> dict[str, float]:
    """Seconds each module's own import took (the self column, nested imports excluded)."""
    return {name.strip(): own for own, _, name in _importtime(argv, cwd)}


def top_imports(argv: Sequence[str], cwd: Path, n: int = 8) -> list[tuple[str, float]]:
    """The `n` top-level packages with the largest cumulative import time (seconds)."""
    cumulative: dict[str, float] = {}
    for _, cum, name in _importtime(argv, cwd):
        if name.startswith(" "):  # a nested import: counted in its importer's figure
            continue
        top = name.split(".")[0]
        cumulative[top] = cumulative.get(top, 0.0) + cum
    return sorted(cumulative.items(), key=lambda kv: -kv[1])[:n]


# ----------------------------------------------------------------------------- work dirs


def workdir(prefix: str) -> Path:
    """A fresh project-like folder (cwd for CLI runs: spec paths are relative to it)."""
    return Path(tempfile.mkdtemp(prefix=f"runner-bench-{prefix}-"))


def with_sample_bars(root: Path) -> str:
    """Copy the shipped 1 s bars in (a symlink would resolve outside the tree and be
    refused by the path check); returns the relative bars_path."""
    rel = f"data/live/{SAMPLE_DAY}/bars1s_SPY.parquet"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLE_BARS, root / rel)
    return rel


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- output


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = subprocess.run(
        ["df", "-T", tempfile.gettempdir()], capture_output=True, text=True
    ).stdout.splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tmp_fs": fs[-1].split()[1] if len(fs) > 1 else "unknown",
    }


def print_results(res: Results) -> None:
    print(f"\n== {res.area} ==")
    for r in res.rows:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[r.ok]
        print(
            f"  [{verdict}] {r.name}: {r.measured} (target {r.target}; "
            f"baseline {r.baseline}; ratio {r.ratio})"
        )
    for t in res.tables:
        print(f"\n  {t.title}")
        widths = [max(len(str(x)) for x in col) for col in zip(t.columns, *t.rows, strict=True)]
        for line in [t.columns, *t.rows]:
            print("    " + "  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=True)))
        if t.note:
            print(f"    {t.note}")
    for n in res.notes:
        print(f"  note: {n}")


def compile_runner() -> None:
    """Byte-compile runner as `pip install` would: with PYTHONDONTWRITEBYTECODE set (this
    sandbox sets it) every CLI run would otherwise compile runner's modules from source
    again (~45 ms of a dry run), while its dependencies load their installed .pyc files."""
    import compileall

    compileall.compile_dir(str(ROOT / "runner"), quiet=1)


def main_for(area: str, collect: Callable[[argparse.Namespace], Results],
             extra: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """The shared `main` of every bench script: run, print, optionally dump JSON."""
    parser = argparse.ArgumentParser(description=f"runner benchmarks: {area}")
    parser.add_argument("--json", metavar="FILE", help="also write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    compile_runner()
    res = collect(args)
    print_results(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res.to_json(), indent=2))
    return 0
