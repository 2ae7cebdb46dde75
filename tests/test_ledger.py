from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import report
from runner.errors import LedgerError
from runner.ledger import (
    COLUMNS,
    LEDGER_SCHEMA,
    Ledger,
    LedgerEvent,
    leftover_days,
    merge_leftovers,
    read_ledger,
    table_to_rows,
    tags_on_day,
    trading_date,
)
from runner.ledger.schema import check_fields

HELPER = Path(__file__).with_name("ledger_writer.py")
sys.path.insert(0, str(HELPER.parent))
from ledger_writer import row as writer_row  # noqa: E402

DAY = "2026-01-05"
T0 = 1_767_623_400_000_000_000  # 2026-01-05 14:30:00 UTC = 09:30 New York


def ev(i: int, **extra: Any) -> dict[str, Any]:
    return {"ts": T0 + i, "tag": f"t{i}", "event": "ACK", **extra}


def day_rows(out: Path) -> list[dict[str, Any]]:
    return table_to_rows(read_ledger(out / DAY / "ledger.parquet"))


def keys(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["run_id"], r["seq"]) for r in rows]


def spawn(mode: str, out: Path, run_id: str, n: int, **kw: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, str(HELPER), mode, str(out), DAY, run_id, str(n)]
    return subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, **kw)


# ----------------------------------------------------------------------------- schema


def test_schema_is_the_contract() -> None:
    ts = pa.timestamp("ns", tz="UTC")
    f, s = pa.float64(), pa.string()
    expected = [
        ("ts", ts), ("run_id", s), ("seq", pa.int32()), ("spec", s), ("tag", s),
        ("event", s), ("broker", s), ("account", s), ("order_id", pa.int64()),
        ("perm_id", pa.int64()), ("client_id", pa.int64()), ("symbol", s), ("sec_type", s),
        ("exchange", s), ("currency", s), ("con_id", pa.int64()), ("local_symbol", s),
        ("expiry", s), ("strike", f), ("right", s), ("multiplier", f), ("mode", s), ("side", s),
        ("qty", f), ("cash_qty", f), ("order_type", s), ("limit", f), ("tif", s), ("stop", f),
        ("trail_amount", f), ("trail_percent", f), ("offset", f), ("algo", s), ("fill_qty", f),
        ("last_qty", f), ("last_px", f), ("avg_px", f), ("commission", f), ("arrival_px", f),
        ("arrival_source", s), ("bars_path", s), ("message", s), ("deadline", ts),
        ("good_till", ts), ("exec_id", s), ("corrects", s),
        ("fill_ratio", f), ("shortfall_bps", f), ("vwap_px", f), ("vwap_slippage_bps", f),
        ("is_bps", f), ("fees_bps", f), ("participation", f), ("ms_to_first_fill", f),
        ("ms_to_done", f),
    ]  # fmt: skip
    assert [(fl.name, fl.type) for fl in LEDGER_SCHEMA] == expected
    assert COLUMNS == tuple(name for name, _ in expected)
    assert all(fl.nullable for fl in LEDGER_SCHEMA)


def full_row(i: int) -> dict[str, Any]:
    values: dict[str, Any] = {"str": "x", "int": 2**40 + i, "float": 0.1 + i}
    row: dict[str, Any] = {}
    for field in LEDGER_SCHEMA:
        if field.name in ("run_id", "seq"):
            continue
        kind = "str" if pa.types.is_string(field.type) else "float"
        kind = "int" if _integral(field.type) else kind
        row[field.name] = values[kind] + field.name if kind == "str" else values[kind]
    row["ts"] = T0 + i
    return row


def test_round_trip_keeps_values_and_exact_types(tmp_path: Path) -> None:
    with Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append(full_row(0))
        ledger.append({"ts": T0 + 1, "event": "ACK"})  # everything else null
    table = read_ledger(tmp_path / DAY / "ledger.parquet")
    assert table.schema.equals(LEDGER_SCHEMA)
    rows = table_to_rows(table)
    assert rows == ledger.rows
    assert rows[0] == {**full_row(0), "run_id": "run-a", "seq": 1}
    assert rows[1] == {c: None for c in COLUMNS} | {
        "ts": T0 + 1, "event": "ACK", "run_id": "run-a", "seq": 2,
    }  # fmt: skip
    assert not (tmp_path / DAY / "_journal-run-a.jsonl").exists()


