"""`runner schema [spec|policy]`: the JSON Schema runner checks files against, as shipped
(DESIGN §3), so specs in other repositories can point their editor's modeline at a copy.
Read from the installed package, from where the spec and policy loaders read it."""

from __future__ import annotations

import sys


def show(name: str = "spec") -> int:
    """Print the schema `name` (spec or policy) as shipped."""
    from runner import policy, spec

    path = {"spec": spec.SCHEMA_PATH, "policy": policy.SCHEMA_PATH}[name]
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0
