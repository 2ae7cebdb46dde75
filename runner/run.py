"""`runner run` and the classic commands: spec -> plan -> guards -> broker -> ledger.

Every guard that can refuse runs before the ledger is opened or a connection made,
so bad input loses nothing and sends nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import results
from runner.broker import Broker, SessionInfo
from runner.engine import Engine, Outcome
from runner.errors import (
    ExpectFailed,
    Interrupted,
    OrderRejected,
    RunnerError,
    UsageError,
)
from runner.flags import classic_spec
from runner.jsondoc import document
from runner.output import emit
from runner.paths import typed_path
from runner.plan import Plan, compile_plan, iso, parse_at
from runner.results import where as _where
from runner.spec import Spec, load


@dataclass(frozen=True, slots=True)
class RunOptions:
    dry_run: bool = False
    live: bool = False
    at: str | None = None
    out_dir: str | None = None
    allow_duplicate: bool = False
    allow_unsettled: bool = False
    allow_outside: bool = False
    as_json: bool = False
    verbose: int = 0
    run_id: str | None = None
    failpoint: str = ""  # RUNNER_FAILPOINT: crash-test hook, e.g. after-intent
    policy: str | None = None  # --policy; else runner-policy.yaml found upward from the spec
    on_result: Callable[[dict[str, Any]], None] | None = None  # --json: each run's result


def run_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Dispatch `run` and the classic commands (handshake, sanity-cancel, one-shot).
    With --json: one document for the file, a result per document in `results`."""
    done: list[dict[str, Any]] = []  # --json: the result of each document run
    opts = RunOptions(
        dry_run=args.dry_run, live=args.live, at=args.at, out_dir=getattr(args, "out_dir", None),
        allow_duplicate=args.allow_duplicate, allow_outside=args.allow_outside,
        allow_unsettled=args.allow_unsettled,
        as_json=args.json, verbose=args.verbose,
        failpoint=environ.get("RUNNER_FAILPOINT", ""), policy=getattr(args, "policy", None),
        on_result=done.append,
    )
    if args.command == "run":
        specs = load(args.spec, allow_outside=opts.allow_outside)
        if not specs:
            raise UsageError(f"{args.spec}: no spec in it")
    else:
        if args.live:
            raise UsageError("the classic commands are paper-only",
                             "write a spec with mode: live and use `runner run SPEC --live`")
        specs = [classic_spec(args)]
    # All or nothing: every document is validated, planned and gated (every check that
    # needs no broker) before the first order is sent.
    ready: list[_Ready] = []
    for spec in specs:
        try:
            ready.append(_prepare(spec, opts, environ, ready))
        except RunnerError as e:
            if len(specs) > 1:
                _say(f"{spec.source}: document #{spec.index + 1} of {len(specs)} refused; "
                     "none of them was run (a file is all or nothing)")
            raise results.refused(e, spec, specs) from None
    code = 0
    for k, r in enumerate(ready):
        try:
            code = _run_ready(r, opts, environ)
        except RunnerError as e:
            _summary(ready, k)
            raise results.broke_off(e, done, [(x.spec, x.plan) for x in ready], k) from None
        if code:
            _summary(ready, k)
            return code
    if opts.as_json:
        emit(results.run_document(args.command, specs[0], done))
    return code


@dataclass
class _Ready:
    """One document, checked and planned, waiting for its turn."""

    spec: Spec
    plan: Plan
    policy: Any
    bars: Any


def _summary(ready: list[_Ready], failed: int) -> None:
    """A file of several documents broke off: say exactly which ran."""
    if len(ready) < 2:
        return
    ran = [f"#{k + 1}" for k in range(failed)]
    left = [f"#{k + 1}" for k in range(failed + 1, len(ready))]
    _say(f"{ready[0].spec.source}: documents run: {', '.join(ran) or 'none'}; "
         f"#{failed + 1} did not succeed; not run: {', '.join(left) or 'none'}")


