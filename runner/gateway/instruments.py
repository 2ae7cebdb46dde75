"""The instruments the fake gateway knows: a small table in the shape of IB's contract details.

Stocks, FX, crypto, a CFD and an index are fixed rows. Futures and options are listed
from the gateway's date, as an exchange lists them: ES and MES, their next three
quarterly expiries; SPY options, the next two monthly expiries; AAPL options and ES
options (on the front quarterly future), the next one; expired ones are never listed.
Every value is modelled on what IB reports for such a contract, not copied from a live
gateway: the conIds of the 12 US stocks and of EUR.USD are IB's, the others the fake's
own (9000001xx for fixed rows, 7xx xxx xxx for listed ones). docs/gateway-instruments.md
is the table.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import date

from runner.gateway import rules
from runner.gateway.values import Contract


@dataclass(frozen=True, slots=True)
class Instrument:
    """One contract as its contractDetails describe it (TWS_PROTOCOL, reqContractDetails)."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str  # the exchange its details name when a request gives none
    currency: str
    local_symbol: str
    trading_class: str
    long_name: str
    rule_id: int  # its market rule, on every valid exchange
    valid_exchanges: tuple[str, ...]
    order_types: str
    schedule: str  # contracts.SCHEDULES key: its trading and liquid hours
    primary_exchange: str = ""
    market_name: str = ""  # "" = its trading class
    last_trade: str = ""  # lastTradeDateOrContractMonth, YYYYMMDD
    last_trade_time: str = ""  # HH:MM:SS, exchange time
    contract_month: str = ""  # YYYYMM
    strike: float = 0.0
    right: str = ""  # C | P
    multiplier: str = ""  # IB's text: "" for a stock or a currency
    min_size: str = "1"
    size_increment: str = "1"
    suggested_size_increment: str = "1"
    api_fractional: bool = False  # fractional sizes accepted through the API
    stock_type: str = ""
    industry: str = ""
    category: str = ""
    under_con_id: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    agg_group: str = "1"
    data_only: bool = False  # an index: market data, never orders

    @property
    def min_tick(self) -> str:
        return rules.min_tick(self.rule_id)

    @property
    def market_rule_ids(self) -> str:
        """One rule id per valid exchange, in their order (as IB lists them)."""
        return ",".join(str(self.rule_id) for _ in self.valid_exchanges)

    def contract(self, exchange: str = "") -> Contract:
        return Contract(
            con_id=self.con_id, symbol=self.symbol, sec_type=self.sec_type,
            exchange=exchange or self.exchange, primary_exchange=self.primary_exchange,
            currency=self.currency, local_symbol=self.local_symbol,
            trading_class=self.trading_class, last_trade=self.last_trade, strike=self.strike,
            right=self.right, multiplier=self.multiplier,
        )


# ---------------------------------------------------------------- order types, exchanges

_COMMON = ("ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,"
           "DEACTDIS,DEACTEOD,GAT,GTC,GTD,GTT,HID,IOC,LIT,LMT,MIT,MKT,NONALGO,OCA,SCALE,"
           "SCALERST,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF")
US_STOCK_ORDERS = ("ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AON,AVGCOST,BASKET,BENCHPX,CASHQTY,"
                   "COND,CONDORDER,DARKONLY,DAY,DEACT,DEACTDIS,DEACTEOD,DIS,DUR,GAT,GTC,GTD,"
                   "GTT,HID,IBKRATS,ICE,IMB,IOC,LIT,LMT,LOC,MIDPX,MIT,MKT,MOC,MTL,NONALGO,"
                   "OCA,OPG,PEGBENCH,PEGMID,POSTONLY,PREOPGRTH,PRICECHK,REL,REL2MID,"
                   "RELPCTOFS,RPI,RTH,SCALE,SCALERST,SIZECHK,SNAPMID,SNAPMKT,SNAPREL,STP,"
                   "STPLMT,SWEEP,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF")
FUTURE_ORDERS = _COMMON.replace("AVGCOST,", "AVGCOST,BENCHPX,").replace("MKT,", "MKT,MTL,")
OPTION_ORDERS = _COMMON + ",OPENCLOSE,PEGMIDVOL,REL,RELPCTOFS,SNAPMID,SNAPMKT,VOLAT"
FX_ORDERS = _COMMON + ",ALGO,CASHQTY,REL,RELPCTOFS"
CRYPTO_ORDERS = "ALERT,ALLOC,AVGCOST,CASHQTY,DAY,GTC,IOC,LMT,MKT,STP,STPLMT,WHATIF"
US_EXCHANGES = ("SMART", "AMEX", "NYSE", "CBOE", "PHLX", "ISE", "CHX", "ARCA", "NASDAQ",
                "BATS", "EDGEA", "IEX", "EDGX", "MEMX", "PEARL")