def test_trading_date_is_new_york_local_across_dst() -> None:
    assert trading_date(T0) == "2026-01-05"
    # 2026-01-06 03:00 UTC is 22:00 EST on the 5th.
    assert trading_date(1_767_668_400_000_000_000) == "2026-01-05"
    # 2026-07-01 03:30 UTC is 23:30 EDT on June 30; 04:30 UTC is 00:30 on July 1.
    assert trading_date(1_782_876_600_000_000_000) == "2026-06-30"
    assert trading_date(1_782_880_200_000_000_000) == "2026-07-01"
    assert trading_date(1_782_880_200_000_000_000, "UTC") == "2026-07-01"


# ----------------------------------------------------------------------------- append


def test_append_is_in_the_file_before_it_returns(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, DAY, "run-a").open()
    ledger.append(ev(1, qty=1 / 3))
    other_handle = (tmp_path / DAY / "_journal-run-a.jsonl").read_text()
    assert [json.loads(line) for line in other_handle.splitlines()] == [
        {"ts": T0 + 1, "tag": "t1", "event": "ACK", "qty": 1 / 3, "run_id": "run-a", "seq": 1}
    ]
    seen = subprocess.run(
        [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read(), end='')",
         str(ledger.journal_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert seen == other_handle
    ledger.close()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"ts": T0, "ttl": 3}, "unknown ledger column(s): ttl"),
        ({"ts": T0, "seq": 9}, "the ledger fills seq itself"),
        ({"ts": T0, "qty": "1"}, "ledger column 'qty' cannot hold '1'"),
        ({"ts": T0, "qty": True}, "ledger column 'qty' cannot hold True"),
        ({"ts": T0, "order_id": 2**63}, f"ledger column 'order_id' cannot hold {2**63}"),
        ({"ts": 1.5}, "ledger row needs ts as int nanoseconds, got 1.5"),
        ({"event": "ACK"}, "ledger row needs ts as int nanoseconds, got None"),
    ],
)
def test_append_refuses_bad_rows_and_writes_nothing(
    tmp_path: Path, row: dict[str, Any], message: str
) -> None:
    ledger = Ledger(tmp_path, DAY, "run-a").open()
    with pytest.raises(ValueError) as info:
        ledger.append(row)
    assert str(info.value) == message
    assert ledger.journal_path.read_bytes() == b""
    ledger.close()


def test_ints_become_floats_in_float_columns(tmp_path: Path) -> None:
    with Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append({"ts": T0, "qty": 3})
    assert day_rows(tmp_path)[0]["qty"] == 3.0


# ----------------------------------------------------------------------------- LedgerEvent


def test_the_event_type_is_the_schema_less_what_the_ledger_fills() -> None:
    fields = dataclasses.fields(LedgerEvent)
    assert [f.name for f in fields] == [c for c in COLUMNS if c not in ("run_id", "seq")]
    check_fields(LedgerEvent)  # what the schema module runs on import: it holds


