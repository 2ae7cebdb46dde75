"""`runner run --dry-run` end to end: plan -> simulator -> ledger -> TCA, with
expectations computed by hand from bars the tests build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from runner.cli import main
from runner.ledger import read_ledger
from runner.spec import load

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "live" / "2026-01-05" / "bars1s_SPY.parquet"
NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05 09:30:00 New York


def write_bars(path: Path, close: list[float], low: list[float], high: list[float],
               volume: list[float], vwap: list[float] | None = None) -> np.ndarray:
    n = len(close)
    ts = T0 + np.arange(n, dtype=np.int64) * NS
    cols = {"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), "open": close, "high": high,
            "low": low, "close": close, "volume": volume}
    if vwap is not None:
        cols["vwap"] = vwap
    pq.write_table(pa.table(cols), path)
    return ts


def spec(path: Path, side: str, qty: int, limit: float, ttl: float = 3, **extra: str) -> Path:
    lines = ["version: 1", "kind: one-shot",
             f"order: {{symbol: SPY, side: {side}, qty: {qty}, limit: {limit}, tag: t1}}",
             f"ttl_sec: {ttl}", "bars_path: bars.parquet", "out_dir: out"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ledger_rows(tmp_path: Path) -> list[dict]:
    return read_ledger(tmp_path / "out").to_pylist()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_main_job(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["run", "specs/one-shot.yaml", "--dry-run", "--out-dir", str(tmp_path)]) == 0
    bars = pq.read_table(SAMPLE).to_pandas()
    arrival = bars["close"].iloc[0]  # the clock starts when the first bar has ended
    assert capsys.readouterr().out == (
        f"[one-shot] tag=oneshot_SPY_1767623401000 state=CANCEL fill_qty=0 avg_px=— "
        f"arrival={arrival:.2f}\n")
    df = pd.read_parquet(tmp_path)
    assert list(df["event"]) == ["INTENT", "ACK", "CANCEL"]
    dataset = ds.dataset(tmp_path, format="parquet",
                         partitioning=ds.DirectoryPartitioning(pa.schema([("day", pa.string())])))
    table = dataset.to_table()
    assert table.column("day").to_pylist() == ["2026-01-05"] * 3
    # the TTL (2 s) cancel at the exact virtual time, on the broker's clock
    assert (df["ts"].iloc[2] - df["ts"].iloc[0]).value == 2 * NS


def test_buy_partial_fills_then_ttl_cancel_with_tca(work, capsys):
    #           bar0    bar1    bar2    bar3    bar4
    close = [100.00, 100.10, 100.20, 100.05, 100.30]
    low = [99.90, 99.95, 100.00, 100.02, 100.25]
    high = [100.10, 100.20, 100.30, 100.10, 100.40]
    volume = [1000, 500, 800, 2000, 700]
    write_bars(work / "bars.parquet", close, low, high, volume)
    spec(work / "s.yaml", "BUY", 200, 100.01, ttl=3)
    assert main(["run", "s.yaml", "--dry-run", "--at", str(T0 // NS + 1)]) == 0
    rows = ledger_rows(work)
    assert [r["event"] for r in rows] == ["INTENT", "ACK", "PARTIAL", "PARTIAL", "CANCEL",
                                          "PNL_SNAPSHOT"]
    # INTENT at bar1's start (bar0 has ended: arrival = 100.00). Bars starting at/after the
    # ACK: bar1 low 99.95 < 100.01 -> 10% of 500 = 50, reported at its end (T0+2 s);
    # bar2 low 100.00 < 100.01 -> 80 at T0+3 s; bar3 low 100.02 is not below the limit.
    # The TTL deadline is T0+1+3 s: the cancel lands exactly then.
    fills = [(r["last_qty"], r["last_px"], r["ts"].value) for r in rows if r["event"] == "PARTIAL"]
    assert fills == [(50, 100.01, T0 + 2 * NS), (80, 100.01, T0 + 3 * NS)]
    cancel = rows[4]
    assert cancel["ts"].value == T0 + 4 * NS and cancel["fill_qty"] == 130
    snap = rows[5]
    assert snap["fill_ratio"] == 130 / 200
    # Perold IS: the unfilled 70 charged at the price when the order ended (bar3's close,
    # the last bar ended at T0+4 s): s*[F*(P - P0) + (Q - F)*(P_end - P0)] / (Q*P0) * 1e4
    is_bps = (130 * (100.01 - 100.00) + 70 * (100.05 - 100.00)) / (200 * 100.00) * 1e4
    assert snap["is_bps"] == pytest.approx(is_bps, abs=1e-9)


def test_tca_snapshot_by_hand_buy_and_sell(work):
    close = [100.00, 100.10, 100.20, 100.05, 100.30]
    low = [99.90, 99.95, 100.00, 100.02, 100.25]
    high = [100.10, 100.20, 100.30, 100.10, 100.40]
    volume = [1000, 500, 800, 2000, 700]
    vwap = [100.01, 100.08, 100.15, 100.06, 100.28]
    write_bars(work / "bars.parquet", close, low, high, volume, vwap)
    for side, limit in (("BUY", 100.04), ("SELL", 100.12)):
        spec(work / "s.yaml", side, 60, limit, ttl=10)
        assert main(["run", "s.yaml", "--dry-run", "--at", str(T0 // NS + 1),
                     "--allow-duplicate"]) == 0
    rows = ledger_rows(work)
    snaps = [r for r in rows if r["event"] == "PNL_SNAPSHOT"]
    assert len(snaps) == 2
    buy, sell = sorted(snaps, key=lambda r: r["side"])
    arrival = 100.00  # close of bar0, the last bar ended at the INTENT (T0 + 1 s)
    # BUY 60 @ 100.04: bar1 (low 99.95) gives 50, bar2 (low 100.00) gives the last 10 at T0+3 s
    assert buy["fill_qty"] == 60 and buy["avg_px"] == pytest.approx(100.04, abs=1e-9)
    # SELL 60 @ 100.12: bar1 (high 100.20) gives 50 at the limit at its end (T0+2 s); bar2
    # opens at 100.20, above the limit (marketable): the last 10 at that open, reported at
    # bar2's end (T0+3 s) like every fill
    sell_px = (50 * 100.12 + 10 * 100.20) / 60
    assert sell["fill_qty"] == 60 and sell["avg_px"] == pytest.approx(sell_px, abs=1e-9)
    # both end at T0+3 s: the bars overlapping [T0+1, T0+3) are bar1 and bar2 (the SELL's
    # last 10 traded at bar2's open, and bar2 is inside its window)
    vwap_px = (100.08 * 500 + 100.15 * 800) / (500 + 800)
    assert buy["vwap_px"] == pytest.approx(vwap_px, abs=1e-9)
    assert sell["vwap_px"] == pytest.approx(vwap_px, abs=1e-9)
    assert buy["shortfall_bps"] == pytest.approx((100.04 - arrival) / arrival * 1e4, abs=1e-9)
    assert sell["shortfall_bps"] == pytest.approx(-(sell_px - arrival) / arrival * 1e4,
                                                  abs=1e-9)
    assert buy["vwap_slippage_bps"] == pytest.approx((100.04 - vwap_px) / vwap_px * 1e4,
                                                     abs=1e-9)
    assert sell["vwap_slippage_bps"] == pytest.approx(-(sell_px - vwap_px) / vwap_px * 1e4,
                                                      abs=1e-9)
    commission = max(1.0, 0.005 * 60)
    assert buy["commission"] == commission
    assert buy["fees_bps"] == pytest.approx(commission / (60 * 100.04) * 1e4, abs=1e-9)
    assert buy["participation"] == pytest.approx(60 / 1300, abs=1e-12)
    assert buy["ms_to_first_fill"] == 1000 and buy["ms_to_done"] == 2000
    assert sell["participation"] == pytest.approx(60 / 1300, abs=1e-12)
    assert sell["ms_to_first_fill"] == 1000 and sell["ms_to_done"] == 2000


def test_market_order_fills_at_the_next_open(work):
    close = [50.00, 50.50, 51.00]
    write_bars(work / "bars.parquet", close, [c - 0.1 for c in close],
               [c + 0.1 for c in close], [100, 100, 100])
    (work / "m.yaml").write_text(
        "version: 1\nkind: one-shot\norder: {symbol: SPY, side: SELL, qty: 7, "
        "allow_market: true, tag: m1}\nbars_path: bars.parquet\nout_dir: out\n")
    assert main(["run", "m.yaml", "--dry-run", "--at", str(T0 // NS)]) == 0
    fill = [r for r in ledger_rows(work) if r["event"] == "FILL"][0]
    # INTENT at T0: no bar has ended; bar0 starts at the ACK (T0) -> its open, 50.00,
    # reported when bar0 has ended (T0+1 s)
    assert (fill["last_qty"], fill["last_px"], fill["ts"].value) == (7, 50.00, T0 + NS)


def test_same_inputs_same_ledger_and_runs_append(work):
    write_bars(work / "bars.parquet", [10.0, 10.1, 10.2], [9.9, 9.9, 10.0],
               [10.2, 10.2, 10.3], [1000, 1000, 1000])
    spec(work / "s.yaml", "BUY", 150, 10.05)
    for _ in range(2):
        assert main(["run", "s.yaml", "--dry-run", "--at", str(T0 // NS + 1)]) == 0
    rows = ledger_rows(work)
    runs = sorted({r["run_id"] for r in rows})
    assert len(runs) == 2
    first, second = ([{k: v for k, v in r.items() if k != "run_id"} for r in rows
                      if r["run_id"] == run] for run in runs)
    assert first == second and len(first) >= 4


def test_corrupt_ledger_is_kept_and_reported(work, capsys):
    write_bars(work / "bars.parquet", [10.0, 10.1], [9.9, 9.9], [10.2, 10.2], [100, 100])
    spec(work / "s.yaml", "BUY", 1, 1.00)
    day = work / "out" / "2026-01-05"
    day.mkdir(parents=True)
    garbage = b"PAR1 this is not a parquet file"
    (day / "ledger.parquet").write_bytes(garbage)
    code = main(["run", "s.yaml", "--dry-run", "--at", str(T0 // NS + 1)])
    err = capsys.readouterr().err
    assert code == 1 and "ledger.parquet" in err and "Traceback" not in err
    assert (day / "ledger.parquet").read_bytes() == garbage
    beside = [p for p in day.glob("ledger.*.parquet")]
    assert len(beside) == 1
    assert [r["event"] for r in pq.read_table(beside[0]).to_pylist()] == \
        ["INTENT", "ACK", "CANCEL"]


def test_runner_test_reports_a_wrong_expectation(work, capsys):
    write_bars(work / "bars.parquet", [10.0, 10.1, 10.2], [9.9, 9.9, 10.0],
               [10.2, 10.2, 10.3], [1000, 1000, 1000])
    spec(work / "good.yaml", "BUY", 10, 10.05,
         expect="{state: FILL, fill_qty: 10, avg_px: 10.05}")
    spec(work / "bad.yaml", "BUY", 10, 10.05, expect="{state: CANCEL, fill_qty: 3}")
    code = main(["test", "good.yaml", "bad.yaml", "--junit", "junit.xml"])
    out = capsys.readouterr().out
    assert code == 4
    assert out.splitlines() == [
        "PASS  good.yaml (good)",
        "FAIL  bad.yaml (bad)",
        "      state: expected CANCEL, got FILL",
        "      fill_qty: expected 3, got 10",
        "1 passed, 1 failed, 0 errored, 0 skipped",
    ]
    junit = (work / "junit.xml").read_text()
    assert 'tests="2" failures="1"' in junit and "state: expected CANCEL, got FILL" in junit


def test_shipped_scenarios_pass(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    docs = [s for f in sorted((REPO / "specs").rglob("*.yaml")) for s in load(str(f))]
    scenarios = sum(s.expect is not None for s in docs)
    assert main(["test", "specs/"]) == 0
    out = capsys.readouterr().out
    assert scenarios >= 9 and out.endswith(
        f"\n{scenarios} passed, 0 failed, 0 errored, {len(docs) - scenarios} skipped\n")


def test_tca_and_ledger_show_read_the_run(work, capsys):
    write_bars(work / "bars.parquet", [10.0, 10.1, 10.2], [9.9, 9.9, 10.0],
               [10.2, 10.2, 10.3], [1000, 1000, 1000])
    spec(work / "s.yaml", "BUY", 10, 10.05)
    assert main(["run", "s.yaml", "--dry-run", "--at", str(T0 // NS + 1), "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["state"] == "FILL" and result["events"][-1] == "PNL_SNAPSHOT"
    assert main(["tca", "2026-01-05", "--out-dir", "out", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    order = doc["orders"][0]
    assert order["tag"] == "t1" and order["fill_qty"] == 10
    assert order["shortfall_bps"] == 50.0  # (10.05 - 10.0) / 10.0 * 1e4, to 4 decimals
    assert main(["ledger", "show", "2026-01-05", "--out-dir", "out"]) == 0
    shown = capsys.readouterr().out
    assert shown.count(" t1 ") >= 4 and "PNL_SNAPSHOT" in shown


def test_plan_json_is_byte_identical_and_matches_golden(monkeypatch):
    env = {"IB_GATEWAY_HOST": "127.0.0.1", "IB_GATEWAY_PORT": "4002", "IB_CLIENT_ID": "11",
           "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "runner", "plan", "specs/one-shot.yaml", "--json",
           "--at", "2026-01-05T09:30:00-05:00"]
    outs = [subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1]
    golden = REPO / "tests" / "golden" / "one-shot.plan.json"
    [plan] = json.loads(outs[0])["plans"]  # the document of `plan --json` holds the plans
    assert plan == json.loads(golden.read_text())
    assert plan["connection"] == {"host": "127.0.0.1", "port": 4002, "client_id": 11,
                                  "timeout_sec": 10.0, "reconnect_sec": 30.0,
                                  "cancel_timeout_sec": 10.0}
    assert plan["order"]["tag"] == "oneshot_SPY_1767623400000"
    # the plan holds durations; the engine stamps the GTD from the INTENT (DESIGN §4)
    assert plan["order"]["good_till"] == "INTENT + 12 s" and "deadline_ns" not in plan
    assert plan["order"]["backstop_sec"] == 12.0 and "good_till_ns" not in plan["order"]
    # times as ISO 8601 UTC text only, never ns integers (issue 14's JSON contract)
    assert plan["at"] == "2026-01-05T14:30:00Z" and "at_ns" not in plan


def test_bad_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("IB_GATEWAY_PORT", "seventy")
    assert main(["plan", "specs/one-shot.yaml"]) == 2
    assert capsys.readouterr().err == ("runner: IB_GATEWAY_PORT='seventy' is not a whole number "
                                       "in 1..65535 (fix or unset IB_GATEWAY_PORT)\n")


def test_bars_of_another_day_are_refused(work, capsys):
    write_bars(work / "bars.parquet", [10.0, 10.1], [9.9, 9.9], [10.2, 10.2], [100, 100])
    spec(work / "s.yaml", "BUY", 1, 10.00)
    assert main(["run", "s.yaml", "--dry-run", "--at", "2026-01-06T09:30:00-05:00"]) == 2
    assert capsys.readouterr().err == (
        "runner: bars.parquet: the bars cover 2026-01-05T14:30:00Z .. 2026-01-05T14:30:02Z, "
        "but the run starts at 2026-01-06T14:30:00Z; the simulator would have no price "
        "(pick --at inside the bars, or bars for that day)\n")
    assert not (work / "out").exists()


def imported_by_dry_runs(out_dir: Path, runs: int, modules: tuple[str, ...]) -> str:
    """`runs` dry runs of the shipped one-shot into `out_dir`, in a fresh interpreter;
    which of `modules` it has imported then, comma-separated."""
    code = (
        "import sys, io, contextlib\n"
        "from runner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    for _ in range({runs}):\n"
        "        assert main(['run', 'specs/one-shot.yaml', '--dry-run',\n"
        "                     '--allow-duplicate', '--allow-outside',\n"
        f"                     '--out-dir', {str(out_dir)!r}]) == 0\n"
        f"print(','.join(m for m in {modules!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_dry_run_imports_no_pandas_nor_ib_async(tmp_path):
    """DESIGN §9: the dry-run path stays pandas-free — the second run merges into the
    ledger file the first wrote (the path that sorts, de-duplicates and reads it back)."""
    heavy = ("pandas", "ib_async", "pyarrow.dataset")
    assert imported_by_dry_runs(tmp_path / "exec", 2, heavy) == "\n"
    assert len(list((tmp_path / "exec").glob("*/ledger.parquet"))) == 1


def test_a_dry_run_on_a_fresh_day_imports_no_pyarrow_compute(tmp_path):
    """DESIGN §9 (dry run ≤ 1.6× its floor): reading the shipped bars and writing a new
    day's ledger go without pyarrow.compute, whose import is ~25 ms of a dry run."""
    modules = ("pyarrow.compute", "pyarrow.parquet")
    assert imported_by_dry_runs(tmp_path / "exec", 1, modules) == "pyarrow.parquet\n"
    assert len(list((tmp_path / "exec").glob("*/ledger.parquet"))) == 1


@pytest.mark.parametrize("day, hours", [("2026-03-08", 23), ("2026-11-01", 25),
                                        ("2026-12-31", 24)])
def test_a_trading_day_and_its_span_agree_to_the_nanosecond(day: str, hours: int) -> None:
    """The engine checks the INTENT against day_span_ns; the ledger files it by
    trading_day: both must put the last nanosecond before midnight (New York) on the day."""
    from runner.plan import day_span_ns, trading_day

    first, end = day_span_ns(day)
    assert end - first == hours * 3600 * 1_000_000_000  # DST start, DST end, a plain day
    assert trading_day(first) == day and trading_day(end - 1) == day
    assert trading_day(first - 1) < day < trading_day(end)
