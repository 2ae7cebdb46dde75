"""runner-policy.yaml: loading with file:line:col errors, finding it upward, the spec's
limits only tightening it, and `validate` / `plan` refusing what is known offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    (tmp_path / ".git").mkdir()  # the project root (the policy search goes on above it)
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
    assert capsys.readouterr().out == "13 specs valid\n"


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


def test_found_upward_from_the_spec_and_a_git_folder_does_not_stop_it(work, monkeypatch):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 7\nkill_switch: stop/KILL\n")
    spec = write(work / "specs" / "deep" / "x.yaml", SPEC)
    assert find(Path(spec).parent) == work / "runner-policy.yaml"
    p = for_spec(spec)
    assert (p.source, p.max_qty, p.kill_switch) == ("runner-policy.yaml", 7, "stop/KILL")
    # a folder with its own .git (even an empty one beside the spec) still has the outer
    # policy above it: it applies
    (work / "vendored" / ".git").mkdir(parents=True)
    assert for_spec(write(work / "vendored" / "y.yaml", SPEC)).max_qty == 7
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
                   "policy's symbols (QQQ) (from runner-policy.yaml:2:10)\n"
                   "x.yaml:6:8: refused by runner-policy.yaml: qty 10 exceeds the policy's "
                   "max_qty 5 (from runner-policy.yaml:3:10)\n")
    assert out == "1 of 2 specs invalid\n"


@pytest.mark.parametrize("after", ["shifted", "deleted"])
def test_a_reason_names_the_line_the_spec_was_loaded_with(work, after):
    """The spec keeps its positions: a reason found after the file changed (or went away)
    still names the line the spec was read from, and the file is not read again."""
    from runner import gates
    from runner.plan import compile_plan
    from runner.policy import loosening_errors, spec_where

    write(work / "runner-policy.yaml", "version: 1\nsymbols: [QQQ]\nmax_qty: 5\n")
    text = "version: 1\nkind: handshake\n---\n" + SPEC + "limits:\n  max_qty: 20\n"
    write(work / "x.yaml", text)
    path = "x.yaml"
    spec = load_spec(path)[1]
    if after == "shifted":
        write(work / "x.yaml", "# three lines\n# above\n# it now\n" + text)
    else:
        os.remove(path)
    policy = for_spec(path)
    assert loosening_errors(spec, policy) == [
        "x.yaml:12:12: limits.max_qty: 20 loosens the policy's max_qty 5 "
        "(runner-policy.yaml:3:10); a spec's limits can only tighten the policy"]
    now = 1_767_623_400 * 10**9
    found = gates.reasons(compile_plan(spec, {}, now), policy, gates.Context(now_ns=now))
    assert [(spec_where(spec, r.key), r.text) for r in found] == [
        ("x.yaml:7:11", "symbol SPY is not in the policy's symbols (QQQ) "
                        "(from runner-policy.yaml:2:10)"),
        ("x.yaml:9:8", "qty 10 exceeds the policy's max_qty 5 (from runner-policy.yaml:3:10)")]
    assert spec_where(spec, ("order", "tif")) == "x.yaml:7:3"  # a default: its mapping
    assert spec_where(spec, ("expect",)) == "x.yaml:4:1"  # absent: the document


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
                   "to trade again) (from runner-policy.yaml:2:14)\n"
                   "  - port 7496 is a live port but the spec says mode: paper "
                   "(from runner-policy.yaml, by default)\n")


def test_live_needs_the_policy_too(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\n")  # allow_live defaults to false
    write(work / "live.yaml", SPEC.replace("kind: one-shot", "kind: one-shot\nmode: live"))
    assert main(["validate", "live.yaml"]) == 2
    assert capsys.readouterr().err == (
        "live.yaml:3:7: refused by runner-policy.yaml: mode: live is not allowed by the policy "
        "(allow_live: false) (from runner-policy.yaml, by default)\n")
    [spec] = load_spec("live.yaml")
    assert spec.mode == "live"


# --- the cascade: every policy up to the root applies, each only narrows ---------------

REPO_POLICY = ("version: 1\nsymbols: [SPY, QQQ]\nmax_qty: 100\nmax_day_orders: 9\n"
               "allow_market: false\nkill_switch: KILL\n")
LOOSE_SUB = ("version: 1\nsymbols: [QQQ, TSLA]\nmax_qty: 1000\nmax_notional: 4000\n"
             "max_day_orders: 50\nallow_market: true\nallow_live: true\n"
             "min_sanity_distance_bps: 100\nkill_switch: SUBKILL\n")


def test_a_subfolder_policy_narrows_the_repository_policy_and_never_loosens_it(work):
    write(work / "runner-policy.yaml", REPO_POLICY)
    write(work / "sub" / "runner-policy.yaml", LOOSE_SUB)
    p = for_spec(write(work / "sub" / "x.yaml", SPEC))
    assert p.source == "runner-policy.yaml + sub/runner-policy.yaml"
    assert (p.symbols, p.max_qty, p.max_notional, p.max_day_orders) == (("QQQ",), 100, 4000, 9)
    assert (p.allow_market, p.allow_live, p.min_sanity_distance_bps) == (False, False, 500)
    assert p.kill_switches == ("KILL", "sub/SUBKILL")
    assert p.where("max_qty") == "runner-policy.yaml:3:10"
    assert p.where("max_notional") == "sub/runner-policy.yaml:4:15"
    assert p.where("allow_live") == "runner-policy.yaml, by default"
    assert p.where("min_sanity_distance_bps") == "runner-policy.yaml, by default"
    # and the repository's policy alone, for a spec beside it
    assert for_spec(write(work / "y.yaml", SPEC)).max_notional is None


def test_a_refusal_names_the_file_each_limit_came_from(work, capsys):
    write(work / "runner-policy.yaml", REPO_POLICY)
    write(work / "sub" / "runner-policy.yaml", LOOSE_SUB)
    write(work / "sub" / "x.yaml", SPEC.replace("qty: 10", "qty: 500"))
    assert main(["validate", "sub/x.yaml"]) == 2
    out, err = capsys.readouterr()
    by = "refused by runner-policy.yaml + sub/runner-policy.yaml"
    assert err.splitlines() == [
        f"sub/x.yaml:4:11: {by}: symbol SPY is not in the policy's symbols (QQQ) "
        "(from sub/runner-policy.yaml:2:10)",
        f"sub/x.yaml:6:8: {by}: qty 500 exceeds the policy's max_qty 100 "
        "(from runner-policy.yaml:3:10)",
        f"sub/x.yaml:4:3: {by}: notional 5,000 (qty x limit 10.00) exceeds the policy's "
        "max_notional 4,000 (from sub/runner-policy.yaml:4:15)",
    ]
    assert main(["run", "sub/x.yaml", "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        f"runner: sub/x.yaml: {by}; nothing was sent:\n"
        "  - symbol SPY is not in the policy's symbols (QQQ) (from sub/runner-policy.yaml:2:10)\n"
        "  - qty 500 exceeds the policy's max_qty 100 (from runner-policy.yaml:3:10)\n"
        "  - notional 5,000 (qty x limit 10.00) exceeds the policy's max_notional 4,000 "
        "(from sub/runner-policy.yaml:4:15)\n")
    assert not (work / "data").exists()


def test_an_empty_git_folder_beside_a_spec_does_not_hide_the_repository_policy(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    (work / "specs" / ".git").mkdir(parents=True)
    write(work / "specs" / "x.yaml", SPEC)
    assert for_spec("specs/x.yaml").max_qty == 5
    assert main(["validate", "specs/x.yaml"]) == 2
    assert capsys.readouterr().err == (
        "specs/x.yaml:6:8: refused by runner-policy.yaml: qty 10 exceeds the policy's max_qty 5 "
        "(from runner-policy.yaml:2:10)\n")


def test_classic_commands_take_the_cascade_above_the_working_directory(work, monkeypatch,
                                                                       capsys):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    (work / "deep" / "er").mkdir(parents=True)
    write(work / "deep" / "runner-policy.yaml", "version: 1\nmax_qty: 50\n")
    monkeypatch.chdir(work / "deep" / "er")
    assert main(["one-shot", "--qty", "10", "--limit", "10.00", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"runner: <command line>: refused by {work}/runner-policy.yaml + "
                          f"{work}/deep/runner-policy.yaml; nothing was sent:\n")
    assert err.endswith(f"  - qty 10 exceeds the policy's max_qty 5 "
                        f"(from {work}/runner-policy.yaml:2:10)\n")


def test_explicit_policy_is_one_more_in_the_cascade(work):
    write(work / "runner-policy.yaml", "version: 1\nmax_qty: 7\nmax_notional: 100\n")
    write(work / "loose.yaml", "version: 1\nmax_qty: 700\nmax_notional: 5\nallow_live: true\n")
    p = for_spec(write(work / "x.yaml", SPEC), "loose.yaml")
    assert (p.max_qty, p.max_notional, p.allow_live) == (7, 5, False)
    assert (p.where("max_qty"), p.where("max_notional")) == (
        "runner-policy.yaml:2:10", "loose.yaml:3:15")
    # naming the policy that is found anyway does not count it twice
    assert for_spec("x.yaml", "runner-policy.yaml").source == "runner-policy.yaml"


def test_a_policy_above_a_linked_folder_still_applies(tmp_path, monkeypatch):
    """specs/ is a link to a folder elsewhere: the policy above the link and the one above
    its target both apply."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "repo" / "runner-policy.yaml", "version: 1\nmax_qty: 5\n")
    write(tmp_path / "elsewhere" / "runner-policy.yaml", "version: 1\nsymbols: [QQQ]\n")
    write(tmp_path / "elsewhere" / "specs" / "x.yaml", SPEC)
    (tmp_path / "repo" / "specs").symlink_to(tmp_path / "elsewhere" / "specs")
    p = for_spec("repo/specs/x.yaml")
    assert (p.max_qty, p.symbols) == (5, ("QQQ",))


