"""Issue 14: generated tags are unique (milliseconds, and the document's number in a file)
and the same from `plan` and `run` for one `--at`; `plan` prints every number as it is
sent; plan JSON holds times as ISO 8601 text only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runner.cli import main
from runner.ledger import read_ledger
from runner.spec import SCHEMA_PATH

REPO = Path(__file__).resolve().parent.parent
AT = "2026-01-05T09:30:00.123-05:00"  # 1767623400.123 s since the epoch
TAG_PATTERN = json.loads(SCHEMA_PATH.read_text())["properties"]["order"]["properties"]["tag"][
    "pattern"]


def sanity(qty: int, symbol: str = "SPY") -> str:
    return ("version: 1\nkind: sanity-cancel\n"
            f"order: {{symbol: {symbol}, side: BUY, qty: {qty}, limit: 0.01}}\n")


def planned_tags(text: str) -> list[str]:
    return re.findall(r"^  tag     (\S+)$", text, re.MULTILINE)


def plan_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["plan", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_three_untagged_specs_of_one_symbol_plan_three_tags_and_run_three(work, capsys):
    Path("three.yaml").write_text("---\n".join(sanity(q) for q in (1, 2, 3)))
    tags = planned_tags(plan_text(capsys, "three.yaml", "--at", AT))
    assert tags == ["sanity_SPY_1767623400123", "sanity_SPY_1767623400123-2",
                    "sanity_SPY_1767623400123-3"]
    assert main(["run", "three.yaml", "--dry-run", "--at", AT]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"[sanity-cancel] tag={t} ACK+Cancel recorded" for t in tags]
    assert err == ""
    ledger = read_ledger(work / "data" / "exec", ["event", "tag"]).to_pylist()
    assert sorted(r["tag"] for r in ledger if r["event"] == "INTENT") == tags  # one each


def test_tags_have_millisecond_resolution(work, capsys):
    Path("one.yaml").write_text(sanity(1))
    first = planned_tags(plan_text(capsys, "one.yaml", "--at", "1767623400.001"))
    second = planned_tags(plan_text(capsys, "one.yaml", "--at", "1767623400.002"))
    assert (first, second) == (["sanity_SPY_1767623400001"], ["sanity_SPY_1767623400002"])


def test_the_classic_shape_and_the_same_tag_from_plan_and_run(work, capsys):
    Path("one.yaml").write_text(sanity(1))
    [tag] = planned_tags(plan_text(capsys, "one.yaml", "--at", AT))
    assert main(["run", "one.yaml", "--dry-run", "--at", AT]) == 0
    assert capsys.readouterr().out == f"[sanity-cancel] tag={tag} ACK+Cancel recorded\n"
    assert main(["sanity-cancel", "--dry-run", "--at", AT]) == 0  # the classic command
    assert capsys.readouterr().out == f"[sanity-cancel] tag={tag} ACK+Cancel recorded\n"


@pytest.mark.parametrize("symbol, tag", [("'BRK B'", "sanity_BRK.B_1767623400123"),
                                         ("EUR/USD", "sanity_EUR.USD_1767623400123")])
def test_a_generated_tag_stays_in_the_tag_alphabet(work, capsys, symbol, tag):
    """orderRef is sent as an ASCII field; a tag keeps the alphabet a spec's tag: has."""
    Path("one.yaml").write_text(sanity(1, symbol))
    assert planned_tags(plan_text(capsys, "one.yaml", "--at", AT)) == [tag]
    assert re.fullmatch(TAG_PATTERN, tag)


