"""`runner run` and the classic commands, one pipeline read top to bottom:

    load -> plan -> gate -> execute -> report

each stage a function of the previous stage's value (a list of `Spec`, `Planned`,
`Gated`, `Ran`). A file is all or nothing: every document is planned and gated
(every check that needs no broker and changes nothing) before the first order is sent,
so bad input loses nothing and sends nothing; then the documents run in order and the
first that does not succeed stops the file. The command line's part is done before:
`run_command` takes plain values (runner/flags.py makes them of the arguments).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import results
from runner.errors import ExpectFailed, OrderRejected, RunnerError, UsageError
from runner.output import emit
from runner.paths import typed_path
from runner.plan import Plan, compile_plan, iso, parse_at
from runner.spec import Spec, load

if TYPE_CHECKING:
    from runner.bars import Bars
    from runner.broker import SessionInfo
    from runner.engine import Outcome
    from runner.policy import Policies, Policy


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run, from the command line (runner/flags.py) or `runner test`."""

    dry_run: bool = False
    live: bool = False
    at: str | None = None
    out_dir: str | None = None  # --out-dir: the ledger root, in place of the spec's
    allow_duplicate: bool = False
    allow_unsettled: bool = False
    allow_outside: bool = False
    as_json: bool = False
    verbose: int = 0
    run_id: str | None = None
    failpoint: str = ""  # RUNNER_FAILPOINT: crash-test hook, e.g. after-intent
    policy: str | None = None  # --policy; else runner-policy.yaml found upward from the spec


@dataclass(frozen=True, slots=True)
class Planned:
    """One document, planned: its plan, the policy that governs it, its bars (if any)."""

    spec: Spec
    plan: Plan
    policy: Policy
    bars: Bars | None


@dataclass(frozen=True, slots=True)
class Gated:
    """A planned document that every check before connecting let through."""

    planned: Planned


@dataclass(frozen=True, slots=True)
class Ran:
    """How a document's run ended: an order's outcome and ledger, or a handshake's
    session (None on a dry run: nothing was contacted)."""

    planned: Planned
    outcome: Outcome | None = None
    ledger: Path | None = None
    session: SessionInfo | None = None


def run_command(command: str, source: str | Spec, opts: RunOptions,
                environ: Mapping[str, str]) -> int:
    """`runner run SPEC` (source: the file) or a classic command (source: the spec its
    flags made): the exit code. With --json, one document for the file, holding a result
    per spec document."""
    specs = load_specs(source, opts)
    from runner.policy import Policies

    found = Policies(opts.policy)  # each policy file read once for all the documents
    gated: list[Gated] = []
    for spec in specs:
        with _refused(spec, specs):
            gated.append(gate(plan_spec(spec, opts, environ, found), opts, gated))
    done: list[dict[str, Any]] = []  # each document's result, for --json
    for k, g in enumerate(gated):
        with _broke_off(gated, k, done):
            ran = execute(g, opts, [(h.planned.plan, h.planned.policy) for h in gated[k + 1:]
                                    if h.planned.plan.order is not None])
            done.append(report(ran, opts))
            verdict(ran, opts)
    if opts.as_json:
        emit(results.run_document(command, specs[0], done))
    return 0


def run_spec(spec: Spec, opts: RunOptions, environ: Mapping[str, str]) -> Outcome:
    """One document with an order, on its own: plan -> gate -> execute; its Outcome,
    neither printed nor judged (`runner test` judges it against the spec's `expect:`)."""
    gated = gate(plan_spec(spec, opts, environ), opts, [])
    assert gated.planned.plan.order is not None, "a handshake has no outcome to judge"
    outcome = execute(gated, opts).outcome
    assert outcome is not None
    return outcome


# --- load --------------------------------------------------------------------------------


def load_specs(source: str | Spec, opts: RunOptions) -> list[Spec]:
    """The file's documents, checked (SpecError: exit 2); a classic command's one spec."""
    if isinstance(source, Spec):
        return [source]
    specs = load(source, allow_outside=opts.allow_outside)
    if not specs:
        raise UsageError(f"{source}: no spec in it")
    return specs