def test_ports_add_up_and_a_port_both_paper_and_live_is_an_error(work, capsys):
    write(work / "runner-policy.yaml", "version: 1\nlive_ports: [7496, 4001, 5555]\n")
    write(work / "a" / "runner-policy.yaml", "version: 1\nlive_ports: [6666]\n")
    p = for_spec(write(work / "a" / "x.yaml", SPEC))
    assert set(p.live_ports) == {7496, 4001, 5555, 6666} and set(p.paper_ports) == {7497, 4002}
    write(work / "b" / "runner-policy.yaml", "version: 1\npaper_ports: [5555]\n")
    write(work / "b" / "x.yaml", SPEC)
    assert main(["validate", "b/x.yaml"]) == 2
    assert capsys.readouterr().err == (
        "b/runner-policy.yaml:2:14: port 5555 is a paper port here but a live port in "
        "runner-policy.yaml:2:13; the policies must agree (fix one of them)\n")


def test_any_kill_switch_of_the_cascade_stops_and_a_dangling_link_counts(work, capsys):
    from runner.policy import kill_switch_on

    write(work / "runner-policy.yaml", "version: 1\nkill_switch: KILL\n")
    write(work / "sub" / "runner-policy.yaml", "version: 1\nkill_switch: STOP\n")
    p = for_spec(write(work / "sub" / "x.yaml", SPEC))
    assert not kill_switch_on(p)
    (work / "sub" / "STOP").touch()
    assert kill_switch_on(p)
    (work / "sub" / "STOP").unlink()
    (work / "KILL").symlink_to(work / "nowhere")  # a dangling link is still "touched"
    assert kill_switch_on(p)
    assert main(["plan", "sub/x.yaml"]) == 2
    assert capsys.readouterr().err.splitlines()[1] == (
        "  - kill switch KILL or sub/STOP is present: every order is refused (remove the file "
        "to trade again) (from runner-policy.yaml:2:14 + sub/runner-policy.yaml:2:14)")


