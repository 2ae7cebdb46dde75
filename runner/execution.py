"""The execute stage of `runner run`: a gated plan meets its broker.

An order: under the run's lock the gates once more, earlier orphans settled, the
duplicate check again; then the engine runs it against the simulator or IB, every
event journaled, and however the run ends (Ctrl-C, SIGTERM, an error) what was
journaled is merged into the day's ledger and an order left without a confirmed end
is noted for `runner recover`. A handshake: connect, and the gateway's facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import results
from runner.broker import Broker, SessionInfo
from runner.engine import Engine, Outcome
from runner.errors import Interrupted, LedgerError, UsageError
from runner.plan import Plan
from runner.preflight import Guard, check_duplicate, run_lock

if TYPE_CHECKING:
    from runner.bars import Bars
    from runner.barsproto import LiveBars
    from runner.policy import Policy
    from runner.run import RunOptions
    from runner.spec import Spec


def run_order(spec: Spec, plan: Plan, policy: Policy, bars: Bars | None,
              opts: RunOptions, later: Sequence[tuple[Plan, Policy]] = ()
              ) -> tuple[Outcome, Path]:
    """The gates once more, under the run's lock, then the order: its Outcome and ledger.
    `later`: the file's later documents, whose accounts the session judges before this
    order's INTENT (a file is all or nothing)."""
    guard = Guard(plan, policy, bars, opts.dry_run, later=later)
    with run_lock(plan):  # one run per tag and per spec; the duplicate check needs it
        guard.before_connect()  # the gates again: every reason at once, before connecting
        if not opts.dry_run:
            _recover_first(plan, opts)
            check_duplicate(plan, policy, opts.allow_duplicate)
        inner = _broker(plan, spec, opts, bars)
        return journaled(plan, guard.wrap(inner), bars, opts, guard.pre_place, guard.watch,
                         guard.broker_price, _live_bars(spec, bars, inner, opts))


def handshake(plan: Plan, opts: RunOptions) -> SessionInfo | None:
    """The gateway's facts; None on a dry run (nothing is contacted)."""
    if opts.dry_run:
        return None
    from runner.ib import IBBroker

    return asyncio.run(IBBroker(plan.connection, verbose=opts.verbose).handshake())


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
            results.say(results.recovered(s.tag, s.summary))
            if not s.settled:
                left.append(f"{s.tag} ({day})")
    if left and not opts.allow_unsettled:
        raise UsageError(f"not placing: {len(left)} earlier order(s) under {plan.out_dir} are "
                         f"not settled and may still work at IB: {', '.join(left)}; nothing "
                         "was sent", "settle them (TWS, or `runner recover` once IB lets them "
                         "be cancelled), or pass --allow-unsettled")


def _broker(plan: Plan, spec: Spec, opts: RunOptions, bars: Bars | None) -> Broker:
    if opts.dry_run:
        from runner.sim import SimBroker, SimConfig

        return SimBroker(bars, SimConfig(**dict(spec.sim)), start_ns=plan.at_ns)
    from runner.ib import IBBroker

    return IBBroker(plan.connection, verbose=opts.verbose)


def _live_bars(spec: Spec, bars: Bars | None, broker: Broker, opts: RunOptions
               ) -> LiveBars | None:
    """A run that reaches a broker reads its bars again at the INTENT and after the order:
    the capture file, or with `arrival: broker` the broker's own bars. None: a dry run."""
    from runner.livebars import BrokerBars, FileBars

    if opts.dry_run:
        return None
    if spec.arrival == "broker":
        from runner.ib import IBBroker

        assert isinstance(broker, IBBroker)
        return BrokerBars(broker.order_bars)
    if bars is None:
        return None
    path = spec.bars_path
    assert path is not None
    o = spec.order
    symbol, sec_type = (o.symbol, o.sec_type) if o else (None, "STK")

    def again() -> Bars:
        from runner.bars import load_bars

        return load_bars(path, symbol, sec_type)

    return FileBars(path, bars, again)


def journaled(plan: Plan, broker: Broker, bars: Any, opts: RunOptions,
              pre_place: Callable[[SessionInfo], Callable[[], None] | None] | None = None,
              watch: Callable[[], str | None] | None = None,
              broker_price: Callable[[], float | None] | None = None,
              live: LiveBars | None = None) -> tuple[Outcome, Path]:
    """Run the plan; whatever happens, what was journaled is merged into the ledger."""
    from runner.ledger import RunJournal
    from runner.progress import for_run

    journal = RunJournal(Path(plan.out_dir), plan.day, opts.run_id or uuid.uuid4().hex[:16],
                         opts.failpoint)
    status = for_run(plan, broker.now_ns, opts.as_json)  # a live line on a TTY, else None
    engine = Engine(plan, broker, journal, bars, status.on_event if status else None,
                    pre_place=pre_place, on_note=results.say, watch=watch,
                    broker_price=broker_price,
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


def _keep(engine: Engine, journal: Any) -> None:
    """Events the journal refused mid-run: one more try, else print them (nothing lost),
    then fail the run."""
    if engine.ledger_error is None:
        return
    left = journal.retry(engine.unjournaled)
    for event in left:
        results.say(results.unjournaled(event.as_row()))
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
