"""The executor: runs a Plan against a Broker, one order state machine, every event
journaled as it arrives.

Write-ahead: the INTENT row is durable before `broker.place` is called. The TTL is
enforced on the broker's clock (virtual in the simulator). Whatever ends the wait
early — an error, Ctrl-C, SIGTERM — the live order is cancelled and the outcome
recorded before the exception goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner import tca
from runner.broker import Broker, BrokerEvent, Ev, OrderRequest, SessionInfo
from runner.errors import GatewayError, Interrupted, LedgerError, RunnerError
from runner.plan import ACK_TIMEOUT_SEC, CANCEL_TIMEOUT_SEC, Plan

NS = 1_000_000_000
TERMINAL = frozenset({Ev.FILL, Ev.CANCEL, Ev.REJ})

# The order FSM. A state is the last event that changed it.
TRANSITIONS: dict[tuple[Ev, Ev], Ev] = {
    (Ev.INTENT, Ev.ACK): Ev.ACK,
    (Ev.INTENT, Ev.REJ): Ev.REJ,
    (Ev.INTENT, Ev.CANCEL): Ev.CANCEL,  # IB can cancel before it acks (e.g. 202 on a bad GTD)
    (Ev.INTENT, Ev.PARTIAL): Ev.PARTIAL,  # an execution can overtake the status message
    (Ev.INTENT, Ev.FILL): Ev.FILL,
    (Ev.ACK, Ev.PARTIAL): Ev.PARTIAL,
    (Ev.ACK, Ev.FILL): Ev.FILL,
    (Ev.ACK, Ev.CANCEL): Ev.CANCEL,
    (Ev.ACK, Ev.REJ): Ev.REJ,  # a gateway may accept, then the exchange rejects
    (Ev.PARTIAL, Ev.PARTIAL): Ev.PARTIAL,
    (Ev.PARTIAL, Ev.FILL): Ev.FILL,
    (Ev.PARTIAL, Ev.CANCEL): Ev.CANCEL,
}
# Repeats that carry nothing new: not journaled, state unchanged.
IGNORED = frozenset({(Ev.ACK, Ev.ACK), (Ev.PARTIAL, Ev.ACK)})


class InvalidTransition(RunnerError):
    exit_code = 1


class Journal(Protocol):
    def open(self) -> Any: ...  # ready to take the INTENT (idempotent)

    def append(self, row: dict[str, Any]) -> None: ...


class BarsLike(Protocol):
    def arrival_at(self, t_ns: int) -> float | None: ...
    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None: ...
    def volume_between(self, t0_ns: int, t1_ns: int) -> float: ...


@dataclass
class Outcome:
    """How one plan ended; what the CLI prints and `expect:` checks."""

    kind: str
    tag: str | None = None
    state: str = "OPEN"  # FILL | CANCEL | REJ | OPEN (cancel never confirmed) | OK (handshake)
    fill_qty: float = 0.0
    avg_px: float | None = None
    arrival_px: float | None = None
    commission: float | None = None
    message: str = ""
    events: list[str] = field(default_factory=list)
    session: SessionInfo | None = None
    snapshot: dict[str, Any] | None = None


@dataclass
class _Order:
    """What the engine knows of its one order."""

    req: OrderRequest
    intent_ns: int
    state: Ev = Ev.INTENT
    order_id: int | None = None
    perm_id: int | None = None
    fill_qty: float = 0.0
    avg_px: float | None = None
    commission: float | None = None
    first_fill_ns: int | None = None
    end_ns: int | None = None
    message: str = ""
    placed: bool = False
    cancel_sent: bool = False

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


class Engine:
    """Runs one plan. `on_event` sees every journaled row (the terminal status line)."""

    def __init__(self, plan: Plan, broker: Broker, journal: Journal, bars: BarsLike | None,
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 pre_place: Callable[[SessionInfo], None] | None = None) -> None:
        self.pre_place = pre_place  # last gates, with the broker's facts; raises to refuse
        self.plan = plan
        self.broker = broker
        self.journal = journal
        self.bars = bars
        self.on_event = on_event
        self.account = ""
        self.order: _Order | None = None
        self.outcome = Outcome(kind=plan.kind, tag=plan.order.tag if plan.order else None)
        self.stop_signal: int | None = None  # set by a signal handler: stop, cancel, record
        self.unjournaled: list[dict[str, Any]] = []  # events the ledger could not take
        self.ledger_error: LedgerError | None = None

    def interrupt(self, signum: int) -> None:
        """Ask the run to stop. The wait loop sees it even if the task's cancellation is
        swallowed (Python 3.11's wait_for drops a cancel that races a result)."""
        self.stop_signal = signum

    async def run(self) -> Outcome:
        session = await self.broker.connect()
        self.outcome.session = session
        self.account = session.accounts[0] if session.accounts else ""
        if self.plan.order is None:
            self.outcome.state = "OK"
            return self.outcome
        self._check_account(session)
        await self.broker.qualify(self.plan.order)
        if self.pre_place is not None:
            self.pre_place(session)
        try:
            await self._place_and_wait()
        except BaseException as e:  # noqa: BLE001 - cancel on *any* way out, then re-raise
            await self._cancel_on_the_way_out(e)
            raise
        self._snapshot()
        return self.outcome

    def _check_account(self, session: SessionInfo) -> None:
        if self.plan.mode == "paper" and self.broker.name != "sim":
            live = [a for a in session.accounts if not a.startswith("D")]
            if live:
                raise GatewayError(
                    f"paper run, but the gateway is logged into a live account ({live[0]}); "
                    "nothing was sent",
                    "log the gateway into a paper account, or use mode: live with --live")

    async def _place_and_wait(self) -> None:
        req = self.plan.order
        assert req is not None
        self._open_journal()  # creating the file is not part of the INTENT's latency
        now = self.broker.now_ns()
        self.order = _Order(req, intent_ns=now)
        arrival = self.bars.arrival_at(now) if self.bars is not None else None
        self.outcome.arrival_px = arrival
        sanity = self.plan.kind == "sanity-cancel"
        wait_sec = ACK_TIMEOUT_SEC if sanity else self.plan.ttl_sec
        assert wait_sec is not None
        deadline = now + int(wait_sec * NS)
        # durable before the order leaves; the deadline tells `runner recover` when to cancel
        self._record(Ev.INTENT, now, arrival_px=arrival, deadline=deadline)
        self.order.placed = True  # from here on, a way out must cancel it
        await self.broker.place(req)
        if sanity:
            await self._wait(lambda o: o.state != Ev.INTENT, deadline)
        else:
            await self._wait(lambda o: o.done, deadline)
        if not self.order.done:
            await self._cancel()

    async def _wait(self, until: Callable[[_Order], bool], deadline_ns: int,
                    interruptible: bool = True) -> None:
        order = self.order
        assert order is not None
        while not until(order) and not order.done:
            if interruptible and self.stop_signal is not None:
                raise Interrupted(self.stop_signal)
            if interruptible and self.ledger_error is not None:
                return  # cannot record: cancel now rather than trade blind
            event = await self.broker.next_event(deadline_ns)
            if event is None:
                return
            self._apply(event)

    async def _cancel(self) -> None:
        order = self.order
        assert order is not None
        order.cancel_sent = True
        await self.broker.cancel(order.req.tag)
        # a broker that is reconnecting gets its reconnect window on top of the usual wait
        grace = CANCEL_TIMEOUT_SEC + float(getattr(self.broker, "reconnect_sec", 0.0))
        await self._wait(lambda o: o.done, self.broker.now_ns() + int(grace * NS),
                         interruptible=False)
        if not order.done:
            self.outcome.message = (
                f"cancel of {order.req.tag} not confirmed within {CANCEL_TIMEOUT_SEC:g} s; "
                "the order may still be live at the broker (runner recover will settle it)")

    async def _cancel_on_the_way_out(self, cause: BaseException) -> None:
        order = self.order
        if order is None or not order.placed or order.done or order.cancel_sent:
            return
        try:
            await asyncio.shield(self._cancel())
        except Exception as e:  # noqa: BLE001 - the first error is the one to report
            self.outcome.message = f"cancel after {type(cause).__name__} failed: {e}"

    def _apply(self, ev: BrokerEvent) -> None:
        order = self.order
        assert order is not None
        if (order.state, ev.kind) in IGNORED or order.done:
            return  # late repeats after the end (e.g. a status echo) change nothing
        new = TRANSITIONS.get((order.state, ev.kind))
        if new is None:
            raise InvalidTransition(f"{order.state.value} -> {ev.kind.value} for {ev.tag}")
        order.state = new
        order.order_id = ev.order_id or order.order_id
        order.perm_id = ev.perm_id or order.perm_id
        if ev.kind in (Ev.PARTIAL, Ev.FILL):
            order.first_fill_ns = order.first_fill_ns or ev.ts_ns
        if ev.kind != Ev.ACK:
            order.fill_qty = max(order.fill_qty, ev.fill_qty)
            order.avg_px = ev.avg_px if ev.avg_px is not None else order.avg_px
            order.commission = ev.commission if ev.commission is not None else order.commission
        if new in TERMINAL:
            order.end_ns = ev.ts_ns
        order.message = ev.message or order.message
        self._record(ev.kind, ev.ts_ns, last_qty=ev.last_qty, last_px=ev.last_px,
                     message=ev.message, exec_id=ev.exec_id)

    def _open_journal(self) -> None:
        try:
            self.journal.open()
        except LedgerError as e:
            raise LedgerError(f"{e.message}; the order was not sent",
                              "free disk space or fix out_dir, then run again") from None

    def _record(self, event: Ev, ts_ns: int, **extra: Any) -> None:
        order = self.order
        assert order is not None
        req = order.req
        row = {
            "ts": ts_ns, "spec": self.plan.spec, "tag": req.tag, "event": event.value,
            "broker": self.broker.name, "account": self.account, "order_id": order.order_id,
            "perm_id": order.perm_id, "symbol": req.symbol, "side": req.side, "qty": req.qty,
            "order_type": req.order_type, "limit": req.limit, "tif": req.tif,
            "fill_qty": order.fill_qty, "avg_px": order.avg_px, "commission": order.commission,
        }
        row.update({k: v for k, v in extra.items() if v is not None and v != ""})
        try:
            self.journal.append(row)
        except LedgerError as e:
            if event == Ev.INTENT:  # nothing is sent without a durable INTENT
                raise LedgerError(f"{e.message}; the order was not sent",
                                  "free disk space or fix out_dir, then run again") from None
            # Past the INTENT the order is out there: keep the event in memory, stop
            # trading (the wait loop cancels at once), and hand the rows to the caller.
            self.unjournaled.append(row)
            self.ledger_error = self.ledger_error or e
        self.outcome.events.append(event.value)
        if self.on_event is not None:
            self.on_event(row)
        self._update_outcome()

    def _update_outcome(self) -> None:
        order = self.order
        assert order is not None
        out = self.outcome
        if order.done:
            out.state = order.state.value
        out.fill_qty, out.avg_px, out.commission = order.fill_qty, order.avg_px, order.commission
        out.message = order.message or out.message

    def _snapshot(self) -> None:
        order = self.order
        if order is None or self.bars is None:
            return
        end = order.end_ns if order.end_ns is not None else self.broker.now_ns()
        snap = tca.snapshot(order.req.side, order.req.qty, order.fill_qty, order.avg_px,
                            order.commission, order.intent_ns, order.first_fill_ns, end,
                            self.bars)
        if snap is not None:
            self.outcome.snapshot = snap
            self._record(Ev.PNL_SNAPSHOT, end, **snap)


def run_plan(plan: Plan, broker: Broker, journal: Journal, bars: BarsLike | None,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Run a plan to its end on a fresh event loop (the CLI's entry)."""
    return asyncio.run(_run_and_close(Engine(plan, broker, journal, bars, on_event)))


async def _run_and_close(engine: Engine) -> Outcome:
    try:
        return await engine.run()
    finally:
        await engine.broker.close()
