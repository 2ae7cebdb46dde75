"""`--json` everywhere (issue 14): every command prints exactly one JSON document on
stdout, one line, in every outcome — success, refusal, bad input, an empty or missing
ledger, an unreachable gateway — and each document is checked against its shipped
schema (runner/schemas/output/). Values are checked against a scenario whose numbers are
known by hand: BUY 100 at 473.10 on the sample bars fills whole on the first bar after
the ACK (specs/scenarios/fill.yaml) at its open 472.92, commission max(100 x 0.005,
1.00) = 1.00."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from runner.cli import main
from runner.jsondoc import BPS, DECIMALS, RATIO
from runner.ledger import COLUMNS
from runner.output import number_text
from runner.tca import ORDER_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "runner" / "schemas" / "output"  # what the package ships
BARS = "data/live/2026-01-05/bars1s_SPY.parquet"
FILL = "specs/scenarios/fill.yaml"
AT = "2026-01-05T09:30:01-05:00"
HEAVY = ("pandas", "pyarrow", "ib_async", "ibapi", "duckdb", "matplotlib", "numpy")
SCHEMA_OF = {"validate": "validate", "plan": "plan", "run": "run", "handshake": "run",
             "sanity-cancel": "run", "one-shot": "run", "ledger show": "ledger-show",
             "ledger query": "ledger-query", "tca": "tca", "test": "test"}  # fmt: skip
TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"


def _validators() -> dict[str, Draft202012Validator]:
    schemas = {p.name.removesuffix(".schema.json"): json.loads(p.read_text())
               for p in sorted(SHIPPED.glob("*.schema.json"))}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)
    return {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


VALIDATORS = _validators()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (BARS, FILL):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "specs" / "bad.yaml").write_text("version: 1\nkind: handshake\nttl_secs: 2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def checked(out: str) -> dict[str, Any]:
    """The one document on stdout, valid against its command's schema (and a failure
    against the shared failure schema too), its figures free of float noise."""
    assert out.endswith("\n") and out.count("\n") == 1, out  # exactly one line
    doc = json.loads(out)
    assert isinstance(doc, dict) and isinstance(doc["version"], int), doc
    VALIDATORS[SCHEMA_OF[doc["command"]]].validate(doc)
    if not doc["ok"]:
        VALIDATORS["failure"].validate({k: v for k, v in doc.items() if k in FAILURE_KEYS})
    assert_no_noise(doc)
    return doc


FAILURE_KEYS = ("version", "command", "ok", "error", "spec", "tag", "errors", "reasons")


def assert_no_noise(value: Any, key: str = "") -> None:
    """Every figure has at most its documented decimals (no 1.4000000000000001)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert_no_noise(v, k)
    elif isinstance(value, list):
        for v in value:
            assert_no_noise(v, key)
    elif isinstance(value, float) and key in DECIMALS:
        assert len(number_text(value).partition(".")[2]) <= DECIMALS[key], (key, value)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    doc = checked(out)
    assert doc["ok"] is (code == 0)
    if code:
        assert doc["error"]["exit_code"] == code
        assert err or doc["command"] == "validate"  # the text still goes to stderr
    return doc


def to(decimals: int, x: float) -> Any:
    return pytest.approx(x, rel=0, abs=0.5 * 10.0**-decimals)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


ONE = "version: 1\nkind: sanity-cancel\norder: {{symbol: SPY, side: BUY, qty: {qty}, " \
      "limit: 0.01, tag: {tag}}}\n"


# ----------------------------------------------------------------------------- validate


def test_validate_json(project, capsys) -> None:
    doc = run_json(capsys, "validate", "specs", "--json", code=2)
    assert doc == {"version": 1, "command": "validate", "ok": False, "specs": 2, "invalid": 1,
                   "errors": ["specs/bad.yaml:3:1: ttl_secs: unknown key (did you mean ttl_sec?)"],
                   "error": {"exit_code": 2, "message": "1 of 2 specs invalid", "hint": None},
                   "spec": None, "tag": None}  # fmt: skip
    doc = run_json(capsys, "validate", FILL, "--json")
    assert doc == {"version": 1, "command": "validate", "ok": True, "specs": 1, "invalid": 0,
                   "errors": []}


