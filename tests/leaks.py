"""What counts as an account id printed in the clear, for the tests' output checks.

An IB account id (`D?[UFI]` and 4-10 digits) that is not glued to an ASCII letter,
digit or `_` on either side -- where a letter or digit that ends a backslash escape
(`\\n`, `\\t`, `\\u00e9`, `\\x41`, `\\101`: JSON's and repr()'s ways to write one
character) does not glue it. Written independently of runner/redact.py's code, as
look-behinds, so the two can disagree and a test catch it.
"""

from __future__ import annotations

import re

_ESCAPED = (r"(?<=\\[A-Za-z0-9])|(?<=\\x[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4})"
            r"|(?<=\\U[0-9A-Fa-f]{8})|(?<=\\[0-7]{3})"
            # a terminal colour code right before it (its letter is invisible): ESC[0m
            r"|(?<=\x1b\[[0-9]m)|(?<=\x1b\[[0-9][0-9]m)|(?<=\[[0-9]m)|(?<=\[[0-9][0-9]m)")
UNMASKED = re.compile(rf"(?:(?<![A-Za-z0-9_])|{_ESCAPED})D?[UFI][0-9]{{4,10}}(?![A-Za-z0-9_])")


def leaked(text: str) -> list[str]:
    """Every account id in `text` in the clear."""
    return UNMASKED.findall(text)
