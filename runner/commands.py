"""Command functions: each takes plain values and returns an exit code.

`validate` and `plan` import only the spec and plan modules (no pandas, pyarrow
or ib_async), so they start fast and work in any CI.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence

from runner.errors import SpecError, UsageError
from runner.plan import compile_plan, parse_at, render
from runner.spec import Spec, load, spec_files


def validate(paths: Sequence[str], allow_outside: bool = False, as_json: bool = False) -> int:
    files = spec_files(paths)
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) in {' '.join(paths)}")
    total = invalid = 0
    problems: list[str] = []
    for f in files:
        try:
            total += len(load(f, allow_outside=allow_outside))
        except SpecError as e:
            total += e.specs
            invalid += e.invalid
            problems += e.lines
    if as_json:
        print(json.dumps({"version": 1, "specs": total, "invalid": invalid,
                          "errors": problems}, indent=2))
    else:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{total} spec{'s' if total != 1 else ''} valid" if not invalid
              else f"{invalid} of {total} specs invalid")
    return 2 if invalid else 0


def load_one(path: str, allow_outside: bool = False) -> list[Spec]:
    specs = load(path, allow_outside=allow_outside)
    if not specs:
        raise UsageError(f"{path}: no spec in it")
    return specs


def plan(spec_path: str, as_json: bool, at: str | None, environ: Mapping[str, str],
         allow_outside: bool = False) -> int:
    at_ns = parse_at(at) if at else time.time_ns()
    plans = [compile_plan(s, environ, at_ns) for s in load_one(spec_path, allow_outside)]
    if as_json:
        body = [json.loads(p.to_json()) for p in plans]
        print(json.dumps(body[0] if len(body) == 1 else body, indent=2, sort_keys=True))
    else:
        print("\n\n".join(render(p) for p in plans))
    return 0
