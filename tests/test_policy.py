"""runner-policy.yaml: loading with file:line:col errors, finding it upward, the spec's
limits only tightening it, and `validate` / `plan` refusing what is known offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import SpecError, UsageError
from runner.policy import SCHEMA_PATH, find, for_spec, load
from runner.spec import load as load_spec

REPO = Path(__file__).resolve().parent.parent
SPEC = "version: 1\nkind: one-shot\norder:\n  symbol: SPY\n  side: BUY\n  qty: 10\n  limit: 10.00\n"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()  # the project root: the upward search stops here
    return tmp_path


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_shipped_policy_loads_and_the_shipped_specs_pass_it(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    p = load("runner-policy.yaml")
    assert (p.symbols, p.sec_types, p.max_qty, p.max_notional) == (
        ("SPY", "QQQ", "IWM", "DIA", "AAPL", "MSFT"), ("STK",), 2000, 1_000_000)
    assert (p.allow_market, p.allow_live, p.kill_switch) == (True, False, "KILL_SWITCH")
    assert (p.paper_ports, p.live_ports, p.min_sanity_distance_bps) == (
        (7497, 4002), (7496, 4001), 500)
    assert p.where("max_qty") == "runner-policy.yaml:9:10"
    assert main(["validate", "specs", "runner-policy.yaml"]) == 0
    assert capsys.readouterr().out == "12 specs valid\n"


def test_schema_file_is_the_one_the_package_uses_and_every_key_is_described():
    assert SCHEMA_PATH.read_bytes() == (REPO / "schemas" / "policy.schema.json").read_bytes()
    props = json.loads(SCHEMA_PATH.read_text())["properties"]
    assert all(prop.get("description") for prop in props.values())


@pytest.mark.parametrize(("text", "errors"), [
    ("version: 1\nmax_qyt: 5\n",
     ["runner-policy.yaml:2:1: max_qyt: unknown key (did you mean max_qty?)"]),
    ("version: 1\nmax_qty: lots\nallow_live: 1\n",
     ["runner-policy.yaml:2:10: max_qty: expected a number, got string 'lots'",
      "runner-policy.yaml:3:13: allow_live: expected true or false, got number 1"]),
    ("version: 1\nsymbols: [SPY, spy]\n",
     ["runner-policy.yaml:2:16: symbols[1]: 'spy' does not match ^[A-Z0-9][A-Z0-9. /-]{0,15}$"]),
    ("version: 1\npaper_ports: [7497, 4002]\nlive_ports: [4002]\n",
     ["runner-policy.yaml:3:13: live_ports: port 4002 is in both paper_ports and live_ports"]),
    ("version: 1\nmax_day_orders: 2.5\n",
     ["runner-policy.yaml:2:17: max_day_orders: expected a whole number, got number 2.5"]),
    ("max_qty: .inf\n", ["runner-policy.yaml:1:1: missing required key 'version'",
                         "runner-policy.yaml:1:10: max_qty: inf is not a finite number"]),
    ("# nothing\n",
     ["runner-policy.yaml:1:1: empty file: no policy in it (start with `version: 1`)"]),
    ("version: 1\n---\nversion: 1\n",
     ["runner-policy.yaml:3:1: a policy file holds one document; remove the '---'"]),
    ("- version: 1\n",
     ["runner-policy.yaml:1:1: a policy must be a mapping of keys (`version: 1`, "
      "`max_qty: ...`)"]),
])
def test_policy_errors_name_file_line_and_column(work, text, errors):
    write(work / "runner-policy.yaml", text)
    with pytest.raises(SpecError) as e:
        load("runner-policy.yaml")
    assert e.value.lines == errors


def test_found_upward_from_the_spec_but_not_past_the_project_root(work, monkeypatch):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 7\nkill_switch: stop/KILL\n")
    spec = write(work / "specs" / "deep" / "x.yaml", SPEC)
    assert find(Path(spec).parent) == work / "runner-policy.yaml"
    p = for_spec(spec)
    assert (p.source, p.max_qty, p.kill_switch) == ("runner-policy.yaml", 7, "stop/KILL")
    # a folder with its own .git is a project of its own: the outer policy is not its policy
    (work / "vendored" / ".git").mkdir(parents=True)
    assert for_spec(write(work / "vendored" / "y.yaml", SPEC)).source is None
    monkeypatch.chdir(work / "specs")  # the kill switch stays next to the policy file
    p = for_spec("deep/x.yaml")
    assert (p.source, p.kill_switch) == (str(work / "runner-policy.yaml"),
                                         str(work / "stop" / "KILL"))


def test_explicit_policy_wins_and_must_exist(work):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 7\n")
    write(work / "other.yaml", "version: 1\nmax_qty: 3\n")
    assert for_spec(write(work / "x.yaml", SPEC), "other.yaml").max_qty == 3
    with pytest.raises(UsageError, match="--policy nope.yaml: no such file"):
        for_spec("x.yaml", "nope.yaml")


def test_spec_limits_may_tighten_but_never_loosen(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 100\nmax_notional: 5000\n")
    write(work / "ok.yaml", SPEC + "limits: {max_qty: 50, max_notional: 5000}\n")
    write(work / "loose.yaml", SPEC + "limits:\n  max_qty: 200\n  max_notional: 9000\n")
    assert main(["validate", "ok.yaml"]) == 0
    capsys.readouterr()
    assert main(["validate", "loose.yaml"]) == 2
    assert capsys.readouterr().err == (
        "loose.yaml:9:12: limits.max_qty: 200 loosens the policy's max_qty 100 "
        "(runner-policy.yaml:2:10); a spec's limits can only tighten the policy\n"
        "loose.yaml:10:17: limits.max_notional: 9,000 loosens the policy's max_notional 5,000 "
        "(runner-policy.yaml:3:15); a spec's limits can only tighten the policy\n")
    assert main(["run", "loose.yaml", "--dry-run"]) == 2  # refused before anything
    assert main(["plan", "loose.yaml"]) == 2
    assert capsys.readouterr().out == "" and not (work / "data").exists()


def test_validate_names_the_spec_line_of_each_refusal(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\nsymbols: [QQQ]\nmax_qty: 5\n")
    write(work / "x.yaml", SPEC + "---\nversion: 1\nkind: handshake\n")
    assert main(["validate", "x.yaml"]) == 2
    out, err = capsys.readouterr()
    assert err == ("x.yaml:4:11: refused by runner-policy.yaml: symbol SPY is not in the "
                   "policy's symbols (QQQ)\n"
                   "x.yaml:6:8: refused by runner-policy.yaml: qty 10 exceeds the policy's "
                   "max_qty 5\n")
    assert out == "1 of 2 specs invalid\n"


def test_validate_reports_a_broken_policy_once(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\nmax_qyt: 5\n")
    write(work / "specs" / "a.yaml", SPEC)
    write(work / "specs" / "b.yaml", SPEC)
    assert main(["validate", "."]) == 2
    out, err = capsys.readouterr()
    assert err == "runner-policy.yaml:2:1: max_qyt: unknown key (did you mean max_qty?)\n"
    assert out == "2 of 2 specs invalid; policy invalid: runner-policy.yaml\n"


def test_plan_prints_the_plan_then_refuses_what_it_knows(work, capsys, monkeypatch):
    write(work / "runner-policy.yaml", "version: 1\nkill_switch: KILL\n")
    write(work / "x.yaml", SPEC)
    assert main(["plan", "x.yaml"]) == 0
    capsys.readouterr()
    (work / "KILL").touch()
    monkeypatch.setenv("IB_GATEWAY_PORT", "7496")
    assert main(["plan", "x.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("plan x (one-shot, paper) from x.yaml\n")
    assert err == ("runner: x.yaml: refused by runner-policy.yaml; nothing was sent:\n"
                   "  - kill switch KILL is present: every order is refused (remove the file "
                   "to trade again)\n"
                   "  - port 7496 is a live port but the spec says mode: paper\n")


def test_live_needs_the_policy_too(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\n")  # allow_live defaults to false
    write(work / "live.yaml", SPEC.replace("kind: one-shot", "kind: one-shot\nmode: live"))
    assert main(["validate", "live.yaml"]) == 2
    assert capsys.readouterr().err == (
        "live.yaml:3:7: refused by runner-policy.yaml: mode: live is not allowed by the policy "
        "(allow_live: false)\n")
    [spec] = load_spec("live.yaml")
    assert spec.mode == "live"
