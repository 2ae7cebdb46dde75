"""runner/recover.py's decisions, one at a time: which orders are orphans, what the
broker's answer turns into, the rows recovery writes and the markers later runs read.

Ledgers are real (runner.ledger on tmp_path); what the gateway shows is a `Found` as
runner.ib builds it; the broker, where one is needed for its address, is a real IBBroker
that is never connected. End to end, over the wire, these paths run in test_recovery.py
and test_ib_misbehave.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner import recover
from runner.broker import Ev, Lookup
from runner.ib import IBBroker
from runner.ib.queries import FillView, Found
from runner.ledger import Ledger
from runner.plan import Connection, iso
from runner.recover import Orphan

NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05T14:30:00Z
DAY = "2026-01-05"
GATEWAY = Connection("127.0.0.1", 4002, 7)


def intent(tag: str = "t1", order_id: int | None = 5, **values: Any) -> dict[str, Any]:
    row = {"ts": T0, "tag": tag, "event": "INTENT", "broker": "ib", "account": "DU1234567",
           "client_id": 7, "order_id": order_id, "symbol": "SPY", "side": "BUY",
           "qty": 100.0, "order_type": "LMT", "limit": 100.0, "tif": "DAY"}
    return {**row, **values}


def event(kind: str, ts_s: float, tag: str = "t1", **values: Any) -> dict[str, Any]:
    return {"ts": T0 + int(ts_s * NS), "tag": tag, "event": kind, "client_id": 7,
            "order_id": values.pop("order_id", 5), **values}


def write_day(root: Path, run_id: str, rows: list[dict[str, Any]]) -> None:
    """One finished run's rows, committed to the day's ledger."""
    with Ledger(root, DAY, run_id) as ledger:
        for row in rows:
            ledger.append(row)


def orphan(**intent_values: Any) -> Orphan:
    row = {**intent(**intent_values), "run_id": "r1"}
    return Orphan(row, last_ts=row["ts"])


def fill(exec_id: str, ts_s: float, qty: float, cum: float, px: float = 100.0,
         commission: float | None = 1.0) -> FillView:
    return FillView(exec_id, T0 + int(ts_s * NS), qty, px, cum, px, commission, 5, 900, 7)


# ------------------------------------------------------------------ which are orphans


def test_only_orders_without_an_end_are_orphans(tmp_path) -> None:
    write_day(tmp_path, "r1", [
        intent("done", order_id=1), event("ACK", 0.1, "done", order_id=1),
        event("FILL", 0.5, "done", order_id=1, fill_qty=100.0),
        intent("open", order_id=2), event("ACK", 0.2, "open", order_id=2, perm_id=902),
        event("PARTIAL", 0.4, "open", order_id=2, fill_qty=40.0, exec_id="e1.01",
              avg_px=99.0, commission=1.0),
    ])
    found = recover.find_orphans(tmp_path, DAY)
    assert [o.tag for o in found] == ["open"]
    o = found[0]
    assert (o.acked, o.last_event, o.fill_qty, o.avg_px) == (True, "PARTIAL", 40.0, 99.0)
    assert o.exec_ids == {"e1.01"} and o.ids == {"perm_id": 902, "client_id": 7, "order_id": 2}
    assert o.last_ts == T0 + int(0.4 * NS)


def test_a_tag_placed_twice_is_two_orders(tmp_path) -> None:
    # --allow-duplicate: the first order ended, the second did not; the end of the first
    # must not end the second
    write_day(tmp_path, "r1", [intent("dup", order_id=1),
                               event("CANCEL", 1, "dup", order_id=1)])
    write_day(tmp_path, "r2", [{**intent("dup", order_id=2), "ts": T0 + 2 * NS}])
    found = recover.find_orphans(tmp_path, DAY)
    assert [(o.tag, o.intent["order_id"]) for o in found] == [("dup", 2)]


def test_an_intent_without_an_order_id_is_known_by_its_run(tmp_path) -> None:
    write_day(tmp_path, "old", [intent("legacy", order_id=None),
                                {**event("ACK", 0.1, "legacy"), "order_id": None}])
    (o,) = recover.find_orphans(tmp_path, DAY)
    assert recover._intent_key(o.intent) == ("legacy", "old", None)
    assert o.acked


def test_a_day_that_does_not_exist_has_no_orphans(tmp_path) -> None:
    assert recover.find_orphans(tmp_path, DAY) == []


def test_a_correction_sets_the_quantity_a_fill_only_raises_it() -> None:
    o = orphan()
    recover._note_row(o, event("PARTIAL", 1, fill_qty=60.0, exec_id="e.01"))
    recover._note_row(o, event("PARTIAL", 2, fill_qty=50.0, exec_id="e.02"))  # out of order
    assert o.fill_qty == 60.0
    recover._note_row(o, event("CORRECTION", 3, fill_qty=45.0, exec_id="e.01.1"))
    assert o.fill_qty == 45.0 and o.exec_ids == {"e.01", "e.02", "e.01.1"}
    recover._note_row(o, event("PNL_SNAPSHOT", 4))
    assert o.last_event == "CORRECTION" and o.last_ts == T0 + 4 * NS


@pytest.mark.parametrize(("kind", "acked"), [("UNSETTLED", True), ("UNKNOWN", True),
                                            ("CANCEL", False)])
def test_an_order_its_run_left_open_was_placed(kind: str, acked: bool) -> None:
    o = orphan()
    recover._note_row(o, {**event(kind, 1), "order_id": None, "client_id": None})
    assert o.acked is acked


# --------------------------------------------------------- executions the ledger lacks


def test_new_executions_become_partials_then_the_fill() -> None:
    o = orphan()
    # execution ids differ before the last period: two executions, not a correction
    rows = recover.fill_rows(o, [fill("e1.01", 1, 40, 40), fill("e2.01", 2, 60, 100)])
    assert [(r.event, r.fill_qty, r.last_qty, r.commission) for r in rows] == [
        ("PARTIAL", 40, 40, 1.0), ("FILL", 100, 60, 2.0)]  # commissions add up
    assert [r.ts for r in rows] == [T0 + NS, T0 + 2 * NS]
    assert recover.fill_rows(o, [fill("e1.01", 1, 40, 40)]) == []  # known: nothing new


def test_an_execution_that_replaces_a_known_one_is_a_correction() -> None:
    o = orphan()
    o.exec_ids, o.fill_qty = {"e1.01"}, 40.0
    (row,) = recover.fill_rows(o, [fill("e1.02", 3, 35, 35, px=99.5, commission=None)])
    assert (row.event, row.corrects, row.fill_qty) == ("CORRECTION", "e1.01", 35)
    assert o.fill_qty == 35


def test_a_recovered_row_is_never_before_the_last_one_recorded() -> None:
    o = orphan()
    o.last_ts = T0 + 10 * NS  # IB's execution times have whole seconds
    row = recover._row(o, "PARTIAL", T0 + 9 * NS)
    assert row.ts == T0 + 10 * NS + 1
    assert {k: getattr(row, k) for k in ("tag", "account", "symbol", "qty")} == {
        "tag": "t1", "account": "DU1234567", "symbol": "SPY", "qty": 100.0}


# ------------------------------------------------------------ what the broker's answer means


def now_at(seconds: float) -> Any:
    return lambda: T0 + int(seconds * NS)


@pytest.mark.parametrize(("end", "summary"), [(Ev.FILL, "filled 100 while runner was away"),
                                              (Ev.REJ, "rejected at the broker"),
                                              (Ev.CANCEL, "cancelled at the broker")])
def test_an_order_that_ended_at_the_broker_is_recorded_as_it_ended(end, summary) -> None:
    o = orphan()
    found = Found(Lookup.DONE, end=end, filled=100.0 if end == Ev.FILL else 0.0)
    settled = recover._ended(o, found, [], now_at(60))
    assert settled.summary == summary and settled.settled
    assert [r.event for r in settled.rows] == [end.value]
    assert settled.rows[0].ts == T0 + 60 * NS


def test_an_order_whose_fills_add_up_is_filled_whatever_its_status_says() -> None:
    o = orphan()
    o.fill_qty = 100.0
    settled = recover._ended(o, Found(Lookup.DONE, end=Ev.CANCEL), [], now_at(60))
    assert [r.event for r in settled.rows] == ["FILL"]


def test_a_fill_among_the_recovered_executions_is_not_written_twice() -> None:
    o = orphan()
    rows = recover.fill_rows(o, [fill("e.01", 1, 100, 100)])
    settled = recover._ended(o, Found(Lookup.DONE, end=Ev.FILL, filled=100.0), rows,
                             now_at(60))
    assert [r.event for r in settled.rows] == ["FILL"]


def test_never_acknowledged_and_past_its_time_in_force_is_cancelled() -> None:
    broker = IBBroker(GATEWAY)
    for o in (orphan(tif="IOC"), orphan(tif="GTD", good_till=T0 + 30 * NS)):
        settled = recover._unknown(o, broker, [], now_at(60))
        assert settled.settled and [r.event for r in settled.rows] == ["CANCEL"]
        assert settled.summary == ("never reached the broker: not at the gateway, and past "
                                   "its time in force")


def test_never_acknowledged_but_maybe_working_until_its_backstop_is_left_alone() -> None:
    o = orphan(tif="GTD", good_till=T0 + 30 * NS)
    settled = recover._unknown(o, IBBroker(GATEWAY), [], now_at(10))
    assert not settled.settled and settled.rows == []
    assert settled.summary == (
        "not shown by the gateway at 127.0.0.1:4002; if it was sent before the run stopped "
        f"it may work at IB until its GTD backstop {iso(T0 + 30 * NS)}; run recover again "
        "after that, or check TWS")


def test_acknowledged_but_not_shown_is_unknown_once() -> None:
    o = orphan()
    o.acked = True
    first = recover._unknown(o, IBBroker(GATEWAY), [], now_at(10))
    assert not first.settled and [r.event for r in first.rows] == ["UNKNOWN"]
    o.last_event = "UNKNOWN"  # as the ledger has it once that row is recorded
    assert recover._unknown(o, IBBroker(GATEWAY), [], now_at(20)).rows == []


def test_a_gateway_that_does_not_manage_the_account_changes_nothing() -> None:
    (settled,) = asyncio.run(recover.settle_ib([orphan()], IBBroker(GATEWAY), False))
    assert not settled.settled and settled.rows == [] and settled.order_id == 5
    assert settled.summary.startswith("the gateway at 127.0.0.1:4002 manages no account, "
                                      "not DU1234567 (the INTENT's account); nothing changed")


def test_a_dry_run_orphan_ended_with_its_process() -> None:
    (settled,) = recover.settle_sim([orphan(broker="sim")], T0 + 5 * NS)
    assert settled.settled and settled.order_id == 5
    assert [(r.event, r.ts) for r in settled.rows] == [("CANCEL", T0 + 5 * NS)]


# ------------------------------------------------------------------------------- markers


def test_markers_name_the_days_to_visit(tmp_path) -> None:
    recover.mark(tmp_path, "2026-01-02", "a", unsettled=True, order_id=1)
    recover.mark(tmp_path, "2026-01-02", "a", unsettled=True, order_id=2)  # the same tag again
    recover.mark(tmp_path, "2026-01-03", "b", unsettled=True)
    assert recover.days_to_visit(tmp_path, DAY) == ["2026-01-02", "2026-01-03", DAY]
    recover.mark(tmp_path, "2026-01-02", "a", unsettled=False, order_id=1)
    assert recover.marked_days(tmp_path) == {"2026-01-02", "2026-01-03"}  # order 2 is left
    recover.mark(tmp_path, "2026-01-02", "a", unsettled=False, order_id=2)
    recover.mark(tmp_path, "2026-01-03", "b", unsettled=False)
    assert recover.marked_days(tmp_path) == set()


def test_a_note_of_missing_commissions_goes_once_all_have_come(tmp_path) -> None:
    recover.note_missing_commissions(tmp_path, DAY, "t1", ["e.01", "e.02"])
    (note,) = (tmp_path / recover.INCOMPLETE).glob("*.json")
    assert note.read_text() == f'{{"day": "{DAY}", "tag": "t1", "exec_ids": ["e.01", "e.02"]}}\n'
    recover.note_missing_commissions(tmp_path, DAY, "t1", [])
    assert not note.exists()
