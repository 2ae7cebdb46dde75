"""The fake gateway's instruments (docs/gateway-instruments.md), driven over TCP by the
unmodified ib_async client: contract details and matching, market rules, the checks an
order gets, fills with multipliers, positions, open and completed orders.

The gateway's clock starts at T0, Monday 2026-01-05 15:00Z (10:00 New York), so the
listed expiries are known: quarterly ES/MES 20260320 (H6), 20260619 (M6), 20260918 (U6);
SPY monthly 20260116 and 20260220; AAPL 20260116; ES options on ESH6 (20260320). Every
expected number below is written out by hand from the table and the rules.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from ib_async import (
    CFD,
    IB,
    Contract,
    Crypto,
    Forex,
    Future,
    FuturesOption,
    Index,
    LimitOrder,
    MarketOrder,
    Option,
    Stock,
    StopOrder,
)
from ib_async.objects import PriceIncrement
from ibclient import connected, error_log, run, until

from runner.gateway import FakeGateway, wire

NS = 1_000_000_000
T0 = 1_767_625_200 * NS  # 2026-01-05 15:00:00Z, a Monday

ESH6 = Future("ES", "202603", "CME")
MESM6 = Future("MES", "20260619", "CME")
SPY_C600 = Option("SPY", "20260116", 600, "C", "SMART")
AAPL_C250 = Option("AAPL", "20260116", 250, "C", "SMART")
ES_C7000 = FuturesOption("ES", "20260320", 7000, "C", "CME")
EURUSD = Forex("EURUSD")
USDJPY = Forex("USDJPY")
BTC = Crypto("BTC", "PAXOS", "USD")
IBUS500 = CFD("IBUS500", "SMART", "USD")
SPX = Index("SPX", "CBOE", "USD")
TOYOTA = Stock("7203", "SMART", "JPY")


def clock_from(t0_ns: int) -> Callable[[], int]:
    """A gateway clock that reads `t0_ns` now and runs on with the wall clock."""
    start = time.time_ns()
    return lambda: t0_ns + time.time_ns() - start


def gateway(t0_ns: int = T0, **kw: Any) -> FakeGateway:
    return FakeGateway(clock=clock_from(t0_ns), **kw)


async def qualified(ib: IB, contract: Contract) -> Contract:
    """`contract` qualified (a copy: the module's contracts stay as written)."""
    [found] = await ib.qualifyContractsAsync(copy.copy(contract))
    assert found is not None, f"{contract} did not qualify"
    return found


# --------------------------------------------------------------- contract details


def test_futures_are_listed_from_the_gateway_date() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            details = await ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
            got = [(d.contract.localSymbol, d.contract.lastTradeDateOrContractMonth,
                    d.contract.conId, d.contractMonth) for d in details]
            assert got == [("ESH6", "20260320", 700002603, "202603"),
                           ("ESM6", "20260619", 700002606, "202606"),
                           ("ESU6", "20260918", 700002609, "202609")]
            d = details[0]
            assert (d.contract.multiplier, d.minTick, d.marketRuleIds, d.validExchanges) == (
                "50", 0.25, "67,67", "CME,QBALGO")
            assert (d.timeZoneId, d.lastTradeTime, d.realExpirationDate) == (
                "US/Central", "08:30:00", "20260320")
            assert (d.underSymbol, d.underSecType, d.contract.tradingClass) == (
                "ES", "IND", "ES")
            assert (d.minSize, d.sizeIncrement) == (1.0, 1.0)

    run(body())


def test_an_expired_future_is_no_longer_listed() -> None:
    saturday = int(datetime(2026, 3, 21, 15, tzinfo=UTC).timestamp()) * NS  # H6 ended 20th

    async def body() -> None:
        async with gateway(saturday) as gw, connected(gw) as ib:
            details = await ib.reqContractDetailsAsync(Future("MES", exchange="CME"))
            assert [d.contract.localSymbol for d in details] == ["MESM6", "MESU6", "MESZ6"]
            assert [d.contract.conId for d in details] == [701002606, 701002609, 701002612]
            errors = error_log(ib)
            assert await ib.reqContractDetailsAsync(Future("MES", "202603", "CME")) == []
            assert [(code, text) for _, code, text in errors] == [
                (200, "No security definition has been found for the request")]

    run(body())


def test_every_kind_of_instrument_qualifies_with_its_fields() -> None:
    expected = {  # contract: (conId, secType, localSymbol, multiplier, exchange, currency)
        "ESH6": (ESH6, 700002603, "FUT", "ESH6", "50", "CME", "USD"),
        "MESM6": (MESM6, 701002606, "FUT", "MESM6", "5", "CME", "USD"),
        # (26 x 12 + 1) x 100 = 31300; strike 600 is SPY's first, a call: + 0
        "SPY C600": (SPY_C600, 710031300, "OPT", "SPY   260116C00600000", "100", "SMART",
                     "USD"),
        "AAPL C250": (AAPL_C250, 711031300, "OPT", "AAPL  260116C00250000", "100", "SMART",
                      "USD"),
        # (26 x 12 + 3) x 100 = 31500; 7000 is the second strike: + 2
        "ES C7000": (ES_C7000, 720031502, "FOP", "ESH6 C7000", "50", "CME", "USD"),
        "EUR.USD": (EURUSD, 12087792, "CASH", "EUR.USD", "", "IDEALPRO", "USD"),
        "USD.JPY": (USDJPY, 900000201, "CASH", "USD.JPY", "", "IDEALPRO", "JPY"),
        "BTC": (BTC, 900000301, "CRYPTO", "BTC.USD", "", "PAXOS", "USD"),
        "IBUS500": (IBUS500, 900000401, "CFD", "IBUS500", "", "SMART", "USD"),
        "SPX": (SPX, 416904, "IND", "SPX", "", "CBOE", "USD"),
        "7203": (TOYOTA, 900000101, "STK", "7203", "", "SMART", "JPY"),
    }

    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            for name, (contract, *want) in expected.items():
                c = await qualified(ib, contract)
                assert [c.conId, c.secType, c.localSymbol, c.multiplier, c.exchange,
                        c.currency] == want, name
            toyota, spy, fop = [await qualified(ib, c) for c in (TOYOTA, SPY_C600, ES_C7000)]
            assert (toyota.primaryExchange, spy.strike, spy.right, fop.tradingClass) == (
                "TSEJ", 600.0, "C", "ES")

    run(body())


def test_missing_fields_widen_the_match_and_ambiguity_lists_the_candidates() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            # An expiry without strike and right: its 3 strikes, each a call and a put.
            chain = await ib.reqContractDetailsAsync(
                Option("SPY", "20260116", exchange="SMART"))
            assert [(d.contract.strike, d.contract.right) for d in chain] == [
                (600.0, "C"), (600.0, "P"), (650.0, "C"), (650.0, "P"), (700.0, "C"),
                (700.0, "P")]
            # A month (YYYYMM) matches the contract month.
            feb = await ib.reqContractDetailsAsync(Option("SPY", "202602", 650, "P", "SMART"))
            assert [(d.contract.conId, d.contract.localSymbol) for d in feb] == [
                (710031403, "SPY   260220P00650000")]  # (26 x 12 + 2) x 100 + 2 x 1 + 1
            # qualify refuses the ambiguous request; returnAll lists the candidates.
            assert await ib.qualifyContractsAsync(Future("ES", exchange="CME")) == [None]
            [candidates] = await ib.qualifyContractsAsync(Contract(symbol="ES", exchange="CME"),
                                                          returnAll=True)
            assert sorted((c.secType, c.localSymbol) for c in candidates) == [
                ("FOP", "ESH6 C6500"), ("FOP", "ESH6 C7000"), ("FOP", "ESH6 P6500"),
                ("FOP", "ESH6 P7000"), ("FUT", "ESH6"), ("FUT", "ESM6"), ("FUT", "ESU6")]
            # A currency left out widens too: 7203 is only listed in JPY.
            [toyota] = await ib.reqContractDetailsAsync(Stock("7203", "SMART"))
            assert (toyota.contract.currency, toyota.stockType, toyota.minSize,
                    toyota.sizeIncrement) == ("JPY", "COMMON", 100.0, 100.0)

    run(body())


def test_con_id_matches_alone_and_every_other_given_field_must_agree() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            [eur] = await ib.reqContractDetailsAsync(Contract(conId=12087792))
            assert (eur.contract.symbol, eur.contract.secType, eur.contract.currency,
                    eur.longName, eur.minTick) == (
                "EUR", "CASH", "USD", "European Monetary Union Euro", 5e-05)
            assert await ib.reqContractDetailsAsync(Contract(conId=12087792, symbol="GBP")) == []
            assert await ib.reqContractDetailsAsync(Stock("SPY", "SMART", "EUR")) == []
            assert await ib.reqContractDetailsAsync(Option("SPY", "20260116", 600, "C",
                                                           "NYSE")) == []
            assert [code for _, code, _ in errors] == [200, 200, 200]

    run(body())


def test_trading_and_liquid_hours_are_each_markets_own() -> None:
    async def body() -> None:
        async with gateway(hours="regular") as gw, connected(gw) as ib:
            [es] = await ib.reqContractDetailsAsync(ESH6)
            # CME: the Monday session opens Sunday 17:00 Chicago; liquid 08:30-16:00.
            assert es.tradingHours.split(";")[:2] == ["20260104:1700-20260105:1600",
                                                      "20260105:1700-20260106:1600"]
            assert es.liquidHours.split(";")[0] == "20260105:0830-20260105:1600"
            assert es.tradingHours.split(";")[5:] == ["20260110:CLOSED", "20260111:CLOSED"]
            # 15:00Z is already Tuesday 00:00 in Tokyo: two sessions a day.
            [toyota] = await ib.reqContractDetailsAsync(TOYOTA)
            assert toyota.timeZoneId == "Japan"
            assert toyota.liquidHours.split(";")[:2] == ["20260106:0900-20260106:1130",
                                                         "20260106:1230-20260106:1530"]
            [eur] = await ib.reqContractDetailsAsync(EURUSD)
            assert eur.tradingHours.split(";")[0] == "20260104:1715-20260105:1700"
            [btc] = await ib.reqContractDetailsAsync(BTC)  # every day, the weekend too
            assert btc.liquidHours.split(";")[5] == "20260110:0000-20260111:0000"
            [spy] = await ib.reqContractDetailsAsync(SPY_C600)
            assert spy.liquidHours.split(";")[0] == "20260105:0930-20260105:1615"

    run(body())


# --------------------------------------------------------------- market rules


RULES = {  # contract: (minTick, its rule id, that rule's ladder)
    "AAPL stock": (Stock("AAPL", "SMART", "USD"), 0.01, 26, [(0, 0.01)]),
    "ESH6": (ESH6, 0.25, 67, [(0, 0.25)]),
    "EUR.USD": (EURUSD, 0.00005, 239, [(0, 0.00005)]),
    "USD.JPY": (USDJPY, 0.005, 9001, [(0, 0.005)]),
    "SPY option": (SPY_C600, 0.01, 9002, [(0, 0.01)]),
    "AAPL option": (AAPL_C250, 0.01, 9003, [(0, 0.01), (3, 0.05)]),
    "ES option": (ES_C7000, 0.05, 9004, [(0, 0.05), (5, 0.25)]),
    "BTC": (BTC, 0.25, 9006, [(0, 0.25)]),
    "IBUS500": (IBUS500, 0.1, 9007, [(0, 0.1)]),
    "7203": (TOYOTA, 0.1, 9005, [(0, 0.1), (1000, 0.5), (3000, 1), (10000, 5), (30000, 10),
                                 (100000, 50), (300000, 100), (1000000, 500),
                                 (3000000, 1000), (10000000, 5000), (30000000, 10000)]),
}


def test_each_contract_names_its_market_rule_and_the_rule_is_its_ladder() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            for name, (contract, tick, rule_id, ladder) in RULES.items():
                [d] = await ib.reqContractDetailsAsync(contract)
                ids = d.marketRuleIds.split(",")
                assert (d.minTick, ids[0]) == (tick, str(rule_id)), name
                assert len(ids) == len(d.validExchanges.split(",")) and len(set(ids)) == 1
                increments = await ib.reqMarketRuleAsync(rule_id)
                assert increments == [PriceIncrement(float(low), float(inc))
                                      for low, inc in ladder], name
            assert await ib.reqMarketRuleAsync(12345) is None  # no answer: ib_async gives up

    run(body())


# --------------------------------------------------------------- orders


async def outcome(ib: IB, errors: list[tuple[int, int, str]], contract: Contract,
                  order: Any) -> tuple[str, int | None, str]:
    """Place `order`; once the gateway has answered: (ib_async's status, the error
    code for its order id or None, that error's text)."""
    trade = ib.placeOrder(contract, order)
    oid = trade.order.orderId
    await until(ib, lambda: trade.orderStatus.status == "Submitted"
                or any(req == oid for req, _, _ in errors))
    mine = [(code, text) for req, code, text in errors if req == oid]
    code, text = mine[0] if mine else (None, "")
    return trade.orderStatus.status, code, text


def test_prices_off_the_market_rule_grid_get_110_and_no_order() -> None:
    cases = [  # contract, price, on the grid?
        (AAPL_C250, 2.99, True), (AAPL_C250, 3.02, False), (AAPL_C250, 3.05, True),
        (SPY_C600, 7.37, True),  # SPY options are in pennies at every price
        (ESH6, 6000.25, True), (ESH6, 6000.3, False),
        (ES_C7000, 4.95, True), (ES_C7000, 5.05, False), (ES_C7000, 5.25, True),
        (EURUSD, 1.08505, True), (EURUSD, 1.08502, False),
        (USDJPY, 157.125, True), (USDJPY, 157.123, False),
        (TOYOTA, 2800.5, True), (TOYOTA, 3000.5, False), (TOYOTA, 3001.0, True),
        (BTC, 97000.25, True), (BTC, 97000.1, False),
    ]

    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            for n, (contract, price, ok) in enumerate(cases):
                c = await qualified(ib, contract)
                qty = 100 if c.symbol == "7203" else 1
                got = await outcome(ib, errors, c, LimitOrder("BUY", qty, price,
                                                              orderRef=f"grid-{n}"))
                if ok:
                    assert got == ("Submitted", None, ""), (c.localSymbol, price)
                    assert len(gw.orders_by_ref(f"grid-{n}")) == 1
                else:  # a new order's 110 cancels it in ib_async; the gateway has none
                    assert got == ("Cancelled", 110, "The price does not conform to the "
                                   "minimum price variation for this contract."), price
                    assert gw.orders_by_ref(f"grid-{n}") == []
            # A stop's trigger price is checked too.
            es = await qualified(ib, ESH6)
            got = await outcome(ib, errors, es, StopOrder("SELL", 1, 5990.1, orderRef="stp"))
            assert got[:2] == ("Cancelled", 110)

    run(body())


def test_sizes_follow_each_instruments_increments() -> None:
    fractional = ("Fractional-sized order cannot be placed via API. Please use desktop "
                  "version to place this order.")
    cases = [  # contract, price, quantity, (code, text) or None when accepted
        (Stock("SPY", "SMART", "USD"), 600.0, 2.5, (10243, fractional)),
        (ESH6, 6000.0, 1.5, (10243, fractional)),
        (TOYOTA, 2800.0, 150, (201, "Order rejected - reason:The order size 150 is not a "
                                    "multiple of 100, the size increment of this contract")),
        (TOYOTA, 2800.0, 50, (201, "Order rejected - reason:The order size 50 is below 100, "
                                   "the minimum size of this contract")),
        (TOYOTA, 2800.0, 200, None),
        (EURUSD, 1.085, 20000.5, None),
        (EURUSD, 1.085, 1000.005, (201, "Order rejected - reason:The order size 1000.005 is "
                                        "not a multiple of 0.01, the size increment of this "
                                        "contract")),
        (BTC, 97000.0, 0.00012345, None),
        (BTC, 97000.0, 0.00005, (201, "Order rejected - reason:The order size 5e-05 is "
                                      "below 0.0001, the minimum size of this contract")),
    ]

    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            for n, (contract, price, qty, refused) in enumerate(cases):
                c = await qualified(ib, contract)
                status, code, text = await outcome(
                    ib, errors, c, LimitOrder("BUY", qty, price, orderRef=f"size-{n}"))
                if refused is None:
                    assert (status, code) == ("Submitted", None), (c.localSymbol, qty)
                    [order] = gw.orders_by_ref(f"size-{n}")
                    assert order.order.qty == qty
                else:
                    assert (status, (code, text)) == ("Cancelled", refused), (c.symbol, qty)
                    assert gw.orders_by_ref(f"size-{n}") == []

    run(body())


def test_an_index_is_data_only_orders_get_412() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            spx = await qualified(ib, SPX)
            got = await outcome(ib, errors, spx, LimitOrder("BUY", 1, 6000.0, orderRef="ind"))
            assert got == ("Cancelled", 412, "The contract is not available for trading.")
            assert gw.orders_by_ref("ind") == []
            gw.set_quote("SPX", last=6001.5)  # market data is served
            [ticker] = await ib.reqTickersAsync(spx)
            assert (ticker.last, ticker.minTick) == (6001.5, 0.01)

    run(body())


def test_an_order_must_mean_one_contract() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            errors = error_log(ib)
            # Unqualified and ambiguous: the three ES futures.
            got = await outcome(ib, errors, Future("ES", exchange="CME"),
                                LimitOrder("BUY", 1, 6000.0, orderRef="amb"))
            assert got == ("Cancelled", 200, "The contract description specified for ES is "
                           "ambiguous.")
            # ESH6's conId with ESM6's expiry: IB's 478.
            clash = Contract(conId=700002603, symbol="ES", secType="FUT", exchange="CME",
                             lastTradeDateOrContractMonth="20260619")
            got = await outcome(ib, errors, clash, LimitOrder("BUY", 1, 6000.0))
            assert got == ("Cancelled", 478, "Parameters in request conflicts with contract "
                           "parameters received by contract id: requested expiry 20260619, "
                           "in contract 20260320;")
            got = await outcome(ib, errors, Future("NQ", "202603", "CME"),
                                LimitOrder("BUY", 1, 6000.0))
            assert got[1:] == (200, "No security definition has been found for the request")
            assert gw.live_orders() == []

    run(body())


def test_market_data_by_instrument_with_its_tick() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            gw.set_quote("ES", last=6000.25, bid=6000.0, ask=6000.5)
            [ticker] = await ib.reqTickersAsync(await qualified(ib, ESH6))
            assert (ticker.last, ticker.bid, ticker.ask, ticker.minTick) == (
                6000.25, 6000.0, 6000.5, 0.25)
            errors = error_log(ib)
            # Unqualified (ib_async's reqMktData wants a conId): through its client.
            ib.client.reqMktData(ib.client.getReqId(), Future("ES", exchange="CME"), "", True,
                                 False, [])
            await until(ib, lambda: bool(errors))
            assert [(c, t) for _, c, t in errors] == [
                (200, "The contract description specified for ES is ambiguous.")]

    run(body())


# --------------------------------------------------------------- fills, positions


def _bars(t0: int, open_: float, volume: float) -> Any:
    from runner.bars import Bars

    return Bars(ts=np.array([t0, t0 + NS]), open=np.array([open_, open_]),
                high=np.array([open_, open_]), low=np.array([open_, open_]),
                close=np.array([open_, open_]), volume=np.array([volume, volume]))


@pytest.mark.parametrize(("contract", "qty", "px", "volume", "commission", "currency",
                          "avg_cost"), [
    # 0.85 a contract; IB's avgCost of a future is price x multiplier: 6000.25 x 50
    (ESH6, 2, 6000.25, 100, 1.7, "USD", 300012.5),
    # 0.65 a contract, at least 1.00; 2.99 x 100
    (AAPL_C250, 3, 2.99, 100, 1.95, "USD", 299.0),
    # 0.2 bp of 200000.5 x 1.085 = 217000.5425: 4.34001085
    (EURUSD, 200000.5, 1.085, 10_000_000, 4.34001085, "USD", 1.085),
    # 0.08% of 200 x 2800.5 = 560100: 448.08 yen
    (TOYOTA, 200, 2800.5, 10_000, 448.08, "JPY", 2800.5),
    # 0.18% of 0.5 x 97000.25 = 48500.125: 87.300225
    (BTC, 0.5, 97000.25, 100, 87.300225, "USD", 97000.25),
])
def test_bar_fills_charge_by_instrument_and_positions_carry_the_multiplier(
        contract: Contract, qty: float, px: float, volume: float, commission: float,
        currency: str, avg_cost: float) -> None:
    async def body() -> None:
        clock = clock_from(T0)
        start = clock() + NS // 2  # bar 0 starts after the ack
        bars = _bars(1_767_000_000 * NS, px, volume)
        async with FakeGateway(clock=clock, bars=bars, bars_start_ns=start, speed=20) as gw, \
                connected(gw) as ib:
            c = await qualified(ib, contract)
            trade = ib.placeOrder(c, MarketOrder("BUY", qty, orderRef="bars"))
            await until(ib, lambda: trade.orderStatus.status == "Filled"
                        and trade.fills[-1].commissionReport.execId != "", timeout=4)
            [fill] = trade.fills
            assert (fill.execution.shares, fill.execution.price) == (qty, px)
            assert (fill.contract.conId, fill.contract.multiplier,
                    fill.contract.lastTradeDateOrContractMonth) == (
                c.conId, c.multiplier, c.lastTradeDateOrContractMonth)
            report = fill.commissionReport
            assert (report.commission, report.currency) == (pytest.approx(commission, abs=1e-9),
                                                            currency)
            [pos] = await ib.reqPositionsAsync()
            assert (pos.contract.conId, pos.position, pos.avgCost) == (
                c.conId, qty, pytest.approx(avg_cost))
            assert (pos.contract.localSymbol, pos.contract.multiplier) == (
                c.localSymbol, c.multiplier)

    run(body())


def test_positions_multi_answers_from_the_book_by_account() -> None:
    async def body() -> None:
        async with gateway(accounts=("DU111", "DU222")) as gw, \
                connected(gw, account="DU111") as ib:
            es, eur = await qualified(ib, ESH6), await qualified(ib, EURUSD)
            ib.placeOrder(es, LimitOrder("BUY", 2, 6000.0, orderRef="es", account="DU111"))
            ib.placeOrder(eur, LimitOrder("SELL", 1000.5, 1.085, orderRef="fx",
                                          account="DU222"))
            await gw.wait_for(3, 2)
            await gw.fill("es", 2, 6000.0)
            await gw.fill("fx", 1000.5, 1.085)
            seen: dict[int, list[tuple[str, int, float, float]]] = {}
            ended: dict[int, asyncio.Future[None]] = {}

            def on_position(req: int, account: str, model: str, c: Contract, pos: float,
                            cost: float) -> None:
                seen.setdefault(req, []).append((account, c.conId, pos, cost))

            def on_end(req: int) -> None:
                ended[req].set_result(None)

            ib.wrapper.positionMulti = on_position  # type: ignore[method-assign]
            ib.wrapper.positionMultiEnd = on_end  # type: ignore[method-assign]
            for req, account in ((901, "DU222"), (902, "")):
                ended[req] = asyncio.get_running_loop().create_future()
                ib.client.reqPositionsMulti(req, account, "")
                await asyncio.wait_for(ended[req], 3)
            assert seen == {901: [("DU222", 12087792, -1000.5, 1.085)],
                            902: [("DU111", 700002603, 2.0, 300000.0),
                                  ("DU222", 12087792, -1000.5, 1.085)]}

    run(body())


def test_what_if_margin_and_commission_use_the_multiplier() -> None:
    async def body() -> None:
        async with gateway() as gw, connected(gw) as ib:
            es = await qualified(ib, ESH6)
            state = await ib.whatIfOrderAsync(es, LimitOrder("BUY", 1, 6000.25))
            # 50% of 1 x 6000.25 x 50 = 150006.25; 0.85 a contract
            assert (float(state.initMarginChange), state.commission,
                    state.commissionCurrency) == (150006.25, 0.85, "USD")

    run(body())


# --------------------------------------------------------------- open / completed orders


def test_open_and_completed_orders_round_trip_their_contract_fields() -> None:
    async def body() -> None:
        async with gateway() as gw:
            async with connected(gw) as ib:
                for contract, qty, price, ref in ((ESH6, 1, 6000.0, "es"),
                                                  (ES_C7000, 2, 4.95, "fop"),
                                                  (SPY_C600, 1, 7.37, "opt"),
                                                  (BTC, 0.25, 97000.0, "btc")):
                    c = await qualified(ib, contract)
                    ib.placeOrder(c, LimitOrder("BUY", qty, price, orderRef=ref))
                await gw.wait_for(3, 4)
                await until(ib, lambda: len(gw.live_orders()) == 4)
            await gw.fill("opt", 1, 7.37, commission=0.65)
            async with connected(gw) as ib:  # a new session: what the gateway replays
                working = {t.order.orderRef: t.contract for t in ib.openTrades()}
                assert {ref: (c.secType, c.conId, c.lastTradeDateOrContractMonth, c.strike,
                              c.right, c.multiplier, c.localSymbol)
                        for ref, c in working.items()} == {
                    "es": ("FUT", 700002603, "20260320", 0.0, "", "50", "ESH6"),
                    "fop": ("FOP", 720031502, "20260320", 7000.0, "C", "50", "ESH6 C7000"),
                    "btc": ("CRYPTO", 900000301, "", 0.0, "", "", "BTC.USD"),
                }
                assert {t.order.orderRef: t.order.totalQuantity
                        for t in ib.openTrades()}["btc"] == 0.25
                [done] = await ib.reqCompletedOrdersAsync(apiOnly=True)
                c = done.contract
                assert (done.order.orderRef, done.orderStatus.status) == ("opt", "Filled")
                assert (c.secType, c.conId, c.strike, c.right, c.multiplier, c.localSymbol) == (
                    "OPT", 710031300, 600.0, "C", "100", "SPY   260116C00600000")
                [fill] = ib.fills()  # from the connect's reqExecutions, commission attached
                assert (fill.contract.conId, fill.contract.multiplier, fill.execution.price,
                        fill.commissionReport.commission) == (710031300, "100", 7.37, 0.65)

    run(body())


def test_contract_details_layout_has_40_fields_for_every_instrument() -> None:
    from runner.gateway.contracts import listed_today

    for instrument in listed_today(T0):
        fields = wire.contract_details(1, instrument, "", ("", ""))
        assert len(fields) == 40, instrument.local_symbol
        assert fields[34] == instrument.market_rule_ids  # marketRuleIds sits at 34
