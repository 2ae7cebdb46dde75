"""What the fake gateway does with an order: a script of small steps.

A test registers a script for an orderRef (or a default one) with
`gateway.script(ref, steps, on_cancel=..., duplicate=...)`. Steps run in order,
each after its own `delay` (seconds, wall clock), until the order is done. A
step may also be written as a tuple naming it: `("ack",)`, `("fill", 5, 101.5)`,
`("reject", "why")`, `("inactive",)`, `("correct", 5, 101.0)`, `("outage", 1.0)`.

Steps that only *schedule* something (a late commission, an outage, a restart)
never block the script: the steps after them run meanwhile. docs/gateway-scripts.md
describes every step: what IB does, what the fake sends, in which order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal, get_args

_MODES = ("after", "before", "never", "absent")
ACK_STATUSES = ("Submitted", "PreSubmitted", "PendingSubmit", "ApiPending")
CommissionMode = Literal["after", "before", "never", "absent"]


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _finite(x: float, name: str, positive: bool = False) -> None:
    _check(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x),
           f"{name} must be a finite number, got {x!r}")
    _check(x > 0 if positive else x >= 0,
           f"{name} must be {'> 0' if positive else '>= 0'}, got {x!r}")


@dataclass(frozen=True, slots=True)
class Ack:
    """openOrder + orderStatus with `status` (Submitted or PreSubmitted)."""

    status: str = "Submitted"
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check(self.status in ACK_STATUSES,
               f"ack status must be one of {', '.join(ACK_STATUSES)}, got {self.status!r}")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: execDetails(-1), openOrder, orderStatus, commissionReport.

    The quantity is capped at what remains (unless `over`); the orderStatus says
    Filled when nothing remains, else Submitted. Repeat for partial fills. An order sized
    by cashQty: capped at what its cash left buys at `px` (1e-8 steps), Filled when the
    rest buys less than a step.

    - `commission_mode`: "after" (the commissionReport follows the order's new
      state, `commission_delay` seconds later if > 0, without blocking the script),
      "before" (sent just before its execDetails: ib_async drops it), "never" (not
      sent live; reqExecutions still answers it), "absent" (sent nowhere).
    - `status_first`: openOrder + orderStatus go out before the execDetails.
    - `over`: not capped: the order may end Filled with filled > totalQuantity.
    """

    qty: float
    px: float
    commission: float = 1.0
    delay: float = 0.0
    commission_delay: float = 0.0
    commission_mode: CommissionMode = "after"
    status_first: bool = False
    over: bool = False

    def __post_init__(self) -> None:
        _finite(self.qty, "qty", positive=True)
        _finite(self.px, "px")
        _finite(self.commission, "commission")
        _finite(self.delay, "delay")
        _finite(self.commission_delay, "commission_delay")
        _check(self.commission_mode in _MODES,
               f"commission_mode must be one of {', '.join(_MODES)}, "
               f"got {self.commission_mode!r}")


