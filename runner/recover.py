"""`runner recover`: no orphan orders, nothing lost.

Reads the ledger and the journals of crashed runs, finds the orders with an INTENT but
no end (FILL, CANCEL, REJ) whose run is no longer alive — those a crash left, and those
a run left UNSETTLED (a cancel refused) or UNKNOWN (the gateway did not show them) —
asks the gateway what became of each, records what happened while nobody was watching,
and cancels what is still working past its deadline (or everything, with --cancel-all).

Orders are found by permId, then (client id, order id), then orderRef. A gateway that
does not manage the INTENT's account is refused: nothing is changed. An order placed by
another client id is cancelled from a session with that client id (only it can cancel
it). Running it twice records nothing new. It runs, automatically, before every
non-dry `runner run`, over every day that holds an unsettled order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.broker import Ev, Lookup
from runner.cashqty import all_filled
from runner.errors import GatewayError, UsageError
from runner.ledger.event import LedgerEvent
from runner.plan import Connection, parse_day, trading_day

# A recovered row carries its order's totals so far when it is one of these.
_WITH_TOTALS = Ev.TERMINAL | {Ev.UNKNOWN}
MARKERS = ".unsettled"  # OUT_DIR/.unsettled/<day>.<hash>.json: orders left for recover
INCOMPLETE = ".incomplete"  # OUT_DIR/.incomplete/<day>.<hash>.json: commissions to complete
POLL_SEC = 0.1


@dataclass
class Orphan:
    """An order the ledger has no end for, and what the ledger already knows of it."""

    intent: dict[str, Any]
    exec_ids: set[str] = field(default_factory=set)
    fill_qty: float = 0.0
    commission: float = 0.0
    last_ts: int = 0  # of the order's last recorded event
    acked: bool = False
    last_event: str = Ev.INTENT
    ids: dict[str, Any] = field(default_factory=dict)  # perm_id, client_id, order_id
    avg_px: float | None = None

    @property
    def tag(self) -> str:
        return str(self.intent["tag"])

    @property
    def deadline_ns(self) -> int | None:
        return self.intent.get("deadline")


def _key(row: dict[str, Any]) -> tuple[str, Any, Any]:
    """Which order a row is about: its tag and the (client id, order id) the INTENT
    recorded — a tag placed twice (--allow-duplicate) is two orders."""
    return (row["tag"], row.get("client_id"), row.get("order_id"))


def _intent_key(intent: dict[str, Any]) -> tuple[str, Any, Any]:
    """An INTENT's key; one written before INTENTs carried the order id: its run's."""
    if intent.get("order_id") is not None:
        return _key(intent)
    return (intent["tag"], intent["run_id"], None)


def find_orphans(out_dir: Path, day: str) -> list[Orphan]:
    """Merge crashed runs' journals, then list the day's orders that never ended."""
    from runner import ledger

    day_dir = Path(out_dir) / day
    if not day_dir.is_dir():
        return []
    ledger.merge_leftovers(Path(out_dir), day)
    alive = ledger.live_runs(Path(out_dir), day)
    rows = ledger.table_to_rows(ledger.read_ledger(day_dir))
    orders: dict[tuple[str, Any, Any], Orphan] = {}
    by_run: dict[tuple[str, str], tuple[str, Any, Any]] = {}  # (run, tag) -> its order
    latest: dict[str, tuple[str, Any, Any]] = {}  # tag -> its latest order (old ledgers)
    for row in rows:  # in (ts, run_id, seq) order
        tag, event = row["tag"], row["event"]
        if event == Ev.INTENT:
            key = _intent_key(row)
            orders[key] = Orphan(row, last_ts=row["ts"])
            by_run[(row["run_id"], tag)] = latest[tag] = key
            continue
        found = by_run.get((row["run_id"], tag)) or (
            _key(row) if _key(row) in orders else latest.get(tag))
        order = orders.get(found) if found is not None else None
        if order is None:
            continue
        _note_row(order, row)
        if event in Ev.TERMINAL:
            del orders[_intent_key(order.intent)]
    return [o for o in orders.values()
            if o.intent["run_id"] not in alive or o.last_event in Ev.OPEN_ENDED]


_PLACED = {Ev.ACK, Ev.PARTIAL, Ev.FILL} | Ev.OPEN_ENDED  # an order with one was placed


def _note_row(o: Orphan, row: dict[str, Any]) -> None:
    o.last_ts = max(o.last_ts, row["ts"])
    event = row["event"]
    if event != Ev.PNL_SNAPSHOT:
        o.last_event = event
    # an order its run reported UNKNOWN or UNSETTLED was placed, acknowledged or not
    o.acked = o.acked or event in _PLACED or bool(row.get("perm_id"))
    for key in ("perm_id", "client_id", "order_id"):
        if row.get(key) is not None:
            o.ids[key] = row[key]
    if event in (Ev.PARTIAL, Ev.FILL, Ev.CORRECTION):
        if row.get("exec_id"):
            o.exec_ids.add(row["exec_id"])
        o.fill_qty = max(o.fill_qty, row.get("fill_qty") or 0.0) \
            if event != Ev.CORRECTION else (row.get("fill_qty") or o.fill_qty)
        o.commission = max(o.commission, row.get("commission") or 0.0)
        o.avg_px = row.get("avg_px") if row.get("avg_px") is not None else o.avg_px


@dataclass
class Settled:
    """What recovery found out about one orphan: rows to record and a line to print."""

    tag: str
    rows: list[LedgerEvent]
    summary: str
    settled: bool = True  # False: still working at (or not shown by) the broker
    day: str = ""
    order_id: int | None = None  # the INTENT's, for the marker


async def settle_ib(orphans: list[Orphan], broker: Any, cancel_all: bool,
                    now_ns: Any = time.time_ns) -> list[Settled]:
    """Ask the gateway about each orphan and decide; `broker` is a connected IBBroker."""
    out = []
    for o in orphans:
        settled = await _settle_one(o, broker, cancel_all, now_ns)
        settled.order_id = o.intent.get("order_id")
        out.append(settled)
    return out


def _identity(o: Orphan) -> Any:
    from runner.ib import Identity

    return Identity(o.tag, o.ids.get("perm_id") or o.intent.get("perm_id"),
                    o.ids.get("client_id", o.intent.get("client_id")),
                    o.ids.get("order_id") or o.intent.get("order_id"))


async def _settle_one(o: Orphan, broker: Any, cancel_all: bool, now_ns: Any) -> Settled:
    account = o.intent.get("account")
    managed = broker.accounts()
    if account and account not in managed:
        return Settled(o.tag, [], f"the gateway at {broker.where} manages "
                       f"{', '.join(managed) or 'no account'}, not {account} (the INTENT's "
                       "account); nothing changed: point IB_GATEWAY_PORT at the gateway that "
                       "placed it", settled=False)
    found = await broker.find(_identity(o))
    rows = fill_rows(o, found.fills)
    if found.state == Lookup.WORKING:
        deadline = o.deadline_ns
        wanted_out = o.last_event in Ev.OPEN_ENDED  # its run tried to cancel it
        if not cancel_all and not wanted_out and deadline is not None and now_ns() < deadline:
            return Settled(o.tag, rows, f"still working until its deadline; left alone "
                           f"(filled {o.fill_qty:g}); run recover again after it")
        return await _cancel(o, broker, found, rows, now_ns)
    if found.state == Lookup.UNKNOWN:
        return _unknown(o, broker, rows, now_ns)
    return _ended(o, found, rows, now_ns)


def _unknown(o: Orphan, broker: Any, rows: list[LedgerEvent], now_ns: Any) -> Settled:
    from runner.plan import iso

    if not o.acked:
        # No word from the broker ever, and it shows nothing: either it never got there,
        # or it is dead by its time in force — or it got there and may still work until
        # its GTD backstop. Only the first two are an end.
        gtd = o.intent.get("good_till")
        if o.intent.get("tif") == "IOC" or (gtd is not None and now_ns() >= gtd):
            message = ("never reached the broker (recover): not at the gateway, and past "
                       "its time in force")
            rows.append(_row(o, Ev.CANCEL, now_ns(), fill_qty=o.fill_qty, message=message))
            return Settled(o.tag, rows, message.replace(" (recover)", ""))
        until = f" until its GTD backstop {iso(gtd)}" if gtd is not None else ""
        return Settled(o.tag, rows, f"not shown by the gateway at {broker.where}; if it was "
                       f"sent before the run stopped it may work at IB{until}; run recover "
                       "again after that, or check TWS", settled=False)
    text = (f"acknowledged, but the gateway at {broker.where} does not show it: it may "
            "still be working at IB (another gateway? a restart?); left UNKNOWN")
    if o.last_event != Ev.UNKNOWN:
        rows.append(_row(o, Ev.UNKNOWN, now_ns(), fill_qty=o.fill_qty, message=text))
    return Settled(o.tag, rows, text, settled=False)


def _ended(o: Orphan, found: Any, rows: list[LedgerEvent], now_ns: Any) -> Settled:
    if found.end == Ev.FILL or all_filled(o.intent, o.fill_qty):
        if not any(r.event == Ev.FILL for r in rows):
            rows.append(_row(o, Ev.FILL, now_ns(), fill_qty=max(o.fill_qty, found.filled),
                             avg_px=found.avg_px, message="filled at the broker (recover)"))
        return Settled(o.tag, rows, f"filled {max(o.fill_qty, found.filled):g} "
                       "while runner was away")
    if found.end == Ev.REJ:
        rows.append(_row(o, Ev.REJ, now_ns(), fill_qty=o.fill_qty,
                         message="inactive at the broker (recover)"))
        return Settled(o.tag, rows, "rejected at the broker")
    rows.append(_row(o, Ev.CANCEL, now_ns(), fill_qty=o.fill_qty,
                     message="cancelled at the broker (recover)"))
    return Settled(o.tag, rows, "cancelled at the broker")


async def _cancel(o: Orphan, broker: Any, found: Any, rows: list[LedgerEvent],
                  now_ns: Any) -> Settled:
    """Cancel from a session with the client id that placed it, then wait for the end."""
    owner, refusal = broker, ""
    if found.client_id is not None and found.client_id != broker.client_id:
        owner, refusal = await _session_for(broker, found.client_id)
        if owner is None:
            return Settled(o.tag, rows, refusal, settled=False)
    try:
        owner.cancel_found(found)
        later = await _until_not_working(o, owner)
    finally:
        if owner is not broker:
            await owner.close()
    rows += fill_rows(o, later.fills)
    if later.state == Lookup.WORKING:
        waited = owner.conn.cancel_timeout_sec
        return Settled(o.tag, rows, f"cancel not confirmed within {waited:g} s; still live "
                       "at the broker", settled=False)
    if later.state == Lookup.UNKNOWN:
        return _unknown(o, broker, rows, now_ns)
    if later.end != Ev.CANCEL or all_filled(o.intent, o.fill_qty):
        return _ended(o, later, rows, now_ns)  # it ended otherwise meanwhile: as IB says
    rows.append(_row(o, Ev.CANCEL, now_ns(), fill_qty=o.fill_qty, message="cancelled by recover"))
    return Settled(o.tag, rows, f"cancelled (filled {o.fill_qty:g})")


async def _session_for(broker: Any, client_id: int) -> tuple[Any, str]:
    """A second connection with `client_id`: only the client that placed an order can
    cancel it with cancelOrder."""
    from runner.ib import IBBroker

    other = IBBroker(replace(broker.conn, client_id=client_id))
    try:
        await other.connect()
    except GatewayError as e:
        await other.close()
        return None, (f"placed by client id {client_id}, which only that client can cancel, "
                      f"and connecting as it failed: {e.message}; close that client (or "
                      "cancel the order in TWS) and run `runner recover` again")
    return other, ""


async def _until_not_working(o: Orphan, broker: Any) -> Any:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + broker.conn.cancel_timeout_sec
    while True:
        found = await broker.find(_identity(o))
        if found.state != Lookup.WORKING or loop.time() >= give_up:
            return found
        await asyncio.sleep(POLL_SEC)  # polling the gateway's answer, bounded


def fill_rows(o: Orphan, fills: list[Any]) -> list[LedgerEvent]:
    """The executions the ledger does not have yet, at the broker's times; one that
    replaces an execution the ledger has (same id up to the last period) is a CORRECTION."""
    rows = []
    bases = {e.rsplit(".", 1)[0]: e for e in o.exec_ids}
    for f in fills:
        if f.exec_id in o.exec_ids:
            continue
        base = f.exec_id.rsplit(".", 1)[0]
        o.exec_ids.add(f.exec_id)
        o.commission += f.commission or 0.0
        ids = {"order_id": f.order_id, "perm_id": f.perm_id, "client_id": f.client_id}
        if base in bases:
            rows.append(_row(o, Ev.CORRECTION, f.ts_ns, fill_qty=f.cum_qty, last_px=f.px,
                             avg_px=f.avg_px, commission=o.commission or None,
                             exec_id=f.exec_id, corrects=bases[base],
                             message=f"execution {bases[base]} corrected (recover)", **ids))
            o.fill_qty = f.cum_qty
            continue
        bases[base] = f.exec_id
        o.fill_qty = max(o.fill_qty, f.cum_qty)
        event = Ev.FILL if all_filled(o.intent, o.fill_qty) else Ev.PARTIAL
        rows.append(_row(o, event, f.ts_ns, fill_qty=o.fill_qty, last_qty=f.qty, last_px=f.px,
                         avg_px=f.avg_px, commission=o.commission or None, exec_id=f.exec_id,
                         **ids))
    return rows


def _row(o: Orphan, event: Ev, ts_ns: int, **values: Any) -> LedgerEvent:
    """A recovered event of the INTENT's order (its ORDER fields carried), at the broker's
    time but never before the order's last recorded event: IB's execution times have 1 s
    resolution, and the ledger is in time order."""
    o.last_ts = max(ts_ns, o.last_ts + 1)
    known = {k: v for k, v in o.ids.items() if v is not None}  # what the broker said
    if event in _WITH_TOTALS:  # the order's totals so far
        known.update(commission=o.commission or None, avg_px=o.avg_px)
    known.update({k: v for k, v in values.items() if v is not None})
    return LedgerEvent.carried(o.intent, ts=o.last_ts, event=event, **known)


def settle_sim(orphans: list[Orphan], now_ns: int) -> list[Settled]:
    """A dry run has no broker to ask: its order ended with its process."""
    return [Settled(o.tag, [_row(o, Ev.CANCEL, now_ns, fill_qty=o.fill_qty,
                                 message="dry run ended without a final event (recover)")],
                    "dry run ended without a final event", order_id=o.intent.get("order_id"))
            for o in orphans]


def record(out_dir: Path, day: str, settled: list[Settled]) -> None:
    from runner.ledger import Ledger

    rows = [r for s in settled for r in s.rows]
    if not rows:
        return
    with Ledger(Path(out_dir), day, f"recover-{uuid.uuid4().hex[:12]}") as ledger:
        for row in rows:
            ledger.append(row)


async def recover_day(out_dir: Path, day: str, connection: Connection, cancel_all: bool,
                      verbose: int = 0) -> list[Settled]:
    """Find, settle and record one day's orphans; connects only if an IB order needs it."""
    orphans = find_orphans(out_dir, day)
    sim = [o for o in orphans if o.intent.get("broker") == "sim"]
    ib = [o for o in orphans if o.intent.get("broker") != "sim"]
    settled = settle_sim(sim, time.time_ns())
    if ib:
        from runner.ib import IBBroker

        broker = IBBroker(connection, verbose=verbose)
        try:
            await broker.connect()
            settled += await settle_ib(ib, broker, cancel_all)
        finally:
            record(out_dir, day, settled)
            await broker.close()
    else:
        record(out_dir, day, settled)
    for s in settled:
        s.day = day
        mark(out_dir, day, s.tag, unsettled=not s.settled, order_id=s.order_id)
    return settled


