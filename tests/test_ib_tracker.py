"""The IB order tracker on its own: the broker's messages in the orders and repeats real
gateways send them (TWS_PROTOCOL.md §7), fed by hand, on a clock the test moves.

The end-to-end tests (test_ib_misbehave.py) drive the same through the unmodified
ib_async client and the fake gateway; these pin the rules one message at a time.
"""

from __future__ import annotations

from runner.broker import BrokerEvent, Ev, Note, NoteKind, OrderRequest
from runner.ib.orders import COMMISSION_WAIT_SEC, EXEC_WAIT_SEC, Execution, Tracker

NS = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * NS

    def __call__(self) -> int:
        return self.t

    def pass_(self, seconds: float) -> None:
        self.t += int(seconds * NS)


def tracker(qty: float = 10) -> tuple[Tracker, list[BrokerEvent | Note], Clock]:
    req = OrderRequest("t1", "SPY", "STK", "SMART", "USD", "BUY", qty, "LMT", 100.0, "DAY")
    out: list[BrokerEvent | Note] = []
    clock = Clock()
    t = Tracker(req, 7, out.append, clock)
    t.order_id = 3
    return t, out, clock


def kinds(out: list[BrokerEvent | Note]) -> list[str]:
    return [x.kind.value for x in out]


def ex(exec_id: str, qty: float, px: float) -> Execution:
    return Execution(exec_id, 0, qty, px)


def test_the_usual_order_exec_status_commission() -> None:
    t, out, _ = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_execution(ex("a.01", 6, 100.0))
    t.on_status("Submitted", 6, 100.0, 55)
    t.on_commission("a.01", 1.0)
    t.on_execution(ex("b.01", 4, 101.0))
    t.on_status("Filled", 10, 100.4, 55)
    assert kinds(out) == ["ACK", "PARTIAL"]  # the FILL waits for its commission
    t.on_commission("b.01", 0.5)
    assert kinds(out) == ["ACK", "PARTIAL", "FILL"]
    fill = out[-1]
    assert isinstance(fill, BrokerEvent)
    assert (fill.fill_qty, fill.last_qty, fill.last_px) == (10, 4, 101.0)
    assert fill.avg_px == (6 * 100.0 + 4 * 101.0) / 10 and fill.commission == 1.5
    assert fill.perm_id == 55 and fill.client_id == 7 and t.settled


def test_every_message_twice_counts_once() -> None:
    t, out, _ = tracker()
    for _ in range(2):
        t.on_status("Submitted", 0, None, 55)
    for _ in range(2):
        t.on_execution(ex("a.01", 10, 100.0))
        t.on_status("Filled", 10, 100.0, 55)
        t.on_commission("a.01", 1.0)
    assert kinds(out) == ["ACK", "FILL"]
    assert sum(e.last_qty or 0 for e in out if isinstance(e, BrokerEvent)) == 10


def test_status_filled_before_the_executions_waits_for_them() -> None:
    t, out, clock = tracker()
    t.on_status("Filled", 10, 100.0, 55)
    assert kinds(out) == []  # not an end until the executions are in (or the wait is up)
    t.on_execution(ex("a.01", 10, 100.0))
    t.on_commission("a.01", 1.0)
    assert kinds(out) == ["FILL"] and out[0].last_qty == 10  # type: ignore[union-attr]


def test_status_filled_without_executions_ends_after_the_wait_with_its_quantity() -> None:
    t, out, clock = tracker()
    t.on_status("Filled", 10, 100.0, 55)
    clock.pass_(EXEC_WAIT_SEC)
    t.pump()
    assert kinds(out) == ["FILL"]
    end = out[0]
    assert isinstance(end, BrokerEvent) and end.fill_qty == 10 and end.last_qty is None
    assert "sent executions for 0 only" in end.message


def test_partial_then_inactive_keeps_the_filled_quantity_and_the_reason() -> None:
    t, out, _ = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_execution(ex("a.01", 3, 100.0))
    t.on_commission("a.01", 1.0)
    t.on_reason("201 Order rejected - reason:margin")
    t.on_status("Inactive", 3, 100.0, 55)
    assert kinds(out) == ["ACK", "PARTIAL", "REJ"]
    rej = out[-1]
    assert isinstance(rej, BrokerEvent) and rej.fill_qty == 3 and "margin" in rej.message


def test_a_correction_replaces_the_execution_it_corrects() -> None:
    t, out, _ = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_execution(ex("p.0001.01", 4, 100.0))
    t.on_commission("p.0001.01", 1.0)
    t.on_execution(ex("p.0001.02", 4, 99.5))  # the same execution, a better price
    t.on_commission("p.0001.02", 1.0)
    corr = out[-1]
    assert isinstance(corr, BrokerEvent) and corr.kind == Ev.CORRECTION
    assert corr.corrects == "p.0001.01" and corr.exec_id == "p.0001.02"
    assert (corr.fill_qty, corr.avg_px, corr.last_qty) == (4, 99.5, 0)
    assert corr.commission == 1.0  # the replaced execution's commission is gone with it
    rows = [e for e in out if isinstance(e, BrokerEvent) and e.kind != Ev.ACK]
    assert sum(e.last_qty or 0 for e in rows if e.kind in (Ev.PARTIAL, Ev.FILL)) == 4


