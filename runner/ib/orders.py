"""One order's truth, from what the broker says: executions, commissions, statuses.

`Tracker` takes the broker's messages in whatever order and however often they come
(TWS_PROTOCOL.md §7) and turns them into runner's events, in order:

- an end (FILL, CANCEL, REJ) only from the broker's order status — never from an
  error code — and only once the executions cover the status's filled quantity (or
  EXEC_WAIT_SEC has passed: the end then carries the status's quantity);
- every execution once (duplicates dropped by exec id); one whose id differs from an
  earlier one only after the last period is a correction: its own CORRECTION event,
  naming the execution it replaces, with corrected totals;
- each execution's row waits (bounded, COMMISSION_WAIT_SEC) for its commission; a
  commission that comes later still is journaled as a CORRECTION of that execution;
- executions adding up to more than the order's quantity: recorded as reported, and
  an OVERFILL note the engine turns into an alarm;
- an order sized in money (cash_qty, sent with totalQuantity 0) has no size in units:
  only the broker's Filled status (and its filled count) says it is complete, and its
  OVERFILL is executions costing more than its cash.

Pure: no ib_async, no I/O. The broker feeds it and owns its one timer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.broker import BrokerEvent, Ev, Note, NoteKind, OrderRequest

COMMISSION_WAIT_SEC = 1.0  # an execution's row waits this long for its commission
EXEC_WAIT_SEC = 1.5  # an end waits this long for the executions its status counts
NS = 1_000_000_000
EPS = 1e-9
CASH_SLACK = 1e-4  # a cash order's executions may cost this much (0.01%) over its cash_qty

# IB's order statuses (orderStatus messages) and what they mean for us.
ACK_STATUSES = frozenset({"PreSubmitted", "Submitted"})
END_OF_STATUS = {"Filled": Ev.FILL, "Cancelled": Ev.CANCEL, "ApiCancelled": Ev.CANCEL,
                 "Inactive": Ev.REJ}
WORKING_STATUSES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted", "PendingCancel",
                              "ApiPending"})


@dataclass(slots=True)
class Execution:
    exec_id: str
    ts_ns: int
    qty: float
    px: float
    commission: float | None = None

    @property
    def base(self) -> str:
        """The id without its revision: `….01` and its correction `….02` share it."""
        return self.exec_id.rsplit(".", 1)[0] if "." in self.exec_id else self.exec_id


@dataclass(slots=True)
class _Held:
    """A row waiting for its commission: a new execution, or a correction of one."""

    execution: Execution
    until_ns: int
    replaces: str = ""  # a correction: the exec id it replaces


@dataclass
class Tracker:
    req: OrderRequest
    client_id: int | None
    emit: Callable[[BrokerEvent | Note], None]
    clock: Callable[[], int]
    order_id: int | None = None
    perm_id: int | None = None
    status: str | None = None  # the broker's last orderStatus
    end_status: str | None = None  # the first orderStatus that ends it (Filled, Cancelled, …)
    status_filled: float = 0.0
    status_avg: float | None = None
    acked: bool = False
    ended: Ev | None = None
    reason: str = ""  # the code that explains an Inactive (e.g. "201 Order rejected - ...")
    in_force: dict[str, Execution] = field(default_factory=dict)  # by base id
    seen: set[str] = field(default_factory=set)  # every exec id ever seen
    commissions: dict[str, float] = field(default_factory=dict)  # by exec id
    held: list[_Held] = field(default_factory=list)
    journaled_qty: float = 0.0  # the quantity the rows so far add up to
    end_since_ns: int | None = None  # when the terminal status came
    overfilled: bool = False
    late: set[str] = field(default_factory=set)  # exec ids journaled without commission
    row_qty: dict[str, float] = field(default_factory=dict)  # exec id -> qty in its row

    # --- what the broker says -------------------------------------------------------

    def on_status(self, status: str, filled: float, avg_px: float | None,
                  perm_id: int | None = None) -> None:
        now = self.clock()  # when the message came: the ACK's time
        self.perm_id = perm_id or self.perm_id
        self.status = status
        if self.end_status is None:  # the end's own numbers stand against later echoes
            self.status_filled = filled  # the broker's latest (a correction may lower it)
            self.status_avg = avg_px if avg_px else self.status_avg
        if status in ACK_STATUSES and not self.acked and self.ended is None:
            self.acked = True
            self._out(Ev.ACK, ts_ns=now)
        if status in END_OF_STATUS and self.end_status is None:
            self.end_status = status
            self.end_since_ns = now
        self.pump()

    def on_execution(self, e: Execution) -> None:
        if e.exec_id in self.seen:
            return  # the same message again
        self.seen.add(e.exec_id)
        e.commission = self.commissions.get(e.exec_id)
        old = self.in_force.get(e.base)
        self.in_force[e.base] = e
        until = self.clock() + int(COMMISSION_WAIT_SEC * NS)
        unrecorded = [h for h in self.held if old is not None and h.execution is old]
        if unrecorded:  # corrected before its row went out: the row shows the correction
            unrecorded[0].execution = e
            unrecorded[0].until_ns = until
        else:
            self.held.append(_Held(e, until, replaces=old.exec_id if old else ""))
        self._check_overfill()
        self.pump()

    def on_commission(self, exec_id: str, commission: float) -> None:
        if self.commissions.get(exec_id) == commission:
            return  # a repeat
        self.commissions[exec_id] = commission
        for e in self.in_force.values():
            if e.exec_id == exec_id:
                e.commission = commission
        if exec_id in self.late:  # its row went out without it: correct the record
            self.late.discard(exec_id)
            self._out(Ev.CORRECTION, exec_id=exec_id, corrects=exec_id,
                      message=f"commission of {exec_id} reported after its row")
        self.pump()

    def on_reason(self, text: str) -> None:
        """A rejection code's text: the reason an Inactive status will carry."""
        self.reason = text

    # --- what it adds up to -----------------------------------------------------------

    @property
    def fill_qty(self) -> float:
        return sum(e.qty for e in self.in_force.values())

    @property
    def avg_px(self) -> float | None:
        qty = self.fill_qty
        if qty <= EPS:
            return None
        return sum(e.qty * e.px for e in self.in_force.values()) / qty

    @property
    def commission(self) -> float | None:
        known = [e.commission for e in self.in_force.values() if e.commission is not None]
        return sum(known) if known else None

    @property
    def missing_commissions(self) -> list[str]:
        return [e.exec_id for e in self.in_force.values() if e.commission is None]

    @property
    def settled(self) -> bool:
        """Ended, nothing held, every execution's commission known."""
        return self.ended is not None and not self.held and not self.missing_commissions

    def next_due_ns(self) -> int | None:
        """When `pump` has something to decide by the clock alone."""
        if self.held:
            return self.held[0].until_ns
        if self.end_since_ns is not None and self.ended is None:
            return self.end_since_ns + int(EXEC_WAIT_SEC * NS)
        return None

    def pump(self) -> None:
        """Let out every row that is ready, in order."""
        now = self.clock()
        while self.held:
            h = self.held[0]
            if h.execution.commission is None and now < h.until_ns:
                return
            if self._completes(h) and self.end_status is None and now < h.until_ns:
                return  # the status that makes it the end is likely on its way
            self.held.pop(0)
            self._release(h)
        if self.end_since_ns is not None and self.ended is None:
            waited = now - self.end_since_ns >= int(EXEC_WAIT_SEC * NS)
            if self.journaled_qty >= self.status_filled - EPS or waited:
                self._end()

    @property
    def size(self) -> float:
        """The units that complete the order: its qty; a cash order's, only once the
        broker's status says Filled, the units it reports (totalQuantity 0 is no size)."""
        if self.req.cash_qty is None:
            return self.req.qty
        return self.status_filled if self.end_status == "Filled" else math.inf

    def _completes(self, h: _Held) -> bool:
        return not h.replaces and self.journaled_qty + h.execution.qty >= self.size - EPS

    def _release(self, h: _Held) -> None:
        e = h.execution
        self.row_qty[e.exec_id] = e.qty
        if e.commission is None:
            self.late.add(e.exec_id)
        if h.replaces:
            old_qty = self.row_qty.get(h.replaces, 0.0)
            self.journaled_qty += e.qty - old_qty
            self._out(Ev.CORRECTION, last_qty=e.qty - old_qty, last_px=e.px,
                      exec_id=e.exec_id, corrects=h.replaces,
                      message=f"execution {h.replaces} corrected by {e.exec_id}")
            return
        self.journaled_qty += e.qty
        last = (self.ended is None and END_OF_STATUS.get(self.end_status or "") == Ev.FILL
                and not any(not x.replaces for x in self.held)
                and self.journaled_qty >= self.size - EPS)
        if self.ended is not None:
            self._out(Ev.CORRECTION, last_qty=e.qty, last_px=e.px, exec_id=e.exec_id,
                      message=f"execution {e.exec_id} reported after the order's end")
        elif last:
            self.ended = Ev.FILL
            self._out(Ev.FILL, last_qty=e.qty, last_px=e.px, exec_id=e.exec_id)
        else:
            self._out(Ev.PARTIAL, last_qty=e.qty, last_px=e.px, exec_id=e.exec_id)

    def _end(self) -> None:
        status = self.end_status or ""
        kind = END_OF_STATUS[status]
        self.ended = kind
        message = ""
        if self.journaled_qty < self.status_filled - EPS:
            message = (f"the broker reports {self.status_filled:g} filled but sent executions "
                       f"for {self.journaled_qty:g} only")
        if kind == Ev.REJ:
            message = self.reason or f"{status} at the broker (no reason given)"
        elif kind == Ev.CANCEL and status == "Cancelled" and self.reason:
            message = self.reason
        self._out(kind, message=message)

    def _check_overfill(self) -> None:
        cash = self.req.cash_qty
        if cash is not None:  # by money: what the executions cost against the cash
            spent = sum(e.qty * e.px for e in self.in_force.values()) * self.req.multiplier
            if not self.overfilled and spent > cash * (1 + CASH_SLACK):
                self.overfilled = True
                self.emit(Note(NoteKind.OVERFILL, self.clock(),
                               f"OVERFILL: executions for {self.req.tag} cost {spent:g}, more "
                               f"than the order's cash_qty {cash:g}"))
        elif not self.overfilled and self.fill_qty > self.req.qty + EPS:
            self.overfilled = True
            self.emit(Note(NoteKind.OVERFILL, self.clock(),
                           f"OVERFILL: executions for {self.req.tag} add up to "
                           f"{self.fill_qty:g}, more than the order's {self.req.qty:g}"))

    def _out(self, kind: Ev, *, last_qty: float | None = None, last_px: float | None = None,
             exec_id: str = "", corrects: str = "", message: str = "",
             ts_ns: int | None = None) -> None:
        ts_ns = self.clock() if ts_ns is None else ts_ns
        filled = self.journaled_qty
        if kind in END_OF_STATUS.values() and self.status_filled > filled + EPS:
            filled = self.status_filled  # executions missing: the broker's own count
        avg = self.avg_px if self.fill_qty > EPS else self.status_avg
        self.emit(BrokerEvent(
            kind=kind, ts_ns=ts_ns, tag=self.req.tag, order_id=self.order_id,
            perm_id=self.perm_id, client_id=self.client_id, fill_qty=filled,
            last_qty=last_qty, last_px=last_px, avg_px=avg, commission=self.commission,
            message=message, exec_id=exec_id, corrects=corrects))