def test_an_event_type_that_drifts_from_the_schema_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Stale:  # qty as a string, and no ms_to_done
        ts: int
        qty: str | None = None

    with pytest.raises(TypeError) as info:
        check_fields(Stale)
    assert str(info.value).startswith("Stale does not match the ledger schema: ")
    assert "('qty', 'str')" in str(info.value) and "('ms_to_done', 'float')" in str(info.value)
    wider = LEDGER_SCHEMA.append(pa.field("venue", pa.string()))  # a column it lacks
    with pytest.raises(TypeError, match=r"\('venue', 'str'\)"):
        check_fields(LedgerEvent, wider)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qty": "1"}, "ledger column 'qty' cannot hold '1'"),
        ({"qty": True}, "ledger column 'qty' cannot hold True"),
        ({"order_id": 1.0}, "ledger column 'order_id' cannot hold 1.0"),
        ({"order_id": 2**63}, f"ledger column 'order_id' cannot hold {2**63}"),
        ({"tag": 7}, "ledger column 'tag' cannot hold 7"),
        ({"deadline": "soon"}, "ledger column 'deadline' cannot hold 'soon'"),
    ],
)
def test_a_wrong_value_is_refused_when_the_event_is_built(values: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(ValueError) as info:
        LedgerEvent(ts=T0, **values)
    assert str(info.value) == message
    with pytest.raises(ValueError, match="ledger row needs ts as int nanoseconds, got 1.5"):
        LedgerEvent(ts=1.5)  # type: ignore[arg-type]


def test_an_event_holds_plain_python_values() -> None:
    import numpy as np

    from runner.broker import Ev

    e = LedgerEvent(ts=np.int64(T0), event=Ev.ACK, qty=3, limit=np.float64(1.5),
                    order_id=np.int32(7))
    assert (e.ts, e.event, e.qty, e.limit, e.order_id) == (T0, "ACK", 3.0, 1.5, 7)
    assert [type(v) for v in (e.ts, e.event, e.qty, e.limit, e.order_id)] == \
        [int, str, float, float, int]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.qty = 4.0  # type: ignore[misc]


def test_an_event_carries_its_orders_fields_and_nothing_else() -> None:
    intent = {**full_row(0), "run_id": "r1", "seq": 1}  # as read back from the ledger
    e = LedgerEvent.carried(intent, ts=T0 + 9, event="CANCEL", message="gone")
    assert e.as_row() == {k: intent[k] for k in LedgerEvent.ORDER} | {
        "ts": T0 + 9, "event": "CANCEL", "message": "gone"}
    assert list(e.as_row()) == [c for c in COLUMNS if c in e.as_row()]  # schema order


# ----------------------------------------------------------------------------- commit


def test_commit_merges_and_two_runs_share_a_day(tmp_path: Path) -> None:
    with Ledger(tmp_path, DAY, "run-a") as a:
        a.append(ev(5))
        a.append(ev(7))
    with Ledger(tmp_path, DAY, "run-b") as b:
        b.append(ev(6))
    assert [(r["run_id"], r["seq"], r["ts"] - T0) for r in day_rows(tmp_path)] == [
        ("run-a", 1, 5), ("run-b", 1, 6), ("run-a", 2, 7),
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / DAY).iterdir()) == [".ledger.lock", "ledger.parquet"]


def test_sigkilled_run_is_merged_by_the_next_commit_once(tmp_path: Path) -> None:
    proc = spawn("kill", tmp_path, "crashed", 20)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    journal = tmp_path / DAY / "_journal-crashed.jsonl"
    assert len(journal.read_text().splitlines()) == 20
    with journal.open("a") as f:
        f.write('{"ts": 1, "ev')  # and a torn line, as a crash mid-write leaves it
    with Ledger(tmp_path, DAY, "next") as ledger:
        ledger.append(ev(1))
    rows = day_rows(tmp_path)
    crashed = [r for r in rows if r["run_id"] == "crashed"]
    assert [{k: r[k] for k in writer_row("crashed", 0)} for r in crashed] == [
        writer_row("crashed", i) for i in range(20)
    ]
    assert [r["seq"] for r in crashed] == list(range(1, 21))
    assert len(rows) == 21 and not journal.exists()
    assert merge_leftovers(tmp_path, DAY) == 0
    assert len(day_rows(tmp_path)) == 21


def test_merge_leftovers_without_a_run(tmp_path: Path) -> None:
    spawn("kill", tmp_path, "crashed", 3).communicate(timeout=30)
    assert leftover_days(tmp_path) == [DAY]
    assert merge_leftovers(tmp_path, DAY) == 3
    assert leftover_days(tmp_path) == []
    assert keys(day_rows(tmp_path)) == [("crashed", 1), ("crashed", 2), ("crashed", 3)]
    assert merge_leftovers(tmp_path / "nowhere", DAY) == 0


def test_crash_between_replace_and_journal_delete_doubles_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, DAY, "run-a").open()
    ledger.append(ev(1))
    ledger.append(ev(2))
    saved = ledger.journal_path.read_bytes()
    ledger.commit()
    # The disk as a crash right after os.replace leaves it: new ledger, journal still there.
    ledger.journal_path.write_bytes(saved)
    with Ledger(tmp_path, DAY, "run-b") as b:
        b.append(ev(3))
    assert keys(day_rows(tmp_path)) == [("run-a", 1), ("run-a", 2), ("run-b", 1)]
    assert not ledger.journal_path.exists()


def test_eight_concurrent_processes_lose_no_row(tmp_path: Path) -> None:
    procs = [spawn("commit", tmp_path, f"w{i}", 40, stdin=subprocess.PIPE) for i in range(8)]
    for proc in procs:  # every writer holds its journal open before any starts appending
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    assert [proc.wait(timeout=60) for proc in procs] == [0] * 8
    rows = day_rows(tmp_path)
    assert sorted(keys(rows)) == sorted((f"w{i}", s) for i in range(8) for s in range(1, 41))
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert not list((tmp_path / DAY).glob("_journal-*"))


