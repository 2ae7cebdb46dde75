"""The run path's side of the gates: gather the facts (I/O), ask `gates.check`, refuse.

`Guard` runs the gates twice: before connecting, with what the run knows alone
(kill switch, ledger day totals, reference price, in a dry run the exchange's calendar),
and as the engine's `pre_place` hook, after connect and qualify, with the broker's
facts (every account of the session, the contract's liquid hours). Either refusal
leaves nothing sent and no ledger row. `run_lock` keeps two runs of one tag (or one
spec) from overlapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runner.broker import Broker, BrokerEvent, Lookup, Note, OrderRequest, SessionInfo
from runner.cashqty import notional, row_notional
from runner.contract import ContractTerms
from runner.errors import UsageError
from runner.gates import Context, Refused, account_reasons, check
from runner.hours import is_open
from runner.ordertypes import bound
from runner.plan import Plan
from runner.policy import Policy, kill_switch_on, kill_switches_on

NS = 1_000_000_000
REFERENCE_WAIT_SEC = 3.0  # the longest the broker's price may take (snapshot, else bars)
# One folder for every run on the machine, whatever TMPDIR a run was given (a per-run
# TMPDIR must not give it locks of its own): never inside out_dir, so a refused run
# leaves nothing there.
LOCK_FOLDER = Path("/tmp/runner-locks")


def reference(bars: Any, at_ns: int) -> tuple[float, int] | None:
    """The market price known at `at_ns` and when it became known: the close of the last
    bar that ended by then, else (nothing ended yet) the first bar's open, known now.
    None unless the bars cover `at_ns` (a file that ended more than a bar ago, or starts
    later, has no price for it: DESIGN §7 asks for bars covering the INTENT)."""
    if bars is None or not len(bars):
        return None
    if not bars.first_ns <= at_ns < bars.last_end_ns + bars.interval_ns:
        return None
    n = int(np.searchsorted(bars.ts, at_ns - bars.interval_ns, side="right"))
    if n:
        return float(bars.close[n - 1]), int(bars.ts[n - 1]) + bars.interval_ns
    return float(bars.open[0]), at_ns


def calendar_open(order: OrderRequest | None, bars: Any, at_ns: int) -> bool | None:
    """Dry run: whether `at_ns` is inside the regular session of the order's instrument, by
    the exchange's calendar (runner.hours); None when that calendar is not known, and
    without bars (nothing can fill, and the clock may be the wall clock: a CI dry run
    must not pass by day and be refused by night)."""
    if order is None or bars is None:
        return None
    return is_open(order.sec_type, order.exchange, order.currency, at_ns)


def in_sessions(sessions: tuple[tuple[int, int], ...] | None, at_ns: int) -> bool | None:
    if sessions is None:
        return None
    return any(start <= at_ns < end for start, end in sessions)


def day_totals(out_dir: str, day: str) -> tuple[int, float]:
    """Orders placed at IB on `day` and their notional, from the ledger's INTENT rows
    (journals of running or crashed runs included). Every INTENT counts, whatever became
    of it; its notional is qty x multiplier x limit, or x arrival price for a market order.
    Dry runs (broker sim) do not count: caps are about real orders."""
    from runner.ledger import read_day_settled, table_to_rows

    day_dir = Path(out_dir) / day
    if not day_dir.is_dir():
        return 0, 0.0
    rows = table_to_rows(read_day_settled(day_dir, ["event", "broker", "qty", "multiplier",
                                                    "limit", "arrival_px", "cash_qty"]))
    placed = [r for r in rows if r["event"] == "INTENT" and r["broker"] == "ib"]
    notional = sum(row_notional(r) for r in placed)  # a cash order's: its cash_qty
    return len(placed), float(notional)


def check_writable(plan: Plan) -> None:
    """The day's ledger can be written (and its lock opened) by this user: else exit 2
    before any gate reads the day, anything connects or any file is made."""
    from runner.ledger import check_writable as writable

    writable(Path(plan.out_dir), plan.day)


def check_own_tag(where: str, plan: Plan, earlier: Sequence[Plan]) -> None:
    """No two documents of a file place one tag in one ledger day (`earlier`: the file's
    documents before this one that write the same day of the same ledger)."""
    assert plan.order is not None
    if plan.order.tag in {p.order.tag for p in earlier if p.order is not None}:
        raise UsageError(f"{where}: tag {plan.order.tag} is also an earlier document's tag; "
                         "nothing was sent", "give each document its own tag"
                         ).about(tag=plan.order.tag)


def earlier_notional(where: str, earlier: Sequence[tuple[Plan, Any]], policy: Policy) -> float:
    """The notional of the file's earlier orders (their plans and bars), for the day caps:
    a file is all or nothing, so a cap they would break refuses it before anything is
    sent. A market order is priced by its bars at the plan's time; with none, under a
    notional cap, the file cannot be judged whole: refused (exit 2)."""
    total = 0.0
    for plan, bars in earlier:
        o = plan.order
        assert o is not None
        ref = (reference(bars, plan.at_ns) or (None,))[0]
        price = bound(o, ref)[0] or ref  # as the gates price it: its limit, stop, cap
        if price is None and policy.max_day_notional is not None and o.cash_qty is None:
            raise UsageError(
                f"{where}: the earlier document's order {o.tag} is a market order with "
                "no price before connecting, so max_day_notional cannot be checked for the "
                "whole file; nothing was sent",
                "give that order a limit or a bars_path, or put the orders in separate files")
        total += notional(o, price or 0.0) or 0.0
    return total


def check_duplicate(plan: Plan, policy: Policy, allow_duplicate: bool) -> None:
    """A tag already in today's ledger is not placed again — in this run's ledger, and in
    the ledger of every policy file that governs the run (so --out-dir cannot escape)."""
    from runner.ledger import tags_on_day

    assert plan.order is not None
    if allow_duplicate:
        return
    roots = [plan.out_dir] + [p.ledger_root for p in policy.files if p.ledger_root]
    for root in dict.fromkeys(os.path.realpath(r) for r in roots):
        if plan.order.tag in tags_on_day(Path(root), plan.day):
            where = Path(root) / plan.day / "ledger.parquet"
            shown = plan.ledger_path if root == os.path.realpath(plan.out_dir) else where
            raise UsageError(f"tag {plan.order.tag} is already in {shown}; not placing it "
                             "again", "use another tag, or pass --allow-duplicate"
                             ).about(tag=plan.order.tag)


class Guard:
    """The gates of one run: `before_connect()`, then the engine's `pre_place` hook."""

    def __init__(self, plan: Plan, policy: Policy, bars: Any, dry_run: bool,
                 earlier: tuple[int, float] = (0, 0.0),
                 later: Sequence[tuple[Plan, Policy]] = ()) -> None:
        self.plan = plan
        self.policy = policy
        self.bars = bars
        self.dry_run = dry_run
        self.broker: _WithHours | None = None
        # orders (and notional) of earlier documents of the same file, not placed yet:
        # a file is all or nothing, so its documents are capped together
        self.earlier = earlier
        # the file's later documents: what only a session can say of them (their account)
        # is judged at this one's session, before its INTENT
        self.later = later

    def context(self, now_ns: int, accounts: tuple[str, ...] = (),
                market_open: bool | None = None,
                broker_ref: tuple[float, int] | None = None) -> Context:
        """The facts for the gates. The reference price: the bars covering `now_ns`, else
        the broker's; only the broker's where the policy says broker_reference."""
        bars_ref = None if self._broker_only() else reference(self.bars, now_ns)
        ref, source = (bars_ref, "bars") if bars_ref is not None else (broker_ref, "broker")
        cross = broker_ref[0] if broker_ref is not None and source == "bars" else None
        orders: int | None = None
        notional: float | None = None
        if self.policy.needs_day_totals:
            orders, notional = day_totals(self.plan.out_dir, self.plan.day)
            orders, notional = orders + self.earlier[0], notional + self.earlier[1]
        if self.dry_run:
            market_open = calendar_open(self.plan.order, self.bars, now_ns)
        return Context(
            now_ns=now_ns, port=None if self.dry_run else self.plan.connection.port,
            accounts=accounts, priced=True, reference_px=ref[0] if ref else None,
            reference_ns=ref[1] if ref else None, reference_source=source if ref else None,
            broker_px=cross,
            day_orders=orders, day_notional=notional,
            kill_switch=kill_switch_on(self.policy), market_open=market_open,
        )

    def broker_price(self) -> float | None:
        """The broker's reference price asked for the gates (the INTENT's arrival when the
        bars have none)."""
        ref = self.broker.reference if self.broker is not None else None
        return ref[0] if ref is not None else None

    def _broker_only(self) -> bool:
        return self.policy.broker_reference and not self.dry_run

    def wants_broker_reference(self, now_ns: int) -> bool:
        """Ask the broker for a price on every run that reaches one: the reference when the
        bars do not cover now (or the policy says broker_reference), else a cross-check
        of the bars'."""
        return not self.dry_run

    def watch(self) -> str | None:
        """Polled while the order works: a reason to cancel it now (the kill switch)."""
        on = kill_switches_on(self.policy)
        return f"kill switch {' and '.join(on)} turned on while the order worked" if on else None

    def before_connect(self) -> None:
        self._check_root()
        ctx = self.context(self.plan.at_ns)
        if not self.dry_run and (self._broker_only()
                                 or reference(self.bars, self.plan.at_ns) is None):
            ctx = replace(ctx, priced=False)  # the broker's price comes after connecting
        self._enforce(ctx)

    def _check_root(self) -> None:
        """Under day caps the run writes where the caps count: --out-dir cannot escape."""
        if self.dry_run:
            return
        mine = os.path.realpath(self.plan.out_dir)
        for root in self.policy.ledger_roots:
            if os.path.realpath(root) != mine:
                raise UsageError(
                    f"out_dir {self.plan.out_dir} is not {root}, the ledger whose orders the "
                    f"day caps of {self.policy.name} count; nothing was sent",
                    "drop --out-dir/out_dir, or set ledger_root in that policy")

    def pre_place(self, session: SessionInfo) -> Callable[[], None] | None:
        """After connect and qualify, right before the INTENT: the gates again, with the
        broker's facts. Under day caps, the count and the INTENT happen under one lock per
        ledger root: the engine calls the returned release once the INTENT is durable."""
        if self.broker is None:  # the simulator: its clock and the bars are the facts
            self.before_connect()
            return None
        release = self._caps_lock() if self.policy.needs_day_totals else None
        try:
            now = self.broker.now_ns()
            self._enforce(self.context(now, tuple(session.accounts),
                                       in_sessions(self.broker.sessions, now),
                                       self.broker.reference))
            for plan, policy in self.later:  # a file is all or nothing: before the first
                reasons = [r.text for r in account_reasons(plan, tuple(session.accounts))]
                if reasons:
                    raise Refused(plan.spec, policy, reasons).about(
                        tag=plan.order.tag if plan.order else None)
        except BaseException:
            if release is not None:
                release()
            raise
        return release

    def _caps_lock(self) -> Callable[[], None]:
        stack = contextlib.ExitStack()
        stack.enter_context(_flock(self.plan.out_dir, "caps", self.plan.day, wait_sec=30.0))
        return stack.close

    def _enforce(self, ctx: Context) -> None:
        reasons = check(self.plan, self.policy, ctx)
        if reasons:
            order = self.plan.order
            raise Refused(self.plan.spec, self.policy, reasons).about(
                tag=order.tag if order else None)

    def wrap(self, broker: Broker) -> Broker:
        """The IB broker learns the contract's liquid hours as it qualifies it."""
        if self.dry_run or broker.name != "ib":
            return broker
        self.broker = _WithHours(broker, self.wants_broker_reference)
        return self.broker


