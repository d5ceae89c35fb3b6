"""How captions are cleaned: every rule in one place.

1. Accented letters are folded to ASCII ("café" -> "cafe").
2. Everything is lower-cased.
3. Apostrophes are removed ("dog's" -> "dogs").
4. Any other character that is not a letter or a digit separates words
   (commas, quotes, full stops, hyphens: "black-and-white" -> "black and white").
5. Tokens that contain a digit are dropped ("2", "3rd").
6. One-letter tokens other than "a" are dropped.
7. Words are joined by single spaces.

The result holds only lower-case words and single spaces, so cleaning twice changes nothing, and the
vocabulary's reserved tokens ("<start>", "<end>", ...) can never be produced from a real caption.
A caption can become empty (for example "!!!" or "2"): callers must report it, never keep it.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['\u2019`]")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def clean_caption(text: str) -> str:
    """Apply the rules above to one caption."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = _APOSTROPHES.sub("", ascii_text.lower())
    words = [w for w in _SEPARATORS.split(text) if w and not any(c.isdigit() for c in w)]
    return " ".join(w for w in words if len(w) > 1 or w == "a")