# --- markers: which days hold an order left for recover ---------------------------------


def _marker(out_dir: Path, day: str, tag: str, folder: str = MARKERS,
            order_id: int | None = None) -> Path:
    digest = hashlib.sha256(f"{tag}\0{order_id}".encode()).hexdigest()[:16]
    return Path(out_dir) / folder / f"{day}.{digest}.json"


def note_missing_commissions(out_dir: Path, day: str, tag: str, exec_ids: list[str]) -> None:
    """An ended order whose executions' commissions did not all come: recover asks for
    them (not a reason to refuse new orders)."""
    from runner.ledger import remove_durable, write_durable

    path = _marker(out_dir, day, tag, INCOMPLETE)
    if not exec_ids:
        remove_durable(path)
        return
    write_durable(path, json.dumps({"day": day, "tag": tag, "exec_ids": exec_ids}) + "\n")


async def complete_commissions(out_dir: Path, connection: Connection,
                               verbose: int = 0) -> list[str]:
    """Ask the gateway's executions for the commissions runs ended without; record each
    as a CORRECTION of its execution. Lines to print."""
    from runner import ledger
    from runner.ib import IBBroker, Identity

    notes = sorted((Path(out_dir) / INCOMPLETE).glob("*.json")) \
        if (Path(out_dir) / INCOMPLETE).is_dir() else []
    if not notes:
        return []
    broker = IBBroker(connection, verbose=verbose)
    lines = []
    try:
        await broker.connect()
        for path in notes:
            note = json.loads(path.read_text())
            day, tag, wanted = note["day"], note["tag"], list(note["exec_ids"])
            rows = [r for r in ledger.table_to_rows(ledger.read_ledger(Path(out_dir) / day))
                    if r["tag"] == tag]
            events = [r for r in rows if r["event"] != Ev.PNL_SNAPSHOT]
            if not events:
                lines.append(f"recover {day} {tag}: no order rows in the ledger for the "
                             f"commissions noted in {path}; left as it is")
                continue
            last = events[-1]
            who = Identity(tag, last.get("perm_id"), last.get("client_id"), last.get("order_id"))
            found = {f.exec_id: f.commission for f in await broker.find_executions(who)}
            got = [(e, found[e]) for e in wanted if found.get(e) is not None]
            o = Orphan(rows[0], last_ts=max(r["ts"] for r in rows))
            total = last.get("commission") or 0.0
            new = []
            for exec_id, commission in got:
                total += commission or 0.0
                new.append(_row(o, Ev.CORRECTION, time.time_ns(), exec_id=exec_id,
                                corrects=exec_id, commission=total,
                                fill_qty=last.get("fill_qty"), avg_px=last.get("avg_px"),
                                message=f"commission of {exec_id} completed by recover"))
            record(out_dir, day, [Settled(tag, new, "")])
            left = [e for e in wanted if e not in dict(got)]
            note_missing_commissions(out_dir, day, tag, left)
            lines.append(f"recover {day} {tag}: commission of {len(got)} execution(s) "
                         f"recorded" + (f"; {len(left)} still not reported" if left else ""))
    finally:
        await broker.close()
    return lines


