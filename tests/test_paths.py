"""Issue 14, DESIGN §2/§3: paths in a spec resolve against its project root (the nearest
folder above it with .git, else the working directory) and stay inside it; paths typed
on the command line are used as typed, `~` expanded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runner.cli import main
from runner.ledger import read_ledger

REPO = Path(__file__).resolve().parent.parent
BARS = "data/live/2026-01-05/bars1s_SPY.parquet"
AT = "2026-01-05T09:30:01-05:00"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A trading repository: .git, the sample bars, the shipped one-shot spec in specs/."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / BARS).parent.mkdir(parents=True)
    shutil.copy(REPO / BARS, root / BARS)
    (root / "specs").mkdir()
    shutil.copy(REPO / "specs" / "one-shot.yaml", root / "specs" / "one-shot.yaml")
    return root


def intents(out_dir: Path) -> list[dict]:
    rows = read_ledger(out_dir, ["event", "tag", "bars_path"]).to_pylist()
    return [r for r in rows if r["event"] == "INTENT"]


def test_a_shipped_spec_runs_from_its_own_folder(project, monkeypatch, capsys):
    """`cd specs && runner run one-shot.yaml --dry-run`: bars and ledger where the spec
    says, under the project root; the ledger row names the bars by a path that works."""
    monkeypatch.chdir(project / "specs")
    assert main(["run", "one-shot.yaml", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("[one-shot] tag=oneshot_SPY_1767623401000 state=CANCEL ") and not err
    assert not (project / "specs" / "data").exists()
    [intent] = intents(project / "data" / "exec")
    assert intent["bars_path"] == str(project / BARS)  # outside the working directory: absolute


def test_the_plan_is_the_same_from_the_root_and_resolved_from_elsewhere(project, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(project)
    assert main(["plan", "specs/one-shot.yaml", "--at", AT]) == 0
    at_root = capsys.readouterr().out
    assert f"snapshot TCA vs arrival price from {BARS}\n" in at_root
    assert "record   data/exec/2026-01-05/ledger.parquet\n" in at_root
    monkeypatch.chdir(project / "specs")
    assert main(["plan", "one-shot.yaml", "--at", AT]) == 0
    in_specs = capsys.readouterr().out
    assert f"snapshot TCA vs arrival price from {project / BARS}\n" in in_specs
    assert f"record   {project}/data/exec/2026-01-05/ledger.parquet\n" in in_specs


def test_tca_plot_finds_the_bars_the_ledger_names_from_another_folder(project, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.chdir(project / "specs")
    assert main(["run", "one-shot.yaml", "--dry-run"]) == 0
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["tca", "--out-dir", str(project / "data" / "exec"), "--plot", "pngs"]) == 0
    err = capsys.readouterr().err
    assert "bars not found" not in err and err.startswith("wrote pngs/")
    assert len(list((elsewhere / "pngs").glob("*.png"))) == 1


def test_a_git_file_marks_the_root_too(project, monkeypatch, capsys):
    """A git worktree has a .git file, not a folder."""
    (project / ".git").rmdir()
    (project / ".git").write_text("gitdir: /elsewhere/.git/worktrees/repo\n")
    monkeypatch.chdir(project / "specs")
    assert main(["validate", "one-shot.yaml"]) == 0
    assert capsys.readouterr().out == "1 spec valid\n"


@pytest.mark.parametrize("key, value, problem", [
    ("out_dir", "../../elsewhere", "is outside the project root {root} (the folder with .git "
     "above the spec); use a relative path inside it, or pass --allow-outside"),
    ("bars_path", "/etc/passwd", "is outside the project root {root} (the folder with .git "
     "above the spec); use a relative path inside it, or pass --allow-outside"),
    ("out_dir", "{root}/data/exec", "is an absolute path; a spec's paths are relative to the "
     "project root {root} (the folder with .git above the spec): write data/exec, or pass "
     "--allow-outside"),
])
def test_spec_paths_stay_inside_the_root_the_error_names(project, monkeypatch, capsys, key,
                                                          value, problem):
    value = value.format(root=project)
    line = {"out_dir": f"out_dir: {value}\n", "bars_path": f"bars_path: {value}\n"}[key]
    (project / "specs" / "x.yaml").write_text("version: 1\nkind: sanity-cancel\n"
                                              "order: {symbol: SPY, side: BUY, qty: 1, "
                                              "limit: 0.01}\n" + line)
    monkeypatch.chdir(project / "specs")
    assert main(["validate", "x.yaml"]) == 2
    col = len(key) + 3
    assert capsys.readouterr().err == (
        f"x.yaml:4:{col}: {key}: '{value}' {problem.format(root=project)}\n")
    assert main(["validate", "--allow-outside", "x.yaml"]) == 0


def test_a_link_out_of_the_root_is_outside(project, tmp_path, monkeypatch, capsys):
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "out", project / "ledgers")
    (project / "specs" / "x.yaml").write_text("version: 1\nkind: handshake\nout_dir: ledgers\n")
    monkeypatch.chdir(project)
    assert main(["validate", "specs/x.yaml"]) == 2
    assert "out_dir: 'ledgers' is outside the project root" in capsys.readouterr().err


def test_typed_paths_are_the_users_own(tmp_path, monkeypatch, capsys):
    """`--out_dir "$PWD/x"` (absolute, inside) and `~/x` were refused as outside the
    working tree; `--bars_path` absolute too. Typed paths are used as typed."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    (work / BARS).parent.mkdir(parents=True)
    shutil.copy(REPO / BARS, work / BARS)
    monkeypatch.chdir(work)
    flags = ["--symbol", "SPY", "--qty", "1", "--limit", "10.00", "--ttl_sec", "2", "--dry-run"]
    assert main(["one-shot", *flags, "--bars_path", str(work / BARS),
                 "--out_dir", f"{work}/x"]) == 0
    assert main(["one-shot", *flags, "--bars_path", BARS, "--out_dir", "~/x",
                 "--tag", "home"]) == 0
    assert main(["sanity-cancel", "--dry-run", "--out-dir", "~/x", "--tag", "sc"]) == 0
    capsys.readouterr()
    [first] = intents(work / "x")
    assert first["bars_path"] == str(work / BARS)  # as typed
    assert sorted(r["tag"] for r in intents(home / "x")) == ["home", "sc"]
    assert not (work / "~").exists()


