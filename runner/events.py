"""The engine's ledger rows: one built from the order as it stands (`order_event`), and
the INTENT, drafted before its clock starts (`IntentDraft`).

From the INTENT's clock to the order's bytes on the socket runner does only what needs
that clock (DESIGN §6, §9): the day check, the deadline and the GTD backstop, the
arrival price, the journal line and its write + fsync. The rest of the INTENT — its
other columns, checked and encoded; the tracked order; the request with its backstop
for the second it will most likely name — is made before, by `IntentDraft`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runner.broker import Ev, OrderRequest
from runner.contract import ContractTerms
from runner.fsm import TrackedOrder
from runner.ledger.event import Draft, LedgerEvent, Stamped
from runner.plan import ACK_TIMEOUT_SEC, Plan

NS = 1_000_000_000
LATE = ("ts", "deadline", "good_till", "arrival_px", "arrival_source")  # from the clock


def order_event(plan: Plan, broker: str, account: str, order: TrackedOrder, event: Ev,
                ts_ns: int, terms: ContractTerms | None = None, **extra: Any) -> LedgerEvent:
    """The row of `event` for the order: its identity and terms (its contract's as the
    broker qualified it, `terms`, else as the spec named it), its totals so far, and
    `extra` (None and "" left out) over them."""
    req = order.req
    totals: dict[str, Any] = {"fill_qty": order.fill_qty, "avg_px": order.avg_px,
                              "commission": order.commission}  # a PNL_SNAPSHOT: its own
    totals.update({k: v for k, v in extra.items() if v is not None and v != ""})
    return LedgerEvent(
        ts=ts_ns, spec=plan.spec, tag=req.tag, event=event.value, broker=broker,
        account=account, order_id=order.order_id, perm_id=order.perm_id,
        client_id=order.client_id, symbol=req.symbol, sec_type=req.sec_type,
        exchange=req.exchange, currency=req.currency, mode=plan.mode, side=req.side,
        qty=None if req.cash_qty is not None else req.qty, cash_qty=req.cash_qty,
        order_type=req.order_type, limit=req.limit, tif=req.tif, stop=req.stop,
        trail_amount=req.trail_amount, trail_percent=req.trail_percent, offset=req.offset,
        algo=req.algo, **_contract(terms or req.contract), **totals)


def _contract(c: ContractTerms) -> dict[str, Any]:
    """The contract's columns: null where nothing names them."""
    return {"con_id": c.con_id or None, "local_symbol": c.local_symbol or None,
            "expiry": c.expiry or None, "strike": c.strike, "right": c.right or None,
            "multiplier": c.multiplier}


class IntentDraft:
    """Everything of the INTENT but what its clock decides, made before the clock is
    read; `at(now)` then gives the tracked order and the request to send, `stamp` the
    row for the journal."""

    def __init__(self, plan: Plan, broker: str, account: str, client_id: int | None,
                 order_id: int | None, bars_path: str | None, guess_ns: int,
                 terms: ContractTerms | None = None) -> None:
        req = plan.order
        assert req is not None
        wait_sec = ACK_TIMEOUT_SEC if plan.kind == "sanity-cancel" else plan.ttl_sec
        assert wait_sec is not None
        self.wait_sec, self.wait_ns = wait_sec, int(wait_sec * NS)
        self.req = req  # as planned: an explicit good_till (expiry_ns) is checked at `at`
        self.order = TrackedOrder(req, intent_ns=guess_ns, client_id=client_id,
                                  order_id=order_id)
        self.draft = Draft(order_event(plan, broker, account, self.order, Ev.INTENT, guess_ns,
                                       terms, bars_path=bars_path), LATE)
        # the request with the backstop of the second the clock will most likely show
        self._guess = self._with_backstop(req, guess_ns)

    def good_till(self, now_ns: int) -> int | None:
        """The goodTillDate of an INTENT at `now_ns`: the GTD backstop (IB's next whole
        second after INTENT + backstop), or the spec's good_till if earlier: the one rule,
        OrderRequest.good_till_at."""
        return self.req.good_till_at(now_ns)

    def at(self, now_ns: int) -> tuple[TrackedOrder, OrderRequest]:
        """The tracked order of an INTENT at `now_ns`, and the request to send; a
        good_till not later than INTENT + the wait is refused (UsageError, not sent)."""
        req = self._guess
        if self.req.expiry_ns is not None:  # the rule of OrderRequest.at_intent
            req = self.req.at_intent(now_ns, self.wait_sec)
        elif req.good_till_ns != self.good_till(now_ns):  # the guess was a second off
            req = self._with_backstop(req, now_ns)
        self.order.req, self.order.intent_ns = req, now_ns
        return self.order, req

    def stamp(self, now_ns: int, arrival_px: float | None,
              arrival_source: str | None) -> Stamped:
        """The INTENT row for the journal (its line encoded but for these figures)."""
        return self.draft.stamp(ts=now_ns, deadline=now_ns + self.wait_ns,
                                good_till=self.good_till(now_ns), arrival_px=arrival_px,
                                arrival_source=arrival_source)

    def _with_backstop(self, req: OrderRequest, now_ns: int) -> OrderRequest:
        good_till = self.good_till(now_ns)
        return req if good_till is None else replace(req, good_till_ns=good_till)