class _WithHours:
    """A broker that, right after qualifying the contract, asks for its liquid hours (and,
    when the gates need it, its reference price: a snapshot, else its last 1-second bar).
    Everything else goes straight to the broker it wraps."""

    def __init__(self, inner: Any, wants_reference: Callable[[int], bool]) -> None:
        self.inner = inner
        self.name = inner.name
        self.sessions: tuple[tuple[int, int], ...] | None = None
        self.reference: tuple[float, int] | None = None  # the broker's price, if asked
        self.wants_reference = wants_reference

    def now_ns(self) -> int:
        return int(self.inner.now_ns())

    async def connect(self) -> SessionInfo:
        return await self.inner.connect()  # type: ignore[no-any-return]

    async def qualify(self, order: OrderRequest) -> ContractTerms | None:
        terms: ContractTerms | None = await self.inner.qualify(order)
        self.sessions = await self.inner.liquid_sessions()
        if self.wants_reference(self.now_ns()):
            try:  # bounded: a gateway that never answers must not hold the order for long
                self.reference = await asyncio.wait_for(self.inner.reference_price(),
                                                        REFERENCE_WAIT_SEC)
            except TimeoutError:
                self.reference = None
        return terms

    def next_order_id(self) -> int | None:
        found = self.inner.next_order_id()
        return int(found) if found is not None else None

    async def place(self, order: OrderRequest) -> None:
        await self.inner.place(order)

    async def cancel(self, tag: str) -> None:
        await self.inner.cancel(tag)

    async def lookup(self, tag: str) -> Lookup:
        return await self.inner.lookup(tag)  # type: ignore[no-any-return]

    async def next_event(self, deadline_ns: int) -> BrokerEvent | Note | None:
        return await self.inner.next_event(deadline_ns)  # type: ignore[no-any-return]

    def pending(self) -> bool:
        return bool(self.inner.pending())

    def reconnecting_now(self) -> bool:
        return bool(self.inner.reconnecting_now())

    def missing_commissions(self) -> list[str]:
        return list(self.inner.missing_commissions())

    async def close(self) -> None:
        await self.inner.close()


