"""Any terminal encoding prints runner's output: the few non-ASCII characters runner
writes have ASCII stand-ins ("—" -> "-", "→" -> "->", "×" -> "x", "µ" -> "u"), and any
other character a stream cannot encode (a file name's, say) prints as "?".

`fit_streams()` gives stdout and stderr the "runner-plain" error handler when their
encoding (PYTHONIOENCODING=ascii, a C locale without UTF-8) cannot encode them; a UTF-8
terminal is left as it is.
"""

from __future__ import annotations

import codecs
import sys

PLAIN = {
    "\u2014": "-", "\u2013": "-", "\u2192": "->", "\u00d7": "x", "\u00b5": "u", "\u03bc": "u",
    "\u2026": "...", "\u00b7": ".", "\u2264": "<=", "\u2265": ">=", "\u2018": "'", "\u2019": "'",
    "\u201c": '"', "\u201d": '"', "\u00a0": " ",
}
HANDLER = "runner-plain"


def _plain(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(PLAIN.get(c, "?") for c in text), error.end


codecs.register_error(HANDLER, _plain)


def fit_streams() -> None:
    """stdout and stderr with the stand-ins, where their encoding needs them."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if not encoding or reconfigure is None or getattr(stream, "errors", None) == HANDLER:
            continue
        try:
            "".join(PLAIN).encode(encoding)
        except UnicodeEncodeError:
            reconfigure(errors=HANDLER)
        except LookupError:
            continue