def test_a_policy_built_in_code_keeps_its_old_shape():
    from runner.policy import Policy, kill_switch_on

    p = Policy(source="p.yaml", max_qty=5, kill_switch="/nonexistent/KILL")
    assert p.kill_switches == ("/nonexistent/KILL",) and not kill_switch_on(p)
    assert p.origin("max_qty") == "" and p.where("max_qty") == "p.yaml:1:1"


# --- a policy path that is not a readable regular file refuses the run -------------------

TAIL = ": every run it governs is refused ("


def _dangling(p: Path) -> None:
    p.symlink_to(p.parent / "gone.yaml")


def _folder(p: Path) -> None:
    p.mkdir()


def _too_big(p: Path) -> None:
    p.write_text("version: 1\n" + "# padding\n" * 7000)


@pytest.mark.parametrize(("make", "cause"), [
    (_dangling, "runner-policy.yaml: policy file is a dangling symbolic link (to "),
    (_folder, "runner-policy.yaml: policy file is a folder, not a regular file: every run it "
              "governs is refused (a policy is a file: rename or remove the folder)"),
    (_too_big, "runner-policy.yaml: policy file is 70,011 bytes, over the 64 KiB a policy may "
               "be: every run it governs is refused (shorten it)"),
])
def test_a_broken_policy_path_refuses_validate_plan_run_and_classic(work, capsys, make, cause):
    make(work / "runner-policy.yaml")
    write(work / "specs" / "x.yaml", SPEC)
    for argv in (["validate", "specs/x.yaml"], ["plan", "specs/x.yaml"],
                 ["run", "specs/x.yaml", "--dry-run"], ["one-shot", "--limit", "10.00",
                                                        "--dry-run"]):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        lines = err.splitlines()
        assert lines[0].startswith(cause) and TAIL in lines[0], (argv, err)
        assert len(lines) == 1 and "Traceback" not in err
    assert not (work / "data").exists()


