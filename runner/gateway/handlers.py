"""The fake gateway's answers to client requests, one function per message id.

Each handler reads a request a client sent (its fields, as `wire.split_fields` gives
them) and sends the answer on the session, as a gateway at server version 178 would;
the order requests go to the order engine. `HANDLERS` maps message ids to them.
The server dispatches to them (and holds back the slow sync answers); startApi, the
session's registration, it handles itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from runner.gateway import wire
from runner.gateway.book import OrderRecord
from runner.gateway.checks import account_refusal, refusal
from runner.gateway.contracts import ContractQuery, details_for, listed_today, resolve
from runner.gateway.hours import SCHEDULES, session_hours
from runner.gateway.instruments import Instrument
from runner.gateway.marketdata import ONE_SECOND_BARS, QUOTE_SIZE, bars_between, duration_ns
from runner.gateway.requests import (
    HistoricalRequest,
    contract_query,
    is_what_if,
    parse_historical,
    parse_market_data,
    parse_place_order,
    place_order_fields,
    place_order_query,
)
from runner.gateway.session import Session
from runner.gateway.values import Contract, Execution, OrderSnapshot, PlacedOrder
from runner.gateway.whatif import WHAT_IF_STATUS, what_if

if TYPE_CHECKING:
    from runner.gateway.server import FakeGateway

# Account values a paper account reports (reqAccountUpdates / reqAccountSummary).
ACCOUNT_VALUES = (
    ("AccountType", "INDIVIDUAL", ""),
    ("NetLiquidation", "100000.00", "USD"),
    ("TotalCashValue", "100000.00", "USD"),
    ("BuyingPower", "400000.00", "USD"),
    ("AvailableFunds", "100000.00", "USD"),
)


def positions(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqPositions: every account's positions from the fills so far. The average cost is
    per unit of quantity, so IB's avgCost of a futures or option position is its average
    price x the multiplier."""
    for account, contract, pos, cost in gw.book.positions():
        session.send(wire.position(account, contract, pos, cost * contract.size_multiplier))
    session.send(wire.end(62))