# --- plan --------------------------------------------------------------------------------


def plan_spec(spec: Spec, opts: RunOptions, environ: Mapping[str, str],
              found: Policies | None = None) -> Planned:
    """The options agree with the spec; the governing policy; the bars, read and checked
    (a dry run's cover its start, a broker run's are fresh); the plan, every value
    resolved (--out-dir as its ledger root)."""
    _check_usage(spec, opts)
    from runner.policy import governing

    policy = governing(spec, opts.policy, found)
    bars = _load_bars(spec) if spec.bars_path else None
    out_dir = typed_path(opts.out_dir) if opts.out_dir else None
    plan = compile_plan(spec, environ, _start_ns(opts.at or spec.at, opts.dry_run, bars),
                        out_dir=out_dir)
    if opts.dry_run and bars is not None:
        _check_bars_cover(plan, bars)
    if opts.dry_run and plan.order is not None:  # what bars cannot simulate is refused
        from runner.simrules import refuse_unsimulable
        refuse_unsimulable(plan.order, results.where(spec))
    if not opts.dry_run and bars is not None and spec.arrival != "broker":
        from runner.livebars import check_fresh

        check_fresh(plan.bars_path or "", bars, time.time_ns())
    return Planned(spec, plan, policy, bars)


def _check_usage(spec: Spec, opts: RunOptions) -> None:
    if opts.at and not opts.dry_run and spec.kind != "handshake":
        raise UsageError(f"--at {opts.at}: a run that reaches a broker runs on the broker's "
                         "clock; nothing was sent",
                         "drop --at, or use it with --dry-run or `runner plan`")
    if spec.at and not opts.dry_run:
        raise UsageError(f"{results.where(spec)}: at: {spec.at} pins a scenario's start, but "
                         "a run that reaches a broker runs on the broker's clock; nothing was "
                         "sent", "run it with --dry-run or `runner test`, or remove at:")
    if spec.mode == "live" and not opts.live:
        raise UsageError(f"{spec.source}: the spec says mode: live but --live was not given; "
                         "nothing was sent", "add --live to trade live, or use mode: paper")
    if opts.live and spec.mode != "live":
        raise UsageError(f"--live given but {spec.source} says mode: paper",
                         "set mode: live in the spec for a live run")


def _load_bars(spec: Spec) -> Bars:
    from runner.bars import load_bars

    assert spec.bars_path is not None
    o = spec.order
    return load_bars(spec.bars_path, o.symbol if o else None, o.sec_type if o else "STK")


def _start_ns(at: str | None, dry_run: bool, bars: Bars | None) -> int:
    """--at or the spec's at:, else (dry run) the end of the first bar, else now."""
    if at:
        return parse_at(at)
    if dry_run and bars is not None:
        return int(bars.first_ns) + int(bars.interval_ns)  # known once it has ended
    return time.time_ns()


def _check_bars_cover(plan: Plan, bars: Bars) -> None:
    """A dry run on bars from another day or hour would have no price: say so."""
    from runner.errors import DataError

    if not bars.first_ns <= plan.at_ns < bars.last_end_ns:
        raise DataError(f"{plan.bars_path}: the bars cover {iso(bars.first_ns)} .. "
                        f"{iso(bars.last_end_ns)}, but the run starts at {iso(plan.at_ns)}; "
                        "the simulator would have no price",
                        "pick --at inside the bars, or bars for that day")


# --- gate --------------------------------------------------------------------------------


