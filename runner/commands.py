"""Command functions: each takes plain values and returns an exit code.

`validate` and `plan` import only the spec and plan modules (no pandas, pyarrow
or ib_async), so they start fast and work in any CI.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import gates
from runner.errors import RunnerError, SpecError, UsageError
from runner.jsondoc import document, failed
from runner.output import emit
from runner.plan import Plan, compile_plan, parse_at, render
from runner.policy import (
    POLICY_FILE,
    Policies,
    Policy,
    governing,
    kill_switch_on,
    loosening_errors,
    spec_where,
)
from runner.policy import load as load_policy
from runner.spec import Spec, load, spec_files


def validate(paths: Sequence[str], allow_outside: bool = False, as_json: bool = False,
             policy: str | None = None) -> int:
    files = spec_files(paths)
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) in {' '.join(paths)}")
    total = invalid = 0
    problems: list[str] = []
    policies, now = Policies(policy), time.time_ns()
    unexpected = False
    for f in files:
        try:
            n, bad, lines = _validate_file(f, policies, now, allow_outside)
        except UsageError:
            raise
        except RunnerError as e:
            n, bad, lines = 1, 1, [str(e)]
        except Exception as e:  # a bug: name the file, and go on with the others
            unexpected = True
            n, bad, lines = 1, 1, [f"{f}: unexpected error: {type(e).__name__}: {e}"]
        total += n
        invalid += bad
        problems += _new(problems, lines)
    code = 1 if unexpected else 2 if invalid or problems else 0
    summary = (f"{total} spec{'s' if total != 1 else ''} valid" if not invalid
               else f"{invalid} of {total} specs invalid")
    broken = sorted({os.path.normpath(p) for p in policies.broken})
    summary += f"; policy invalid: {', '.join(broken)}" if broken else ""
    for line in problems:  # the lines for people on stderr, --json or not
        print(line, file=sys.stderr)
    if as_json:
        counts: dict[str, Any] = {"specs": total, "invalid": invalid, "errors": problems}
        emit(failed("validate", code, summary, spec=files[0] if len(files) == 1 else None,
                    **counts) if code else document("validate", True, **counts))
    else:
        print(summary)
    return code


def _validate_file(f: str, policies: Policies, now: int,
                   allow_outside: bool) -> tuple[int, int, list[str]]:
    """(specs in the file, of which invalid, the problem lines) for one file."""
    if Path(f).name == POLICY_FILE:  # a policy, not a spec: check it as one
        lines = _policy_problems(f)
        policies.broken.update([f] if lines else [])
        return 0, 0, lines
    try:
        specs = load(f, allow_outside=allow_outside)
    except SpecError as e:
        return e.specs, e.invalid, e.lines
    invalid, problems = 0, list[str]()
    for spec in specs:
        lines = _gate_problems(spec, policies, now)
        invalid += bool(lines)
        problems += _new(problems, lines)
    return len(specs), invalid, problems


def _new(seen: list[str], lines: list[str]) -> list[str]:
    """Lines not reported yet (a broken policy is named once, not once per spec)."""
    return [line for line in lines if line not in seen]


def _policy_problems(path: str) -> list[str]:
    try:
        load_policy(path)
    except SpecError as e:
        return e.lines
    return []


def _gate_problems(spec: Spec, policies: Policies, now_ns: int) -> list[str]:
    """What the policy refuses of this spec, known offline: spec limits that loosen it,
    and the gates over the spec alone (allowlists, sizes, market, live)."""
    try:
        policy = policies.for_spec(spec.source)
    except SpecError as e:
        return e.lines
    found = gates.reasons(compile_plan(spec, {}, now_ns), policy, gates.Context(now_ns=now_ns))
    return loosening_errors(spec, policy) + [
        f"{spec_where(spec, r.key)}: refused by {policy.name}: {r.text}" for r in found]


def load_one(path: str, allow_outside: bool = False) -> list[Spec]:
    specs = load(path, allow_outside=allow_outside)
    if not specs:
        raise UsageError(f"{path}: no spec in it")
    return specs


def plan(spec_path: str, as_json: bool, at: str | None, environ: Mapping[str, str],
         allow_outside: bool = False, policy: str | None = None, broker: bool = False,
         verbose: int = 0) -> int:
    now = time.time_ns()
    specs = load_one(spec_path, allow_outside)
    if broker and (at or any(s.at for s in specs)):  # as `run`: the broker's clock is now
        raise UsageError(f"{'--at' if at else 'at:'} with --broker: the broker's facts (hours, "
                         "price) are today's, not those of another instant",
                         "drop --at (and the spec's at:) for --broker, or plan without --broker")
    found = Policies(policy)  # each policy file read once for all the documents
    policies = [governing(s, policy, found) for s in specs]
    plans = [compile_plan(s, environ, parse_at(t) if (t := at or s.at) else now)
             for s in specs]  # --at, else the spec's own at:, else now
    if broker:  # connects: IB's what-if and the broker's facts (imports ib_async)
        from runner.whatif import plan_with_broker

        return plan_with_broker(plans, policies[0], as_json, verbose)
    if not as_json:
        print("\n\n".join(render(p) for p in plans))
    kill = kill_switch_on(policies[0])
    refusals = [gates.check(p, pol, gates.Context(p.at_ns, port=p.connection.port,
                                                  kill_switch=kill))
                for p, pol in zip(plans, policies, strict=True)]
    return show_plans(plans, policies, refusals, [p.to_dict() for p in plans], as_json)



def show_plans(plans: Sequence[Plan], policies: Sequence[Policy], refusals: list[list[str]],
               bodies: list[dict[str, Any]], as_json: bool) -> int:
    """The end of `plan`: its JSON document, or the first refusal (exit 2) — the plans
    are shown all the same: what would have been sent."""
    for p, pol, reasons in zip(plans, policies, refusals, strict=True):
        if reasons:
            tag = p.order.tag if p.order else None
            raise gates.Refused(p.spec, pol, reasons).about(spec=p.spec, tag=tag, plans=bodies)
    if as_json:
        emit(document("plan", True, plans=bodies))
    return 0