def run_spec(spec: Spec, opts: RunOptions, environ: Mapping[str, str]) -> Outcome:
    """One document with an order, on its own: its Outcome, neither printed nor judged
    (`runner test` judges it against the spec's `expect:`)."""
    r = _prepare(spec, opts, environ, [])
    assert r.plan.order is not None, "a handshake has no outcome to judge"
    return _execute(r, opts)[0]


def _prepare(spec: Spec, opts: RunOptions, environ: Mapping[str, str],
             earlier: list[_Ready]) -> _Ready:
    """Every check that needs no broker and changes nothing: usage, policy, bars, plan,
    gates (the file's earlier documents counted against the day caps), duplicate tags."""
    if opts.at and not opts.dry_run and spec.kind != "handshake":
        raise UsageError(f"--at {opts.at}: a run that reaches a broker runs on the broker's "
                         "clock; nothing was sent",
                         "drop --at, or use it with --dry-run or `runner plan`")
    if spec.at and not opts.dry_run:
        raise UsageError(f"{_where(spec)}: at: {spec.at} pins a scenario's start, but a run "
                         "that reaches a broker runs on the broker's clock; nothing was sent",
                         "run it with --dry-run or `runner test`, or remove at:")
    if spec.mode == "live" and not opts.live:
        raise UsageError(f"{spec.source}: the spec says mode: live but --live was not given; "
                         "nothing was sent", "add --live to trade live, or use mode: paper")
    if opts.live and spec.mode != "live":
        raise UsageError(f"--live given but {spec.source} says mode: paper",
                         "set mode: live in the spec for a live run")
    from runner.policy import governing
    from runner.preflight import Guard

    policy = governing(spec, opts.policy)
    symbol = spec.order.symbol if spec.order else None  # a handshake has no order
    bars = _load_bars(spec.bars_path, symbol) if spec.bars_path else None
    out_dir = typed_path(opts.out_dir) if opts.out_dir else None
    plan = compile_plan(spec, environ, _start_ns(opts.at or spec.at, opts.dry_run, bars),
                        out_dir=out_dir)
    if opts.dry_run and bars is not None:
        _check_bars_cover(plan, bars)
    if not opts.dry_run and bars is not None and spec.arrival != "broker":
        from runner.livebars import check_fresh

        check_fresh(plan.bars_path or "", bars, time.time_ns())
    ready = _Ready(spec, plan, policy, bars)
    if plan.order is None:
        return ready
    _check_writable(plan)
    mine = [r for r in earlier if r.plan.order is not None and r.plan.day == plan.day
            and os.path.realpath(r.plan.out_dir) == os.path.realpath(plan.out_dir)]
    if plan.order.tag in {r.plan.order.tag for r in mine if r.plan.order is not None}:
        raise UsageError(f"{_where(spec)}: tag {plan.order.tag} is also an earlier document's "
                         "tag; nothing was sent", "give each document its own tag"
                         ).about(tag=plan.order.tag)
    placed = (0, 0.0) if opts.dry_run else (len(mine), _earlier_notional(spec, mine, policy))
    Guard(plan, policy, bars, opts.dry_run, earlier=placed).before_connect()
    if not opts.dry_run:
        _check_duplicate(plan, opts, policy)
    return ready


def _check_writable(plan: Plan) -> None:
    """The day's ledger can be written (and its lock opened) by this user: else exit 2
    before any gate reads the day, anything connects or any file is made."""
    from runner.ledger import check_writable

    check_writable(Path(plan.out_dir), plan.day)