def test_an_unreadable_policy_refuses(work, capsys, monkeypatch):
    """Tests may run as root, who reads any file: the refusal of open() is simulated."""
    write(work / "runner-policy.yaml", "version: 1\n")
    write(work / "x.yaml", SPEC)
    real_open = os.open

    def deny(path, flags, *args):
        if str(path).endswith("runner-policy.yaml"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    assert main(["run", "x.yaml", "--dry-run"]) == 2
    assert capsys.readouterr().err == (
        "runner-policy.yaml: policy file cannot be read (Permission denied): every run it "
        "governs is refused (make it readable for this user, or remove it)\n")


def test_validate_names_a_broken_policy_and_still_checks_other_folders(work, capsys):
    (work / "a" / "runner-policy.yaml").mkdir(parents=True)
    write(work / "a" / "x.yaml", SPEC)
    write(work / "b" / "y.yaml", SPEC.replace("qty: 10", "qty: 1.5"))
    assert main(["validate", "a/x.yaml", "b/y.yaml"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "a/runner-policy.yaml: policy file is a folder, not a regular file: every run it "
        "governs is refused (a policy is a file: rename or remove the folder)",
        "b/y.yaml:6:8: order.qty: must be a whole number of shares for STK, got 1.5"]
    assert out == "2 of 2 specs invalid; policy invalid: a/runner-policy.yaml\n"


def _runner(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("argv", [["validate", "x.yaml"], ["run", "x.yaml", "--dry-run"],
                                  ["sanity-cancel", "--dry-run"]])
def test_a_fifo_policy_refuses_and_is_never_opened_for_reading(work, argv):
    """In a child with a timeout: a reader that opened the FIFO would block, and fail."""
    os.mkfifo(work / "runner-policy.yaml")
    write(work / "x.yaml", SPEC)
    done = _runner(work, *argv)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == (
        "runner-policy.yaml: policy file is a FIFO (named pipe), not a regular file: every run "
        "it governs is refused (replace it with a policy file, or remove it)")
    assert len(done.stderr.splitlines()) == 1
    assert not (work / "data").exists()


def test_a_file_of_many_documents_reads_its_policy_once(tmp_path, monkeypatch, capsys):
    """plan and run read each policy file once for all the documents of a spec file."""
    import runner.policy as policy_module
    from runner.cli import main

    (tmp_path / ".git").mkdir()
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_qty: 100\n")
    doc = "version: 1\nkind: sanity-cancel\norder: {symbol: SPY, side: BUY, qty: 1, limit: 0.01}\n"
    (tmp_path / "three.yaml").write_text("---\n".join([doc] * 3))
    monkeypatch.chdir(tmp_path)
    read: list[str] = []
    real = policy_module.load
    monkeypatch.setattr(policy_module, "load", lambda path: read.append(path) or real(path))
    assert main(["plan", "three.yaml", "--at", "2026-01-05T09:30:01-05:00"]) == 0
    assert len([p for p in read if p.endswith("runner-policy.yaml")]) == 1
    read.clear()
    assert main(["run", "three.yaml", "--dry-run", "--at", "2026-01-05T09:30:01-05:00"]) == 0
    assert len([p for p in read if p.endswith("runner-policy.yaml")]) == 1