# --- one run per tag and per spec at a time --------------------------------------------


@contextlib.contextmanager
def run_lock(plan: Plan) -> Iterator[None]:
    """Hold a lock per tag and per spec (for this ledger) for the whole run.

    It also closes the window in which two runs of one tag could both pass the
    duplicate-tag check before either has journaled its INTENT. Locks are flock()s
    on files in the temp folder, so a dead run never leaves a stale lock behind."""
    assert plan.order is not None
    keys = [("tag", plan.order.tag)]
    if not plan.spec.startswith("<"):  # "specs/x.yaml" or "specs/x.yaml#2"
        keys.append(("spec", os.path.abspath(plan.spec)))
    with contextlib.ExitStack() as stack:
        for kind, key in keys:
            stack.enter_context(_flock(plan.out_dir, kind, key))
        yield


@contextlib.contextmanager
def _flock(out_dir: str, kind: str, key: str, wait_sec: float = 0.0) -> Iterator[None]:
    """An exclusive flock for (ledger root, kind, key); with `wait_sec`, wait that long for
    it (the caps lock is held for milliseconds: a count and one fsynced INTENT)."""
    digest = hashlib.sha256(f"{os.path.realpath(out_dir)}\0{kind}\0{key}".encode()).hexdigest()
    path = _lock_folder() / f"{kind}-{digest[:24]}.lock"
    fd = _open_lock(path)
    try:
        try:
            _lock(fd, wait_sec)
        except BlockingIOError:
            shown = Path(key).name if kind == "spec" else key
            raise UsageError(f"another run of {kind} {shown} is in progress for {out_dir} "
                             f"(lock {path}); nothing was sent",
                             "wait for it to finish; runs of one tag or spec never overlap"
                             ) from None
        yield
    finally:
        os.close(fd)