OPTION_EXCHANGES = ("SMART", "AMEX", "BATS", "BOX", "CBOE", "CBOE2", "EDGX", "GEMINI", "ISE",
                    "MIAX", "PHLX", "PSE")

# ---------------------------------------------------------------- stocks

_US_STOCKS = (
    ("SPY", 756733, "ARCA", "SPDR S&P 500 ETF TRUST", "ETF"),
    ("QQQ", 320227571, "NASDAQ", "INVESCO QQQ TRUST SERIES 1", "ETF"),
    ("IWM", 9579970, "ARCA", "ISHARES RUSSELL 2000 ETF", "ETF"),
    ("DIA", 73128548, "ARCA", "SPDR DOW JONES INDUSTRIAL AVRG ETF", "ETF"),
    ("AAPL", 265598, "NASDAQ", "APPLE INC", "COMMON"),
    ("MSFT", 272093, "NASDAQ", "MICROSOFT CORP", "COMMON"),
    ("AMZN", 3691937, "NASDAQ", "AMAZON.COM INC", "COMMON"),
    ("GOOGL", 208813719, "NASDAQ", "ALPHABET INC-CL A", "COMMON"),
    ("META", 107113386, "NASDAQ", "META PLATFORMS INC-CLASS A", "COMMON"),
    ("NVDA", 4815747, "NASDAQ", "NVIDIA CORP", "COMMON"),
    ("TSLA", 76792991, "NASDAQ", "TESLA INC", "COMMON"),
    ("IBM", 8314, "NYSE", "INTL BUSINESS MACHINES CORP", "COMMON"),
)


def _us_stock(symbol: str, con_id: int, primary: str, name: str, kind: str) -> Instrument:
    etf = kind == "ETF"
    # IB reports US stocks in 0.0001 sizes (fractional shares in TWS) but refuses a
    # fractional size through the API (10243): api_fractional stays False.
    return Instrument(
        con_id, symbol, "STK", "SMART", "USD", symbol, symbol if etf else "NMS", name,
        rules.US_STOCK, US_EXCHANGES, US_STOCK_ORDERS, "us_stock", primary_exchange=primary,
        min_size="0.0001", size_increment="0.0001", suggested_size_increment="100",
        stock_type=kind, industry="Funds" if etf else "Technology",
        category="Equity Fund" if etf else "Computers")


STOCKS: dict[str, Instrument] = {row[0]: _us_stock(*row) for row in _US_STOCKS}
# A Tokyo stock: prices on the TOPIX 100 tick ladder, quantities in lots of 100 shares.
TOYOTA = Instrument(
    900000101, "7203", "STK", "SMART", "JPY", "7203", "7203", "TOYOTA MOTOR CORP",
    rules.TSE_TOPIX100, ("SMART", "TSEJ"), _COMMON, "tse", primary_exchange="TSEJ",
    min_size="100", size_increment="100", suggested_size_increment="100",
    stock_type="COMMON", industry="Consumer, Cyclical", category="Auto Manufacturers")

# ---------------------------------------------------------------- FX, crypto, CFD, index

EURUSD = Instrument(
    12087792, "EUR", "CASH", "IDEALPRO", "USD", "EUR.USD", "EUR.USD",
    "European Monetary Union Euro", rules.IDEALPRO_EUR, ("IDEALPRO",), FX_ORDERS, "idealpro",
    min_size="0.01", size_increment="0.01", suggested_size_increment="0.01",
    api_fractional=True, agg_group="4")
USDJPY = Instrument(
    900000201, "USD", "CASH", "IDEALPRO", "JPY", "USD.JPY", "USD.JPY", "US Dollar",
    rules.IDEALPRO_JPY, ("IDEALPRO",), FX_ORDERS, "idealpro", min_size="0.01",
    size_increment="0.01", suggested_size_increment="0.01", api_fractional=True,
    agg_group="4")
BTC = Instrument(
    900000301, "BTC", "CRYPTO", "PAXOS", "USD", "BTC.USD", "BTC", "Bitcoin", rules.PAXOS_BTC,
    ("PAXOS",), CRYPTO_ORDERS, "paxos", min_size="0.0001", size_increment="0.00000001",
    suggested_size_increment="0.0001", api_fractional=True)
IBUS500 = Instrument(
    900000401, "IBUS500", "CFD", "SMART", "USD", "IBUS500", "IBUS500", "IB US 500",
    rules.INDEX_CFD, ("SMART",), _COMMON, "cme")
SPX = Instrument(
    416904, "SPX", "IND", "CBOE", "USD", "SPX", "SPX", "S&P 500 Stock Index", rules.INDEX,
    ("CBOE",), "", "cboe_index", data_only=True)