def _earlier_notional(spec: Spec, mine: list[_Ready], policy: Any) -> float:
    """The notional of the file's earlier orders, for the day caps: a file is all or
    nothing, so a cap they would break refuses it before anything is sent. A market
    order is priced by its bars at the plan's time; with none, under a notional cap,
    the file cannot be judged whole: refused (exit 2)."""
    from runner.preflight import reference

    total = 0.0
    for r in mine:
        o = r.plan.order
        assert o is not None
        ref = reference(r.bars, r.plan.at_ns) if o.limit is None else None
        price = o.limit if o.limit is not None else (ref[0] if ref is not None else None)
        if price is None and policy.max_day_notional is not None:
            raise UsageError(
                f"{_where(spec)}: the earlier document's order {o.tag} is a market order with "
                "no price before connecting, so max_day_notional cannot be checked for the "
                "whole file; nothing was sent",
                "give that order a limit or a bars_path, or put the orders in separate files")
        total += o.qty * (price or 0.0)
    return total


def _run_ready(r: _Ready, opts: RunOptions, environ: Mapping[str, str]) -> int:
    if r.plan.order is None:
        return _handshake(r.plan, opts)
    outcome, ledger_path = _execute(r, opts)
    _report(r.plan, outcome, ledger_path, opts)
    return _verdict(r.spec, outcome, opts)


def _execute(r: _Ready, opts: RunOptions) -> tuple[Outcome, Path]:
    """The gates once more, under the run's lock, then the order: its Outcome and ledger."""
    from runner.preflight import Guard, run_lock

    plan, bars = r.plan, r.bars
    guard = Guard(plan, r.policy, bars, opts.dry_run)
    with run_lock(plan):  # one run per tag and per spec; the duplicate check needs it
        guard.before_connect()  # the gates again: every reason at once, before connecting
        if not opts.dry_run:
            _recover_first(plan, opts)
            _check_duplicate(plan, opts, r.policy)
        inner = _broker(plan, r.spec, opts, bars)
        return execute(plan, guard.wrap(inner), bars, opts, guard.pre_place, guard.watch,
                       guard.broker_price, _live_bars(r, inner, opts))


def _start_ns(at: str | None, dry_run: bool, bars: Any) -> int:
    """--at or the spec's at:, else (dry run) the end of the first bar, else now."""
    if at:
        return parse_at(at)
    if dry_run and bars is not None:
        return int(bars.first_ns) + int(bars.interval_ns)  # known once it has ended
    return time.time_ns()


def _check_bars_cover(plan: Plan, bars: Any) -> None:
    """A dry run on bars from another day or hour would have no price: say so."""
    from runner.errors import DataError

    if not bars.first_ns <= plan.at_ns < bars.last_end_ns:
        raise DataError(f"{plan.bars_path}: the bars cover {iso(bars.first_ns)} .. "
                        f"{iso(bars.last_end_ns)}, but the run starts at {iso(plan.at_ns)}; "
                        "the simulator would have no price",
                        "pick --at inside the bars, or bars for that day")


def _live_bars(r: _Ready, broker: Broker, opts: RunOptions) -> Any:
    """A run that reaches a broker reads its bars again at the INTENT and after the order:
    the capture file, or with `arrival: broker` the broker's own bars. None: a dry run."""
    from runner.livebars import BrokerBars, FileBars

    if opts.dry_run:
        return None
    if r.spec.arrival == "broker":
        from runner.ib import IBBroker

        assert isinstance(broker, IBBroker)
        return BrokerBars(broker.order_bars)
    if r.bars is None:
        return None
    path = r.spec.bars_path
    assert path is not None
    symbol = r.spec.order.symbol if r.spec.order else None
    return FileBars(path, r.bars, lambda: _load_bars(path, symbol))


def _load_bars(path: str, symbol: str | None) -> Any:
    from runner.bars import load_bars

    return load_bars(path, symbol)