def test_corrupt_ledger_is_kept_byte_identical_and_rows_go_beside_it(tmp_path: Path) -> None:
    day = tmp_path / DAY
    day.mkdir()
    garbage = b"PAR1 this is not parquet \x00\xff"
    (day / "ledger.parquet").write_bytes(garbage)
    ledger = Ledger(tmp_path, DAY, "run-a").open()
    ledger.append(ev(1))
    with pytest.raises(LedgerError) as info:
        ledger.commit()
    assert (day / "ledger.parquet").read_bytes() == garbage
    message = str(info.value)
    assert message.startswith(f"{day / 'ledger.parquet'}: cannot read the ledger (")
    assert f"left it untouched and wrote 1 rows to {day / 'ledger.run-a.parquet'}" in message
    assert keys(table_to_rows(read_ledger(day / "ledger.run-a.parquet"))) == [("run-a", 1)]
    assert ledger.journal_path.exists()  # kept until the ledger can be repaired
    with pytest.raises(LedgerError):
        read_ledger(day)


def test_live_journal_of_another_run_is_not_merged(tmp_path: Path) -> None:
    live = Ledger(tmp_path, DAY, "live").open()
    live.append(ev(1))
    with Ledger(tmp_path, DAY, "done") as done:
        done.append(ev(2))
    assert keys(day_rows(tmp_path)) == [("done", 1)]
    assert live.journal_path.exists()
    assert keys(table_to_rows(read_ledger(tmp_path / DAY))) == [("live", 1), ("done", 1)]
    assert merge_leftovers(tmp_path, DAY) == 0
    live.append(ev(3))
    live.commit()
    assert keys(day_rows(tmp_path)) == [("live", 1), ("done", 1), ("live", 2)]


def test_leaving_the_block_on_an_error_still_commits(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append(ev(1))
        raise KeyboardInterrupt
    assert keys(day_rows(tmp_path)) == [("run-a", 1)]


def test_unreadable_middle_line_keeps_that_journal_and_merges_the_rest(tmp_path: Path) -> None:
    day = tmp_path / DAY
    day.mkdir()
    bad = day / "_journal-bad.jsonl"
    good = '{"ts": 5, "run_id": "bad", "seq": 1}\n'
    bad.write_text(good + "not json\n" + good.replace('"seq": 1', '"seq": 2'))
    ledger = Ledger(tmp_path, DAY, "run-a").open()
    ledger.append(ev(1))
    with pytest.raises(LedgerError) as info:
        ledger.commit()
    assert str(info.value) == (
        f"{bad}:2: unreadable journal line (fix or move it; the other journals were merged)"
    )
    assert keys(day_rows(tmp_path)) == [("run-a", 1)] and bad.exists()


def test_temp_file_of_a_crashed_compaction_is_removed(tmp_path: Path) -> None:
    day = tmp_path / DAY
    day.mkdir()
    (day / ".ledger.gone.tmp").write_bytes(b"half a parquet file")
    with Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append(ev(1))
    assert sorted(p.name for p in day.iterdir()) == [".ledger.lock", "ledger.parquet"]


# ----------------------------------------------------------------------------- failures


def make_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o555)
        return
    if shutil.which("chattr") is None:  # root ignores modes; only the immutable bit stops it
        pytest.skip("running as root without chattr")
    subprocess.run(["chattr", "+i", str(path)], check=True)


def test_read_only_out_dir_fails_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    make_read_only(out)
    try:
        ledger = Ledger(out, DAY, "run-a")
        with pytest.raises(LedgerError) as info:
            ledger.open()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(out)], check=True)
        out.chmod(0o755)
    assert str(info.value).startswith(
        f"cannot create the ledger journal {out / DAY / '_journal-run-a.jsonl'}: "
    )
    assert str(info.value).endswith(
        "(out_dir must be a writable folder with free space; nothing was sent)"
    )
    assert list(out.iterdir()) == []


