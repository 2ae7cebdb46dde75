"""Can this user write here? Asked before a run sends anything, and said in one line
naming the folder (or file), its owner and mode, and the fix. Pure Python (no pyarrow):
the preflight's lock folder asks it too."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from runner.errors import UsageError


def check_writable(out_dir: Path, day: str) -> None:
    """UsageError (exit 2) unless this user can keep the day's ledger under `out_dir`:
    write in the day folder (or create it) and open its lock. Asked before anything is
    sent or written, so a refused run leaves no order and no file behind."""
    from runner.ledger.schema import LOCK_FILE

    day_dir = out_dir / day
    lock = day_dir / LOCK_FILE
    if lock.exists() and not os.access(lock, os.R_OK | os.W_OK):
        raise UsageError(f"cannot write the ledger in {day_dir}: its lock file {lock.name} "
                         f"is not writable by this user{whose(lock)}; nothing was sent",
                         "make it writable for this user, e.g. by a group both users "
                         "share and g+w, or use another --out-dir")
    for target in (day_dir, out_dir):  # out_dir too: recover's notes go there
        _check_folder(target, day_dir, out_dir)


def _check_folder(target: Path, day_dir: Path, out_dir: Path) -> None:
    """`target`, or the nearest folder above it that exists (where it would be made),
    writable by this user."""
    folder = target
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write the ledger under {out_dir}: {folder} is not a "
                         "folder; nothing was sent", "give --out-dir (or out_dir) a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        what = f": the day folder {folder}" if folder == day_dir else \
            f" under {out_dir}: {folder}"
        raise UsageError(f"cannot write the ledger{what} is not writable by this user"
                         f"{whose(folder)}; nothing was sent",
                         "make it writable for this user, or use another --out-dir")


def whose(path: Path) -> str:
    """ " (owner NAME, uid N, mode -rw-r--r--)", or "" if it cannot be told."""
    try:
        st = path.stat()
    except OSError:
        return ""
    try:
        owner = f"{pwd.getpwuid(st.st_uid).pw_name}, uid {st.st_uid}"
    except KeyError:
        owner = f"uid {st.st_uid}"
    return f" (owner {owner}, mode {stat.filemode(st.st_mode)})"
