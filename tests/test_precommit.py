"""The pre-commit hooks (.pre-commit-hooks.yaml), run by the real pre-commit.

A hook repository is made from this working tree (every file git would commit, so
uncommitted work is tested too), and a user repository with a spec in it. `pre-commit
try-repo` builds the hook's virtualenv with pip, which takes ~15 s; try-repo always
builds in a fresh temporary store (it does not use PRE_COMMIT_HOME), so this file makes
two builds and no more: one for the failing spec, one for the fixed one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from needs import absent

ROOT = Path(__file__).resolve().parents[1]

BAD = """\
# yaml-language-server: $schema=../schemas/spec.schema.json
version: 1
kind: one-shot
order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00}
ttl_secs: 2
expect: {state: CANCEL, fill_qty: 0}
"""
GOOD = BAD.replace("ttl_secs", "ttl_sec")


def _need(tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        absent(f"{tool} is not installed", hint)


def _need_index(tmp: Path) -> None:
    """pre-commit builds the hook's environment with pip: a package index must answer
    (asked once, for what a build of this project needs first)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--retries", "0", "--timeout", "10", "-d", str(tmp),
                            "setuptools>=68"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        absent(f"no package index answers pip ({why})",
               "go online, or point PIP_INDEX_URL / PIP_FIND_LINKS at an index")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                    "-c", "commit.gpgsign=false", *args], cwd=cwd, check=True,
                   capture_output=True)


def _tree_files() -> list[str]:
    """What a commit of the working tree would hold: tracked and untracked, not ignored."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode()
    return sorted({f for f in listing.split("\0") if f and os.path.lexists(ROOT / f)})


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need("git", "apt-get install git")
    _need_index(tmp_path_factory.mktemp("index-probe"))
    repo = tmp_path_factory.mktemp("hook-repo")
    for name in _tree_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name, follow_symlinks=False)  # symlinks stay links
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "runner")
    return repo


def try_repo(hook_repo: Path, cwd: Path, *hook: str) -> subprocess.Popen[str]:
    """Start `pre-commit try-repo HOOK_REPO [HOOK] --all-files` in `cwd`."""
    try:
        import pre_commit  # noqa: F401
    except ImportError:
        absent("pre-commit is not installed", "pip install -e '.[test]'")
    env = dict(os.environ, PRE_COMMIT_HOME=str(cwd.parent / "pre-commit-home"),
               PIP_NO_COMPILE="1",  # no .pyc for pandas & co: the build is 20% faster
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.Popen([sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo),
                             *hook, "--all-files", "--color", "never"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def user_repo(root: Path, spec_text: str) -> Path:
    """A trading repo with one spec under specs/ and a YAML file that is no spec."""
    (root / "specs").mkdir(parents=True)
    (root / "notes.yaml").write_text("not: [a spec\n")  # outside specs/: the hooks skip it
    (root / "specs" / "probe.yaml").write_text(spec_text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    return root


def test_validate_hook_fails_on_a_bad_spec_and_passes_when_fixed(hook_repo, tmp_path) -> None:
    # The two repos differ only by the fix. Their two builds run side by side: each is
    # mostly pip unpacking wheels, so together they take little more than one.
    bad = try_repo(hook_repo, user_repo(tmp_path / "bad" / "trading", BAD), "runner-validate")
    good = try_repo(hook_repo, user_repo(tmp_path / "good" / "trading", GOOD))  # every hook
    bad_out, _ = bad.communicate(timeout=300)
    good_out, _ = good.communicate(timeout=300)

    assert bad.returncode == 1, bad_out
    assert re.search(r"^runner validate\.+Failed$", bad_out, re.M)
    assert "- exit code: 2" in bad_out
    assert ("specs/probe.yaml:5:1: ttl_secs: unknown key (did you mean ttl_sec?)\n"
            "1 of 1 specs invalid\n") in bad_out

    assert good.returncode == 0, good_out
    assert re.search(r"^runner validate\.+Passed$", good_out, re.M)
    assert re.search(r"^runner test\.+Passed$", good_out, re.M)  # the scenario ran
