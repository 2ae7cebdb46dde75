"""The executor: runs a Plan against a Broker, one order state machine, every event
journaled as it arrives.

Write-ahead: the INTENT row is durable before `broker.place` is called. The TTL is
enforced on the broker's clock (virtual in the simulator). Whatever ends the wait
early — an error, Ctrl-C, SIGTERM — the live order is cancelled and the outcome
recorded before the exception goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner import tca
from runner.barsproto import BarsLike, LiveBars
from runner.broker import (
    Broker,
    BrokerEvent,
    Ev,
    Lookup,
    Note,
    NoteKind,
    SessionInfo,
)
from runner.contract import ContractTerms
from runner.errors import (
    GatewayError,
    Interrupted,
    LedgerError,
    RunnerError,
    Stopped,
    UsageError,
)
from runner.events import IntentDraft, order_event
from runner.fsm import IGNORED, TRANSITIONS, InvalidTransition, TrackedOrder
from runner.ledger.event import LedgerEvent, Stamped
from runner.livebars import Priced
from runner.plan import CANCEL_ATTEMPTS, Plan, day_span_ns, trading_day

NS = 1_000_000_000
GTD_DROPPED = 10349  # IB: "Order TIF was set to DAY based on order preset" (no backstop now)
SETTLE_SEC = 2.0  # after the end: how long late commissions and corrections are waited for
LINGER_SEC = 0.25  # after the end of an order that filled: listen at least this long
POLL_SEC = 0.25  # how often a wait re-checks what no event announces (reconnects)

class Journal(Protocol):
    """Where the engine's events go (runner.ledger.RunJournal)."""

    def open(self) -> Any: ...  # ready to take the INTENT (idempotent)

    def append(self, event: LedgerEvent | Stamped) -> None: ...  # returns once it is durable


@dataclass
class Outcome:
    """How one plan ended; what the CLI prints and `expect:` checks."""

    kind: str
    tag: str | None = None
    # FILL | CANCEL | REJ; UNSETTLED (a cancel refused or never confirmed) | UNKNOWN (the
    # gateway does not show the order) | OPEN (the run broke off) | OK (handshake)
    state: str = "OPEN"
    fill_qty: float = 0.0
    avg_px: float | None = None
    arrival_px: float | None = None
    commission: float | None = None
    message: str = ""
    events: list[str] = field(default_factory=list)
    session: SessionInfo | None = None
    snapshot: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what the broker said on the way
    alarm: str = ""  # something that must not pass quietly (an over-fill)
    missing_commissions: list[str] = field(default_factory=list)  # exec ids, for recover


