"""`runner test`: passed / failed / errored / skipped, the exit codes, JUnit XML that CI
systems read, `--json` against its schema, `--policy`, and a scenario's `at:`.

The bars are built here: six 1-second bars from 09:30:00 New York. Bar 1 (09:30:01) opens
at 10.00 and trades down to 9.90; bars 2-5 trade at 10.40..10.60 only. A BUY 10 at 10.00
that starts at the end of bar 0 (the default start) is marketable on bar 1's open: it fills
whole at 10.00 (the bar's 1,000 shares allow 10% = 100). Started at the end of bar 2
(`at:` 09:30:02), no later bar trades at or below 10.00: the TTL cancels it, nothing filled.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_dryrun import NS, T0, write_bars

from runner.cli import main
from runner.ledger import read_ledger

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "schemas" / "output" / "test.schema.json").read_text())
BAD = "version: 1\nkind: handshake\nttl_secs: 2\n"  # one error, at line 3
BAD_LINE = "bad.yaml:3:1: ttl_secs: unknown key (did you mean ttl_sec?)"


def scenario(path: Path, expect: str | None, qty: int = 10, **extra: str) -> Path:
    lines = ["version: 1", "kind: one-shot",
             f"order: {{symbol: SPY, side: BUY, qty: {qty}, limit: 10.00, tag: {path.stem}}}",
             "ttl_sec: 2", "bars_path: bars.parquet"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    if expect is not None:
        lines.append(f"expect: {expect}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_bars(tmp_path / "bars.parquet", close=[10.0, 10.0, 10.5, 10.5, 10.5, 10.5],
               low=[9.9, 9.9, 10.4, 10.4, 10.4, 10.4], high=[10.1, 10.1, 10.6, 10.6, 10.6, 10.6],
               volume=[1000] * 6)
    return tmp_path


@pytest.fixture
def four(work: Path) -> list[str]:
    """One case of each kind: pass, fail, error (an invalid file), skip."""
    scenario(work / "good.yaml", "{state: FILL, fill_qty: 10, avg_px: 10.00}")
    scenario(work / "wrong.yaml", "{state: CANCEL, fill_qty: 3}")
    (work / "bad.yaml").write_text(BAD)
    scenario(work / "plain.yaml", None)
    return ["good.yaml", "wrong.yaml", "bad.yaml", "plain.yaml"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, *argv, "--json")
    assert out.endswith("\n") and out.count("\n") == 1  # exactly one document, one line
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    return code, doc


def test_text_report_counts_each_kind_and_exits_4(four, capsys):
    code, out, _ = run(capsys, "test", *four)
    assert code == 4  # a failure outranks the error beside it
    assert out.splitlines() == [
        "PASS  good.yaml (good)",
        "FAIL  wrong.yaml (wrong)",
        "      state: expected CANCEL, got FILL",
        "      fill_qty: expected 3, got 10",
        "ERROR bad.yaml (bad)",
        f"      {BAD_LINE}",
        "SKIP  plain.yaml (plain)",
        "1 passed, 1 failed, 1 errored, 1 skipped",
    ]


def test_junit_has_a_suite_per_file_and_each_kind_of_case(four, work, capsys):
    assert main(["test", *four, "--junit", "reports/junit.xml"]) == 4
    root = ET.parse(work / "reports" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4", "failures": "1", "errors": "1", "skipped": "1"}
    assert float(root.get("time", "x")) >= 0 and root.get("timestamp", "").startswith("20")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == four  # one per file, in order
    for suite, failures, errors, skipped in zip(suites, "0100", "0010", "0001", strict=True):
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
                suite.get("skipped")) == ("1", failures, errors, skipped)
        assert suite.get("timestamp") == root.get("timestamp") and suite.get("time")
    cases = [s.find("testcase") for s in suites]
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("good", "good"), ("wrong", "wrong"), ("bad", "bad"), ("plain", "plain")]
    assert all(float(c.get("time", "x")) >= 0 for c in cases)
    good, wrong, bad, plain = cases
    assert list(good) == []
    [failure] = list(wrong)
    assert (failure.tag, failure.get("type")) == ("failure", "expect")
    assert failure.text == "state: expected CANCEL, got FILL\nfill_qty: expected 3, got 10"
    assert failure.get("message") == ("state: expected CANCEL, got FILL; "
                                      "fill_qty: expected 3, got 10")
    [error] = list(bad)
    assert (error.tag, error.get("type"), error.get("message"), error.text) == (
        "error", "SpecError", BAD_LINE, BAD_LINE)
    assert [e.tag for e in plain] == ["skipped"]


def test_junit_classname_is_the_dotted_path_and_later_documents_are_named(work, capsys):
    (work / "specs" / "scenarios").mkdir(parents=True)
    two = work / "specs" / "scenarios" / "two.yaml"
    first = scenario(work / "first.yaml", "{state: FILL}").read_text()
    two.write_text(first + "---\n" + first.replace("tag: first", "tag: again"))
    assert main(["test", "specs", "--junit", "j.xml"]) == 0
    [suite] = ET.parse(work / "j.xml").getroot()
    assert suite.get("name") == "specs/scenarios/two.yaml" and suite.get("tests") == "2"
    assert [(c.get("classname"), c.get("name")) for c in suite] == [
        ("specs.scenarios.two", "two"), ("specs.scenarios.two", "two#2")]


def test_errors_only_exit_2_and_a_refusal_stays_one_line(work, capsys):
    """--policy is applied as in `run --policy`: without it the same scenario passes."""
    scenario(work / "big.yaml", "{state: FILL, fill_qty: 10}")
    (work / "small.yaml").write_text("version: 1\nmax_qty: 5\n")
    assert run(capsys, "test", "big.yaml")[0] == 0
    code, out, _ = run(capsys, "test", "big.yaml", "--policy", "small.yaml")
    assert code == 2
    lines = out.splitlines()
    assert lines[:2] == ["ERROR big.yaml (big)",
                         "      big.yaml: refused by small.yaml; nothing was sent:"]
    assert len(lines) == 4 and "max_qty 5" in lines[2] and lines[2].startswith("        - ")
    assert lines[-1] == "0 passed, 0 failed, 1 errored, 0 skipped"


def test_an_unwritable_ledger_root_is_an_error_exit_2_nothing_sent(work, capsys):
    """A ledger root that is a file: refused before the order (exit 2, as in a run)."""
    scenario(work / "good.yaml", "{state: FILL}")
    (work / "afile").write_text("")
    code, out, _ = run(capsys, "test", "good.yaml", "--out-dir", "afile")
    assert code == 2
    assert out.splitlines()[0] == "ERROR good.yaml (good)"
    assert "cannot write the ledger under afile" in out


def test_an_unexpected_error_among_the_errors_exits_1(work, capsys, monkeypatch):
    """A bug in the run (injected: the simulator's fill schedule raises) is an error
    case, named with its type, and the run exits 1, not 2."""
    scenario(work / "good.yaml", "{state: FILL}")

    def bug(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr("runner.sim.fill_schedule", bug)
    code, out, _ = run(capsys, "test", "good.yaml")
    assert code == 1
    assert out.splitlines()[:2] == ["ERROR good.yaml (good)",
                                    "      unexpected error: ZeroDivisionError: injected"]


def test_nothing_to_test_exits_2_and_says_so(work, capsys):
    scenario(work / "plain.yaml", None)
    code, out, err = run(capsys, "test", "plain.yaml")
    assert (code, out.splitlines()) == (
        2, ["SKIP  plain.yaml (plain)", "0 passed, 0 failed, 0 errored, 1 skipped"])
    assert err == ("runner: nothing to test: no spec document with an expect: block in "
                   "plain.yaml\n")


def test_json_success(work, capsys):
    scenario(work / "good.yaml", "{state: FILL, fill_qty: 10}")
    code, doc = run_json(capsys, "test", "good.yaml")
    assert (code, doc["ok"], doc["version"], doc["command"]) == (0, True, 2, "test")
    assert doc["counts"] == {"passed": 1, "failed": 0, "errored": 0, "skipped": 0}
    [result] = doc["results"]
    assert (result["spec"], result["name"], result["status"], result["tag"], result["state"]) == (
        "good.yaml", "good", "pass", "good", "FILL")
    assert "error" not in doc


def test_json_failure_and_error(four, capsys):
    code, doc = run_json(capsys, "test", *four)
    assert (code, doc["ok"]) == (4, False)
    assert doc["error"] == {"exit_code": 4, "hint": None,
                            "message": "1 passed, 1 failed, 1 errored, 1 skipped"}
    assert doc["counts"] == {"passed": 1, "failed": 1, "errored": 1, "skipped": 1}
    by_name = {r["name"]: r for r in doc["results"]}
    assert [r["status"] for r in doc["results"]] == ["pass", "fail", "error", "skip"]
    assert by_name["wrong"]["differences"] == ["state: expected CANCEL, got FILL",
                                               "fill_qty: expected 3, got 10"]
    assert by_name["bad"]["error"] == {"exit_code": 2, "message": BAD_LINE, "hint": None,
                                       "type": "SpecError"}


@pytest.mark.parametrize("argv, message", [
    (["empty"], "no spec files (*.yaml, *.yml) in empty"),
    (["good.yaml", "--policy", "missing.yaml"], "--policy missing.yaml: no such file"),
])
def test_json_when_the_command_cannot_run(work, capsys, argv, message):
    (work / "empty").mkdir()
    scenario(work / "good.yaml", "{state: FILL}")
    code, out, err = run(capsys, "test", *argv, "--json")
    doc = json.loads(out)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert code == 2 and err == f"runner: {message}\n"
    assert doc == {"version": 2, "command": "test", "ok": False, "spec": None, "tag": None,
                   "error": {"exit_code": 2, "message": message, "hint": None}}


def test_json_nothing_to_test(work, capsys):
    scenario(work / "plain.yaml", None)
    code, doc = run_json(capsys, "test", "plain.yaml")
    assert (code, doc["ok"], doc["counts"]["skipped"]) == (2, False, 1)
    assert doc["error"]["message"] == "nothing to test: no spec document with an expect: block"


# --- at: pins a scenario's start ----------------------------------------------------------


def test_at_pins_the_start_of_a_scenario(work, capsys):
    scenario(work / "default.yaml", "{state: FILL, fill_qty: 10, avg_px: 10.00}")
    scenario(work / "late.yaml", "{state: CANCEL, fill_qty: 0, events: [INTENT, ACK, CANCEL]}",
             at="2026-01-05T09:30:02-05:00")  # unquoted: YAML 1.1 would make it a datetime
    code, out, _ = run(capsys, "test", "default.yaml", "late.yaml")
    assert (code, out.splitlines()[-1]) == (0, "2 passed, 0 failed, 0 errored, 0 skipped")


def test_at_is_the_start_of_a_dry_run_and_a_plan_unless_at_is_given(work, capsys):
    scenario(work / "late.yaml", None, at=str(T0 // NS + 2))  # epoch seconds
    assert main(["run", "late.yaml", "--dry-run", "--out-dir", "a"]) == 0
    assert main(["run", "late.yaml", "--dry-run", "--out-dir", "b", "--at", str(T0 // NS + 3)]) == 0
    intents = [[r["ts"].value for r in read_ledger(work / d).to_pylist() if r["event"] == "INTENT"]
               for d in ("a", "b")]
    assert intents == [[T0 + 2 * NS], [T0 + 3 * NS]]
    capsys.readouterr()
    assert main(["plan", "late.yaml", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plans"][0]["at"] == "2026-01-05T14:30:02Z"


def test_a_run_that_reaches_a_broker_refuses_at(work, capsys):
    scenario(work / "late.yaml", None, at="2026-01-05T09:30:02-05:00")
    code, out, err = run(capsys, "run", "late.yaml", "--out-dir", "x")
    assert (code, out) == (2, "")
    assert err == ("runner: late.yaml: at: 2026-01-05T09:30:02-05:00 pins a scenario's start, "
                   "but a run that reaches a broker runs on the broker's clock; nothing was "
                   "sent (run it with --dry-run or `runner test`, or remove at:)\n")
    assert not (work / "x").exists()


@pytest.mark.parametrize("value, message", [
    ("2026-01-05T09:30:02", "at: '2026-01-05T09:30:02' has no time zone (add one, e.g. "
                            "2026-01-05T09:30:00-05:00 or ...Z)"),
    ("1767623402000", "at: 1767623402000: not epoch seconds between 1990 and 2100 (13 digits; "
                      "milliseconds?) (give epoch seconds (e.g. 1767623400), or ISO 8601 with "
                      "an offset)"),
    ("soon", "at: 'soon': not a time (use ISO 8601 with an offset, e.g. "
             "2026-01-05T09:30:00-05:00, or epoch seconds)"),
])
def test_a_bad_at_is_a_spec_error_at_its_line(work, capsys, value, message):
    scenario(work / "s.yaml", None, at=value)
    code, _, err = run(capsys, "validate", "s.yaml")
    assert (code, err) == (2, f"s.yaml:6:5: {message}\n")


def test_a_handshake_takes_no_at(work, capsys):
    (work / "h.yaml").write_text("version: 1\nkind: handshake\nat: 1767623402\n")
    code, _, err = run(capsys, "validate", "h.yaml")
    assert (code, err) == (2, "h.yaml:3:1: at: not used by kind handshake; remove it\n")


def test_shipped_scenarios_plan_the_start_and_tag_they_are_tested_with(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    code, doc = run_json(capsys, "test", "specs/scenarios")
    assert code == 0 and doc["counts"]["passed"] == len(doc["results"]) >= 9
    for result in doc["results"]:
        assert main(["plan", result["spec"], "--json"]) == 0
        [plan] = json.loads(capsys.readouterr().out)["plans"]
        assert (plan["at"], plan["order"]["tag"]) == ("2026-01-05T14:30:01Z", result["tag"])


def test_junit_masks_account_ids_as_stderr_does(tmp_path, monkeypatch, capsys):
    """A refusal naming an account id: masked in the JUnit file as on the terminal,
    in the clear with --show-account."""
    from leaks import UNMASKED

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(
        "version: 1\nkind: sanity-cancel\nmode: paper\norder: {symbol: SPY, side: BUY, "
        "qty: 1, limit: 0.01, tag: j1, account: U7654321}\nexpect: {state: CANCEL}\n")
    assert main(["test", "a.yaml", "--junit", "j.xml"]) == 2
    assert "U****321" in capsys.readouterr().out  # runner test reports on stdout
    text = (tmp_path / "j.xml").read_text()
    assert "U****321 is a live account" in text and not UNMASKED.search(text), text
    assert main(["test", "a.yaml", "--junit", "k.xml", "--show-account"]) == 2
    assert "U7654321 is a live account" in (tmp_path / "k.xml").read_text()
