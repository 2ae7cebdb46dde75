"""The engine (runner/engine.py) driven directly, on the real simulator broker and the real
ledger: the order FSM's table, the cancel retries that end UNSETTLED, the settle phase, a
way out that leaves the order open, and a ledger that stops taking rows.

What the simulator cannot say by itself (an execution that overtakes its ack, a cancel
the exchange refuses, an event out of order) is put into its event stream by `Staged`: a
SimBroker that only adds to it. The clock, the fills, the cancels and the lookups stay
the simulator's own. Every expected time is worked out here from the plan and the rules.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.bars import Bars
from runner.broker import BrokerEvent, Ev, Lookup, Note, NoteKind
from runner.engine import LINGER_SEC, NS, SETTLE_SEC, Engine, Outcome
from runner.errors import GatewayError, Interrupted, LedgerError, Stopped, UsageError
from runner.fsm import IGNORED, TRANSITIONS, InvalidTransition
from runner.ledger import Ledger, LedgerEvent
from runner.plan import CANCEL_ATTEMPTS, Plan, compile_plan
from runner.sim import SimBroker, SimConfig
from runner.spec import from_mapping

T0 = 1_767_623_400 * NS  # 2026-01-05T14:30:00Z, a Monday
TTL_SEC = 5
CANCEL_SEC = 3  # IB_CANCEL_TIMEOUT: all attempts of one cancel
TAG = "eng-1"
QTY = 100.0
WORKING = (Ev.INTENT, Ev.ACK, Ev.PARTIAL)
ENDS = (Ev.FILL, Ev.CANCEL, Ev.REJ)
LEFT = (Ev.UNKNOWN, Ev.UNSETTLED)  # the run stops watching; not an end

Item = BrokerEvent | Note


def ev(kind: Ev, fill_qty: float = 0.0, **values: Any) -> BrokerEvent:
    """An event for the test's order; `Staged` stamps it with the broker's clock."""
    return BrokerEvent(kind, 0, TAG, fill_qty=fill_qty, **values)


PARTIAL_40 = ev(Ev.PARTIAL, 40, last_qty=40, last_px=100.0, avg_px=100.0, exec_id="e.01")
FILLED = ev(Ev.FILL, QTY, last_qty=QTY, last_px=100.0, avg_px=100.0, exec_id="e.01")
# what puts the order in each working state, from INTENT
TO_STATE: dict[Ev, list[Item]] = {Ev.INTENT: [], Ev.ACK: [ev(Ev.ACK)], Ev.PARTIAL: [PARTIAL_40]}
EVENT_OF_KIND: dict[Ev, BrokerEvent] = {
    Ev.ACK: ev(Ev.ACK), Ev.PARTIAL: replace(PARTIAL_40, exec_id="e.02"), Ev.FILL: FILLED,
    Ev.CANCEL: ev(Ev.CANCEL), Ev.REJ: ev(Ev.REJ, message="no such contract"),
    Ev.UNKNOWN: ev(Ev.UNKNOWN), Ev.UNSETTLED: ev(Ev.UNSETTLED),
    Ev.INTENT: ev(Ev.INTENT), Ev.PNL_SNAPSHOT: ev(Ev.PNL_SNAPSHOT),
}


class Staged(SimBroker):
    """The simulator, plus items staged into its event stream: `after[n]` come once it has
    given out n events of its own, `refuse` cancels are refused (IB 161) instead of sent,
    and `cancel_error` / `lookup_error` / `pending` stand for a broker that failed or
    still owes a commission. `cancels` holds the broker-clock time of every cancel."""

    def __init__(self, config: SimConfig | None = None, bars: Bars | None = None,
                 start_ns: int = T0, after: dict[int, list[Item]] | None = None,
                 refuse: int = 0, cancel_error: Exception | None = None,
                 lookup_error: Exception | None = None, pending: bool = False) -> None:
        super().__init__(bars, config or SimConfig(), start_ns)
        self.after = after or {}
        self.staged = list(self.after.get(0, []))
        self.given = 0
        self.refuse = refuse
        self.cancel_error = cancel_error
        self.lookup_error = lookup_error
        self.owes_commission = pending
        self.cancels: list[int] = []

    async def next_event(self, deadline_ns: int) -> BrokerEvent | Note | None:
        if self.staged:
            return replace(self.staged.pop(0), ts_ns=self.now_ns())
        event = await super().next_event(deadline_ns)
        if event is not None:
            self.given += 1
            self.staged += self.after.get(self.given, [])
        return event

    async def cancel(self, tag: str) -> None:
        self.cancels.append(self.now_ns())
        if self.cancel_error is not None:
            raise self.cancel_error
        if len(self.cancels) <= self.refuse:
            self.staged.append(Note(NoteKind.CANCEL_REFUSED, 0, "161: cancel refused"))
            return
        await super().cancel(tag)

    async def lookup(self, tag: str) -> Lookup:
        if self.lookup_error is not None:
            raise self.lookup_error
        return await super().lookup(tag)

    def pending(self) -> bool:
        return self.owes_commission

    def missing_commissions(self) -> list[str]:
        return ["e.01"] if self.owes_commission else []


def make_plan(out: Path, kind: str = "one-shot", start_ns: int = T0,
              backstop: bool = False) -> Plan:
    order = {"symbol": "SPY", "side": "BUY", "qty": QTY, "limit": 100.00, "tag": TAG}
    data: dict[str, Any] = {"version": 1, "kind": kind, "order": order,
                            "out_dir": str(out / "exec")}
    if kind == "one-shot":
        data.update(ttl_sec=TTL_SEC, ttl_backstop=backstop)
    spec = from_mapping(data, root=out, allow_outside=True)
    return compile_plan(spec, {"IB_CANCEL_TIMEOUT": str(CANCEL_SEC)}, start_ns)


class Run:
    """One engine over a Staged broker and a real Ledger in tmp_path."""

    def __init__(self, tmp_path: Path, broker: Staged, kind: str = "one-shot",
                 backstop: bool = False, **hooks: Any) -> None:
        self.plan = make_plan(tmp_path, kind, backstop=backstop)
        self.broker = broker
        self.ledger = Ledger(Path(self.plan.out_dir), self.plan.day, "engine-test")
        self.engine = Engine(self.plan, broker, self.ledger, None, **hooks)

    def __call__(self) -> Outcome:
        return asyncio.run(self.engine.run())

    def rows(self) -> list[dict[str, Any]]:
        """The journal as it is on disk."""
        lines = self.ledger.journal_path.read_text().splitlines()
        return [json.loads(line) for line in lines]

    def events(self) -> list[str]:
        return [r["event"] for r in self.rows()]

    def at_broker(self) -> Lookup:
        return asyncio.run(self.broker.lookup(TAG))


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Run]:
    return lambda broker, **kw: Run(tmp_path, broker, **kw)


# --------------------------------------------------------------------- the FSM table

ALLOWED = {(Ev.INTENT, Ev.ACK), (Ev.INTENT, Ev.PARTIAL), (Ev.ACK, Ev.PARTIAL),
           (Ev.PARTIAL, Ev.PARTIAL)} | {(s, e) for s in WORKING for e in (*ENDS, *LEFT)}
REPEATS = {(Ev.ACK, Ev.ACK), (Ev.PARTIAL, Ev.ACK)}
FORBIDDEN = [(s, e) for s in WORKING for e in Ev
             if (s, e) not in ALLOWED | REPEATS and e != Ev.CORRECTION]


def test_the_table_is_the_documented_machine() -> None:
    # INTENT -> ACK | REJ -> PARTIAL* -> FILL | CANCEL (DESIGN §5), an execution may
    # overtake its ack, and from every working state the run may stop watching
    assert TRANSITIONS == {pair: pair[1] for pair in ALLOWED}
    assert IGNORED == REPEATS
    assert FORBIDDEN == [(s, e) for s in WORKING for e in (Ev.INTENT, Ev.PNL_SNAPSHOT)]


def test_the_ends_are_one_set_that_the_ledgers_strings_answer_to() -> None:
    # the ledger's event column holds plain strings: they must find the members too
    assert Ev.TERMINAL == set(ENDS) and Ev.OPEN_ENDED == set(LEFT)
    assert {e.value for e in Ev if e.value in Ev.TERMINAL} == {"FILL", "CANCEL", "REJ"}
    assert {e.value for e in Ev if e.value in Ev.OPEN_ENDED} == {"UNKNOWN", "UNSETTLED"}


@pytest.mark.parametrize(("state", "kind"), sorted(ALLOWED))
def test_every_allowed_transition_is_journaled(run, state: Ev, kind: Ev) -> None:
    r = run(Staged(after={0: [*TO_STATE[state], EVENT_OF_KIND[kind]]}))
    outcome = r()
    before = [i.kind.value for i in TO_STATE[state] if isinstance(i, BrokerEvent)]
    if kind in WORKING:  # still working: the simulator's own ACK is a repeat, then the TTL
        assert r.events() == ["INTENT", *before, kind.value, "CANCEL"]
        assert r.rows()[-1]["ts"] == T0 + TTL_SEC * NS
        assert outcome.state == "CANCEL"
    else:  # an end, or left for recover: nothing more is recorded; nothing more is sent,
        # but an order the broker no longer shows (UNKNOWN) gets one cancel by its id
        assert r.events() == ["INTENT", *before, kind.value]
        assert outcome.state == kind.value
        assert len(r.broker.cancels) == (1 if kind == Ev.UNKNOWN else 0), r.broker.cancels
    assert r.engine.order is not None and r.engine.order.done == (kind not in LEFT)


@pytest.mark.parametrize(("state", "kind"), FORBIDDEN)
def test_a_forbidden_transition_raises_after_cancelling_the_order(run, state, kind) -> None:
    r = run(Staged(after={0: [*TO_STATE[state], EVENT_OF_KIND[kind]]}))
    with pytest.raises(InvalidTransition) as e:
        r()
    assert str(e.value) == f"{state.value} -> {kind.value} for {TAG}"
    before = [i.kind.value for i in TO_STATE[state]]
    own_ack = ["ACK"] if state == Ev.INTENT else []  # the simulator's; a repeat otherwise
    assert r.events() == ["INTENT", *before, *own_ack, "CANCEL"]
    assert r.broker.cancels == [T0] and r.at_broker() == Lookup.DONE


@pytest.mark.parametrize("end", ENDS)
def test_after_an_end_every_event_is_ignored(run, end: Ev) -> None:
    late = [ev(k) for k in (Ev.ACK, Ev.PARTIAL, Ev.FILL, Ev.CANCEL, Ev.INTENT)]
    r = run(Staged(after={0: [ev(Ev.ACK), EVENT_OF_KIND[end], *late]}))
    assert r().state == end.value
    assert r.events() == ["INTENT", "ACK", end.value]


def test_a_correction_changes_the_numbers_not_the_state(run) -> None:
    fixed = ev(Ev.CORRECTION, 30, last_qty=30, last_px=99.5, avg_px=99.5,
               exec_id="e.01.02", corrects="e.01")
    r = run(Staged(after={0: [ev(Ev.ACK), PARTIAL_40, fixed]}))
    outcome = r()
    assert r.events() == ["INTENT", "ACK", "PARTIAL", "CORRECTION", "CANCEL"]
    assert outcome.fill_qty == 30 and outcome.avg_px == 99.5  # the broker's corrected totals
    assert r.rows()[3]["corrects"] == "e.01"


# ------------------------------------------------------- cancels: retried, then UNSETTLED

def slots(start_ns: int) -> list[int]:
    """When each cancel attempt is sent: the cancel timeout in equal slots."""
    return [start_ns + CANCEL_SEC * NS * i // CANCEL_ATTEMPTS for i in range(CANCEL_ATTEMPTS)]


def test_an_unanswered_cancel_is_sent_three_times_then_unsettled(run) -> None:
    r = run(Staged(SimConfig(ignore_cancel=True)))
    outcome = r()
    deadline = T0 + TTL_SEC * NS
    assert r.broker.cancels == slots(deadline)
    assert r.events() == ["INTENT", "ACK", "UNSETTLED"]
    assert r.rows()[-1]["ts"] == deadline + CANCEL_SEC * NS
    text = (f"cancel of {TAG} (order id 1) not confirmed after {CANCEL_ATTEMPTS} attempts "
            f"in {CANCEL_SEC:.1f} s; the broker shows it still working")
    assert r.rows()[-1]["message"] == text
    assert outcome.state == "UNSETTLED"
    assert outcome.message.startswith(text + "; it may still be working at IB")
    assert "--allow-unsettled" in outcome.message
    assert r.at_broker() == Lookup.WORKING


def test_a_refused_cancel_is_retried_in_its_next_slot_and_can_still_succeed(run) -> None:
    r = run(Staged(refuse=1))
    assert r().state == "CANCEL"
    deadline = T0 + TTL_SEC * NS
    assert r.broker.cancels == slots(deadline)[:2]
    assert r.rows()[-1]["ts"] == slots(deadline)[1]  # the simulator confirms at once
    assert r.engine.outcome.notes == ["161: cancel refused"]


def test_a_cancel_refused_every_time_is_unsettled_with_the_refusal(run) -> None:
    r = run(Staged(refuse=CANCEL_ATTEMPTS))
    outcome = r()
    assert r.broker.cancels == slots(T0 + TTL_SEC * NS)
    assert outcome.state == "UNSETTLED"
    assert r.rows()[-1]["message"] == (
        f"cancel of {TAG} (order id 1) refused (161: cancel refused) after "
        f"{CANCEL_ATTEMPTS} attempts in {CANCEL_SEC:.1f} s; the broker shows it still working")


def test_a_failed_lookup_after_the_cancels_is_said(run) -> None:
    r = run(Staged(SimConfig(ignore_cancel=True), lookup_error=GatewayError("not connected")))
    assert r().state == "UNSETTLED"
    assert r.rows()[-1]["message"].endswith(
        "the broker shows it not at all (lookup failed: not connected)")


def test_sanity_cancel_cancels_right_after_the_ack(run) -> None:
    r = run(Staged(SimConfig(ack_ms=200, cancel_ms=50)), kind="sanity-cancel")
    assert r().state == "CANCEL"
    ack = T0 + 200 * 1_000_000
    assert r.broker.cancels == [ack]
    assert [(x["event"], x["ts"]) for x in r.rows()] == [
        ("INTENT", T0), ("ACK", ack), ("CANCEL", ack + 50 * 1_000_000)]


# ------------------------------------------------------------------------ the settle phase

ONE_BAR = Bars(ts=[T0], open=[100.0], high=[100.1], low=[99.9], close=[100.0],
               volume=[10_000])  # 10% of it is 1000 >= QTY: one FILL at the bar's end


def test_after_a_fill_the_engine_listens_a_little_longer_and_takes_a_correction(run) -> None:
    late = ev(Ev.CORRECTION, QTY, avg_px=100.0, commission=1.25, exec_id="e.01",
              corrects="e.01")
    r = run(Staged(bars=ONE_BAR, after={2: [late]}))  # after the simulator's ACK and FILL
    outcome = r()
    filled_at = T0 + NS  # the bar is known once it has ended
    assert r.events() == ["INTENT", "ACK", "FILL", "CORRECTION"]
    assert r.rows()[2]["ts"] == filled_at and r.rows()[2]["commission"] == 1.0  # min. $1
    assert outcome.commission == 1.25
    assert r.broker.now_ns() == filled_at + int(LINGER_SEC * NS)


def test_an_order_that_ended_unfilled_is_not_lingered_on(run) -> None:
    r = run(Staged())
    assert r().state == "CANCEL"
    assert r.broker.now_ns() == T0 + TTL_SEC * NS  # the TTL cancel, confirmed at once


def test_a_commission_still_owed_is_waited_for_then_left_for_recover(run) -> None:
    r = run(Staged(bars=ONE_BAR, pending=True))
    outcome = r()
    assert r.broker.now_ns() == T0 + NS + int(SETTLE_SEC * NS)
    assert outcome.missing_commissions == ["e.01"]
    assert outcome.notes == [f"a commission was not reported within {SETTLE_SEC:g} s of the "
                             "end; `runner recover` fills it in once the gateway's executions "
                             "have it"]


# ------------------------------------------------------------- ways out, and what is left


def test_ctrl_c_whose_cancel_fails_leaves_the_order_unsettled(run) -> None:
    def ctrl_c_on_ack(row: LedgerEvent) -> None:
        if row.event == "ACK":
            r.engine.interrupt(2)

    r = run(Staged(cancel_error=GatewayError("not connected")), on_event=ctrl_c_on_ack)
    with pytest.raises(Interrupted) as e:
        r()
    assert e.value.exit_code == 130
    assert r.events() == ["INTENT", "ACK", "UNSETTLED"]
    assert r.rows()[-1]["message"] == (
        "the run stopped (interrupted by Ctrl-C (SIGINT)) before the broker confirmed an end "
        "for the order; it may still be working at IB")
    assert r.engine.outcome.message == "cancel after Interrupted failed: not connected"
    assert r.engine.outcome.state == "UNSETTLED"


def fail_on_ack(row: LedgerEvent) -> None:
    if row.event == "ACK":
        raise RuntimeError("the display broke")


def test_any_error_cancels_the_order_before_it_goes_on(run) -> None:
    r = run(Staged(), on_event=fail_on_ack)
    with pytest.raises(RuntimeError, match="the display broke"):
        r()
    assert r.events() == ["INTENT", "ACK", "CANCEL"]
    assert r.broker.cancels == [T0] and r.at_broker() == Lookup.DONE


def test_an_error_whose_cancel_fails_names_the_error_in_the_unsettled_row(run) -> None:
    r = run(Staged(cancel_error=GatewayError("not connected")), on_event=fail_on_ack)
    with pytest.raises(RuntimeError):
        r()
    assert r.events() == ["INTENT", "ACK", "UNSETTLED"]
    assert r.rows()[-1]["message"].startswith("the run stopped (RuntimeError) before")


def test_the_kill_switch_cancels_and_says_what_became_of_the_order(run) -> None:
    acked: list[bool] = []
    r = run(Staged(), watch=lambda: "kill switch KILL is on" if acked else None,
            on_event=lambda row: row.event == "ACK" and acked.append(True))
    with pytest.raises(Stopped) as e:
        r()
    assert str(e.value) == (f"kill switch KILL is on; order {TAG} ended CANCEL and was "
                            "recorded (remove it to trade again)")
    assert r.events() == ["INTENT", "ACK", "CANCEL"]


def test_a_changed_trading_day_sends_nothing(tmp_path) -> None:
    plan = make_plan(tmp_path)
    broker = Staged(start_ns=T0 + 86_400 * NS)
    ledger = Ledger(Path(plan.out_dir), plan.day, "engine-test")
    with pytest.raises(UsageError, match=r"changed since the plan was made \(2026-01-05 -> "
                                         r"2026-01-06\); nothing was sent"):
        asyncio.run(Engine(plan, broker, ledger, None).run())
    assert asyncio.run(broker.lookup(TAG)) == Lookup.UNKNOWN


def test_the_gtd_backstop_is_stamped_from_the_intent_in_whole_seconds(tmp_path) -> None:
    start = T0 + 300_000_000  # 0.3 s past the second
    plan = make_plan(tmp_path, start_ns=start, backstop=True)
    assert plan.order is not None and plan.order.backstop_sec is not None
    ledger = Ledger(Path(plan.out_dir), plan.day, "engine-test")
    asyncio.run(Engine(plan, Staged(start_ns=start), ledger, None).run())
    intent = json.loads(ledger.journal_path.read_text().splitlines()[0])
    whole = -(-(start + int(plan.order.backstop_sec * NS)) // NS) * NS
    assert intent["good_till"] == whole == T0 + 16 * NS  # 0.3 + 5 + 10 s, rounded up
    assert intent["deadline"] == start + TTL_SEC * NS


class SendFails(Staged):
    """The simulator, but sending the order fails (a connection that drops at that
    moment): the INTENT is durable by then, and the order may or may not be out."""

    async def place(self, order: Any) -> None:
        raise GatewayError("connection lost while sending", "runner recover")


def test_an_intent_whose_send_fails_is_still_counted_and_left_for_recover(run) -> None:
    seen: list[str] = []
    released: list[bool] = []
    r = run(SendFails(), on_event=lambda row: seen.append(str(row.event)),
            pre_place=lambda session: lambda: released.append(True))
    with pytest.raises(GatewayError, match="connection lost while sending"):
        r()
    # the INTENT's bookkeeping ran although the send failed: outcome, status line, caps
    assert r.engine.outcome.events[0] == "INTENT" and seen[0] == "INTENT"
    assert released == [True]  # the caps lock, once
    assert r.events() == ["INTENT", "UNSETTLED"]  # not known to be dead: for recover


def test_a_handshake_places_nothing(tmp_path) -> None:
    plan = replace(make_plan(tmp_path), order=None, kind="handshake")
    ledger = Ledger(Path(plan.out_dir), plan.day, "engine-test")
    outcome = asyncio.run(Engine(plan, Staged(), ledger, None).run())
    assert outcome.state == "OK" and outcome.session is not None
    assert not ledger.journal_path.exists()


# --------------------------------------------------------------- the ledger stops writing

@pytest.fixture
def file_size_limit() -> Iterator[Callable[[int | None], None]]:
    """Set the process's file-size limit (a full disk: writes past it fail with EFBIG, as
    CPython ignores SIGXFSZ), None for the old one, which is back after the test anyway."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda size: resource.setrlimit(resource.RLIMIT_FSIZE,
                                          (old[0] if size is None else size, old[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, old)


def test_a_ledger_that_cannot_open_sends_nothing(tmp_path) -> None:
    (tmp_path / "exec").write_text("a file where the ledger folder should be")
    broker = Staged()
    plan = make_plan(tmp_path)
    ledger = Ledger(Path(plan.out_dir), plan.day, "engine-test")
    with pytest.raises(LedgerError) as e:
        asyncio.run(Engine(plan, broker, ledger, None).run())
    assert e.value.message.startswith("cannot create the ledger journal ")
    assert e.value.message.endswith("; the order was not sent")
    assert asyncio.run(broker.lookup(TAG)) == Lookup.UNKNOWN


def test_an_intent_that_cannot_be_written_sends_nothing(run, file_size_limit) -> None:
    r = run(Staged(), pre_place=lambda session: file_size_limit(0))
    with pytest.raises(LedgerError) as e:
        r()
    assert e.value.message.endswith(": File too large; the order was not sent")
    file_size_limit(None)
    assert r.ledger.journal_path.read_text() == ""
    assert r.at_broker() == Lookup.UNKNOWN


def test_a_ledger_full_after_the_intent_cancels_at_once_and_keeps_the_rows(
        run, file_size_limit) -> None:
    def full_after_intent(row: LedgerEvent) -> None:
        if row.event == "INTENT":
            file_size_limit(r.ledger.journal_path.stat().st_size)

    r = run(Staged(), on_event=full_after_intent)
    outcome = r()
    file_size_limit(None)
    assert r.events() == ["INTENT"]  # on disk: what was written before the disk filled
    assert [row.event for row in r.engine.unjournaled] == ["ACK", "CANCEL"]
    error = r.engine.ledger_error
    assert error is not None and error.message.startswith("cannot write the ledger journal")
    assert outcome.state == "CANCEL"
    assert r.broker.cancels == [T0]  # at once, not at the TTL: no trading blind
