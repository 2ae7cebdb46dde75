"""`runner orders` and `runner positions`: what is working at the gateway and what is held,
the things a person checks right after `runner handshake`. `runner cancel TAG` is in
runner/cancel.py; the three share the connection and the table layout here.

- orders: every client's working orders (reqAllOpenOrders), one line each; an order
  whose orderRef is a tag with an INTENT of runner's (a run against IB, not a dry run)
  under the ledger root (--out-dir) is marked `runner`, any other `other`.
- positions: every account's positions (reqPositions), one line per account and
  contract; the multiplier shown where it is not 1 (futures, options).

Both only read: nothing is sent that changes an order, nothing is written. Account ids
are printed masked, as everywhere (cli's redacted output).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runner.jsondoc import MONEY, PRICE, QTY, document, figure
from runner.output import DASH, emit, number_text, price_text
from runner.plan import Connection, iso

if TYPE_CHECKING:
    from runner.ib.manage import Holding, Instrument, WorkingOrder
    from runner.ib.session import Session

T = TypeVar("T")


async def with_session(connection: Connection, verbose: int,
                       ask: Callable[[Session], Awaitable[T]]) -> T:
    """Connect (IB_GATEWAY_HOST/PORT, IB_CLIENT_ID), ask, disconnect."""
    from runner.ib.session import Session

    session = Session(connection, verbose)
    try:
        await session.connect()
        return await ask(session)
    finally:
        await session.close()


def where(connection: Connection) -> str:
    return f"{connection.host}:{connection.port}"


# --- orders ------------------------------------------------------------------------------


def orders(out_dir: str, connection: Connection, as_json: bool, verbose: int = 0) -> int:
    from runner.ib.manage import working_orders

    mine = runner_tags(Path(out_dir))
    found = asyncio.run(with_session(connection, verbose, working_orders))
    if as_json:
        emit(document("orders", True, gateway=where(connection), out_dir=out_dir,
                      orders=[order_json(w, w.tag in mine) for w in found]))
        return 0
    ours = sum(w.tag in mine for w in found)
    for line in order_lines(found, mine):
        print(line)
    n = len(found)
    print(f"{n} working order{'s' if n != 1 else ''} at {where(connection)}, {ours} placed "
          f"by runner ({out_dir})" if n else f"no working orders at {where(connection)}")
    return 0


def runner_tags(root: Path, tag: str | None = None) -> set[str]:
    """The tags with an INTENT of a run against IB under the ledger root (every day,
    journals of running and crashed runs included); only `tag` if given. Read without
    the day locks: a snapshot."""
    return {t for tags in intent_days(root, tag).values() for t in tags}


def intent_days(root: Path, tag: str | None = None) -> dict[str, set[str]]:
    """Day -> the tags with an IB INTENT that day (only `tag`, if given); days without
    one are left out. No ledger root: none."""
    import pyarrow.compute as pc

    from runner.ledger import read_ledger
    from runner.ledger.compact import day_dirs

    if not root.is_dir():
        return {}
    out = {}
    for day_dir in day_dirs(root):
        t = read_ledger(day_dir, columns=["tag", "event", "broker"])
        keep = pc.and_(pc.equal(t["event"], "INTENT"), pc.not_equal(t["broker"], "sim"))
        if tag is not None:
            keep = pc.and_(keep, pc.equal(t["tag"], tag))
        tags = {x for x in pc.unique(t["tag"].filter(pc.fill_null(keep, False))).to_pylist()
                if x is not None}
        if tags:
            out[day_dir.name] = tags
    return out


def order_json(w: WorkingOrder, mine: bool) -> dict[str, Any]:
    """One working order in `orders --json` (and in `cancel --json`)."""
    return {
        "tag": w.tag or None, "runner": mine, "order_id": w.order_id, "perm_id": w.perm_id,
        "client_id": w.client_id, "account": w.account or None, **contract_json(w.contract),
        "side": w.side, "qty": figure(w.qty, QTY), "cash_qty": figure(w.cash_qty, MONEY),
        "filled": figure(w.filled, QTY),
        "order_type": w.order_type, "limit": figure(w.limit, PRICE),
        "aux_price": figure(w.aux, PRICE), "tif": w.tif or None, "outside_rth": w.outside_rth,
        "status": w.status,
        "good_till": iso(w.good_till_ns) if w.good_till_ns is not None else None,
    }


def contract_json(c: Instrument) -> dict[str, Any]:
    return {"con_id": c.con_id, "symbol": c.symbol, "local_symbol": c.local_symbol or None,
            "sec_type": c.sec_type, "exchange": c.exchange or None,
            "currency": c.currency or None, "multiplier": c.multiplier}


def order_lines(found: Sequence[WorkingOrder], mine: set[str]) -> list[str]:
    """The table of working orders: a header, then one line per order (none: no lines)."""
    if not found:
        return []
    aux = any(w.aux is not None for w in found)  # a stop or trail column only if needed
    head = ["tag", "by", "order", "perm", "client", "account", "side", "filled/qty",
            "symbol", "sec", "type", "limit", *(["aux"] if aux else []), "tif", "status"]
    rows = [[w.tag or DASH, "runner" if w.tag in mine else "other", str(w.order_id),
             number_text(w.perm_id), str(w.client_id), w.account or DASH, w.side,
             f"{number_text(w.filled)}/{size_text(w)}", w.contract.name,
             w.contract.sec_type, w.order_type, price_text(w.limit),
             *([price_text(w.aux)] if aux else []), w.tif or DASH, w.status] for w in found]
    return table(head, rows, right={"order", "perm", "client", "limit", "aux"})


def size_text(w: WorkingOrder) -> str:
    """An order's size as people read it: its qty, or `cash 1000` for a cash order."""
    return number_text(w.qty) if w.cash_qty is None else f"cash {number_text(w.cash_qty)}"


# --- positions ---------------------------------------------------------------------------


def positions(connection: Connection, as_json: bool, verbose: int = 0) -> int:
    from runner.ib.manage import holdings

    held = asyncio.run(with_session(connection, verbose, holdings))
    if as_json:
        emit(document("positions", True, gateway=where(connection),
                      positions=[position_json(h) for h in held]))
        return 0
    for line in position_lines(held):
        print(line)
    if not held:
        print(f"no positions at {where(connection)}")
    return 0


def position_json(h: Holding) -> dict[str, Any]:
    return {"account": h.account, **contract_json(h.contract),
            "position": figure(h.position, QTY), "avg_cost": figure(h.avg_cost, PRICE)}


def position_lines(held: Sequence[Holding]) -> list[str]:
    if not held:
        return []
    mult = any(h.contract.multiplier is not None for h in held)  # futures, options: x 50
    head = ["account", "symbol", "sec", "currency", "position", "avg_cost",
            *(["multiplier"] if mult else [])]
    rows = [[h.account, h.contract.name, h.contract.sec_type, h.contract.currency or DASH,
             number_text(h.position), price_text(h.avg_cost),
             *([number_text(h.contract.multiplier, "")] if mult else [])] for h in held]
    return table(head, rows, right={"position", "avg_cost", "multiplier"})


def table(head: Sequence[str], rows: Sequence[Sequence[str]], right: set[str]) -> list[str]:
    """Text columns left-aligned, the `right` ones right-aligned, each as wide as its
    widest cell, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if h in right else c.ljust(w)
                         for h, c, w in zip(head, cells, widths, strict=True)).rstrip()

    return [line(head), *(line(r) for r in rows)]