def positions_multi(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqPositionsMulti `74,1,reqId,account,modelCode`: as reqPositions, of one account
    ("" or "All": every one), then positionMultiEnd."""
    req_id, account = int(fields[2]), fields[3] if len(fields) > 3 else ""
    for acct, contract, pos, cost in gw.book.positions():
        if account in ("", "All", acct):
            session.send(wire.position_multi(req_id, acct, contract, pos,
                                             cost * contract.size_multiplier))
    session.send(wire.end(72, req_id))


def open_orders(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    if gw.read_only:
        session.send(wire.ib_error(wire.READ_ONLY_REQ_ID, wire.READ_ONLY))
        return
    _send_open_orders(gw, session, session.client_id)


def all_open_orders(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    _send_open_orders(gw, session, None)


def _send_open_orders(gw: FakeGateway, session: Session, client_id: int | None) -> None:
    for record in gw.book.live(client_id, hidden=False):
        snapshot = record.snapshot()
        _send_about(session, record, wire.open_order(snapshot))
        _send_about(session, record, wire.order_status(snapshot))
    session.send(wire.end(53))


def completed_orders(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    for record in gw.book.finished(hidden=False):
        _send_about(session, record, wire.completed_order(record.snapshot(),
                                                          record.done_ns))
    session.send(["102"])  # the bare id: no version field


def account_updates(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    subscribe, account = fields[2] == "1", fields[3] or gw.accounts[0]
    if not subscribe:
        return
    for key, value, currency in ACCOUNT_VALUES:
        session.send(wire.account_value(key, value, currency, account))
    session.send(["8", "1", time.strftime("%H:%M", time.gmtime(gw.clock() / 1e9))])
    session.send(wire.end(54, account))


def account_updates_multi(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    session.send(wire.end(74, fields[2]))


def account_summary(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    req_id, tags = int(fields[2]), set(fields[4].split(","))
    for account in gw.accounts:
        for key, value, currency in ACCOUNT_VALUES:
            if key in tags:
                session.send(wire.account_summary(req_id, account, key, value, currency))
    session.send(wire.end(64, req_id))


def executions(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    req_id = int(fields[2])
    for execution in gw.book.executions:  # corrections too, after what they correct
        record = gw.book.record_of(execution)
        if record is None or record.hidden or not _matches_filter(execution, fields):
            continue
        _send_about(session, record, wire.exec_details(req_id, execution))
        if execution.commission_reported:
            _send_about(session, record, wire.commission_report(execution))
    session.send(wire.end(55, req_id))


def contract_details(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqContractDetails `9,8,reqId,<12 contract fields>,...`: one contractDetails per
    instrument the request matches (several when it is ambiguous), then the end; none:
    200 (contracts, "Matching")."""
    req_id, query = int(fields[2]), contract_query(fields, 3)
    found = details_for(query, listed_today(gw.clock()))
    if not found:
        session.send(wire.ib_error(req_id, wire.NO_SECURITY))
        return
    for instrument in found:
        hours = session_hours(SCHEDULES[instrument.schedule], gw.clock(), mode=gw.hours)
        session.send(wire.contract_details(req_id, instrument, query.exchange.upper(), hours))
    session.send(wire.end(52, req_id))


def place_order(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    placed = parse_place_order(fields, gw.accounts[0])
    cid = session.client_id
    assert cid is not None
    if gw.read_only:
        session.send(wire.ib_error(placed.order_id, wire.READ_ONLY))
        return
    refused = account_refusal(gw.accounts, place_order_fields(fields).account)
    if refused is not None:  # an account the login does not manage: no order
        gw.book.see_order_id(placed.order_id)
        session.send(wire.error(placed.order_id, *refused))
        return
    query = place_order_query(fields)
    instrument = _instrument(gw, session, placed.order_id, query)
    if instrument is None:
        return
    refused = refusal(instrument, placed)
    if refused is not None:  # IB never accepted it: an error, no order
        gw.book.see_order_id(placed.order_id)
        session.send(wire.error(placed.order_id, *refused))
        return
    placed = _with_contract(placed, instrument.contract(query.exchange.upper()))
    if is_what_if(fields):
        _what_if(gw, session, placed)
        return
    gw.engine.place(cid, placed)


def _instrument(gw: FakeGateway, session: Session, req_id: int,
                query: ContractQuery) -> Instrument | None:
    """The one instrument a request means; None (and IB's error sent) if not one."""
    found = resolve(query, listed_today(gw.clock()))
    if isinstance(found, Instrument):
        return found
    session.send(wire.error(req_id, *found))
    return None


def _what_if(gw: FakeGateway, session: Session, placed: PlacedOrder) -> None:
    """A preview, as IB answers it: one openOrder with the margin and commission
    figures; no order is created and no orderStatus is sent."""
    assert session.client_id is not None
    gw.book.see_order_id(placed.order_id)  # IB spends the id all the same
    held = [(c, pos, cost) for account, c, pos, cost in gw.book.positions()
            if account == placed.account]
    reply = what_if(placed, _market_px(gw), _net_liquidation(), held)
    snapshot = OrderSnapshot(session.client_id, placed.order_id, 0, placed, WHAT_IF_STATUS,
                             0.0, 0.0, 0.0, 0.0)
    session.send(wire.what_if_order(snapshot, reply))
    gw.what_ifs.append(placed)


def _market_px(gw: FakeGateway) -> float | None:
    clock = gw.engine.bar_clock
    return None if clock is None else clock.bars.arrival_at(clock.bar_now(gw.clock()))


def cancel_order(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    assert session.client_id is not None
    gw.engine.cancel(session.client_id, int(fields[2]))


def global_cancel(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    gw.engine.global_cancel()


def req_ids(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    session.send(wire.next_valid_id(gw.book.next_order_id))


def current_time(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    session.send(wire.current_time(gw.clock()))


def market_rule(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqMarketRule `91,ruleId`: its price ladder. An unknown id gets no answer (what IB
    answers is not known; ib_async returns None after its 1 s wait)."""
    reply = wire.market_rule(int(fields[1]))
    if reply is not None:
        session.send(reply)


def user_info(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    session.send(wire.user_info(int(fields[1])))


def market_data(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqMktData: the quote (a test's, else from the bars) as tickPrice LAST, BID,
    ASK, CLOSE, then tickSnapshotEnd for a snapshot; a streaming request gets the
    ticks once. No quote: 354, which ends ib_async's wait at once."""
    req = parse_market_data(fields)
    instrument = _instrument(gw, session, req.req_id, req.contract)
    if instrument is None:
        return
    quote = gw.quote(instrument.symbol)
    if quote is None:
        session.send(wire.error(req.req_id, wire.NO_MARKET_DATA, wire.NO_MARKET_DATA_TEXT))
        return
    session.send(wire.tick_req_params(req.req_id, float(instrument.min_tick)))
    session.send(wire.market_data_type(req.req_id))
    for tick_type, price, size in ((wire.TICK_LAST, quote.last, quote.last_size),
                                   (wire.TICK_BID, quote.bid, QUOTE_SIZE),
                                   (wire.TICK_ASK, quote.ask, QUOTE_SIZE),
                                   (wire.TICK_CLOSE, quote.close, 0.0)):
        if price is not None:
            session.send(wire.tick_price(req.req_id, tick_type, price, size))
    if req.snapshot:
        session.send(wire.tick_snapshot_end(req.req_id))


def historical_data(gw: FakeGateway, session: Session, fields: list[str]) -> None:
    """reqHistoricalData of 1-second TRADES bars (not kept up to date): the bars that
    ended at or before min(endDateTime, now) within the duration, and the end.
    Anything else, or no such bar: 162 (ib_async's request returns [] at once)."""
    req = parse_historical(fields)
    if _instrument(gw, session, req.req_id, req.contract) is None:
        return
    clock, window = gw.engine.bar_clock, _window(gw, req)
    found = [] if clock is None or window is None else bars_between(clock, *window)
    if window is None or not found:
        session.send(wire.error(req.req_id, wire.NO_HISTORICAL_DATA,
                                wire.NO_HISTORICAL_DATA_TEXT))
        return
    session.send(wire.historical_data(req.req_id, *window, req.format_date, found))


def _window(gw: FakeGateway, req: HistoricalRequest) -> tuple[int, int] | None:
    """The wall-clock window [start, end] a historical request asks for, if served."""
    if gw.engine.bar_clock is None or req.bar_size != ONE_SECOND_BARS \
            or req.what_to_show != "TRADES" or req.keep_up_to_date:
        return None
    span = duration_ns(req.duration)
    now = gw.clock()
    end = now if not req.end.strip() else wire.parse_ib_time(req.end)
    if span is None or end is None:
        return None
    end = min(end, now)  # nothing from the future
    return end - span, end


def _send_about(session: Session, record: OrderRecord, fields: list[str]) -> None:
    """A sync answer about one order: as many times as its script duplicates."""
    for _ in range(record.script.duplicate):
        session.send(fields)


def _matches_filter(e: Execution, fields: list[str]) -> bool:
    """reqExecutions' filter: `7,3,reqId,clientId,acct,time,symbol,secType,exchange,side`."""
    f = (fields + [""] * 10)[:10]
    client_id, account, symbol, sec_type, side = wire.opt_int(f[3]), f[4], f[6], f[7], f[9]
    return ((not client_id or client_id == e.client_id)
            and account in ("", e.account)
            and symbol.upper() in ("", e.contract.symbol)
            and sec_type in ("", e.contract.sec_type)
            and side.upper() in ("", e.side, {"BOT": "BUY", "SLD": "SELL"}[e.side]))


def _net_liquidation() -> float:
    return next(float(v) for k, v, _ in ACCOUNT_VALUES if k == "NetLiquidation")


def _with_contract(placed: PlacedOrder, contract: Contract) -> PlacedOrder:
    return replace(placed, contract=contract)


Handler = Callable[["FakeGateway", Session, list[str]], None]
# startApi (71) is not here: the server registers the session itself.
HANDLERS: dict[str, Handler] = {
    "61": positions,
    "5": open_orders,
    "16": all_open_orders,
    "99": completed_orders,
    "6": account_updates,
    "76": account_updates_multi,
    "74": positions_multi,
    "62": account_summary,
    "7": executions,
    "9": contract_details,
    "3": place_order,
    "4": cancel_order,
    "58": global_cancel,
    "8": req_ids,
    "49": current_time,
    "91": market_rule,
    "104": user_info,
    "1": market_data,
    "20": historical_data,
}
