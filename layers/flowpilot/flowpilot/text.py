"""Text hygiene for anything that reaches a PSA ticket or a preview: one cleaning, used everywhere.

Chat and customer text can carry NUL bytes, ANSI escapes and other control characters; a PSA stores
them verbatim and an engineer's note then shows garbage (or worse, a terminal sequence). Newlines and
tabs are kept; CRLF becomes LF.
"""

from __future__ import annotations

import re
import unicodedata

# CSI/OSC/other ANSI escape sequences first (so their parameters go too), then lone control characters.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")
# Control characters, and the explicit bidi embeddings, overrides and isolates (U+202A-U+202E,
# U+2066-U+2069): with those, a note can display differently from the text the engineer approved
# ("Trojan Source"). The implicit marks (LRM, RLM) stay: they cannot reverse a run of text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """`text` without control characters but newline and tab (NUL, ANSI escapes, C1), nor explicit bidi controls."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


def is_blank(text: str) -> bool:
    """Nothing a reader would see once cleaned: whitespace (Unicode spaces too) and invisible format characters."""
    return not "".join(c for c in clean(text) if unicodedata.category(c) != "Cf").strip()