def test_full_disk_refuses_the_append_and_keeps_whole_lines(tmp_path: Path) -> None:
    proc = spawn("fsize", tmp_path, "full", 1000)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    appended = int(out.split()[1].rstrip(":"))
    assert appended > 0
    assert "cannot write the ledger journal" in out and "File too large" in out
    journal = tmp_path / DAY / "_journal-full.jsonl"
    assert journal.read_text().endswith("\n")  # the torn line was cut back off
    assert merge_leftovers(tmp_path, DAY) == appended
    assert len(day_rows(tmp_path)) == appended


# ----------------------------------------------------------------------------- reading


def test_read_all_days_and_the_root_is_a_parquet_dataset(tmp_path: Path) -> None:
    for day, i in (("2026-01-05", 1), ("2026-01-06", 2)):
        with Ledger(tmp_path, day, f"run-{i}") as ledger:
            ledger.append(ev(i))
    Ledger(tmp_path, "2026-01-06", "live").open().append(ev(3))  # a journal on disk
    assert keys(table_to_rows(read_ledger(tmp_path))) == [("run-1", 1), ("run-2", 1), ("live", 1)]
    days = ds.partitioning(pa.schema([("date", pa.string())]))
    table = ds.dataset(tmp_path, format="parquet", partitioning=days).to_table()
    assert sorted(zip(table["date"].to_pylist(), table["run_id"].to_pylist(), strict=True)) == [
        ("2026-01-05", "run-1"), ("2026-01-06", "run-2"),
    ]  # fmt: skip


def test_tags_on_day_include_live_journals(tmp_path: Path) -> None:
    with Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append(ev(1))
        ledger.append(ev(1))
        ledger.append({"ts": T0})  # no tag
    Ledger(tmp_path, DAY, "live").open().append(ev(2))
    assert tags_on_day(tmp_path, DAY) == {"t1", "t2"}
    assert tags_on_day(tmp_path, "2026-01-06") == set()


# ----------------------------------------------------------------------------- show


def test_ledger_show_prints_one_line_per_event(tmp_path: Path) -> None:
    with Ledger(tmp_path, DAY, "run-a") as ledger:
        ledger.append({"ts": T0, "tag": "p1", "event": "INTENT", "qty": 2.0, "limit": 10.5})
        ledger.append(
            {"ts": T0 + 1_500_000, "tag": "p1", "event": "FILL", "qty": 2.0, "fill_qty": 2.0,
             "last_px": 10.25, "avg_px": 10.25}
        )  # fmt: skip
        ledger.append({"ts": T0 + 2_000_000, "tag": "p1", "event": "REJ", "message": "201 x"})
    out = io.StringIO()
    assert report.ledger_show(DAY, str(tmp_path), False, out=out) == 0
    assert out.getvalue() == (  # the run id's first 8 characters; prices padded to cents
        "2026-01-05T14:30:00.000000Z  run-a  p1  INTENT        —/2  @10.50\n"
        "2026-01-05T14:30:00.001500Z  run-a  p1  FILL          2/2  @10.25\n"
        "2026-01-05T14:30:00.002000Z  run-a  p1  REJ           —/—  @—  201 x\n"
    )
    out = io.StringIO()
    assert report.ledger_show(None, str(tmp_path), True, out=out) == 0
    assert out.getvalue().count("\n") == 1
    doc = json.loads(out.getvalue())
    assert (doc["version"], doc["command"], doc["ok"]) == (2, "ledger show", True)
    assert doc["ledger"] == str(tmp_path / DAY) and len(doc["events"]) == 3
    assert list(doc["events"][1]) == sorted(COLUMNS)  # keys sorted, as every document's
    assert doc["events"][1] == {c: None for c in COLUMNS} | {
        "ts": "2026-01-05T14:30:00.0015Z", "run_id": "run-a", "seq": 2, "tag": "p1",
        "event": "FILL", "qty": 2.0, "fill_qty": 2.0, "last_px": 10.25, "avg_px": 10.25,
    }  # fmt: skip


