"""IB's message codes, as runner reads them: each with its class and a one-line meaning.

ib_async 2.1.0 takes any code outside its short warning list, arriving with an order id
as reqId, for a cancellation (it marks the trade Cancelled) — 10349 included, after
which the order works on and fills. runner never ends an order on a code: the end
comes from the broker's order status. A code only tells the tracker what to expect
(a rejection to confirm, a refused cancel to retry) or what to print.

Source: https://interactivebrokers.github.io/tws-api/message_codes.html and
../shared/TWS_PROTOCOL.md §3 and §7.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.StrEnum):
    INFO = "information"  # never ends an order
    REJECTED = "order rejected"  # the order is (probably) dead: confirm with its status
    CANCELLED = "order cancelled"  # 202: the status says Cancelled too, in either order
    CANCEL_REFUSED = "cancel refused"  # the order may still be working
    CONNECTIVITY = "connectivity"
    PACING = "pacing"
    CLIENT = "client"  # the API client or its request is at fault (read-only, client id)


@dataclass(frozen=True, slots=True)
class Code:
    code: int
    kind: Kind
    meaning: str


_TABLE = (
    Code(100, Kind.PACING, "max rate of messages per second exceeded"),
    Code(103, Kind.REJECTED, "duplicate order id"),
    Code(104, Kind.REJECTED, "cannot modify a filled order"),
    Code(105, Kind.INFO, "the modified order does not match the original"),
    Code(110, Kind.REJECTED, "price does not conform to the minimum price variation"),
    Code(135, Kind.REJECTED, "cannot find the order with that id"),
    Code(161, Kind.CANCEL_REFUSED, "cancel attempted when the order is not cancellable"),
    Code(162, Kind.INFO, "historical market data service error"),
    Code(165, Kind.INFO, "historical market data service query message"),
    Code(200, Kind.REJECTED, "no security definition found"),
    Code(201, Kind.REJECTED, "order rejected"),
    Code(202, Kind.CANCELLED, "order cancelled"),
    Code(203, Kind.REJECTED, "the security is not available or allowed for this account"),
    Code(321, Kind.CLIENT, "request not valid (e.g. the API is read-only)"),
    Code(326, Kind.CLIENT, "client id already in use"),
    Code(329, Kind.INFO, "order modify failed; the order is unchanged"),
    Code(354, Kind.INFO, "no market data subscription"),
    Code(399, Kind.INFO, "order message: a warning; the order works on"),
    Code(404, Kind.INFO, "shares not available for short sale; the order is held"),
    Code(420, Kind.PACING, "invalid real-time query / pacing violation"),
    Code(434, Kind.REJECTED, "the order size cannot be zero"),
    Code(1100, Kind.CONNECTIVITY, "connectivity between IB and the gateway lost"),
    Code(1101, Kind.CONNECTIVITY, "connectivity restored, data lost"),
    Code(1102, Kind.CONNECTIVITY, "connectivity restored, data maintained"),
    Code(1300, Kind.CONNECTIVITY, "the socket port was reset"),
    Code(2103, Kind.CONNECTIVITY, "a market data farm connection is broken"),
    Code(2105, Kind.CONNECTIVITY, "a historical data farm connection is broken"),
    Code(2109, Kind.INFO, "order event warning: outside-RTH attribute ignored"),
    Code(2110, Kind.CONNECTIVITY, "connectivity between the gateway and the server is broken"),
    Code(10147, Kind.CANCEL_REFUSED, "the order to cancel is not found (e.g. another client's)"),
    Code(10148, Kind.CANCEL_REFUSED, "the order cannot be cancelled in its state"),
    Code(10149, Kind.CANCEL_REFUSED, "invalid order id to cancel"),
    Code(10349, Kind.INFO, "order TIF set to DAY by an order preset; the order works on"),
)
CODES: dict[int, Code] = {c.code: c for c in _TABLE}

CLIENT_ID_IN_USE = 326
READ_ONLY = 321
NO_SECURITY = 200
CANCEL_TOO_LATE = 10148
DUPLICATE_ORDER_ID = 103
_STATE = re.compile(r"state:\s*([A-Za-z]+)")


def classify(code: int) -> Code:
    """The code's entry; codes we do not table are information (2100-2199: notices) unless
    they are IB's errors (below 2000 or 10000+), which we treat as rejections to confirm."""
    known = CODES.get(code)
    if known is not None:
        return known
    if 2100 <= code < 2200:
        return Code(code, Kind.INFO, "notice")
    return Code(code, Kind.REJECTED, "error (not in runner's table)")


def refused_state(text: str) -> str:
    """The state a 10148 names ("... cannot be cancelled, state: Filled."), or ""."""
    found = _STATE.search(text)
    return found.group(1) if found else ""