@dataclass(frozen=True, slots=True)
class Reject:
    """Error 201 `Order rejected - reason:<text>`, then orderStatus Inactive.
    Works at any point of a live order (before or after the ack, after partial
    fills); the filled quantity is kept."""

    text: str
    delay: float = 0.0

    def __post_init__(self) -> None:
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Error:
    """An error with reqId = orderId (e.g. 10349, 399, 2109, 103, 321). The text
    defaults to IB's own for the code (wire.ERROR_TEXT). The order's state is kept
    (information never ends an order) unless `final`, which ends it server side
    (Inactive, no orderStatus sent). 10349 also makes the order DAY, like IB: its
    GTD expiry is disarmed and the next openOrder shows tif DAY."""

    code: int
    text: str | None = None
    delay: float = 0.0
    final: bool = False

    def __post_init__(self) -> None:
        _check(isinstance(self.code, int) and not isinstance(self.code, bool),
               f"code must be an integer, got {self.code!r}")
        _check(self.text is None or isinstance(self.text, str),
               f"text must be a string, got {self.text!r}")
        from runner.gateway.wire import DEFAULT_TEXT_CODES  # wire imports this module

        _check(self.text is not None or self.code in DEFAULT_TEXT_CODES,
               f"no IB text known for code {self.code}; give one (known: "
               f"{', '.join(map(str, sorted(DEFAULT_TEXT_CODES)))})")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Inactive:
    """The order dies without a cancel: with a `code`, error(code, text) with
    reqId = orderId first, then orderStatus Inactive; without, the orderStatus only.
    The filled quantity is kept."""

    code: int | None = None
    text: str = ""
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check(self.code is None or (isinstance(self.code, int)
                                     and not isinstance(self.code, bool)),
               f"code must be an integer or None, got {self.code!r}")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Correct:
    """An execution correction: execution number `index` of the order (default the
    last) is replaced by one whose execId has the digits after the last period
    incremented (….01 → ….02), with new shares / price / commission (None: as
    before). Sends execDetails(-1) of the correction, then openOrder + orderStatus
    with the corrected totals, then its commissionReport."""

    qty: float | None = None
    px: float | None = None
    delay: float = 0.0
    commission: float | None = None
    index: int = -1

    def __post_init__(self) -> None:
        if self.qty is not None:
            _finite(self.qty, "qty", positive=True)
        if self.px is not None:
            _finite(self.px, "px")
        if self.commission is not None:
            _finite(self.commission, "commission")
        _check(isinstance(self.index, int) and not isinstance(self.index, bool),
               f"index must be an integer, got {self.index!r}")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Outage:
    """Connectivity inside the gateway is lost for the order's client: error 1100,
    then every message to that client is held for `seconds` (the socket stays up),
    then `restored` (1102 data maintained, or 1101 data lost) and the held messages
    in order (with `lose_held`, none of them: what IB has, only a resync shows).
    Does not block: later steps run during the outage (held)."""

    seconds: float
    restored: int = 1102
    delay: float = 0.0
    lose_held: bool = False  # drop the held order messages at the restore (the book keeps them)

    def __post_init__(self) -> None:
        _finite(self.seconds, "seconds")
        _check(self.restored in (1101, 1102), f"restored must be 1101 or 1102, got "
               f"{self.restored!r}")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Restart:
    """A gateway restart (see FakeGateway.restart): every socket closes, new
    connections are refused for `down` seconds; orders keep working at IB."""

    down: float = 0.5
    lose_orders: bool = False
    rollback_ids: bool = True
    delay: float = 0.0

    def __post_init__(self) -> None:
        _finite(self.down, "down")
        _finite(self.delay, "delay")


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float

    def __post_init__(self) -> None:
        _finite(self.seconds, "seconds")


@dataclass(frozen=True, slots=True)
class DropBeforeAck:
    """Accept the order server side (Submitted) without telling the client, and close
    the client's socket. The order stays alive; later steps still run."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class DropAfterAck:
    """Ack (openOrder + orderStatus Submitted), then close the client's socket."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class FillAt:
    """A fill at an absolute wall time (ns): how bars mode schedules its fills."""

    wall_ns: int
    qty: float
    px: float
    commission: float | None = None  # None: IB fixed-rate pricing on the cumulative qty


@dataclass(frozen=True, slots=True)
class CancelAt:
    """The gateway cancels the rest of the order at a wall time (ns): an IOC's remainder,
    or the simulator's own rule (FOK, OPG, MOC, LOC), whose message `reason` is error
    202's text."""

    wall_ns: int
    reason: str = ""


Step = (Ack | Fill | Reject | Error | Inactive | Correct | Outage | Restart | Delay
        | DropBeforeAck | DropAfterAck | FillAt | CancelAt)
# Steps that still run once the order is done (filled, cancelled, rejected): an
# execution correction, information, the gateway's own troubles, waiting.
AFTER_DONE_STEPS = (Correct, Error, Outage, Restart, Delay)
OnCancel = Literal["ok", "ignore", "reject_filled", "refuse"]
CANCEL_MODES: tuple[str, ...] = get_args(OnCancel)
REFUSE_CODES = (161, 10147, 10148)