def test_run_out_dir_expands_the_home_folder(project, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    assert main(["run", "specs/one-shot.yaml", "--dry-run", "--out-dir", "~/ledgers"]) == 0
    assert capsys.readouterr().err == ""
    assert len(intents(home / "ledgers")) == 1
    assert not (project / "~").exists() and not (project / "data" / "exec").exists()


def test_a_spec_path_does_not_expand_the_home_folder(project, monkeypatch, capsys):
    """`~/x` in a file would make a folder named `~` inside the project: refused, even
    with --allow-outside (only a typed path expands ~)."""
    (project / "specs" / "x.yaml").write_text("version: 1\nkind: handshake\nout_dir: ~/x\n")
    monkeypatch.chdir(project)
    for extra in ([], ["--allow-outside"]):
        assert main(["validate", *extra, "specs/x.yaml"]) == 2
        assert capsys.readouterr().err == (
            "specs/x.yaml:3:10: out_dir: '~/x': a spec's paths do not expand ~ (they are "
            "relative to its project root); write the path out, or type it on the command "
            "line\n")


def test_untyped_ledger_roots_are_the_projects_from_any_of_its_folders(project, monkeypatch,
                                                                        capsys):
    """No --out-dir typed: the classic commands write, and tca / ledger show read,
    data/exec of the project root, so `cd specs && runner run ... && runner tca` finds the
    run; a typed --out-dir is the user's own, relative to the working directory."""
    monkeypatch.chdir(project / "specs")
    bars = str(project / BARS)
    assert main(["one-shot", "--dry-run", "--at", AT, "--tag", "from-specs", "--limit", "10",
                 "--bars_path", bars]) == 0
    assert main(["run", "one-shot.yaml", "--dry-run"]) == 0
    capsys.readouterr()
    assert {r["tag"] for r in intents(project / "data" / "exec")} == {
        "from-specs", "oneshot_SPY_1767623401000"}
    assert main(["tca", "--tag", "from-specs"]) == 0
    assert "from-specs" in capsys.readouterr().out
    assert main(["tca", "--out-dir", "data/exec"]) == 2  # typed: specs/data/exec, not there
    assert capsys.readouterr().err.startswith("runner: no ledger events found at data/exec ")
