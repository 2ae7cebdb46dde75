"""`--json` everywhere: one object per command, with a `version` (plan: `format`), in the
shape the README documents. Values are checked against a scenario whose numbers are
known by hand: BUY 100 at 473.10 on the sample bars fills whole on the first bar after
the ACK (specs/scenarios/fill.yaml), commission max(100 x 0.005, 1.00) = 1.00."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.ledger import COLUMNS
from runner.tca import ORDER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
BARS = "data/live/2026-01-05/bars1s_SPY.parquet"
FILL = "specs/scenarios/fill.yaml"
AT = "2026-01-05T09:30:01-05:00"
HEAVY = ("pandas", "pyarrow", "ib_async", "ibapi", "duckdb", "matplotlib", "numpy")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (BARS, FILL):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "specs" / "bad.yaml").write_text("version: 1\nkind: handshake\nttl_secs: 2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    assert main(list(argv)) == code
    out = capsys.readouterr().out
    return json.loads(out)


def test_validate_json(project, capsys) -> None:
    doc = run_json(capsys, "validate", "specs", "--json", code=2)
    assert doc == {"version": 1, "specs": 2, "invalid": 1,
                   "errors": ["specs/bad.yaml:3:1: ttl_secs: unknown key (did you mean ttl_sec?)"]}


def test_plan_json_is_versioned_by_format(project, capsys) -> None:
    doc = run_json(capsys, "plan", FILL, "--json", "--at", AT)
    assert doc["format"] == 1
    assert (doc["kind"], doc["order"]["qty"], doc["order"]["limit"]) == ("one-shot", 100, 473.1)
    assert doc["ledger"] == "data/exec/2026-01-05/ledger.parquet"


def test_run_test_tca_and_ledger_show_json(project, capsys) -> None:
    run = run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")
    assert set(run) == {"version", "spec", "kind", "tag", "state", "fill_qty", "avg_px",
                        "arrival_px", "commission", "message", "events", "tca", "ledger"}
    assert (run["version"], run["state"], run["fill_qty"], run["avg_px"], run["commission"]) == (
        1, "FILL", 100, 472.92, 1.00)  # the first bar opens below the limit: at its open
    assert run["events"] == ["INTENT", "ACK", "FILL", "PNL_SNAPSHOT"]

    tca = run_json(capsys, "tca", "--out-dir", "exec", "--json")
    assert set(tca) == {"version", "orders", "totals"} and tca["version"] == 2
    [order] = tca["orders"]
    assert set(order) == set(ORDER_FIELDS)
    assert (order["tag"], order["state"], order["fill_qty"]) == (run["tag"], "FILL", 100)
    [usd] = tca["totals"]  # one object per currency
    assert (usd["currency"], usd["fill_qty"], usd["commission"]) == ("USD", 100, 1.00)
    assert usd["notional"] == pytest.approx(100 * 472.92)

    shown = run_json(capsys, "ledger", "show", "--out-dir", "exec", "--json")
    assert set(shown) == {"version", "events"} and shown["version"] == 1
    assert [e["event"] for e in shown["events"]] == run["events"]
    assert all(list(e) == list(COLUMNS) for e in shown["events"])

    query = run_json(capsys, "ledger", "query", "SELECT event, fill_qty FROM ledger ORDER BY seq",
                     "--out-dir", "exec", "--json")
    assert query == {"version": 1, "columns": ["event", "fill_qty"],
                     "rows": [["INTENT", 0.0], ["ACK", 0.0], ["FILL", 100.0],
                              ["PNL_SNAPSHOT", 100.0]]}


def test_test_json(project, capsys) -> None:
    doc = run_json(capsys, "test", FILL, "--json")
    assert (doc["version"], doc["command"], doc["ok"]) == (2, "test", True)
    assert doc["counts"] == {"passed": 1, "failed": 0, "errored": 0, "skipped": 0}
    [result] = doc["results"]
    assert set(result) == {"file", "spec", "name", "status", "seconds", "tag", "state",
                           "differences", "error"}
    assert (result["spec"], result["name"], result["status"]) == (FILL, "fill", "pass")


@pytest.mark.parametrize("argv", [["validate", FILL, "--json"],
                                  ["plan", FILL, "--json", "--at", AT]])
def test_validate_and_plan_import_nothing_heavy(project, argv) -> None:
    """They run in every CI of every trading repo: no pandas, pyarrow, ib_async, DuckDB
    or matplotlib (DESIGN §9)."""
    script = ("import sys, json; from runner.cli import main; code = main(sys.argv[1:]); "
              f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules); "
              "sys.stderr.write(json.dumps([code, heavy]))")
    proc = subprocess.run([sys.executable, "-c", script, *argv], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stderr) == [0, []]
    assert json.loads(proc.stdout)  # and it printed its JSON
