"""The one interface both brokers implement, and the values that cross it.

Times are integers: nanoseconds since the Unix epoch, UTC. The broker owns the
clock (`now_ns`), so the simulator can run on a virtual one and the executor
never reads the wall clock itself.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from runner.contract import NO_TERMS, ContractTerms
from runner.errors import UsageError
from runner.output import number_text

_NS = 1_000_000_000


class Ev(enum.StrEnum):
    """Order events, as they appear in the ledger's `event` column (each member's name is
    its value, so the sets below answer for the column's plain strings too)."""

    # The ends: FILL, CANCEL, REJ. Only the broker's order status says an order ended.
    TERMINAL: ClassVar[frozenset[Ev]]
    # UNSETTLED, UNKNOWN: the run stopped watching an order that may still work; not ends.
    OPEN_ENDED: ClassVar[frozenset[Ev]]

    INTENT = "INTENT"
    ACK = "ACK"
    REJ = "REJ"
    PARTIAL = "PARTIAL"
    FILL = "FILL"
    CANCEL = "CANCEL"
    PNL_SNAPSHOT = "PNL_SNAPSHOT"
    # An execution correction: replaces the execution named in `corrects` (DESIGN §5);
    # also a commission that came after the order's last row.
    CORRECTION = "CORRECTION"
    # Not an end: the runner gave up watching an order that may still work at the broker
    # (a cancel refused or never confirmed). New orders in this ledger root are refused
    # until `runner recover` settles it.
    UNSETTLED = "UNSETTLED"
    # Not an end: an acknowledged order the gateway does not show (another gateway, a
    # restart). Left for `runner recover`.
    UNKNOWN = "UNKNOWN"


