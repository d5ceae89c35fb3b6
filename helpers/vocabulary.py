"""Word <-> id mapping built on the train captions, with reserved tokens no real word can take (notebook 02).

Reserved tokens contain angle brackets, which `clean_caption` never leaves in a caption, so they
cannot collide with real words (real Flickr8k captions contain "start" and "end").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import SettingError, WorkFolderError

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
RESERVED = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = range(4)


@dataclass(frozen=True)
class Vocabulary:
    """Index -> word list (reserved tokens first) and the longest train caption, in words."""

    words: tuple[str, ...]
    max_length: int

    def __post_init__(self) -> None:
        if tuple(self.words[:4]) != RESERVED:
            raise WorkFolderError(f"A vocabulary must start with {RESERVED}, got {tuple(self.words[:4])}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Keep words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        captions = list(captions)
        if not captions:
            raise SettingError("Cannot build a vocabulary from no captions: is the train split empty?")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise SettingError(f"min_count must be a whole number of at least 1, not {min_count!r}.")
        counts = Counter(word for caption in captions for word in caption.split())
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise SettingError(f"min_count {min_count} leaves no word: the most frequent train word occurs "
                               f"{max(counts.values(), default=0)} times. Choose a smaller min_count.")
        longest = max(len(caption.split()) for caption in captions)
        return cls(RESERVED + tuple(kept), longest)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def sequence_length(self) -> int:
        """Length of a decoder input or target: the longest caption plus one special token."""
        return self.max_length + 1

    def id_of(self, word: str) -> int:
        """The id of a word, or the unknown token's id."""
        return self._index.get(word, UNK_ID)

    def encode(self, caption: str) -> list[int]:
        """`<start> words... <end>` as ids (unknown words map to `<unk>`)."""
        return [START_ID, *(self.id_of(w) for w in caption.split()), END_ID]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first `<end>`, without reserved tokens."""
        out = []
        for i in ids:
            i = int(i)
            if i == END_ID:
                break
            if i >= len(RESERVED):
                out.append(self.words[i])
        return " ".join(out)

    def unknown_rate(self, captions: Iterable[str]) -> float:
        """Share of words in `captions` that this vocabulary maps to `<unk>`."""
        words = [w for caption in captions for w in caption.split()]
        return sum(w not in self._index for w in words) / max(len(words), 1)

    def as_json(self) -> dict:
        """What vocab.json holds (JSON, never pickle: `prepare` writes it, atomically)."""
        return {"words": list(self.words), "max_length": self.max_length}

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary's JSON file (`as_json`)."""
        path = Path(path)
        if not path.is_file():
            raise WorkFolderError(f"No vocabulary at {path}: run `python -m helpers prepare` (or notebook 02) first.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(tuple(data["words"]), int(data["max_length"]))
        except (ValueError, KeyError, TypeError) as error:
            raise WorkFolderError(f"{path} is damaged ({type(error).__name__}: {error}): run "
                                  "`python -m helpers prepare` (or notebook 02) again to rewrite it.") from error