class Engine:
    """Runs one plan. `on_event` sees every journaled event (the terminal status line);
    `on_note` every line worth telling the person at the terminal."""

    def __init__(self, plan: Plan, broker: Broker, journal: Journal, bars: BarsLike | None,
                 on_event: Callable[[LedgerEvent], None] | None = None,
                 pre_place: Callable[[SessionInfo], Callable[[], None] | None] | None = None,
                 on_note: Callable[[str], None] | None = None,
                 watch: Callable[[], str | None] | None = None,
                 broker_price: Callable[[], float | None] | None = None,
                 on_unguarded: Callable[[str, int | None], None] | None = None,
                 live: LiveBars | None = None) -> None:
        self.pre_place = pre_place  # last gates, with the broker's facts; raises to refuse
        self.plan = plan
        self.broker = broker
        self.journal = journal
        self.bars = bars
        self.live = live  # bars read again at the INTENT and after the order (broker runs)
        self.on_event = on_event
        self.on_note = on_note
        self.watch = watch  # polled while the order works: a reason to stop (kill switch)
        self.broker_price = broker_price  # the broker's reference, when the bars have none
        self.on_unguarded = on_unguarded  # the broker dropped the GTD backstop (IB 10349)
        self.account = ""
        self.terms: ContractTerms | None = None  # the contract as qualified (None: the spec's)
        self.client_id: int | None = None
        self.order: TrackedOrder | None = None
        self.outcome = Outcome(kind=plan.kind, tag=plan.order.tag if plan.order else None)
        self.stop_signal: int | None = None  # set by a signal handler: stop, cancel, record
        self.unjournaled: list[LedgerEvent] = []  # events the ledger could not take
        self.ledger_error: LedgerError | None = None
        self._release: Callable[[], None] | None = None  # the caps lock, while held

    def interrupt(self, signum: int) -> None:
        """Ask the run to stop. The wait loop sees it even if the task's cancellation is
        swallowed (Python 3.11's wait_for drops a cancel that races a result)."""
        self.stop_signal = signum

    async def run(self) -> Outcome:
        session = await self.broker.connect()
        self.outcome.session = session
        named = self.plan.order.account if self.plan.order is not None else ""
        self.account = named or (session.accounts[0] if session.accounts else "")
        self.client_id = session.client_id
        if self.plan.order is None:
            self.outcome.state = "OK"
            return self.outcome
        self.terms = await self.broker.qualify(self.plan.order)
        # the last gates; under day caps they hold a lock until the INTENT is durable
        self._release = self.pre_place(session) if self.pre_place is not None else None
        try:
            await self._place_and_wait()
        except Stopped as e:
            await self._cancel_on_the_way_out(e)
            self._left_open(e)
            raise Stopped(f"{e.message}; {self.fate()}", e.hint) from None
        except BaseException as e:  # noqa: BLE001 - cancel on *any* way out, then re-raise
            await self._cancel_on_the_way_out(e)
            self._left_open(e)
            raise
        finally:
            self._unlock()
        if self.order is not None and self.order.done:
            await self._settle()
        await self._snapshot()
        return self.outcome

    async def _place_and_wait(self) -> None:
        req = self.plan.order
        assert req is not None
        if self.live is not None:  # a growing capture as it is now; a broken one: no file
            self.bars = self.live.at_intent(self.broker.now_ns())
        self._open_journal()  # creating the file is not part of the INTENT's latency
        order_id = self.broker.next_order_id()  # reserved before the clock starts, too
        first_ns, end_ns = day_span_ns(self.plan.day)
        # all of the INTENT but what its clock decides, made before the clock is read
        draft = IntentDraft(self.plan, self.broker.name, self.account, self.client_id,
                            order_id, self.plan.bars_path if self.live is None else
                            self.live.path, self.broker.now_ns(), self.terms)
        now = self.broker.now_ns()  # the INTENT: the deadline and the GTD come from it
        if not first_ns <= now < end_ns:
            raise UsageError(f"the trading day changed since the plan was made ({self.plan.day}"
                             f" -> {trading_day(now)}); nothing was sent", "run it again")
        self.order, req = draft.at(now)
        arrival = self.bars.arrival_at(now) if self.bars is not None else None
        source = "bars" if arrival is not None else None
        if arrival is None and self.broker_price is not None:
            arrival = self.broker_price()  # what the gates judged by; the day caps count it
            source = "broker" if arrival is not None else None
        self.outcome.arrival_px = arrival
        # durable before the order leaves; the deadline tells `runner recover` when to cancel
        intent = draft.stamp(now, arrival, source)
        self._journal_intent(intent)
        self.order.placed = True  # from here on, a way out must cancel it
        try:
            await self.broker.place(req)  # the order's bytes first, then the bookkeeping
        finally:
            self._recorded(intent.as_event())
            self._unlock()  # counted and durable: the next run's count sees this INTENT
        deadline = now + draft.wait_ns
        if self.plan.kind == "sanity-cancel":
            await self._wait(lambda o: o.state != Ev.INTENT, deadline)
        else:
            await self._wait(lambda o: o.stopped, deadline)
        if not self.order.stopped:
            await self._cancel()
        elif self.order.state == Ev.UNKNOWN:
            await self._cancel_unseen()

    async def _wait(self, until: Callable[[TrackedOrder], bool], deadline_ns: int,
                    interruptible: bool = True) -> None:
        order = self.order
        assert order is not None
        watch = self.watch if interruptible else None
        while not until(order) and not order.stopped:
            if interruptible and self.stop_signal is not None:
                raise Interrupted(self.stop_signal)
            if interruptible and self.ledger_error is not None:
                return  # cannot record: cancel now rather than trade blind
            if watch is not None and (why := watch()):
                raise Stopped(why, "remove it to trade again")
            step = deadline_ns
            if watch is not None:  # look again at least every POLL_SEC
                step = min(deadline_ns, self.broker.now_ns() + int(POLL_SEC * NS))
            event = await self.broker.next_event(step)
            if event is None:
                if step >= deadline_ns or self.broker.now_ns() >= deadline_ns:
                    return
                continue
            self._take(event)

    def _take(self, item: BrokerEvent | Note) -> None:
        if isinstance(item, Note):
            self._note(item)
        else:
            self._apply(item)

    def _note(self, note: Note) -> None:
        order = self.order
        if note.kind == NoteKind.CANCEL_REFUSED and order is not None:
            order.cancel_refused = note.text
        if note.kind == NoteKind.OVERFILL:
            self.outcome.alarm = note.text
        if note.code == GTD_DROPPED and order is not None and self.on_unguarded is not None:
            self.on_unguarded(order.req.tag, order.order_id)
        self.outcome.notes.append(note.text)
        if self.on_note is not None:
            self.on_note(f"{self.outcome.tag}: {note.text}")

    async def _cancel(self) -> None:
        """Cancel, retried a bounded number of times (refused or unanswered), then look
        the order up; still working: UNSETTLED, for `runner recover` and the person."""
        order = self.order
        assert order is not None
        order.cancel_sent = True
        start = self.broker.now_ns()
        total = int(self.plan.connection.cancel_timeout_sec * NS)
        for attempt in range(1, CANCEL_ATTEMPTS + 1):
            order.cancel_refused = ""
            await self.broker.cancel(order.req.tag)
            await self._while_reconnecting()
            until = max(start + total * attempt // CANCEL_ATTEMPTS, self.broker.now_ns())
            await self._wait(lambda o: bool(o.cancel_refused), until, interruptible=False)
            if order.stopped:
                return
            if order.cancel_refused:  # refused at once: try again when this slot is up
                await self._listen(until)
                if order.stopped:
                    return
        await self._look_up(start)

    async def _listen(self, until_ns: int) -> None:
        """Take the broker's events until `until_ns` (or the order stops); no other aim."""
        await self._wait(lambda o: False, until_ns, interruptible=False)

    async def _while_reconnecting(self) -> None:
        """A broker that is reconnecting sends the cancel once it is back: wait for that
        (bounded by its reconnect window, which ends in an error if it does not return)."""
        give_up = self.broker.now_ns() + int(self.plan.connection.reconnect_sec * NS)
        while self.broker.reconnecting_now() and self.broker.now_ns() < give_up:
            await self._listen(self.broker.now_ns() + int(POLL_SEC * NS))
            if self.order is not None and self.order.stopped:
                return

    async def _look_up(self, start_ns: int) -> None:
        order = self.order
        assert order is not None
        try:
            found = await self.broker.lookup(order.req.tag)
        except GatewayError as e:
            found, why = Lookup.UNKNOWN, f" (lookup failed: {e.message})"
        else:
            why = ""
        await self._listen(self.broker.now_ns())  # what the lookup found, as events
        if order.stopped:
            return
        waited = (self.broker.now_ns() - start_ns) / NS
        refused = f"refused ({order.cancel_refused})" if order.cancel_refused else \
            "not confirmed"
        shows = {Lookup.WORKING: "still working", Lookup.DONE: "done",
                 Lookup.UNKNOWN: "not at all"}[found]
        oid = f" (order id {order.order_id})" if order.order_id else ""
        text = (f"cancel of {order.req.tag}{oid} {refused} after {CANCEL_ATTEMPTS} attempts "
                f"in {waited:.1f} s; the broker shows it {shows}{why}")
        order.state = Ev.UNSETTLED
        self._record(Ev.UNSETTLED, self.broker.now_ns(), message=text)
        self.outcome.message = (
            f"{text}; it may still be working at IB: cancel it in TWS or run `runner recover` "
            f"once IB lets it be cancelled. New orders under {self.plan.out_dir} are refused "
            "until it is settled (--allow-unsettled overrides)")

    def _left_open(self, cause: BaseException) -> None:
        """Leaving while the order has no end the broker confirmed: say so in the ledger
        (UNSETTLED), so later runs and `runner recover` know it may still be working."""
        order = self.order
        if order is None or not order.placed or order.stopped:
            return
        why = type(cause).__name__ if not isinstance(cause, RunnerError) else cause.message
        order.state = Ev.UNSETTLED
        with contextlib.suppress(LedgerError):
            self._record(Ev.UNSETTLED, self.broker.now_ns(),
                         message=f"the run stopped ({why}) before the broker confirmed an end "
                                 "for the order; it may still be working at IB")

    def _unlock(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def fate(self) -> str:
        """What became of the order, in a few words (for a run that broke off)."""
        order, tag = self.order, self.outcome.tag
        if order is None:
            return "no order was placed"
        if order.stopped:
            return f"order {tag} ended {order.state.value} and was recorded"
        return self.outcome.message or f"order {tag} may still be live (runner recover)"

    async def _cancel_unseen(self) -> None:
        """An acknowledged order the gateway no longer shows (UNKNOWN) may still work at
        IB: one cancel by its id, best effort, before it is left for `runner recover`."""
        order = self.order
        assert order is not None
        if order.cancel_sent:
            return
        order.cancel_sent = True
        try:
            await self.broker.cancel(order.req.tag)
        except RunnerError as e:
            self.outcome.notes.append(f"cancel of {order.req.tag} not sent: {e.message}")

    async def _cancel_on_the_way_out(self, cause: BaseException) -> None:
        order = self.order
        if order is not None and order.placed and order.state == Ev.UNKNOWN:
            await self._cancel_unseen()
        if order is None or not order.placed or order.stopped or order.cancel_sent:
            return
        try:
            await asyncio.shield(self._cancel())
        except Exception as e:  # noqa: BLE001 - the first error is the one to report
            self.outcome.message = f"cancel after {type(cause).__name__} failed: {e}"

    async def _settle(self) -> None:
        """After the end: late commissions and corrections, bounded (DESIGN §5)."""
        order = self.order
        assert order is not None
        now = self.broker.now_ns()
        give_up = now + int(SETTLE_SEC * NS)
        linger = now + int(LINGER_SEC * NS) if order.fill_qty > 0 else now
        while self.ledger_error is None:
            now = self.broker.now_ns()
            if now >= give_up or (now >= linger and not self.broker.pending()):
                break
            until = give_up if self.broker.pending() else linger
            event = await self.broker.next_event(min(until, now + int(POLL_SEC * NS)))
            if event is not None:
                self._take(event)
        self.outcome.missing_commissions = list(self.broker.missing_commissions())
        if self.broker.pending() and order.fill_qty > 0:
            self._note(Note(NoteKind.INFO, self.broker.now_ns(), "a commission was not "
                            f"reported within {SETTLE_SEC:g} s of the end; `runner recover` "
                            "fills it in once the gateway's executions have it"))

    def _apply(self, ev: BrokerEvent) -> None:
        order = self.order
        assert order is not None
        if ev.kind == Ev.CORRECTION:
            self._correct(ev)
            return
        if (order.state, ev.kind) in IGNORED or order.stopped:
            return  # late repeats after the end (e.g. a status echo) change nothing
        new = TRANSITIONS.get((order.state, ev.kind))
        if new is None:
            raise InvalidTransition(f"{order.state.value} -> {ev.kind.value} for {ev.tag}")
        order.state = new
        self._take_numbers(ev)
        if ev.kind in (Ev.PARTIAL, Ev.FILL):
            order.first_fill_ns = order.first_fill_ns or ev.ts_ns
        if new in Ev.TERMINAL:
            order.end_ns = ev.ts_ns
        order.message = ev.message or order.message
        self._record(ev.kind, ev.ts_ns, last_qty=ev.last_qty, last_px=ev.last_px,
                     message=ev.message, exec_id=ev.exec_id)

    def _correct(self, ev: BrokerEvent) -> None:
        """A correction replaces an execution (or fills in its commission): the numbers
        become the broker's corrected totals; the state stays."""
        self._take_numbers(ev, corrected=True)
        self._record(Ev.CORRECTION, ev.ts_ns, last_qty=ev.last_qty, last_px=ev.last_px,
                     message=ev.message, exec_id=ev.exec_id, corrects=ev.corrects)

    def _take_numbers(self, ev: BrokerEvent, corrected: bool = False) -> None:
        order = self.order
        assert order is not None
        order.order_id = ev.order_id or order.order_id
        order.perm_id = ev.perm_id or order.perm_id
        order.client_id = ev.client_id if ev.client_id is not None else order.client_id
        if ev.kind == Ev.ACK:
            return
        order.fill_qty = ev.fill_qty if corrected else max(order.fill_qty, ev.fill_qty)
        order.avg_px = ev.avg_px if ev.avg_px is not None else order.avg_px
        order.commission = ev.commission if ev.commission is not None else order.commission

    def _open_journal(self) -> None:
        try:
            self.journal.open()
        except LedgerError as e:
            raise LedgerError(f"{e.message}; the order was not sent",
                              "free disk space or fix out_dir, then run again") from None

    def _journal_intent(self, intent: Stamped) -> None:
        try:
            self.journal.append(intent)
        except LedgerError as e:  # nothing is sent without a durable INTENT
            raise LedgerError(f"{e.message}; the order was not sent",
                              "free disk space or fix out_dir, then run again") from None

    def _record(self, event: Ev, ts_ns: int, **extra: Any) -> None:
        assert self.order is not None
        entry = order_event(self.plan, self.broker.name, self.account, self.order, event,
                            ts_ns, self.terms, **extra)
        try:
            self.journal.append(entry)
        except LedgerError as e:
            # Past the INTENT the order is out there: keep the event in memory, stop
            # trading (the wait loop cancels at once), and hand the rows to the caller.
            self.unjournaled.append(entry)
            self.ledger_error = self.ledger_error or e
        self._recorded(entry)

    def _recorded(self, entry: LedgerEvent) -> None:
        """A journaled event's bookkeeping: the outcome, and `on_event` (the status line)."""
        assert entry.event is not None
        self.outcome.events.append(entry.event)
        if self.on_event is not None:
            self.on_event(entry)
        self._update_outcome()

    def _update_outcome(self) -> None:
        order = self.order
        assert order is not None
        out = self.outcome
        if order.stopped:
            out.state = order.state.value
        out.fill_qty, out.avg_px, out.commission = order.fill_qty, order.avg_px, order.commission
        out.message = order.message or out.message

    async def _snapshot(self) -> None:
        """The PNL_SNAPSHOT of an order that filled and has an arrival: priced at the
        INTENT's arrival, later prices from the bars (on a broker run read again after the
        order, `LiveBars.after`)."""
        order, arrival = self.order, self.outcome.arrival_px
        if order is None or not arrival or order.fill_qty <= 0:
            return
        end = order.end_ns if order.end_ns is not None else self.broker.now_ns()
        bars = self.bars
        if self.live is not None:
            bars = await self.live.after(order.intent_ns, end, self._say)
        snap = tca.snapshot(order.req.side, order.req.qty, order.fill_qty, order.avg_px,
                            order.commission, order.intent_ns, order.first_fill_ns, end,
                            Priced(order.intent_ns, arrival, bars), order.req.multiplier,
                            order.req.cash_qty)
        if snap is not None:
            self.outcome.snapshot = snap
            self._record(Ev.PNL_SNAPSHOT, end, **snap)

    def _say(self, line: str) -> None:
        if self.on_note is not None:
            self.on_note(f"{self.outcome.tag}: {line}")