def _open_lock(path: Path) -> int:
    """The lock file, read-only (flock needs no write access): one that is there as it is
    (where fs.protected_regular is set, O_CREAT on another user's file in a shared sticky
    folder is refused), else created; UsageError if this user can do neither."""
    try:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as e:
        from runner.ledger.access import whose

        raise UsageError(f"cannot use the lock folder {path.parent}{whose(path.parent)}: "
                         f"cannot open {path.name} in it ({e.strerror or e}); nothing was "
                         "sent", f"make {path.parent} shared like /tmp: chmod 1777, as its "
                         "owner or root") from None


def _lock_folder() -> Path:
    try:
        LOCK_FOLDER.mkdir(mode=0o1777, exist_ok=True)
        if LOCK_FOLDER.stat().st_uid == os.getuid():
            os.chmod(LOCK_FOLDER, 0o1777)  # shared like /tmp: any user, own files only
    except OSError as e:
        raise UsageError(f"cannot use the lock folder {LOCK_FOLDER}: {e.strerror or e}; "
                         "nothing was sent", f"make {LOCK_FOLDER} a folder this user can "
                         "write to") from None
    return LOCK_FOLDER


def _lock(fd: int, wait_sec: float) -> None:
    give_up = time.monotonic() + wait_sec
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.002)  # another run is between its count and its INTENT
