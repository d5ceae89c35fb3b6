"""How captions are cleaned: every rule in one place (notebook 01).

1. Accented letters are folded to ASCII ("café" -> "cafe").
2. Everything is lower-cased.
3. Apostrophes are removed ("dog's" -> "dogs").
4. Any other character that is not a letter or a digit separates words (commas, quotes, full stops, hyphens:
   "black-and-white" -> "black and white"), except a hyphen that joins a single letter to a word: "t-shirt",
   "x-ray" and "u-turn" stay whole words (split, their letter would fall to rule 6 and "t-shirt" would become
   "shirt").
5. Tokens that contain a digit are dropped ("2", "3rd").
6. One-letter tokens other than "a" are dropped.
7. Words are joined by single spaces.
8. A caption left with nothing but "a" is empty (Flickr8k has two captions that are just "A").

The result holds only lower-case words (letters, and the hyphen of rule 4) and single spaces, so cleaning twice
changes nothing, and the vocabulary's reserved tokens ("<start>", "<end>", ...) can never be produced from a real
caption. A caption can become empty (for example "!!!" or "2"): callers must report it, never keep it.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['\u2019`]")
_TOKENS = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # runs of letters and digits, hyphens inside kept for now


def _split_hyphens(token: str) -> list[str]:
    """Rule 4's hyphens: a compound with a single-letter part stays whole, any other splits at its hyphens."""
    parts = token.split("-")
    if len(parts) > 1 and any(len(p) == 1 and p.isalpha() for p in parts) and all(p.isalpha() for p in parts):
        return [token]
    return parts


def clean_caption(text: str) -> str:
    """Apply the rules above to one caption."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = _APOSTROPHES.sub("", ascii_text.lower())
    words = [w for token in _TOKENS.findall(text) for w in _split_hyphens(token)]
    words = [w for w in words if not any(c.isdigit() for c in w) and (len(w) > 1 or w == "a")]
    return "" if words == ["a"] else " ".join(words)
