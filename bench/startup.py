"""`runner validate` / `runner plan`: wall time of one spec, of 1,000 specs, and what they import.

DESIGN §9: one spec ≤ 1.5× `python -c "import yaml, jsonschema"` measured in the same
run; 1,000 specs in one call ≤ 1.5 s; neither imports pandas, pyarrow or ib_async.
Every figure is a median of subprocess runs, timed round-robin with the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PY,
    ROOT,
    Results,
    Row,
    Table,
    cleanup,
    fmt_s,
    imported_heavy,
    interleaved,
    median,
    ratio,
    runner_argv,
    top_imports,
    with_sample_bars,
    workdir,
)

ONE_SPEC_RATIO = 1.5
MANY_S = 1.5
N_SPECS = 1000
FORBIDDEN = ("pandas", "pyarrow", "ib_async")

_ONE_SHOT = """\
# yaml-language-server: $schema=../schemas/spec.schema.json
version: 1
kind: one-shot
name: probe-{i}
order:
  symbol: SPY
  side: {side}
  qty: {qty}
  limit: {limit:.2f}
  tif: DAY
  tag: probe-{i}
ttl_sec: {ttl}
bars_path: {bars}
out_dir: data/exec
limits:
  max_qty: 1000
  max_notional: 500000
"""
_SANITY = """\
version: 1
kind: sanity-cancel
name: sanity-{i}
order: {{symbol: SPY, side: BUY, qty: {qty}, limit: 0.01}}
out_dir: data/exec
"""
_SCENARIO = """\
version: 1
kind: one-shot
name: scenario-{i}
order: {{symbol: SPY, side: BUY, qty: {qty}, limit: 473.10}}
ttl_sec: 3
bars_path: {bars}
sim: {{ack_ms: 5, cancel_ms: 10, participation: 0.2}}
expect:
  state: CANCEL
  events: [INTENT, ACK, PARTIAL, CANCEL, PNL_SNAPSHOT]
"""


def write_specs(folder: Path, n: int, bars: str) -> None:
    """`n` valid specs in `folder`: one-shots, sanity-cancels, handshakes and scenarios."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            text = _ONE_SHOT.format(i=i, side="BUY" if i % 8 else "SELL", qty=i % 100 + 1,
                                    limit=10 + (i % 50) / 100, ttl=i % 30 + 1, bars=bars)
        elif kind == 1:
            text = _SANITY.format(i=i, qty=i % 10 + 1)
        elif kind == 2:
            text = "version: 1\nkind: handshake\n"
        else:
            text = _SCENARIO.format(i=i, qty=100 + i, bars=bars)
        (folder / f"spec-{i:04d}.yaml").write_text(text)


def collect(args: argparse.Namespace) -> Results:
    reps = 5 if args.quick else 15
    root = workdir("startup")
    try:
        shutil.copytree(ROOT / "specs", root / "specs")
        shutil.copytree(ROOT / "schemas", root / "schemas")
        bars = with_sample_bars(root)
        write_specs(root / "many", N_SPECS, bars)
        return _measure(root, reps)
    finally:
        cleanup(root)


def _measure(root: Path, reps: int) -> Results:
    validate = runner_argv("validate", "specs/one-shot.yaml")
    plan = runner_argv("plan", "specs/one-shot.yaml", "--json")
    many = runner_argv("validate", "many")
    baseline = [PY, "-c", "import yaml, jsonschema"]
    t = interleaved(
        {"baseline": lambda i: baseline, "validate": lambda i: validate,
         "plan": lambda i: plan, "many": lambda i: many},
        root, reps,
    )
    base = median(t["baseline"])
    res = Results("startup")
    for name, label in (("validate", "runner validate, one spec"),
                        ("plan", "runner plan --json, one spec")):
        m = median(t[name])
        res.rows.append(Row(
            "startup", label, f"≤ {ONE_SPEC_RATIO}× baseline",
            fmt_s(m), f"{fmt_s(base)} (import yaml, jsonschema)", ratio(m, base),
            m <= ONE_SPEC_RATIO * base,
            f"{fmt_s(m - base)} over the floor: runner's own modules, then reading and "
            "checking the spec (largest imports in the startup section)",
        ))
    m = median(t["many"])
    per_spec = (m - median(t["validate"])) / N_SPECS
    res.rows.append(Row("startup", f"runner validate, {N_SPECS:,} specs in one call",
                        f"≤ {fmt_s(MANY_S)}", fmt_s(m), fmt_s(base), ratio(m, base),
                        m <= MANY_S, f"{fmt_s(per_spec)} per spec after start-up"))
    _imports(res, root, {"validate": validate, "plan": plan, f"validate ×{N_SPECS}": many})
    res.notes.append(f"{reps} timed runs each after 1 warm-up, round-robin; medians. "
                     f"Per-spec cost of validate: {fmt_s(per_spec)}.")
    return res


def _imports(res: Results, root: Path, commands: dict[str, list[str]]) -> None:
    rows = []
    for name, argv in commands.items():
        heavy = [h for h in imported_heavy(argv, root) if h in FORBIDDEN]
        res.rows.append(Row("startup", f"runner {name}: imports pandas/pyarrow/ib_async",
                            "none", ", ".join(heavy) or "none", ok=not heavy))
        top = top_imports(argv, root, 5)
        rows.append([name, ", ".join(f"{mod} {s * 1e3:.0f} ms" for mod, s in top)])
    res.tables.append(Table("Largest top-level imports (python -X importtime, cumulative)",
                            ["command", "top imports"], rows))


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("startup", collect))