Ev.TERMINAL = frozenset({Ev.FILL, Ev.CANCEL, Ev.REJ})
Ev.OPEN_ENDED = frozenset({Ev.UNSETTLED, Ev.UNKNOWN})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Everything a broker needs to place one order; resolved by the plan."""

    tag: str  # IB's orderRef; our own key for the order
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    side: str  # BUY | SELL
    qty: float
    order_type: str  # IB's orderType: LMT | MKT | STP | STP LMT | TRAIL | ... (runner.ordertypes)
    limit: float | None  # IB's lmtPrice: the limit, or a peg's cap
    tif: str  # DAY | IOC | GTC | GTD | OPG | FOK (GTD: the TTL backstop or the spec's good_till)
    # The TTL backstop: with tif == "GTD" the engine sets good_till_ns = INTENT + this
    # (rounded up to IB's whole second) when it stamps the INTENT, from the broker's clock.
    backstop_sec: float | None = None
    good_till_ns: int | None = None  # GTD expiry: set by the engine at the INTENT, never planned
    outside_rth: bool = False
    account: str = ""
    stop: float | None = None  # STP / STP LMT: the trigger; TRAIL*: the first stop (optional)
    trail_amount: float | None = None  # TRAIL*: the trail in price units (IB's auxPrice)
    trail_percent: float | None = None  # TRAIL*: the trail in percent (IB's trailingPercent)
    offset: float | None = None  # REL / PEG MID: IB's auxPrice; TRAIL LIMIT: lmtPriceOffset
    algo: str | None = None  # IB's algoStrategy (Adaptive, Twap, Vwap) on this parent order
    algo_params: tuple[tuple[str, str], ...] = ()  # IB's algoParams, tag and value as sent
    # An explicit GTD (the spec's good_till), planned: the order expires then at the latest.
    # The backstop, when there is one, still applies: the earlier of the two is sent.
    expiry_ns: int | None = None
    contract: ContractTerms = NO_TERMS  # the rest of IB's Contract: con_id, expiry, strike...
    cash_qty: float | None = None  # IB's cashQty: the size in money; qty is then 0

    @property
    def multiplier(self) -> float:
        """Units of the underlying per contract: notional is qty x price x this."""
        return self.contract.multiplier or 1.0

    def good_till_at(self, intent_ns: int) -> int | None:
        """The goodTillDate of an INTENT at `intent_ns` (the broker's clock): with a
        backstop, INTENT + backstop_sec rounded up to IB's whole second, or the spec's
        good_till when that is earlier; with only a good_till, that; else None."""
        good_till = self.expiry_ns
        if self.backstop_sec is not None:
            backstop = -(-(intent_ns + int(self.backstop_sec * _NS)) // _NS) * _NS
            good_till = backstop if good_till is None else min(good_till, backstop)
        return good_till

    def at_intent(self, intent_ns: int, wait_sec: float) -> OrderRequest:
        """The order as it leaves at the INTENT (`intent_ns`): its goodTillDate stamped
        (`good_till_at`). A good_till that is not later than INTENT + `wait_sec` (the TTL,
        or a sanity-cancel's ACK wait) would end the order before runner does:
        UsageError, nothing is sent."""
        good_till = self.expiry_ns
        if good_till is not None and good_till <= intent_ns + int(wait_sec * _NS):
            from runner.plan import iso

            raise UsageError(
                f"order.good_till {iso(good_till)} is not later than the INTENT at "
                f"{iso(intent_ns)} + {number_text(wait_sec)} s; nothing was sent",
                "give a later good_till, or a shorter ttl_sec")
        return dataclasses.replace(self, good_till_ns=self.good_till_at(intent_ns))


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """One thing the broker told us about an order.

    `fill_qty` is cumulative; `last_qty`/`last_px` describe the execution that
    caused a PARTIAL or FILL; `avg_px` is the average over all fills so far.
    """

    kind: Ev
    ts_ns: int
    tag: str
    order_id: int | None = None
    perm_id: int | None = None
    fill_qty: float = 0.0
    last_qty: float | None = None
    last_px: float | None = None
    avg_px: float | None = None
    commission: float | None = None  # cumulative commission, when known
    message: str = ""
    exec_id: str = ""  # the broker's execution id on PARTIAL/FILL/CORRECTION, when it has one
    corrects: str = ""  # CORRECTION: the execution id it replaces
    client_id: int | None = None  # the API client id that placed the order


class NoteKind(enum.StrEnum):
    """Things a broker says that are not ledger events."""

    INFO = "info"  # information: never ends an order (e.g. IB 10349, 399, 2109)
    CANCEL_REFUSED = "cancel-refused"  # IB 161 / 10147 / 10148 (not Filled): still working
    OVERFILL = "overfill"  # executions add up to more than the order's quantity


@dataclass(frozen=True, slots=True)
class Note:
    """A broker message the engine acts on but does not journal as an event."""

    kind: NoteKind
    ts_ns: int
    text: str
    code: int = 0


class Lookup(enum.StrEnum):
    """What the broker says of an order when asked directly."""

    WORKING = "working"
    DONE = "done"  # its end has been (or is being) reported as events
    UNKNOWN = "unknown"  # the broker does not show it


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the broker reports on connect."""

    accounts: tuple[str, ...]
    server_version: int | None = None
    server_time_ns: int | None = None
    client_id: int | None = None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """IB's answer to a what-if order. None: IB did not say."""

    init_margin_before: float | None
    init_margin_change: float | None
    init_margin_after: float | None
    maint_margin_before: float | None
    maint_margin_change: float | None
    maint_margin_after: float | None
    equity_with_loan_before: float | None
    equity_with_loan_change: float | None
    equity_with_loan_after: float | None
    commission: float | None
    min_commission: float | None
    max_commission: float | None
    currency: str = ""
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Broker(Protocol):
    """A place orders go. `sim` and `ib` implement it."""

    name: str  # "sim" | "ib"

    def now_ns(self) -> int:
        """The broker's clock."""
        ...

    async def connect(self) -> SessionInfo: ...

    async def qualify(self, order: OrderRequest) -> ContractTerms | None:
        """Check that the contract exists (GatewayError if not, NotQualified if it is not
        exactly one); the contract's terms as the broker knows them (its conId, localSymbol,
        expiry...: what the ledger records), or None to record the spec's."""
        ...

    def next_order_id(self) -> int | None:
        """The broker's id for the order about to be placed (recorded on the INTENT)."""
        ...

    async def place(self, order: OrderRequest) -> None:
        """Send the order. Its fate arrives through `next_event`."""
        ...

    async def cancel(self, tag: str) -> None: ...

    async def lookup(self, tag: str) -> Lookup:
        """Ask the broker about the order now; an end it reports comes as events."""
        ...

    async def next_event(self, deadline_ns: int) -> BrokerEvent | Note | None:
        """The next event, or None once the broker clock reaches `deadline_ns` (an
        event already waiting is returned even when the deadline has passed)."""
        ...

    def pending(self) -> bool:
        """After the order's end: something (a commission, a row) is still to come."""
        ...

    def reconnecting_now(self) -> bool:
        """The connection is lost and being retried."""
        ...

    def missing_commissions(self) -> list[str]:
        """After the end: the executions whose commission never came (for recover)."""
        ...

    async def close(self) -> None: ...