def test_validate_json_with_nothing_to_check(project, capsys) -> None:
    (project / "empty").mkdir()
    doc = run_json(capsys, "validate", "empty", "--json", code=2)
    assert doc["error"] == {"exit_code": 2, "message": "no spec files (*.yaml, *.yml) in empty",
                            "hint": None}
    assert (doc["spec"], doc["tag"]) == ("empty", None)


# ----------------------------------------------------------------------------- plan


def test_plan_json_holds_the_plans(project, capsys) -> None:
    doc = run_json(capsys, "plan", FILL, "--json", "--at", AT)
    [plan] = doc["plans"]
    assert (doc["version"], doc["command"], plan["format"]) == (2, "plan", 1)
    assert (plan["kind"], plan["order"]["qty"], plan["order"]["limit"]) == ("one-shot", 100, 473.1)
    assert plan["ledger"] == "data/exec/2026-01-05/ledger.parquet"
    assert plan["at"] == "2026-01-05T14:30:01Z"


def test_plan_json_of_a_file_of_several_specs(project, capsys) -> None:
    spec = write(project / "two.yaml", ONE.format(qty=1, tag="p-1") + "---\n"
                 + ONE.format(qty=2, tag="p-2"))
    doc = run_json(capsys, "plan", spec, "--json", "--at", AT)
    assert [(p["spec"], p["order"]["tag"]) for p in doc["plans"]] == [
        ("two.yaml", "p-1"), ("two.yaml#2", "p-2")]