def gate(planned: Planned, opts: RunOptions, earlier: Sequence[Gated]) -> Gated:
    """Every check that needs no broker and changes nothing: the ledger can be written,
    the tag is the document's own, the gates (the file's earlier documents counted
    against the day caps), the tag is not in the day's ledger yet."""
    from runner import preflight

    plan, where = planned.plan, results.where(planned.spec)
    if plan.order is None:
        return Gated(planned)  # a handshake sends nothing
    preflight.check_writable(plan)
    mine = [g.planned for g in earlier if _same_ledger_day(g.planned.plan, plan)]
    preflight.check_own_tag(where, plan, [p.plan for p in mine])
    placed = (0, 0.0) if opts.dry_run else (
        len(mine), preflight.earlier_notional(where, [(p.plan, p.bars) for p in mine],
                                              planned.policy))
    preflight.Guard(plan, planned.policy, planned.bars, opts.dry_run,
                    earlier=placed).before_connect()
    if not opts.dry_run:
        preflight.check_duplicate(plan, planned.policy, opts.allow_duplicate)
    return Gated(planned)


def _same_ledger_day(a: Plan, b: Plan) -> bool:
    """Two orders written to one day of one ledger (a handshake writes none)."""
    return (a.order is not None and a.day == b.day
            and os.path.realpath(a.out_dir) == os.path.realpath(b.out_dir))


# --- execute -----------------------------------------------------------------------------


def execute(gated: Gated, opts: RunOptions, later: Sequence[tuple[Plan, Policy]] = ()) -> Ran:
    """A handshake's connect, or the order (runner/execution.py): gated once more under
    the run's lock (and the file's `later` documents' accounts at its session), run,
    journaled, merged into the ledger however it ends."""
    from runner import execution

    p = gated.planned
    if p.plan.order is None:
        return Ran(p, session=execution.handshake(p.plan, opts))
    outcome, ledger = execution.run_order(p.spec, p.plan, p.policy, p.bars, opts, later)
    return Ran(p, outcome, ledger)


# --- report ------------------------------------------------------------------------------


def report(ran: Ran, opts: RunOptions) -> dict[str, Any]:
    """The run's lines (none with --json); its result for the --json document."""
    return results.report(ran.planned.plan, ran.outcome, ran.ledger, ran.session,
                          opts.as_json, opts.verbose)


def verdict(ran: Ran, opts: RunOptions) -> None:
    """Whether the run succeeded: raises the error (and its exit code) when it did not."""
    o, spec = ran.outcome, ran.planned.spec
    if o is None:
        return  # a handshake that connected
    if opts.dry_run and spec.expect is not None:  # a scenario: its expect: is the judge
        from runner.expect import expect_diff

        diff = expect_diff(spec.expect, o)
        if diff:
            raise ExpectFailed(f"{spec.name}: expect failed: " + "; ".join(diff))
        return
    if o.alarm:
        raise RunnerError(f"{o.alarm}; recorded as reported",
                          "check the position in TWS; tell IB if the executions are wrong")
    if o.state == "REJ":
        raise OrderRejected(f"order {o.tag} rejected: {o.message or 'no reason given'}")
    if o.state in ("OPEN", "UNSETTLED", "UNKNOWN"):
        raise RunnerError(o.message or f"order {o.tag} did not end")


# --- a file is all or nothing, and stops at the first document that fails ---------------


@contextlib.contextmanager
def _refused(spec: Spec, specs: Sequence[Spec]) -> Iterator[None]:
    """A document refused before anything was sent refuses its file: say so, and give the
    error the file's results (REFUSED, or ERROR, and every other NOT_RUN)."""
    try:
        yield
    except RunnerError as e:
        if len(specs) > 1:
            results.say(results.file_refused(spec, len(specs)))
        raise results.refused(e, spec, list(specs)) from None


@contextlib.contextmanager
def _broke_off(gated: Sequence[Gated], k: int, done: list[dict[str, Any]]) -> Iterator[None]:
    """Document k did not succeed: say which documents ran, and give the error the
    results so far and the rest NOT_RUN."""
    try:
        yield
    except RunnerError as e:
        planned = [g.planned for g in gated]
        note = results.file_broke_off([p.spec for p in planned], k)
        if note:
            results.say(note)
        raise results.broke_off(e, done, [(p.spec, p.plan) for p in planned], k) from None