FIXED = (*STOCKS.values(), TOYOTA, EURUSD, USDJPY, BTC, IBUS500, SPX)

# ---------------------------------------------------------------- listed from the date

_QUARTER_CODE = {3: "H", 6: "M", 9: "U", 12: "Z"}
_FUTURES = (  # symbol, conId base, multiplier, long name
    ("ES", 700_000_000, "50", "E-mini S&P 500"),
    ("MES", 701_000_000, "5", "Micro E-Mini S&P 500 Stock Price Index"),
)
_ES_INDEX_CON_ID = 11004968


def third_friday(year: int, month: int) -> date:
    fridays = [d for d in calendar.Calendar().itermonthdates(year, month)
               if d.month == month and d.weekday() == calendar.FRIDAY]
    return fridays[2]


def _expiries(today: date, months: tuple[int, ...], count: int) -> list[date]:
    """The next `count` third Fridays of those months, on or after `today`."""
    found: list[date] = []
    year, month = today.year, today.month
    while len(found) < count:
        if month in months and (day := third_friday(year, month)) >= today:
            found.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def _future(symbol: str, base: int, multiplier: str, name: str, expiry: date) -> Instrument:
    code = f"{_QUARTER_CODE[expiry.month]}{expiry.year % 10}"
    return Instrument(
        base + (expiry.year % 100) * 100 + expiry.month, symbol, "FUT", "CME", "USD",
        f"{symbol}{code}", symbol, name, rules.CME_INDEX_FUTURE, ("CME", "QBALGO"),
        FUTURE_ORDERS, "cme", last_trade=f"{expiry:%Y%m%d}", last_trade_time="08:30:00",
        contract_month=f"{expiry:%Y%m}", multiplier=multiplier, under_con_id=_ES_INDEX_CON_ID,
        under_symbol="ES", under_sec_type="IND", agg_group="2147483647")


def _option(under: Instrument, con_id: int, expiry: date, strike: float, right: str,
            rule_id: int, schedule: str) -> Instrument:
    exchanges: tuple[str, ...]
    if under.sec_type == "FUT":  # an option on a future: FOP, its local symbol IB's way
        sec_type, exchanges, local = "FOP", ("CME",), f"{under.local_symbol} {right}{strike:g}"
    else:  # OCC: root padded to 6, yymmdd, C/P, strike x 1000 in 8 digits
        sec_type, exchanges = "OPT", OPTION_EXCHANGES
        local = f"{under.symbol:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    return Instrument(
        con_id, under.symbol, sec_type, exchanges[0], "USD", local, under.symbol,
        under.symbol, rule_id, exchanges, OPTION_ORDERS, schedule,
        last_trade=f"{expiry:%Y%m%d}", contract_month=f"{expiry:%Y%m}", strike=strike,
        right=right, multiplier=under.multiplier or "100", under_con_id=under.con_id,
        under_symbol=under.symbol, under_sec_type=under.sec_type)


def _options(under: Instrument, base: int, expiries: list[date], strikes: tuple[float, ...],
             rule_id: int, schedule: str) -> list[Instrument]:
    """Calls and puts at each expiry and strike; conId = base + month number x 100 +
    strike number x 2 + (1 for a put)."""
    return [_option(under, base + (e.year % 100 * 12 + e.month) * 100 + i * 2 + (r == "P"),
                    e, strike, r, rule_id, schedule)
            for e in expiries for i, strike in enumerate(strikes) for r in ("C", "P")]


@functools.lru_cache(maxsize=4)
def listing(today: date) -> tuple[Instrument, ...]:
    """Every instrument the gateway knows on `today` (its exchange date)."""
    quarterly = _expiries(today, tuple(_QUARTER_CODE), 3)
    futures = [_future(*spec, expiry) for spec in _FUTURES for expiry in quarterly]
    front_es = futures[0]
    listed = (
        *futures,
        *_options(STOCKS["SPY"], 710_000_000, _expiries(today, tuple(range(1, 13)), 2),
                  (600.0, 650.0, 700.0), rules.OPT_PENNY_ALL, "us_etf_option"),
        *_options(STOCKS["AAPL"], 711_000_000, _expiries(today, tuple(range(1, 13)), 1),
                  (250.0, 300.0), rules.OPT_PENNY, "us_option"),
        *_options(front_es, 720_000_000, [date.fromisoformat(front_es.last_trade)],
                  (6500.0, 7000.0), rules.ES_OPTION, "cme"),
    )
    table = (*FIXED, *listed)
    if len({i.con_id for i in table}) != len(table):
        raise AssertionError("two instruments share a conId")  # the numbering is broken
    return table