def _recover_first(plan: Plan, opts: RunOptions) -> None:
    """Settle orphans of earlier runs — crashed, or left UNSETTLED / UNKNOWN on any day —
    before placing anything new; refuse while one is still not settled."""
    from runner.recover import days_to_visit, find_orphans, recover_day

    root = Path(plan.out_dir)
    left: list[str] = []
    for day in days_to_visit(root, plan.day):
        if not find_orphans(root, day):
            continue
        for s in asyncio.run(recover_day(root, day, plan.connection, cancel_all=False,
                                         verbose=opts.verbose)):
            print(f"runner: recovered {s.tag} from an earlier run: {s.summary}",
                  file=sys.stderr)
            if not s.settled:
                left.append(f"{s.tag} ({day})")
    if left and not opts.allow_unsettled:
        raise UsageError(f"not placing: {len(left)} earlier order(s) under {plan.out_dir} are "
                         f"not settled and may still work at IB: {', '.join(left)}; nothing "
                         "was sent", "settle them (TWS, or `runner recover` once IB lets them "
                         "be cancelled), or pass --allow-unsettled")


def _check_duplicate(plan: Plan, opts: RunOptions, policy: Any) -> None:
    """A tag already in today's ledger is not placed again — in this run's ledger, and in
    the ledger of every policy file that governs the run (so --out-dir cannot escape)."""
    from runner.ledger import tags_on_day

    assert plan.order is not None
    if opts.allow_duplicate:
        return
    roots = [plan.out_dir] + [p.ledger_root for p in policy.files if p.ledger_root]
    for root in dict.fromkeys(os.path.realpath(r) for r in roots):
        if plan.order.tag in tags_on_day(Path(root), plan.day):
            where = Path(root) / plan.day / "ledger.parquet"
            shown = plan.ledger_path if root == os.path.realpath(plan.out_dir) else where
            raise UsageError(f"tag {plan.order.tag} is already in {shown}; not placing it "
                             "again", "use another tag, or pass --allow-duplicate"
                             ).about(tag=plan.order.tag)


def _broker(plan: Plan, spec: Spec, opts: RunOptions, bars: Any) -> Broker:
    if opts.dry_run:
        from runner.sim import SimBroker, SimConfig

        return SimBroker(bars, SimConfig(**dict(spec.sim)), start_ns=plan.at_ns)
    from runner.ib import IBBroker

    return IBBroker(plan.connection, verbose=opts.verbose)


def execute(plan: Plan, broker: Broker, bars: Any, opts: RunOptions,
            pre_place: Callable[[SessionInfo], Callable[[], None] | None] | None = None,
            watch: Callable[[], str | None] | None = None,
            broker_price: Callable[[], float | None] | None = None,
            live: Any = None) -> tuple[Outcome, Path]:
    """Run the plan; whatever happens, what was journaled is merged into the ledger."""
    from runner.errors import LedgerError
    from runner.ledger import RunJournal
    from runner.progress import for_run

    journal = RunJournal(Path(plan.out_dir), plan.day, opts.run_id or uuid.uuid4().hex[:16],
                         opts.failpoint)
    status = for_run(plan, broker.now_ns, opts.as_json)  # a live line on a TTY, else None
    engine = Engine(plan, broker, journal, bars, status.on_event if status else None,
                    pre_place=pre_place, on_note=_say, watch=watch, broker_price=broker_price,
                    on_unguarded=lambda tag, oid: _unguarded(plan, tag, oid), live=live)
    try:
        with status or contextlib.nullcontext():
            outcome = asyncio.run(_run_with_signals(engine))
    except BaseException:
        with contextlib.suppress(LedgerError):  # never hide the first error
            _keep(engine, journal)  # (still prints what it cannot journal)
        with contextlib.suppress(LedgerError):
            journal.finish()
        _note_for_recover(plan, engine)
        raise
    _keep(engine, journal)
    path = journal.finish()
    _note_for_recover(plan, engine)
    return outcome, path


def _unguarded(plan: Plan, tag: str, order_id: int | None) -> None:
    """IB dropped the order's GTD backstop (10349): until its run confirms an end, it is
    noted for recover, so a crash now cannot leave it working unwatched."""
    from runner.recover import mark

    mark(Path(plan.out_dir), plan.day, tag, unsettled=True, order_id=order_id)