def test_plan_json_refused_shows_the_plans_and_the_reasons(project, capsys) -> None:
    write(project / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    spec = write(project / "big.yaml", ONE.format(qty=10, tag="big-1"))
    doc = run_json(capsys, "plan", spec, "--json", "--at", AT, code=2)
    assert (doc["spec"], doc["tag"]) == ("big.yaml", "big-1")
    assert doc["reasons"] == ["qty 10 exceeds the policy's max_qty 5 "
                              "(from runner-policy.yaml:2:10)"]
    assert [p["order"]["tag"] for p in doc["plans"]] == ["big-1"]  # shown all the same
    assert doc["error"]["message"].startswith("big.yaml: refused by runner-policy.yaml")


@pytest.mark.parametrize("argv, message", [
    (["plan", "nope.yaml"], "nope.yaml:1:1: cannot read file: No such file or directory"),
    (["plan", "specs/bad.yaml"], "specs/bad.yaml:3:1: ttl_secs: unknown key "
                                 "(did you mean ttl_sec?)"),
    (["plan", FILL, "--at", "soon"], "--at 'soon': not a time"),
    (["run", "nope.yaml"], "nope.yaml:1:1: cannot read file: No such file or directory"),
    (["run", "specs/bad.yaml", "--dry-run"], "specs/bad.yaml:3:1: ttl_secs: unknown key "
                                             "(did you mean ttl_sec?)"),
])  # fmt: skip
def test_bad_input_is_one_failure_document(project, capsys, argv, message) -> None:
    doc = run_json(capsys, *argv, "--json", code=2)
    assert doc["error"]["message"] == message
    assert doc["spec"] == argv[1] and doc["tag"] is None
    assert doc.get("errors", [message]) == [message]  # a spec's problems, one per line


@pytest.mark.parametrize("argv", [["one-shot", "--side", "BYU"], ["plan", FILL, "--bogus"],
                                  ["tca", "--side", "up"], ["ledger", "query"],
                                  ["validate", "--bogus", FILL]])
def test_a_usage_error_is_its_commands_failure_document(project, capsys, argv) -> None:
    doc = run_json(capsys, *argv, "--json", code=2)
    assert doc["error"]["hint"].startswith("see `runner ")


# ----------------------------------------------------------------------------- run


def test_run_json_of_a_dry_run(project, capsys) -> None:
    doc = run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")
    assert (doc["version"], doc["command"], doc["spec"]) == (2, "run", FILL)
    [run] = doc["results"]
    assert (run["state"], run["fill_qty"], run["avg_px"], run["commission"]) == (
        "FILL", 100, 472.92, 1.00)  # the first bar opens below the limit: at its open
    assert run["events"] == ["INTENT", "ACK", "FILL", "PNL_SNAPSHOT"]
    assert run["ledger"] == "exec/2026-01-05/ledger.parquet"
    tca = run["tca"]
    assert (tca["fill_ratio"], tca["arrival_px"], tca["shortfall_bps"]) == (1.0, 472.92, 0.0)
    assert tca["fees_bps"] == to(BPS, 1.00 / (100 * 472.92) * 1e4) == 0.2115


def test_run_json_of_a_file_of_several_specs(project, capsys) -> None:
    spec = write(project / "two.yaml", ONE.format(qty=1, tag="m-1") + "---\n"
                 + ONE.format(qty=2, tag="m-2"))
    doc = run_json(capsys, "run", spec, "--dry-run", "--json", "--out-dir", "exec")
    assert [(r["spec"], r["tag"], r["state"]) for r in doc["results"]] == [
        ("two.yaml", "m-1", "CANCEL"), ("two.yaml#2", "m-2", "CANCEL")]


def test_a_file_refused_whole_says_which_document(project, capsys) -> None:
    write(project / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    spec = write(project / "three.yaml", "---\n".join(
        ONE.format(qty=q, tag=f"r-{k}") for k, q in enumerate((1, 10, 1), 1)))
    doc = run_json(capsys, "run", spec, "--dry-run", "--json", "--out-dir", "exec", code=2)
    assert (doc["spec"], doc["tag"]) == ("three.yaml#2", "r-2")
    assert [(r["tag"], r["state"]) for r in doc["results"]] == [
        ("r-1", "NOT_RUN"), ("r-2", "REFUSED"), ("r-3", "NOT_RUN")]
    assert not (project / "exec").exists()  # all or nothing: nothing ran


def test_a_run_that_fails_carries_its_result_and_the_error(project, capsys) -> None:
    spec = write(project / "rej.yaml", "version: 1\nkind: one-shot\nttl_sec: 1\n"
                 "sim: {reject: no margin}\norder: {symbol: SPY, side: BUY, qty: 1, "
                 "limit: 10.00, tag: rej-1}\n---\n" + ONE.format(qty=1, tag="rej-2"))
    doc = run_json(capsys, "run", spec, "--dry-run", "--json", "--out-dir", "exec", code=4)
    assert doc["error"] == {"exit_code": 4, "message": "order rej-1 rejected: no margin",
                            "hint": None}
    assert (doc["spec"], doc["tag"]) == ("rej.yaml", "rej-1")
    first, second = doc["results"]
    assert (first["state"], first["message"], first["events"]) == (
        "REJ", "no margin", ["INTENT", "REJ"])
    assert (second["tag"], second["state"]) == ("rej-2", "NOT_RUN")


def test_a_refusal_names_the_generated_tag(project, capsys) -> None:
    """The tag a spec leaves out is the plan's; a refusal is about that order."""
    write(project / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    spec = write(project / "untagged.yaml", "version: 1\nkind: sanity-cancel\n"
                 "order: {symbol: SPY, side: BUY, qty: 10, limit: 0.01}\n")
    [plan] = run_json(capsys, "plan", spec, "--json", "--at", AT, code=2)["plans"]
    doc = run_json(capsys, "run", spec, "--dry-run", "--at", AT, "--json", code=2)
    assert doc["tag"] == plan["order"]["tag"] == doc["results"][0]["tag"]
    assert doc["results"][0]["state"] == "REFUSED"


def test_a_duplicate_tag_is_named(gateway, cli, tmp_path) -> None:
    assert cli(gateway.port, "sanity-cancel", "--tag", "d-1")[0] == 0
    code, out, err = cli(gateway.port, "sanity-cancel", "--tag", "d-1", "--json")
    doc = checked(out)
    assert (code, doc["error"]["exit_code"], doc["tag"]) == (2, 2, "d-1")
    assert doc["error"]["message"].startswith("tag d-1 is already in ")
    assert err == f"runner: {doc['error']['message']} ({doc['error']['hint']})\n"


def test_run_json_of_a_handshake_dry_run(project, capsys) -> None:
    doc = run_json(capsys, "handshake", "--dry-run", "--json")
    assert doc["command"] == "handshake"
    assert doc["results"] == [{"spec": "<command line>", "kind": "handshake", "tag": None,
                               "state": "OK", "broker": "sim", "server_version": None,
                               "accounts": [], "server_time": None}]


def test_run_json_usage_error_of_a_classic_command(project, capsys) -> None:
    doc = run_json(capsys, "one-shot", "--live", "--json", code=2)
    assert doc["error"] == {"exit_code": 2,
                            "message": "--live: the classic commands are paper-only",
                            "hint": "write a spec with mode: live and use "
                                    "`runner run SPEC --live`"}


def test_handshake_and_one_shot_against_the_gateway(gateway, cli, tmp_path) -> None:
    code, out, err = cli(gateway.port, "handshake", "--json")
    assert (code, err) == (0, "")
    [hello] = checked(out)["results"]
    assert (hello["broker"], hello["accounts"]) == ("ib", ["DU****567"])
    assert isinstance(hello["server_version"], int) and hello["server_time"]
    code, out, _ = cli(gateway.port, "one-shot", "--limit", "10.00", "--ttl_sec", "0.2",
                       "--tag", "g-1", "--json")
    assert code == 0
    [order] = checked(out)["results"]
    assert (order["tag"], order["state"], order["fill_qty"]) == ("g-1", "CANCEL", 0)


def test_plan_broker_json(gateway, cli, tmp_path) -> None:
    write(tmp_path / "w.yaml", "version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, "
          "qty: 10, limit: 100.00, tag: wj-1}\n")
    code, out, _ = cli(gateway.port, "plan", "w.yaml", "--broker", "--json")
    assert code == 0
    [plan] = checked(out)["plans"]
    assert plan["broker"]["what_if"]["init_margin_change"] == 10 * 100.00 * 0.50
    hours = plan["broker"]["liquid_hours"]  # the fake's sessions: ISO times, not ns
    assert hours and all(start < end for start, end in hours)


def test_an_unreachable_gateway_is_a_failure_document(project, capsys, monkeypatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("IB_GATEWAY_PORT", str(port))
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "3")
    doc = run_json(capsys, "sanity-cancel", "--tag", "u-1", "--json", code=3)
    assert doc["tag"] == "u-1"
    assert doc["results"] == [{"spec": "<command line>", "kind": "sanity-cancel",
                               "tag": "u-1", "state": "ERROR"}]
    assert str(port) in doc["error"]["message"]


# ----------------------------------------------------------------------------- ledger, tca


def test_tca_ledger_show_and_query_of_a_run(project, capsys) -> None:
    [run] = run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")["results"]

    tca = run_json(capsys, "tca", "--out-dir", "exec", "--json")
    [order] = tca["orders"]
    assert list(order) == sorted(ORDER_FIELDS)
    assert (order["tag"], order["state"], order["fill_qty"]) == (run["tag"], "FILL", 100)
    assert order["fill_ratio"] == to(RATIO, 1.0)
    [usd] = tca["totals"]  # one object per currency
    assert (usd["currency"], usd["fill_qty"], usd["commission"]) == ("USD", 100, 1.00)
    assert usd["notional"] == 47292.0  # 100 x 472.92, no float noise

    shown = run_json(capsys, "ledger", "show", "--out-dir", "exec", "--json")
    assert shown["ledger"] == "exec/2026-01-05"
    assert [e["event"] for e in shown["events"]] == run["events"]
    assert all(list(e) == sorted(COLUMNS) for e in shown["events"])
    intent = shown["events"][0]
    assert intent["ts"] == "2026-01-05T14:30:01Z" and intent["deadline"] == "2026-01-05T14:30:04Z"

    query = run_json(capsys, "ledger", "query", "SELECT event, fill_qty FROM ledger ORDER BY seq",
                     "--out-dir", "exec", "--json")
    assert query == {"version": 1, "command": "ledger query", "ok": True,
                     "columns": ["event", "fill_qty"],
                     "rows": [["INTENT", 0.0], ["ACK", 0.0], ["FILL", 100.0],
                              ["PNL_SNAPSHOT", 100.0]]}  # fmt: skip


def test_an_empty_day_is_an_empty_document(project, capsys) -> None:
    (project / "exec" / "2026-01-05").mkdir(parents=True)
    assert run_json(capsys, "tca", "--out-dir", "exec", "--json") == {
        "version": 2, "command": "tca", "ok": True, "orders": [], "totals": []}
    assert run_json(capsys, "ledger", "show", "--out-dir", "exec", "--json") == {
        "version": 2, "command": "ledger show", "ok": True, "ledger": "exec/2026-01-05",
        "events": []}


@pytest.mark.parametrize("argv, message, hint", [
    (["tca"], "no ledger events found at nowhere",
     "give a ledger file, a date YYYY-MM-DD, or --out-dir"),
    (["tca", "--from", "2026-02-01"], "no ledger events found at nowhere from 2026-02-01 to "
     "the last day", "check --from/--to and --out-dir"),
    (["tca", "--from", "2026-13-01"], "--from 2026-13-01: not a date (month must be in 1..12)",
     "give YYYY-MM-DD, e.g. 2026-01-05"),
    (["ledger", "show"], "no ledger events found at nowhere",
     "give a ledger file, a date YYYY-MM-DD, or --out-dir"),
    (["ledger", "query", "SELECT 1"], "no ledger days (YYYY-MM-DD/ledger.parquet) under nowhere",
     "give the ledger root with --out-dir"),
])  # fmt: skip
def test_no_ledger_is_a_failure_document(project, capsys, argv, message, hint) -> None:
    doc = run_json(capsys, *argv, "--out-dir", "nowhere", "--json", code=2)
    assert doc["error"] == {"exit_code": 2, "message": message, "hint": hint}
    assert (doc["spec"], doc["tag"]) == (None, None)


def test_an_unreadable_ledger_is_a_failure_document(project, capsys) -> None:
    (project / "junk.parquet").write_text("not parquet")
    doc = run_json(capsys, "tca", "junk.parquet", "--json", code=1)
    assert doc["error"]["message"].startswith("junk.parquet: cannot read the ledger")


def test_an_unexpected_error_is_a_failure_document(capsys) -> None:
    """The boundary's last branch (a bug): exit 1, the document says so."""
    from runner.cli import _failed, build_parser

    args = build_parser().parse_args(["ledger", "show", "--json"])
    message = "unexpected error: ValueError: boom"
    assert _failed(args, ValueError("boom"), 1, message, "run with -v for the traceback") == 1
    doc = checked(capsys.readouterr().out)
    assert (doc["command"], doc["error"]) == ("ledger show", {
        "exit_code": 1, "message": message, "hint": "run with -v for the traceback"})


def test_bad_sql_is_a_failure_document(project, capsys) -> None:
    run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")
    doc = run_json(capsys, "ledger", "query", "SELECT nope FROM ledger", "--out-dir", "exec",
                   "--json", code=2)
    assert doc["error"]["message"].startswith("SQL: ")


def test_test_json(project, capsys) -> None:
    doc = run_json(capsys, "test", FILL, "--json")
    assert (doc["version"], doc["command"], doc["ok"]) == (2, "test", True)
    assert doc["counts"] == {"passed": 1, "failed": 0, "errored": 0, "skipped": 0}
    [result] = doc["results"]
    assert set(result) == {"file", "spec", "name", "status", "seconds", "tag", "state",
                           "differences", "error"}
    assert (result["spec"], result["name"], result["status"]) == (FILL, "fill", "pass")


# ----------------------------------------------------------------------------- the schemas


def test_the_shipped_schemas_describe_every_key() -> None:
    """Each key of each schema has a description (what it means), and the ledger's
    columns are the ledger show schema's event keys."""
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, sub in node.get("properties", {}).items():
                described = "description" in sub or "$ref" in sub
                assert described or set(sub) <= {"const", "maxItems", "minItems"}, \
                    f"{where}.{key}"
            for key, sub in node.items():
                if key not in ("if", "then", "else"):  # constraints on keys declared above
                    walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for k, sub in enumerate(node):
                walk(sub, f"{where}[{k}]")

    for path in sorted(SHIPPED.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith("/schemas/output/" + path.name)
        walk(schema, path.name)
    event = json.loads((SHIPPED / "ledger-show.schema.json").read_text())["$defs"]["event"]
    assert sorted(event["properties"]) == sorted(COLUMNS) == sorted(event["required"])
    order = json.loads((SHIPPED / "tca.schema.json").read_text())["$defs"]["order"]
    assert sorted(order["properties"]) == sorted(ORDER_FIELDS)


def test_the_schemas_refuse_a_key_they_do_not_describe(project, capsys) -> None:
    ran = run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")
    failed = run_json(capsys, "run", "nope.yaml", "--json", code=2)
    for doc in (ran, {**ran, "results": [{**ran["results"][0], "extra": 1}]},
                failed, {**failed, "error": {**failed["error"], "extra": 1}}):
        extra = {**doc, "extra": 1} if "extra" not in json.dumps(doc) else doc
        assert not VALIDATORS["run"].is_valid(extra)
    assert not VALIDATORS["run"].is_valid({**ran, "ok": False})  # ok false needs its error


def test_the_readmes_documents_are_valid() -> None:
    """The JSON the README shows is what the schemas accept."""
    shown = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith('{"command":')]
    assert shown
    for line in shown:
        checked(line + "\n")


def test_a_time_in_a_document_is_iso_text(project, capsys) -> None:
    run_json(capsys, "run", FILL, "--dry-run", "--json", "--out-dir", "exec")
    doc = run_json(capsys, "ledger", "show", "--out-dir", "exec", "--json")
    times = [e[k] for e in doc["events"] for k in ("ts", "deadline", "good_till") if e[k]]
    assert times and all(isinstance(t, str) for t in times)
    bad = {**doc, "events": [{**doc["events"][0], "ts": 1767623401000000000}]}
    with pytest.raises(Exception, match="is not valid"):  # the schema would catch ns
        VALIDATORS["ledger-show"].validate(bad)


@pytest.mark.parametrize("argv", [["validate", FILL, "--json"],
                                  ["plan", FILL, "--json", "--at", AT],
                                  ["plan", "nope.yaml", "--json"]])
def test_validate_and_plan_import_nothing_heavy(project, argv) -> None:
    """They run in every CI of every trading repo: no pandas, pyarrow, ib_async, DuckDB
    or matplotlib (DESIGN §9), not even for a failure document."""
    script = ("import sys, json; from runner.cli import main; code = main(sys.argv[1:]); "
              f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules); "
              "sys.stderr.write(json.dumps([code, heavy]))")
    proc = subprocess.run([sys.executable, "-c", script, *argv], cwd=project,
                          capture_output=True, text=True, timeout=60)
    code, heavy = json.loads(proc.stderr.splitlines()[-1])
    assert heavy == [] and code == (2 if "nope.yaml" in argv else 0)
    assert checked(proc.stdout)["ok"] is (code == 0)  # and it printed its one document
