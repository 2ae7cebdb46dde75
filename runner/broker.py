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
    order_type: str  # LMT | MKT
    limit: float | None
    tif: str  # DAY | IOC | GTC | GTD (GTD = the TTL backstop)
    # The TTL backstop: with tif == "GTD" the engine sets good_till_ns = INTENT + this
    # (rounded up to IB's whole second) when it stamps the INTENT, from the broker's clock.
    backstop_sec: float | None = None
    good_till_ns: int | None = None  # GTD expiry: set by the engine at the INTENT, never planned
    outside_rth: bool = False
    account: str = ""


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

    async def qualify(self, order: OrderRequest) -> None:
        """Check that the contract exists; raise GatewayError if not."""
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