STEPS_BY_NAME: dict[str, type] = {
    "ack": Ack, "fill": Fill, "reject": Reject, "error": Error, "delay": Delay,
    "drop_before_ack": DropBeforeAck, "drop_after_ack": DropAfterAck,
    "inactive": Inactive, "correct": Correct, "outage": Outage, "restart": Restart,
}
_BY_NAME = STEPS_BY_NAME  # the old name


@dataclass(frozen=True, slots=True)
class CancelPolicy:
    """What a cancelOrder of an order gets.

    - on_cancel "ok": orderStatus Cancelled + 202; "ignore": no answer;
      "reject_filled": fills in flight land, then 10148 state Filled;
      "refuse": error `refuse_code` (161, 10147 or 10148 with `refuse_state`) and
      the order keeps working. `refusals`: None refuses every cancel, N only the
      first N (later ones are handled as "ok").
    """

    on_cancel: OnCancel = "ok"
    refuse_code: int = 161
    refuse_state: str = "PendingCancel"
    refusals: int | None = None

    def __post_init__(self) -> None:
        _check(self.on_cancel in CANCEL_MODES,
               f"on_cancel must be one of {CANCEL_MODES}, got {self.on_cancel!r}")
        _check(self.refuse_code in REFUSE_CODES,
               f"refuse_code must be one of {REFUSE_CODES}, got {self.refuse_code!r}")
        _check(isinstance(self.refuse_state, str) and bool(self.refuse_state),
               f"refuse_state must be a non-empty string, got {self.refuse_state!r}")
        _check(self.refusals is None or (isinstance(self.refusals, int)
                                         and not isinstance(self.refusals, bool)
                                         and self.refusals >= 0),
               f"refusals must be None or an integer >= 0, got {self.refusals!r}")


@dataclass(frozen=True, slots=True)
class Script:
    steps: tuple[Step, ...]
    on_cancel: OnCancel = "ok"
    refuse_code: int = 161
    refuse_state: str = "PendingCancel"
    refusals: int | None = None
    duplicate: int = 1

    def __post_init__(self) -> None:
        self.cancel_policy()  # validates the cancel options
        _check(isinstance(self.duplicate, int) and not isinstance(self.duplicate, bool)
               and self.duplicate >= 1,
               f"duplicate must be an integer >= 1, got {self.duplicate!r}")

    def cancel_policy(self) -> CancelPolicy:
        return CancelPolicy(self.on_cancel, self.refuse_code, self.refuse_state,
                            self.refusals)

    def with_cancel(self, policy: CancelPolicy) -> Script:
        return replace(self, on_cancel=policy.on_cancel, refuse_code=policy.refuse_code,
                       refuse_state=policy.refuse_state, refusals=policy.refusals)


DEFAULT_SCRIPT = Script((Ack(),))  # no script, no bars: acknowledge and sit there


def as_step(step: Step | tuple[object, ...]) -> Step:
    """A step, or a tuple `(name, *args)` naming one (`("fill", 5, 101.5)`)."""
    if not isinstance(step, tuple):
        return step
    name, *args = step
    cls = STEPS_BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown step {name!r}; known: {', '.join(STEPS_BY_NAME)}")
    try:
        made: Step = cls(*args)
    except TypeError as e:
        raise ValueError(f"step {name!r}: {e}") from None
    return made


def make_script(steps: Iterable[Step | tuple[object, ...]], on_cancel: str = "ok",
                refuse_code: int = 161, refuse_state: str = "PendingCancel",
                refusals: int | None = None, duplicate: int = 1) -> Script:
    return Script(tuple(as_step(s) for s in steps), on_cancel,  # type: ignore[arg-type]
                  refuse_code, refuse_state, refusals, duplicate)


def step_delay_s(step: Step, now_ns: int) -> float:
    """How long to wait before running `step`."""
    if isinstance(step, Delay):
        return step.seconds
    if isinstance(step, FillAt | CancelAt):
        return max(step.wall_ns - now_ns, 0) / 1e9
    return step.delay