def test_a_correction_of_the_shares_after_the_end() -> None:
    t, out, _ = tracker(qty=5)
    t.on_execution(ex("q.01", 5, 100.0))
    t.on_status("Filled", 5, 100.0, 55)
    t.on_commission("q.01", 1.0)
    t.on_execution(ex("q.02", 4, 100.0))
    t.on_commission("q.02", 0.8)
    assert kinds(out) == ["FILL", "CORRECTION"]
    corr = out[-1]
    assert isinstance(corr, BrokerEvent)
    assert (corr.fill_qty, corr.last_qty, corr.commission) == (4, -1, 0.8)


def test_a_correction_before_its_row_went_out_shows_only_the_corrected_one() -> None:
    t, out, _ = tracker()
    t.on_execution(ex("r.01", 4, 100.0))
    t.on_execution(ex("r.02", 4, 99.0))
    t.on_commission("r.02", 1.0)
    assert kinds(out) == ["PARTIAL"]
    assert (out[0].last_qty, out[0].last_px, out[0].exec_id) == (4, 99.0, "r.02")  # type: ignore[union-attr]


def test_a_commission_before_its_execution_is_kept() -> None:
    t, out, _ = tracker()
    t.on_commission("s.01", 1.25)
    t.on_execution(ex("s.01", 10, 100.0))
    t.on_status("Filled", 10, 100.0, 55)
    assert kinds(out) == ["FILL"] and out[0].commission == 1.25  # type: ignore[union-attr]


def test_a_commission_after_the_wait_is_journaled_as_a_correction() -> None:
    t, out, clock = tracker()
    t.on_execution(ex("u.01", 10, 100.0))
    t.on_status("Filled", 10, 100.0, 55)
    clock.pass_(COMMISSION_WAIT_SEC)
    t.pump()
    assert kinds(out) == ["FILL"] and out[0].commission is None  # type: ignore[union-attr]
    assert not t.settled and t.missing_commissions == ["u.01"]
    t.on_commission("u.01", 2.0)
    assert kinds(out) == ["FILL", "CORRECTION"]
    late = out[-1]
    assert isinstance(late, BrokerEvent) and late.commission == 2.0 and late.corrects == "u.01"
    assert late.last_qty is None and t.settled


def test_an_over_fill_is_recorded_as_reported_and_noted() -> None:
    t, out, _ = tracker(qty=5)
    t.on_execution(ex("v.01", 5, 100.0))
    t.on_commission("v.01", 1.0)
    t.on_execution(ex("w.01", 3, 100.0))
    t.on_commission("w.01", 1.0)
    t.on_status("Filled", 8, 100.0, 55)
    notes = [x for x in out if isinstance(x, Note)]
    assert [n.kind for n in notes] == [NoteKind.OVERFILL] and "8" in notes[0].text
    events = [x for x in out if isinstance(x, BrokerEvent)]
    assert [e.kind for e in events][-1] == Ev.FILL and events[-1].fill_qty == 8


def test_an_error_code_alone_ends_nothing() -> None:
    t, out, clock = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_reason("10349 Order TIF was set to DAY based on order preset.")
    clock.pass_(60)
    t.pump()
    assert kinds(out) == ["ACK"] and t.ended is None


def test_a_status_echo_after_the_end_status_changes_nothing() -> None:
    t, out, clock = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_status("Filled", 10, 100.0, 55)
    t.on_status("PendingCancel", 10, 100.0, 55)  # an echo of our own cancel, late
    t.on_execution(ex("e.01", 10, 100.0))
    t.on_commission("e.01", 1.0)
    clock.pass_(EXEC_WAIT_SEC)
    t.pump()
    assert kinds(out) == ["ACK", "FILL"] and t.ended == Ev.FILL


def test_a_downward_correction_then_cancel_ends_with_the_corrected_quantity() -> None:
    t, out, _ = tracker()
    t.on_status("Submitted", 0, None, 55)
    t.on_execution(ex("d.01", 4, 100.0))
    t.on_commission("d.01", 1.0)
    t.on_status("Submitted", 4, 100.0, 55)
    t.on_execution(ex("d.02", 2, 100.0))
    t.on_commission("d.02", 0.5)
    t.on_status("Submitted", 2, 100.0, 55)
    t.on_status("Cancelled", 2, 100.0, 55)
    assert kinds(out) == ["ACK", "PARTIAL", "CORRECTION", "CANCEL"]
    end = out[-1]
    assert isinstance(end, BrokerEvent) and end.fill_qty == 2 and end.message == ""
