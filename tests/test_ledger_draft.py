"""An event drafted before its time (runner/ledger/event.py: Draft, Stamped): the journal
line a stamped draft brings is byte for byte the line LedgerEvent writes for the same event;
its late values are checked as LedgerEvent checks them; a real Ledger journals it and reads
it back as that event. And a run's own rows sorted in Python (runner/ledger/arrow.py) make
the table the vectorised sort makes of them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from runner.ledger import Ledger, LedgerEvent, rows_to_table
from runner.ledger.arrow import sorted_unique, sorted_unique_rows
from runner.ledger.event import Draft

LATE = ("ts", "deadline", "good_till", "arrival_px", "arrival_source")
BASE = LedgerEvent(ts=0, spec="specs/x.yaml", tag='t\u00e9-1"\\', event="INTENT", broker="ib",
                   account="DU1234567", order_id=5, client_id=1000, symbol="SPY",
                   sec_type="STK", exchange="SMART", currency="USD", mode="paper",
                   side="BUY", qty=1.0, order_type="LMT", limit=0.01, tif="GTD",
                   fill_qty=0.0, bars_path="data/live/2026-01-05/bars1s_SPY.parquet")


def late_values(rng: random.Random) -> dict[str, Any]:
    return {"ts": rng.randrange(-2**63, 2**63),
            "deadline": rng.choice([None, rng.randrange(2**62)]),
            "good_till": rng.choice([None, rng.randrange(2**62)]),
            "arrival_px": rng.choice([None, rng.random() * 1e3, 1e-300, 472.92,
                                      float("nan"), float("-inf")]),
            "arrival_source": rng.choice([None, "bars", "broker", "\u00fc\n\x00"])}


def test_a_stamped_line_is_the_line_of_the_event():
    rng = random.Random(15)
    draft = Draft(BASE, LATE)
    for _ in range(500):
        values = late_values(rng)
        stamped = draft.stamp(**values)
        event = LedgerEvent(**{**BASE.as_row(), **values})
        assert stamped.as_event() == event
        assert stamped.line("run-1", 7) == event.line("run-1", 7)


def test_a_draft_with_other_late_columns():
    """Late columns at the start, in the middle, next to each other, and every owned one."""
    rng = random.Random(16)
    for late in (("ts",), ("ts", "order_id", "perm_id"), ("tif", "fill_qty", "message")):
        draft = Draft(BASE, late)
        for _ in range(50):
            values = {"ts": rng.randrange(2**62), "order_id": rng.choice([None, 7]),
                      "perm_id": rng.choice([None, 2**40]), "tif": rng.choice([None, "DAY"]),
                      "fill_qty": rng.choice([None, 0.5]), "message": rng.choice([None, "x"])}
            values = {k: values[k] for k in late}
            event = LedgerEvent(**{**BASE.as_row(), **values})
            assert draft.stamp(**values).line("r", 1) == event.line("r", 1)


def test_late_values_are_checked_as_an_event_checks_them():
    draft = Draft(BASE, LATE)
    ok = {"ts": 1, "deadline": 2, "good_till": None, "arrival_px": None, "arrival_source": None}
    with pytest.raises(ValueError, match="ledger row needs ts as int nanoseconds, got 1.5"):
        draft.stamp(**{**ok, "ts": 1.5})
    with pytest.raises(ValueError, match="ledger column 'deadline' cannot hold '2'"):
        draft.stamp(**{**ok, "deadline": "2"})
    with pytest.raises(ValueError, match="ledger column 'deadline' cannot hold True"):
        draft.stamp(**{**ok, "deadline": True})
    with pytest.raises(ValueError, match="ledger column 'arrival_source' cannot hold 3"):
        draft.stamp(**{**ok, "arrival_source": 3})
    with pytest.raises(ValueError, match="a draft takes exactly ts, deadline, good_till, "
                                         "arrival_px, arrival_source; got deadline, ts"):
        draft.stamp(ts=1, deadline=2)
    with pytest.raises(ValueError, match="unknown ledger column"):
        Draft(BASE, ("ts", "colour"))
    # an int where a float goes becomes a float, as in LedgerEvent
    stamped = draft.stamp(**{**ok, "arrival_px": 472})
    assert stamped.values["arrival_px"] == 472.0 and type(stamped.values["arrival_px"]) is float
    assert stamped.line("r", 1) == LedgerEvent(**{**BASE.as_row(), **ok,
                                                  "arrival_px": 472.0}).line("r", 1)


def test_a_ledger_journals_a_stamped_event(tmp_path: Path):
    draft = Draft(BASE, LATE)
    values = {"ts": 1_767_623_401_000_000_000, "deadline": 1_767_623_404_000_000_000,
              "good_till": None, "arrival_px": 472.92, "arrival_source": "bars"}
    after = LedgerEvent(ts=values["ts"] + 1, tag=BASE.tag, event="ACK")
    with Ledger(tmp_path, "2026-01-05", "run-d") as ledger:
        ledger.append(draft.stamp(**values))
        ledger.append(after)
        journal = ledger.journal_path.read_bytes()
        expected = LedgerEvent(**{**BASE.as_row(), **values})
        assert journal == expected.line("run-d", 1) + after.line("run-d", 2)
        assert ledger.events == [expected, after]
        assert ledger.rows[0] == expected.row("run-d", 1)
        assert json.loads(journal.splitlines()[0])["arrival_px"] == 472.92


def test_a_runs_rows_sorted_in_python_make_the_same_table():
    """Duplicates (a journal merged twice), equal ts across runs, runs out of order."""
    rng = random.Random(17)
    for _ in range(30):
        rows = []
        for _ in range(rng.randrange(1, 40)):
            run, seq = rng.choice(["r-b", "r-a", "r-\u00e9", "r-A"]), rng.randrange(1, 6)
            rows.append({"ts": rng.choice([5, 6, 7]) * 10**18, "run_id": run, "seq": seq,
                         "event": rng.choice(["INTENT", "ACK"]), "tag": f"t{rng.random()}"})
        assert rows_to_table(sorted_unique_rows(rows)).equals(
            sorted_unique(rows_to_table(rows)))
