"""TWS API socket framing and the messages the fake gateway writes at server version 178.

Pure functions. Every message is a 4-byte big-endian length and then ASCII fields,
each ending in NUL. Layouts follow the decoders of ib_async 2.1.0 and the official
ibapi at version 178 (TWS_PROTOCOL, "Framing and value rules" and "Server-to-client
messages at version 178"); the requests read field by field are in `requests`.
Field counts are exact on purpose: ib_async silently drops a message that is one
field short, and commissionReport, position and orderStatus break with one field
too many. Integers never carry decimals ("1.0" breaks ibapi), booleans are 1/0,
and an unset price is empty.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.gateway.hours import SCHEDULES
from runner.gateway.instruments import Instrument
from runner.gateway.marketdata import Bar
from runner.gateway.rules import MARKET_RULES
from runner.gateway.values import Contract, Execution, OrderSnapshot
from runner.gateway.whatif import WhatIfReply

SERVER_VERSION = 178
MIN_CLIENT_VERSION = 157  # the oldest layout ib_async speaks; we only speak 178
UNSET_DOUBLE = "1.7976931348623157E308"
NO_REQ_ID = -1
READ_ONLY_REQ_ID = 2147483647  # what a read-only gateway answers reqOpenOrders with
MAX_FRAME = 16 * 1024 * 1024
GREETING = b"API\0"
NS = 1_000_000_000

_VERSIONS = re.compile(r"v(\d+)(?:\.\.(\d+))?")


# ---------------------------------------------------------------- framing


def frame(fields: Sequence[str]) -> bytes:
    payload = "".join(f"{f}\0" for f in fields).encode("ascii", errors="replace")
    return struct.pack(">I", len(payload)) + payload


async def read_payload(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    return await reader.readexactly(size)


def split_fields(payload: bytes) -> list[str]:
    fields = payload.decode(errors="backslashreplace").split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


def negotiate(greeting: bytes) -> int | None:
    """The version to answer a `v157..178 [options]` greeting with; None if we cannot.

    A real server answers min(its max, the client's max). We speak 178 only, so
    a client whose range does not include 178 is refused rather than lied to.
    """
    match = _VERSIONS.match(greeting.decode(errors="replace").strip())
    if not match:
        return None
    lo = int(match.group(1))
    hi = int(match.group(2) or lo)
    return SERVER_VERSION if lo <= SERVER_VERSION <= hi else None


# ---------------------------------------------------------------- values


def num(x: float | None) -> str:
    """A quantity or price: `10`, `2.5`; empty when unset."""
    if x is None:
        return ""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def flag(b: bool) -> str:
    return "1" if b else "0"


def ib_time(ns: int) -> str:
    """`20250102 14:30:05 UTC`: the form ib_async and ibapi both parse."""
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def parse_ib_time(s: str) -> int | None:
    """ns from `YYYYMMDD HH:MM:SS [zone]` or `YYYYMMDD-HH:MM:SS` (UTC); None if neither.

    Without a zone TWS would use its own; the fake gateway's zone is UTC.
    """
    s = s.strip()
    try:
        if len(s) == 17 and s[8] == "-":
            naive = datetime.strptime(s, "%Y%m%d-%H:%M:%S")
            return int(naive.replace(tzinfo=UTC).timestamp()) * NS
        day, clock, *zone = s.split(" ", 2)
        tz = ZoneInfo(zone[0]) if zone else UTC
        naive = datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S")
        return int(naive.replace(tzinfo=tz).timestamp()) * NS
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return None


def opt_float(s: str) -> float | None:
    return float(s) if s.strip() else None


def opt_int(s: str, default: int = 0) -> int:
    return int(float(s)) if s.strip() else default


# ---------------------------------------------------------------- replies


def handshake_reply(now_ns: int) -> list[str]:
    # Exactly 2 fields: ib_async takes the first 2-field frame as the handshake.
    return [str(SERVER_VERSION), ib_time(now_ns)]


def managed_accounts(accounts: Sequence[str]) -> list[str]:
    return ["15", "1", ",".join(accounts)]


def next_valid_id(order_id: int) -> list[str]:
    return ["9", "1", str(order_id)]


# IB error codes the gateway sends, each with IB's own text.
DUPLICATE_ORDER_ID = 103  # Duplicate order id
OFF_GRID = 110  # a price off the contract's market-rule grid (a warning to ib_async)
NO_SECURITY = 200  # No security definition has been found for the request (or ambiguous)
NOT_TRADABLE = 412  # an order for a contract that cannot be traded (an index)
CONTRACT_CONFLICT = 478  # the conId's contract disagrees with another field sent
FRACTIONAL_REFUSED = 10243  # a fractional size where the API takes whole units only
ORDER_REJECTED = 201  # Order rejected - reason:<why>
ORDER_CANCELLED = 202  # Order Canceled - reason:<why>; empty for an API cancel
READ_ONLY = 321  # the API is in Read-Only mode (a warning to ib_async)
VALIDATION = 321  # "Error validating request" with a cause: read-only, an account, ...
CLIENT_ID_IN_USE = 326  # then the server closes the socket
CANCEL_NOT_FOUND = 10147  # cancel of an order id the gateway does not know
CANCEL_TOO_LATE = 10148  # cancel of an order that is done (e.g. Filled)
CONNECTIVITY_LOST = 1100  # IB <-> gateway link down
CONNECTIVITY_RESTORED_DATA_LOST = 1101  # back; market data subscriptions are gone
CONNECTIVITY_RESTORED = 1102  # back, data kept; ib_async re-requests the account summary
NOT_CANCELLABLE = 161  # a cancel refused: the order is not in a cancellable state
ORDER_MESSAGE = 399  # an "Order Message" warning (a warning to ib_async)
OUTSIDE_RTH_IGNORED = 2109  # "Order Event Warning": outsideRth ignored (a warning)
TIF_SET_TO_DAY = 10349  # TIF set to DAY by an order preset: ib_async takes it for a cancel

ERROR_TEXT = {
    DUPLICATE_ORDER_ID: "Duplicate order id",
    OFF_GRID: "The price does not conform to the minimum price variation for this contract.",
    NOT_TRADABLE: "The contract is not available for trading.",
    FRACTIONAL_REFUSED: "Fractional-sized order cannot be placed via API. Please use desktop "
    "version to place this order.",
    NO_SECURITY: "No security definition has been found for the request",
    ORDER_REJECTED: "Order rejected - reason:{}",
    ORDER_CANCELLED: "Order Canceled - reason:{}",
    READ_ONLY: "Error validating request.-'bN' : cause - The API interface is currently in "
    "Read-Only mode.",
    CLIENT_ID_IN_USE: "Unable to connect as the client id is already in use. "
    "Retry with a unique client id.",
    CANCEL_NOT_FOUND: "OrderId {} that needs to be cancelled is not found.",
    CANCEL_TOO_LATE: "OrderId {} that needs to be cancelled cannot be cancelled, state: {}.",
    CONNECTIVITY_LOST: "Connectivity between IB and Trader Workstation has been lost.",
    CONNECTIVITY_RESTORED_DATA_LOST: "Connectivity between IB and Trader Workstation has been "
    "restored - data lost.",
    CONNECTIVITY_RESTORED: "Connectivity between IB and Trader Workstation has been "
    "restored - data maintained.",
    NOT_CANCELLABLE: "Cancel attempted when order is not in a cancellable state.  "
    "Order permId ={}",
    OUTSIDE_RTH_IGNORED: "Order Event Warning:Attribute 'Outside Regular Trading Hours' is "
    "ignored based on the order type and destination. PlaceOrder is now being processed.",
    TIF_SET_TO_DAY: "Order TIF was set to DAY based on order preset.",
}
AMBIGUOUS_TEXT = "The contract description specified for {} is ambiguous."  # code 200
CONFLICT_TEXT = ("Parameters in request conflicts with contract parameters received by "
                 "contract id: requested {} {}, in contract {};")  # code 478
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)


# Codes an Error step may leave without a text: their text comes from IB's table.
DEFAULT_TEXT_CODES = frozenset({*ERROR_TEXT, ORDER_MESSAGE, *(c for c, _ in FARM_NOTICES)})
_NEW_YORK = "America/New_York"


def order_error_text(code: int, s: OrderSnapshot, now_ns: int) -> str:
    """IB's text for an error about order `s` (placeholders filled from the order)."""
    if code == NOT_CANCELLABLE:
        return ERROR_TEXT[code].format(s.perm_id)
    if code in (CANCEL_NOT_FOUND,):
        return ERROR_TEXT[code].format(s.order_id)
    if code == CANCEL_TOO_LATE:
        return ERROR_TEXT[code].format(s.order_id, s.status)
    if code in (ORDER_REJECTED, ORDER_CANCELLED):
        return ERROR_TEXT[code].format("")
    if code == ORDER_MESSAGE:
        return order_message_text(s, now_ns)
    farm = dict(FARM_NOTICES)
    if code in farm:
        return farm[code]
    return ERROR_TEXT.get(code, "")


def order_message_text(s: OrderSnapshot, now_ns: int) -> str:
    """A 399 as TWS words it for an order placed outside the exchange's hours (IB puts
    line breaks in it): the order waits for the next 09:30 New York open."""
    tz = ZoneInfo(_NEW_YORK)
    now = datetime.fromtimestamp(now_ns / NS, tz)
    day = now.date() if (now.hour, now.minute) < (9, 30) else now.date() + timedelta(days=1)
    while day.weekday() >= 5:  # Saturday, Sunday
        day += timedelta(days=1)
    opens = datetime(day.year, day.month, day.day, 9, 30, tzinfo=tz)
    o = s.order
    return (f"Order Message:\n{o.action} {num(o.qty)} {o.contract.symbol} "
            f"{o.contract.primary_exchange or o.contract.exchange}\n"
            f"Warning: your order will not be placed at the exchange until "
            f"{opens.strftime('%Y-%m-%d %H:%M:%S')} US/Eastern")


def ib_error(req_id: int, code: int, *args: object) -> list[str]:
    """An error with IB's text for `code`, its placeholders filled from `args`."""
    return error(req_id, code, ERROR_TEXT[code].format(*args))


def error(req_id: int, code: int, text: str) -> list[str]:
    # 6 fields from 166 on: the last is advancedOrderRejectJson.
    return ["4", "2", str(req_id), str(code), text, ""]


def end(msg_id: int, *args: str | int) -> list[str]:
    """The many `<id>,1,<args>` end markers (53, 54, 55, 62, 64, 72, 74, ...)."""
    return [str(msg_id), "1", *(str(a) for a in args)]


def current_time(now_ns: int) -> list[str]:
    return ["49", "1", str(now_ns // NS)]


def _contract11(c: Contract) -> list[str]:
    # conId, symbol, secType, lastTradeDate, strike, right, multiplier,
    # exchange, currency, localSymbol, tradingClass
    return [str(c.con_id), c.symbol, c.sec_type, c.last_trade, num(c.strike), c.right,
            c.multiplier, c.exchange, c.currency, c.local_symbol, c.trading_class]


def order_status(s: OrderSnapshot) -> list[str]:
    # 12 fields, no version field (gone from 131 on). clientId must be the
    # session's: ib_async finds the trade by (clientId, orderId).
    return ["3", str(s.order_id), s.status, num(s.filled), num(s.remaining), num(s.avg_px),
            str(s.perm_id), "0", num(s.last_fill_px), str(s.client_id), "", "0"]


def open_order(s: OrderSnapshot) -> list[str]:
    """openOrder (5) at 178: 127 fields; indices as in TWS_PROTOCOL, "Server-to-client messages"."""
    o = s.order
    f = ["5", str(s.order_id), *_contract11(o.contract)]                    # 0-12
    f += [o.action, num(o.qty), o.order_type, num(o.lmt_price), num(o.aux_price), o.tif,
          "", o.account, "O", "0", o.order_ref, str(s.client_id), str(s.perm_id),
          flag(o.outside_rth), "0", "0", "", ""]                             # 13-30
    f += ["", "", "", "", o.good_till_date, "", "", "", "0", "", "-1", "0"]  # 31-42 faGroup..
    f += ["", "", "", "", "", "0", "0", "0", "0", "", "0", "0", "0", ""]     # 43-56 starting..
    f += ["0", "0", "", "0", "", "", "0", "0", "", "", "", "", ""]           # 57-69 parentId..
    f += ["0", "0", "0", "", "", "", "", "0", "", "", "0", "0", ""]          # 70-82 legs..algo
    f += ["0", "0", s.status, *[""] * 9, "", "", "", "", "", "0", "0", "0"]  # 83-102 whatIf..
    f += ["", "", "", "", "", "", "", "0", "", "", "", "", "0", "0", "0", "0"]  # 103-118
    f += ["", "", "0", "", "", "", "", ""]                                    # 119-126
    if o.cash_qty is not None:
        f[_O_CASH_QTY] = num(o.cash_qty)  # as sent; totalQuantity stays the 0 it came with
    return f


# openOrder indices of the what-if answer (TWS_PROTOCOL, "Server-to-client messages").
_O_WHAT_IF, _O_MARGINS, _O_COMMISSION, _O_CASH_QTY = 84, 86, 95, 114


def what_if_order(s: OrderSnapshot, r: WhatIfReply) -> list[str]:
    """The one openOrder that answers a what-if placeOrder: whatIf=1, the nine margin
    strings (before / change / after of initial, maintenance, equity with loan), the
    commission estimate, its currency and IB's warning. No orderStatus goes with it."""
    f = open_order(s)
    f[_O_WHAT_IF] = "1"
    margins = (r.init_before, r.maint_before, r.equity_before, r.init_change, r.maint_change,
               0.0, r.init_after, r.maint_after, r.equity_before)
    f[_O_MARGINS:_O_MARGINS + 9] = [f"{m:.2f}" for m in margins]
    f[_O_COMMISSION:_O_COMMISSION + 5] = [num(r.commission), num(r.min_commission),
                                          num(r.max_commission), r.currency, r.warning]
    return f


def completed_order(s: OrderSnapshot, done_ns: int) -> list[str]:
    """completedOrder (101) at 178: 96 fields, no orderId/clientId; keyed by permId."""
    o = s.order
    f = ["101", *_contract11(o.contract)]                                      # 0-11
    f += [o.action, num(o.qty), o.order_type, num(o.lmt_price), num(o.aux_price), o.tif,
          "", o.account, "O", "0", o.order_ref, str(s.perm_id), flag(o.outside_rth), "0",
          "0", "", "", "", ""]                                                 # 12-30
    f += ["", o.good_till_date, "", "", "", "0", "", "-1"]                     # 31-38 model..
    f += ["", "", "", "", "", "0", "0", "0", "", "0", "0", "", "0", "", ""]    # 39-53
    f += ["0", "0", "", "", "", "0", "0", "0", "", "", "", "", "", "", "0", "0"]  # 54-69
    f += ["", "0", s.status, "0", "0", "0"]                                    # 70-75
    f += ["", "", "", "0", "0", "", num(s.filled), "0", "0", "", "0", "0", "0",
          ib_time(done_ns), s.status]                                          # 76-90
    f += ["", "", "", "", ""]                                                  # 91-95
    return f


def exec_details(req_id: int, e: Execution) -> list[str]:
    """execDetails (11) at 178: 32 fields; the last (pendingPriceRevision) is required."""
    return ["11", str(req_id), str(e.order_id), *_contract11(e.contract), e.exec_id,
            ib_time(e.time_ns), e.account, e.contract.primary_exchange or e.contract.exchange,
            e.side, num(e.shares), num(e.price), str(e.perm_id), str(e.client_id), "0",
            num(e.cum_qty), num(e.avg_price), e.order_ref, "", "", "", "1", "0"]


def commission_report(e: Execution) -> list[str]:
    # Exactly 8 fields; must follow its execDetails or ib_async drops it.
    return ["59", "1", e.exec_id, num(e.commission), e.commission_currency, UNSET_DOUBLE,
            UNSET_DOUBLE, ""]


def contract_details(req_id: int, i: Instrument, exchange: str,
                     hours: tuple[str, str]) -> list[str]:
    """contractDetails (10) at >= 164: 40 fields, no version field. `exchange` is the one
    asked for (else the instrument's); lastTradeDate carries its time when it has one."""
    trading, liquid = hours
    last = f"{i.last_trade} {i.last_trade_time}" if i.last_trade_time else i.last_trade
    return ["10", str(req_id), i.symbol, i.sec_type, last, num(i.strike), i.right,
            exchange or i.exchange, i.currency, i.local_symbol, i.market_name or i.trading_class,
            i.trading_class, str(i.con_id), i.min_tick, i.multiplier, i.order_types,
            ",".join(i.valid_exchanges), "1", str(i.under_con_id), i.long_name,
            i.primary_exchange, i.contract_month, i.industry, i.category, "",
            SCHEDULES[i.schedule].tz, trading, liquid, "", "", "0", i.agg_group,
            i.under_symbol, i.under_sec_type, i.market_rule_ids, i.last_trade, i.stock_type,
            i.min_size, i.size_increment, i.suggested_size_increment]


def position(account: str, c: Contract, pos: float, avg_cost: float) -> list[str]:
    # Exactly 16 fields.
    return ["61", "3", account, *_contract11(c), num(pos), num(avg_cost)]


def position_multi(req_id: int, account: str, c: Contract, pos: float,
                   avg_cost: float) -> list[str]:
    # Exactly 18 fields: reqId first, modelCode last.
    return ["71", "1", str(req_id), account, *_contract11(c), num(pos), num(avg_cost), ""]


def account_value(key: str, value: str, currency: str, account: str) -> list[str]:
    return ["6", "2", key, value, currency, account]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[str]:
    return ["63", "1", str(req_id), account, tag, value, currency]


def market_rule(rule_id: int) -> list[str] | None:
    """marketRule (93), no version field: `id, n, (lowEdge, increment) x n`; None for a
    rule the gateway does not know."""
    ladder = MARKET_RULES.get(rule_id)
    if ladder is None:
        return None
    return ["93", str(rule_id), str(len(ladder)), *(x for band in ladder for x in band)]


def user_info(req_id: int) -> list[str]:
    return ["107", str(req_id), ""]


# ---------------------------------------------------------------- market data

TICK_BID, TICK_ASK, TICK_LAST, TICK_CLOSE = 1, 2, 4, 9
NO_MARKET_DATA = 354  # "Requested market data is not subscribed."
NO_HISTORICAL_DATA = 162  # "Historical Market Data Service error message:..."
NO_MARKET_DATA_TEXT = "Requested market data is not subscribed."
NO_HISTORICAL_DATA_TEXT = ("Historical Market Data Service error message:"
                           "HMDS query returned no data")


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> list[str]:
    # Exactly 7 fields (ib_async's priceSizeTick unpacks them): version 6, attrMask last.
    # The size rides along (ib_async takes a bid or ask of size 0 for no bid / ask).
    return ["1", "6", str(req_id), str(tick_type), num(price), num(size), "0"]


def tick_snapshot_end(req_id: int) -> list[str]:
    return ["57", "1", str(req_id)]


def market_data_type(req_id: int, kind: int = 1) -> list[str]:
    """1 real-time, 2 frozen, 3 delayed, 4 delayed frozen."""
    return ["58", "1", str(req_id), str(kind)]


def tick_req_params(req_id: int, min_tick: float) -> list[str]:
    # No version field: reqId, minTick, bboExchange, snapshotPermissions.
    return ["81", str(req_id), num(min_tick), "9c0001", "3"]


def historical_data(req_id: int, start_ns: int, end_ns: int, format_date: int,
                    bars: Sequence[Bar]) -> list[str]:
    """historicalData (17) at 178: no version field; `reqId,start,end,count`, then per bar
    `date,open,high,low,close,volume,WAP,barCount`; its end comes in the same message."""
    f = ["17", str(req_id), ib_time(start_ns), ib_time(end_ns), str(len(bars))]
    for b in bars:
        date = str(b.start_wall_ns // NS) if format_date == 2 else ib_time(b.start_wall_ns)
        f += [date, num(b.open), num(b.high), num(b.low), num(b.close), num(b.volume),
              num(b.wap), "1" if b.volume > 0 else "0"]
    return f