def _note_for_recover(plan: Plan, engine: Engine) -> None:
    """An order the run leaves without a confirmed end, or without all its commissions,
    is noted where later runs and `runner recover` look (any way the run ends)."""
    order, out = engine.order, engine.outcome
    if order is None or not order.placed:
        return
    from runner.recover import mark, note_missing_commissions

    root = Path(plan.out_dir)
    mark(root, plan.day, order.req.tag, unsettled=not order.done, order_id=order.order_id)
    if out.missing_commissions:
        note_missing_commissions(root, plan.day, order.req.tag, out.missing_commissions)


def _say(line: str) -> None:
    print(f"runner: {line}", file=sys.stderr, flush=True)


def _keep(engine: Engine, journal: Any) -> None:
    """Events the journal refused mid-run: one more try, else print them (nothing lost),
    then fail the run."""
    from runner.errors import LedgerError

    if engine.ledger_error is None:
        return
    left = journal.retry(engine.unjournaled)
    for event in left:
        print("runner: unjournaled event: " + json.dumps(event.as_row(), sort_keys=True),
              file=sys.stderr)
    where = "printed above" if left else "journaled on retry"
    error, engine.ledger_error = engine.ledger_error, None  # report once
    raise LedgerError(f"{error.message}; the order was cancelled and "
                      f"{len(engine.unjournaled)} later event(s) were {where}",
                      "free disk space, then `runner recover` merges the journal")


async def _run_with_signals(engine: Engine) -> Outcome:
    """Ctrl-C / SIGTERM cancel the run's task; the engine cancels the order on the way out."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        engine.interrupt(signum)
        task.cancel()

    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop, s)
    try:
        return await engine.run()
    except (asyncio.CancelledError, Interrupted):
        if received:
            raise Interrupted(received[0], engine.fate()) from None
        raise
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
        await engine.broker.close()


def _handshake(plan: Plan, opts: RunOptions) -> int:
    if opts.dry_run:
        if opts.as_json:
            _result(opts, results.handshake_object(plan, None))
        else:
            print("IBKR handshake OK (dry-run: simulator, nothing contacted)")
        return 0
    from runner.ib import IBBroker

    broker = IBBroker(plan.connection, verbose=opts.verbose)
    session = asyncio.run(broker.handshake())
    if opts.as_json:
        _result(opts, results.handshake_object(plan, session))
        return 0
    print("IBKR handshake OK")
    if opts.verbose:
        print(f"  server version {session.server_version}; accounts "
              f"{', '.join(session.accounts)}; gateway time "
              f"{iso(session.server_time_ns) if session.server_time_ns else '?'}")
    return 0


def _result(opts: RunOptions, result: dict[str, Any]) -> None:
    """--json: a run's result goes to its command's one document (alone, if none)."""
    if opts.on_result is not None:
        opts.on_result(result)
    else:
        emit(document("run", True, spec=result["spec"], results=[result]))


def _report(plan: Plan, o: Outcome, ledger_path: Path, opts: RunOptions) -> None:
    if opts.as_json:
        _result(opts, results.result_object(plan, o, ledger_path))
    else:
        print(results.status_line(plan, o))


def _verdict(spec: Spec, o: Outcome, opts: RunOptions) -> int:
    if opts.dry_run and spec.expect is not None:  # a scenario: its expect: is the judge
        from runner.expect import expect_diff

        diff = expect_diff(spec.expect, o)
        if diff:
            raise ExpectFailed(f"{spec.name}: expect failed: " + "; ".join(diff))
        return 0
    if o.alarm:
        raise RunnerError(f"{o.alarm}; recorded as reported",
                          "check the position in TWS; tell IB if the executions are wrong")
    if o.state == "REJ":
        raise OrderRejected(f"order {o.tag} rejected: {o.message or 'no reason given'}")
    if o.state in ("OPEN", "UNSETTLED", "UNKNOWN"):
        raise RunnerError(o.message or f"order {o.tag} did not end")
    return 0