def test_ledger_show_numbers_as_recorded_and_noise_rounded_off(tmp_path: Path) -> None:
    """65000.05 stays 65000.05 (%g made it 65000.1), 1,000,000 is not 1e+06, and an
    average with float noise (a sum of fills divided) is shown to its 10 decimals."""
    with Ledger(tmp_path, DAY, "0123456789abcdef") as ledger:
        ledger.append({"ts": T0, "tag": "b1", "event": "INTENT", "qty": 1_000_000.0,
                       "limit": 65000.05, "deadline": T0 + 3 * 10**9})
        ledger.append({"ts": T0 + 1, "tag": "b1", "event": "FILL", "fill_qty": 0.00012345,
                       "qty": 1_000_000.0, "avg_px": 0.1 + 0.2, "commission": 0.7 + 0.7})
    out = io.StringIO()
    assert report.ledger_show(DAY, str(tmp_path), False, out=out) == 0
    assert out.getvalue() == (
        "2026-01-05T14:30:00.000000Z  01234567  b1  INTENT        —/1000000  @65000.05\n"
        "2026-01-05T14:30:00.000000Z  01234567  b1  FILL          0.00012345/1000000  @0.30\n"
    )
    out = io.StringIO()
    assert report.ledger_show(DAY, str(tmp_path), True, out=out) == 0
    intent, fill = json.loads(out.getvalue())["events"]
    assert (intent["limit"], intent["qty"]) == (65000.05, 1_000_000)
    assert (intent["ts"], intent["deadline"]) == ("2026-01-05T14:30:00Z", "2026-01-05T14:30:03Z")
    assert fill["ts"] == "2026-01-05T14:30:00.000000001Z"
    assert (fill["avg_px"], fill["commission"], fill["fill_qty"]) == (0.3, 1.4, 0.00012345)


def test_ledger_show_of_an_empty_day_is_no_error(tmp_path: Path) -> None:
    (tmp_path / DAY).mkdir()
    out, err = io.StringIO(), io.StringIO()
    assert report.ledger_show(DAY, str(tmp_path), False, out=out, err=err) == 0
    assert (out.getvalue(), err.getvalue()) == ("", f"runner: no events in {tmp_path / DAY}\n")
    out = io.StringIO()
    assert report.ledger_show(None, str(tmp_path), True, out=out) == 0
    assert json.loads(out.getvalue()) == {"version": 2, "command": "ledger show", "ok": True,
                                          "ledger": str(tmp_path / DAY), "events": []}


