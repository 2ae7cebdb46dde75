"""Where a path points (DESIGN §2, §3).

- A path typed on the command line (`--out-dir`, `--bars_path`, `--policy`, `--junit`,
  `--plot`) is the user's own: used as typed, relative to the working directory, with
  `~` expanded; no inside-the-project rule.
- A path written in a spec file (`bars_path`, `out_dir`) is relative to the spec's
  project root: the nearest folder at or above the spec that holds `.git` (a folder, or
  a worktree's `.git` file), else the working directory. It must stay inside that root
  unless `--allow-outside`. It is resolved once, when the spec is loaded, so the plan,
  the run, the ledger row and TCA all see one path: relative to the working directory
  when inside it (`data/exec` from the root, as written), else absolute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IN_MEMORY = "<"  # sources like "<command line>" name no file


def typed_path(text: str) -> str:
    """A path typed on the command line, as it will be used: `~` and `~user` expanded."""
    return os.path.expanduser(text)


@dataclass(frozen=True, slots=True)
class PathRules:
    """How the paths of one spec are checked and resolved."""

    root: Path
    marked: bool = False  # a .git marked the root (else it is the working directory)
    allow_outside: bool = False  # --allow-outside
    typed: bool = False  # the paths were typed on the command line (the classic commands)

    def problem(self, value: str) -> str:
        """Why a spec's path breaks the inside-the-root rule; "" when it keeps it. Links
        are resolved: a link inside the root that points out of it is outside."""
        if self.typed:
            return ""
        if value.startswith("~"):  # else a folder named "~" would appear in the project
            return (f"'{value}': a spec's paths do not expand ~ (they are relative to its "
                    "project root); write the path out, or type it on the command line")
        if self.allow_outside:
            return ""
        root = self.root
        where = f"the project root {root} " + (
            "(the folder with .git above the spec)" if self.marked else
            "(the working directory: no folder with .git above the spec)")
        inside = (root / value).resolve().is_relative_to(root.resolve())
        if not inside:
            return (f"'{value}' is outside {where}; use a relative path inside it, or pass "
                    "--allow-outside")
        if Path(value).is_absolute():
            relative = os.path.relpath(value, root)
            return (f"'{value}' is an absolute path; a spec's paths are relative to {where}: "
                    f"write {relative}, or pass --allow-outside")
        return ""

    def resolve(self, value: str) -> str:
        """The path as the run uses it (see the module docstring)."""
        if self.typed:
            return typed_path(value)
        return shown(os.path.normpath(os.path.join(self.root, value)))


def rules_for(source: str, root: Path | None = None, allow_outside: bool = False,
              typed: bool = False) -> PathRules:
    """The path rules of a spec from `source` (a file, or "<command line>"); `root`
    overrides the project root."""
    if root is not None:
        return PathRules(root, True, allow_outside, typed)
    found, marked = project_root(source)
    return PathRules(found, marked, allow_outside, typed)


def project_root(source: str) -> tuple[Path, bool]:
    """(the project root of a spec, whether a `.git` marked it). The folders are walked as
    named, not with links resolved: the root is the one the user sees above the file."""
    if not source.startswith(IN_MEMORY):
        folder = Path(os.path.abspath(source)).parent
        for candidate in (folder, *folder.parents):
            if os.path.lexists(candidate / ".git"):
                return candidate, True
    return Path.cwd(), False


def default_out_dir() -> str:
    """The ledger root when none is typed or written: `data/exec` of the working
    directory's project root (the nearest folder with .git at or above it, else the working
    directory), so a command finds the ledger a spec of the project wrote, from any of
    its folders."""
    root, _ = project_root(os.path.join(os.getcwd(), "-"))
    return shown(os.path.join(root, "data", "exec"))


def shown(path: str) -> str:
    """An absolute path relative to the working directory when inside it, else as it is."""
    cwd = os.getcwd()
    if path == cwd or path.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, cwd)
    return path
