"""The INTENT drafted before its clock (runner/events.py): what the clock decides — the
deadline, the GTD backstop (the next whole second after INTENT + backstop), the tracked
order's intent time — comes from the clock's own reading, also when the second the draft
guessed is not the one the clock shows; the row is the one `order_event` builds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.broker import Ev
from runner.events import IntentDraft, order_event
from runner.fsm import TrackedOrder
from runner.plan import ACK_TIMEOUT_SEC, Plan, compile_plan
from runner.spec import from_mapping

NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05T14:30:00Z
TTL_SEC = 5
BACKSTOP_SEC = 15  # TTL 5 s + the 10 s margin


def plan(tmp_path: Path, kind: str = "one-shot", backstop: bool = True) -> Plan:
    order = {"symbol": "SPY", "side": "BUY", "qty": 100, "limit": 100.0, "tag": "ev-1"}
    data: dict[str, Any] = {"version": 1, "kind": kind, "order": order,
                            "out_dir": str(tmp_path / "exec")}
    if kind == "one-shot":
        data.update(ttl_sec=TTL_SEC, ttl_backstop=backstop)
    return compile_plan(from_mapping(data, root=tmp_path, allow_outside=True), {}, T0)


def draft(p: Plan, guess_ns: int) -> IntentDraft:
    return IntentDraft(p, "sim", "DU1234567", 7, 41, "bars.parquet", guess_ns)


def test_the_clocks_second_decides_the_backstop_even_when_the_guess_was_another(tmp_path):
    p = plan(tmp_path)
    assert p.order is not None and p.order.backstop_sec == BACKSTOP_SEC
    guess = T0 + NS - 1  # the backstop's second would be T0 + 16 s
    for now, good_till in ((guess + 1, T0 + 16 * NS), (guess, T0 + 16 * NS),
                           (T0 + NS + 1, T0 + 17 * NS)):
        d = draft(p, guess)
        order, req = d.at(now)
        assert (order.intent_ns, req.good_till_ns) == (now, good_till)
        assert order.req == replace(p.order, good_till_ns=good_till)  # nothing else changed
        assert order.req.backstop_sec == BACKSTOP_SEC and order.order_id == 41
        row = d.stamp(now, 100.5, "bars").as_event()
        assert (row.ts, row.deadline, row.good_till) == (now, now + TTL_SEC * NS, good_till)
        # the row order_event builds for that order at that time, with those figures
        assert row == order_event(p, "sim", "DU1234567", order, Ev.INTENT, now,
                                  arrival_px=100.5, deadline=now + TTL_SEC * NS,
                                  good_till=good_till, arrival_source="bars",
                                  bars_path="bars.parquet")


def test_no_backstop_and_the_sanity_cancels_ack_wait(tmp_path):
    p = plan(tmp_path, backstop=False)
    assert p.order is not None and p.order.tif == "DAY"
    order, req = draft(p, T0).at(T0 + 5)
    assert req is p.order and req.good_till_ns is None and order.intent_ns == T0 + 5
    row = draft(p, T0).stamp(T0 + 5, None, None).as_event()
    assert (row.good_till, row.arrival_px, row.arrival_source) == (None, None, None)

    sanity = plan(tmp_path, kind="sanity-cancel")
    row = draft(sanity, T0).stamp(T0, None, None).as_event()
    assert row.deadline == T0 + int(ACK_TIMEOUT_SEC * NS) and row.tif == "GTD"


def test_order_event_carries_the_orders_terms_and_totals(tmp_path):
    p = plan(tmp_path)
    assert p.order is not None
    order = TrackedOrder(p.order, intent_ns=T0, client_id=7, order_id=41, perm_id=9,
                         fill_qty=40.0, avg_px=100.25, commission=None)
    row = order_event(p, "ib", "DU1", order, Ev.PARTIAL, T0 + 3, last_qty=40.0, message="",
                      exec_id="e.01", corrects=None)
    assert row.as_row() == {
        "ts": T0 + 3, "spec": p.spec, "tag": "ev-1", "event": "PARTIAL", "broker": "ib",
        "account": "DU1", "order_id": 41, "perm_id": 9, "client_id": 7, "symbol": "SPY",
        "sec_type": "STK", "exchange": "SMART", "currency": "USD", "mode": "paper",
        "side": "BUY", "qty": 100.0, "order_type": "LMT", "limit": 100.0, "tif": "GTD",
        "fill_qty": 40.0, "last_qty": 40.0, "avg_px": 100.25, "exec_id": "e.01"}