def test_shipped_scenarios_record_one_tag_each(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    files = sorted((REPO / "specs" / "scenarios").glob("*.yaml"))
    assert main(["test", "specs/scenarios", "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    rows = read_ledger(tmp_path, ["event", "tag"]).to_pylist()
    tags = [r["tag"] for r in rows if r["event"] == "INTENT"]
    assert sorted(tags) == sorted(f"scenario-{f.stem}" for f in files)


def test_plan_prints_quantities_and_prices_as_sent(work, capsys):
    """No %g (1e+06) and no rounding (1.08505 is not 1.09): the text sent to IB."""
    Path("big.yaml").write_text(
        "version: 1\nkind: one-shot\n"
        "order: {symbol: EUR, sec_type: CASH, exchange: IDEALPRO, side: BUY, qty: 1000000,"
        " limit: 1.08505, tag: fx-1}\n"
        "ttl_sec: 0.274\nlimits: {max_qty: 1500000, max_notional: 2000000.5}\n")
    out = plan_text(capsys, "big.yaml", "--at", AT)
    assert "  limits  max_qty=1500000 max_notional=2000000.5\n" in out
    assert ("  3. place    BUY 1000000 EUR LMT 1.08505 GTD INTENT + 10.274 s (TTL backstop) "
            "orderRef=fx-1\n") in out
    assert "  4. wait     ACK and fills until the TTL: INTENT + 0.274 s (the broker's clock)\n" \
        in out


@pytest.mark.parametrize("order, shown", [
    ("symbol: SPY, side: SELL, qty: 3, limit: 473.1", "SELL 3 SPY LMT 473.10"),  # STK: 2
    ("symbol: SPY, side: BUY, qty: 3, limit: 0.5", "BUY 3 SPY LMT 0.5000"),  # below $1: 4
    ("symbol: EUR, sec_type: CASH, exchange: IDEALPRO, side: BUY, qty: 20000, limit: 1.1",
     "BUY 20000 EUR LMT 1.10000"),  # FX: half a pip, 5 decimals
    ("symbol: USD, sec_type: CASH, exchange: IDEALPRO, currency: JPY, side: SELL, qty: 25000,"
     " limit: 157.2", "SELL 25000 USD LMT 157.200"),  # a yen quote: 3
    ("symbol: BTC, sec_type: CRYPTO, exchange: PAXOS, side: BUY, qty: 0.00012345,"
     " limit: 65000.05", "BUY 0.00012345 BTC LMT 65000.05"),
])
def test_prices_get_their_instruments_decimals(work, capsys, order, shown):
    Path("one.yaml").write_text(f"version: 1\nkind: one-shot\norder: {{{order}, tag: t}}\n")
    assert f"  3. place    {shown} " in plan_text(capsys, "one.yaml", "--at", AT)


def test_plan_json_has_iso_times_and_exact_numbers(work, capsys):
    Path("one.yaml").write_text("version: 1\nkind: one-shot\n"
                                "order: {symbol: SPY, side: BUY, qty: 1000000, limit: 10.01}\n"
                                "ttl_sec: 0.274\n")
    assert main(["plan", "one.yaml", "--json", "--at", AT]) == 0
    text = capsys.readouterr().out
    assert "_ns" not in text and "e+" not in text
    doc = json.loads(text)
    [plan] = doc["plans"]  # the JSON contract's document holds the file's plans
    assert plan["at"] == "2026-01-05T14:30:00.123Z"
    assert plan["order"]["qty"] == 1_000_000 and plan["order"]["limit"] == 10.01
    assert plan["order"]["backstop_sec"] == 10.274 and plan["ttl_sec"] == 0.274
    assert plan["order"]["good_till"] == "INTENT + 10.274 s"
    assert plan["order"]["tag"] == "oneshot_SPY_1767623400123"


def test_the_plan_names_the_ledger_that_run_out_dir_writes(work, capsys):
    """`--out-dir` is an input of the plan, not a patch after it: the plan's `record`
    step and its ledger are the file the run writes (they named data/exec before)."""
    from runner.run import RunOptions, load_specs, plan_spec

    Path("one.yaml").write_text(sanity(1))
    assert main(["run", "one.yaml", "--dry-run", "--at", AT, "--out-dir", "elsewhere",
                 "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["ledger"] == "elsewhere/2026-01-05/ledger.parquet"
    assert (work / result["ledger"]).is_file() and not (work / "data").exists()
    opts = RunOptions(dry_run=True, at=AT, out_dir="elsewhere")
    [spec] = load_specs("one.yaml", opts)
    plan = plan_spec(spec, opts, {}).plan  # the run's own plan stage
    assert plan.steps[-1].op == "record" and plan.steps[-1].detail == result["ledger"]
    assert plan.ledger_path == result["ledger"] and plan.to_dict()["ledger"] == result["ledger"]


def test_the_run_pipeline_stage_by_stage_with_plain_values(work, capsys):
    """load -> plan -> gate -> execute -> report, each stage given the previous one's
    value and plain options (no argparse): what `runner run --json` reports."""
    from runner.run import RunOptions, execute, gate, load_specs, plan_spec, report, verdict

    Path("two.yaml").write_text(sanity(1) + "---\n" + sanity(2, "QQQ"))
    assert main(["run", "two.yaml", "--dry-run", "--at", AT, "--json", "--out-dir", "a"]) == 0
    by_cli = json.loads(capsys.readouterr().out)["results"]
    opts = RunOptions(dry_run=True, at=AT, as_json=True, out_dir="b")
    specs = load_specs("two.yaml", opts)
    gated: list = []
    for spec in specs:
        gated.append(gate(plan_spec(spec, opts, {}), opts, gated))
    ran = [execute(g, opts) for g in gated]
    by_stage = [report(r, opts) for r in ran]
    for r in ran:
        verdict(r, opts)  # each succeeded: nothing raised
    assert capsys.readouterr() == ("", "")  # --json: the stages print nothing themselves
    assert [r["ledger"] for r in by_stage] == ["b/2026-01-05/ledger.parquet"] * 2
    assert [{**r, "ledger": None} for r in by_stage] == [{**r, "ledger": None} for r in by_cli]
    assert [r["tag"] for r in by_stage] == ["sanity_SPY_1767623400123",
                                            "sanity_QQQ_1767623400123-2"]
