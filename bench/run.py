"""Run every bench script and write BENCHMARKS.md.

    python bench/run.py            # all areas, about 3 minutes on the 2-core box
    python bench/run.py --quick    # fewer repetitions, for a smoke run (not for the record)

Each script runs in its own process (so one area's imports and memory never colour
another's) with `--json`; their figures become one summary table, the cost-curve tables,
and the machine facts. Started with an interpreter that lacks the project's packages, it
re-runs itself with the project's .venv python.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
AREAS = ("startup", "dryrun", "sim", "ledger", "tca", "ib_latency")
TIMEOUT_S = 200
IB_ROW = {
    "area": "ib", "name": "INTENT→ACK vs bare write+fsync + bare ib_async placeOrder→ack",
    "target": "≤ 1.1× floor", "measured": "PLACEHOLDER: filled by bench/ib_latency.py",
    "baseline": "—", "ratio": "—", "ok": None,
}


def _ensure_venv() -> None:
    try:
        import pyarrow  # noqa: F401

        import runner  # noqa: F401
    except ImportError:
        if VENV_PY.exists() and Path(sys.executable) != VENV_PY:
            os.execv(VENV_PY, [str(VENV_PY), *sys.argv])
        raise


def run_area(area: str, quick: bool) -> dict[str, Any] | None:
    """Run bench/<area>.py, echo its output, and return its JSON (None if it is absent)."""
    script = HERE / f"{area}.py"
    if not script.exists():
        print(f"\n== {area}: {script.name} not present, skipped ==")
        return None
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    argv = [sys.executable, str(script), "--json", str(out), *(["--quick"] if quick else [])]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=ROOT, timeout=TIMEOUT_S)
        if proc.returncode != 0 or not out.stat().st_size:
            return _failed(area, f"exited {proc.returncode}")
        result = json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return _failed(area, f"timed out after {TIMEOUT_S} s")
    finally:
        out.unlink(missing_ok=True)
    result["seconds"] = time.perf_counter() - t0
    return result


def _failed(area: str, why: str) -> dict[str, Any]:
    row = {"area": area, "name": f"bench/{area}.py", "target": "runs", "measured": why,
           "baseline": "—", "ratio": "—", "ok": False}
    return {"area": area, "rows": [row], "tables": [], "notes": [], "seconds": 0.0}


def _sh(*argv: str) -> str:
    try:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def facts(load_before: str) -> list[tuple[str, str]]:
    sys.path.insert(0, str(HERE))
    from _common import machine

    m = machine()
    dirty = len(_sh("git", "status", "--porcelain").splitlines())
    return [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
        ("command", f"`cd {ROOT} && {VENV_PY.relative_to(ROOT)} bench/run.py`"),
        ("git", f"{_sh('git', 'rev-parse', '--short', 'HEAD')} plus {dirty} uncommitted "
                "paths (other engineers were working in the tree)"),
        ("nproc", m["nproc"]),
        ("CPU", f"{m['cpu']} (/proc/cpuinfo model name)"),
        ("Python", f"{m['python']} ({m['platform']})"),
        ("temp filesystem (ledger fsyncs)", m["tmp_fs"]),
        ("load average before / after", f"{load_before} / {_loadavg()}"),
        ("bytecode", "runner byte-compiled before timing, as `pip install` leaves it "
                     f"(PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
                     " here would otherwise recompile it on every CLI run)"),
    ]


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def render(results: list[dict[str, Any]], facts_: list[tuple[str, str]], wall: float,
           quick: bool) -> str:
    rows = [r for res in results for r in res["rows"]]
    if not any(r["area"] == "ib" for r in rows):
        rows.append(IB_ROW)
    out = ["# Benchmarks", "",
           "Produced by `bench/run.py` (DESIGN §8–9). Benchmarks are not tests: they measure "
           "on this machine and say where a target is met; ratios are against a baseline "
           "measured in the same run." + (" **Quick run: few repetitions.**" if quick else ""),
           "", "## Summary", "",
           "| area | benchmark | target | measured | baseline | ratio | pass "
           "| where the rest goes |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = {True: "✅ pass", False: "❌ FAIL", None: "—"}[r["ok"]]
        out.append(f"| {r['area']} | {r['name']} | {r['target']} | {r['measured']} | "
                   f"{r['baseline']} | {r['ratio']} | {verdict} | {r.get('note') or '—'} |")
    out += ["", "## Machine and run", ""]
    out += [f"- **{k}**: {v}" for k, v in facts_]
    out.append(f"- **total wall time of bench/run.py**: {wall:.0f} s")
    for res in results:
        out += _area_section(res)
    return "\n".join(out) + "\n"


def _area_section(res: dict[str, Any]) -> list[str]:
    out = ["", f"## {res['area']} ({res.get('seconds', 0):.0f} s)", ""]
    doc = _doc(res["area"])
    if doc:
        out += [doc, ""]
    for t in res["tables"]:
        out += [f"**{t['title']}**", "", "| " + " | ".join(t["columns"]) + " |",
                "|" + "---|" * len(t["columns"])]
        out += ["| " + " | ".join(str(x) for x in row) + " |" for row in t["rows"]]
        out += (["", t["note"]] if t["note"] else []) + [""]
    out += [f"- {n}" for n in res["notes"]]
    return out


def _doc(area: str) -> str:
    """The method paragraph(s) of bench/<area>.py's docstring (after its first line)."""
    import ast

    path = HERE / f"{area}.py"
    if not path.exists():
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "\n".join(doc.splitlines()[1:]).strip()


def main() -> int:
    _ensure_venv()
    parser = argparse.ArgumentParser(description="run all benchmarks, write BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="where to write")
    parser.add_argument("--only", nargs="*", choices=AREAS, help="run only these areas")
    args = parser.parse_args()
    load_before = _loadavg()
    t0 = time.perf_counter()
    results = [r for a in (args.only or AREAS) if (r := run_area(a, args.quick)) is not None]
    wall = time.perf_counter() - t0
    Path(args.out).write_text(render(results, facts(load_before), wall, args.quick))
    failed = [r["name"] for res in results for r in res["rows"] if r["ok"] is False]
    print(f"\nwrote {args.out} in {wall:.0f} s; "
          + (f"{len(failed)} target(s) missed: {'; '.join(failed)}" if failed
             else "every target met"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