def test_ledger_show_with_nothing_there_exits_2(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report.ledger_show("2026-01-09", str(tmp_path), False, out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (
        f"runner: no ledger events found at {tmp_path / '2026-01-09'} "
        "(give a ledger file, a date YYYY-MM-DD, or --out-dir)\n"
    )
    out, err = io.StringIO(), io.StringIO()  # --json: the same on stderr, and a document
    assert report.ledger_show("2026-01-09", str(tmp_path), True, out=out, err=err) == 2
    assert err.getvalue().startswith("runner: no ledger events found at ")
    assert json.loads(out.getvalue()) == {
        "version": 2, "command": "ledger show", "ok": False, "spec": None, "tag": None,
        "error": {"exit_code": 2, "message": f"no ledger events found at "
                  f"{tmp_path / '2026-01-09'}",
                  "hint": "give a ledger file, a date YYYY-MM-DD, or --out-dir"}}


# ----------------------------------------------------------------------------- property


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared bit for bit (so -0.0 != 0.0) and NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def _integral(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_timestamp(t)


def value_strategy(field: pa.Field) -> st.SearchStrategy[Any]:
    if pa.types.is_string(field.type):
        return st.text(max_size=12)
    if pa.types.is_integer(field.type):
        return st.integers(-(2**63), 2**63 - 1)
    if pa.types.is_timestamp(field.type):
        return st.integers(-(2**62), 2**62)
    return st.floats(allow_nan=True, allow_infinity=True)


ROW = st.fixed_dictionaries(
    {"ts": st.integers(-(2**62), 2**62)},
    optional={
        f.name: st.none() | value_strategy(f)
        for f in LEDGER_SCHEMA
        if f.name not in ("ts", "run_id", "seq")
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=8), st.lists(ROW, max_size=4))
def test_any_rows_round_trip_through_journal_and_commit(
    first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        written: list[dict[str, Any]] = []
        for run_id, rows in (("a", first), ("b", second)):
            with Ledger(out, DAY, run_id) as ledger:
                for row in rows:
                    ledger.append(row)
            written += ledger.rows
        back = table_to_rows(read_ledger(out / DAY))
    order = sorted(written, key=lambda r: (r["ts"], r["run_id"], r["seq"]))
    assert len(back) == len(order)
    for got, want in zip(back, order, strict=True):
        assert set(got) == set(COLUMNS)
        assert all(same(got[c], want.get(c)) for c in COLUMNS), (got, want)


# ----------------------------------------------------------------------------- big days


def commit_run(out: Path, run_id: str, first: int, n: int) -> None:
    with Ledger(out, DAY, run_id) as ledger:
        for i in range(first, first + n):
            ledger.append(ev(i))


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'big day' of 10 rows and at most 3 parts, so the tests stay small."""
    from runner.ledger import compact  # where a commit reads them

    monkeypatch.setattr(compact, "REWRITE_BELOW_ROWS", 10)
    monkeypatch.setattr(compact, "MAX_PARTS", 3)


def test_on_a_big_day_a_run_writes_only_its_own_rows(tmp_path: Path,
                                                       small_thresholds: None) -> None:
    commit_run(tmp_path, "base", 0, 12)  # the day's file now holds 12 rows >= 10
    base = tmp_path / DAY / "ledger.parquet"
    before = (base.read_bytes(), base.stat().st_mtime_ns)
    commit_run(tmp_path, "r1", 100, 2)
    commit_run(tmp_path, "r2", 200, 3)
    assert (base.read_bytes(), base.stat().st_mtime_ns) == before  # not read back, not rewritten
    parts = sorted(p.name for p in (tmp_path / DAY).glob("ledger.part-*.parquet"))
    assert parts == ["ledger.part-r1.parquet", "ledger.part-r2.parquet"]
    rows = table_to_rows(read_ledger(tmp_path / DAY))
    assert len(rows) == 17 and len(set(keys(rows))) == 17
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert {"t100", "t201"} <= tags_on_day(tmp_path, DAY)
    assert len(ds.dataset(tmp_path / DAY, format="parquet").to_table()) == 17


def test_parts_are_folded_into_the_day_file_past_max_parts(tmp_path: Path,
                                                           small_thresholds: None) -> None:
    commit_run(tmp_path, "base", 0, 12)
    for k in range(3):
        commit_run(tmp_path, f"r{k}", 100 * (k + 1), 2)
    assert len(list((tmp_path / DAY).glob("ledger.part-*.parquet"))) == 3
    commit_run(tmp_path, "r3", 400, 2)  # the fourth: fold everything
    assert list((tmp_path / DAY).glob("ledger.part-*.parquet")) == []
    rows = day_rows(tmp_path)  # the day file alone
    assert len(rows) == 12 + 4 * 2 and len(set(keys(rows))) == 20


def test_a_part_left_by_a_crashed_fold_doubles_nothing(tmp_path: Path,
                                                       small_thresholds: None) -> None:
    commit_run(tmp_path, "base", 0, 12)
    for k in range(3):
        commit_run(tmp_path, f"r{k}", 100 * (k + 1), 2)
    part = tmp_path / DAY / "ledger.part-r0.parquet"
    kept = part.read_bytes()
    commit_run(tmp_path, "r3", 400, 2)  # folds r0..r3 and deletes the parts
    part.write_bytes(kept)  # as if the fold died after os.replace, before the unlink
    rows = table_to_rows(read_ledger(tmp_path / DAY))
    assert len(rows) == 20 and len(set(keys(rows))) == 20
    for k in range(4, 8):  # more runs: more parts, then another fold
        commit_run(tmp_path, f"r{k}", 100 * (k + 1), 2)
    rows = table_to_rows(read_ledger(tmp_path / DAY))
    assert len(rows) == 28 and len(set(keys(rows))) == 28


def test_sql_over_the_ledger_sees_the_parts(tmp_path: Path, small_thresholds: None) -> None:
    from runner.query import run_query

    commit_run(tmp_path, "base", 0, 12)
    commit_run(tmp_path, "r1", 100, 2)
    result = run_query("SELECT count(*), count(DISTINCT run_id) FROM ledger", tmp_path)
    assert result.rows == [(14, 2)]


def test_write_durable_is_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """recover's markers (orders left for it) go through write_durable: a failure before
    the rename leaves the old text and no temp file; a new folder is made."""
    from runner.ledger import remove_durable, write_durable

    path = tmp_path / ".unsettled" / "2026-01-05.x.json"
    write_durable(path, "old\n")
    assert path.read_text() == "old\n"

    def fail(*args: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_durable(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n" and sorted(p.name for p in path.parent.iterdir()) == \
        [path.name]
    remove_durable(path)
    remove_durable(path)  # gone already: nothing to do
    assert not path.exists()