def mark(out_dir: Path, day: str, tag: str, unsettled: bool,
         order_id: int | None = None) -> None:
    """Note (or clear) that an order (tag, order id) of `day` is left for recover: later
    runs look there."""
    from runner.ledger import remove_durable, write_durable

    path = _marker(out_dir, day, tag, order_id=order_id)
    if unsettled:  # durable: a crash must not forget an order that may still work
        write_durable(path, json.dumps({"day": day, "tag": tag}) + "\n")
    else:
        remove_durable(path)


def marked_days(out_dir: Path) -> set[str]:
    folder = Path(out_dir) / MARKERS
    if not folder.is_dir():
        return set()
    return {p.name.split(".", 1)[0] for p in folder.glob("*.json")}


def days_to_visit(out_dir: Path, today: str) -> list[str]:
    """Today, every day with journals left over, every day holding an unsettled order."""
    from runner.ledger import leftover_days

    root = Path(out_dir)
    return sorted(set(leftover_days(root)) | marked_days(root) | {today})


def recover(out_dir: str, date: str | None, cancel_all: bool, connection: Connection,
            verbose: int = 0) -> int:
    """The command: the day given, or every day that may hold an orphan. A date that is
    none or an out_dir that is no folder is a usage error (exit 2), not "nothing to do"."""
    date = parse_day(date, "--date")
    root = Path(out_dir)
    if not root.is_dir():
        raise UsageError(f"--out-dir {out_dir}: no such folder, so no ledger to recover from",
                         "give the out_dir your runs write to (default data/exec)")
    days = [date] if date else days_to_visit(root, trading_day(time.time_ns()))
    results = [(d, s) for d in days
               for s in asyncio.run(recover_day(root, d, connection, cancel_all, verbose))]
    for day, s in results:
        print(f"recover {day} {s.tag}: {s.summary}")
    completed = asyncio.run(complete_commissions(root, connection, verbose))
    for line in completed:
        print(line)
    if not results and not completed:
        print(f"recover: nothing to recover in {out_dir} ({', '.join(days)})")
    unsettled = [s.tag for _, s in results if not s.settled]
    if unsettled:
        raise GatewayError(f"{len(unsettled)} order(s) not settled, possibly still working "
                           f"at IB: {', '.join(unsettled)}",
                           "see the lines above; then run `runner recover` again")
    return 0
