"""What the course says about Flickr8k's captions, computed from a copy of them: `python -m bench --flickr8k-text PATH`.

PATH is a Flickr8k captions file, the Kaggle `captions.txt` or the original `Flickr8k.token.txt` (the images are not
needed). The figures use the course's own reader, cleaning and vocabulary, and the official split lists that ship
with the course, so they are the ones a learner's `prepare` would give (bench/README.md records them).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from helpers.cleaning import clean_caption
from helpers.machinery.layouts.flickr8k import SPLIT_FILES, read_kaggle_captions, read_token_captions
from helpers.machinery.paths import official_splits_dir
from helpers.vocabulary import Vocabulary

MIN_COUNTS = (1, 2, 5, 10)


def measure(path: str | Path) -> dict:
    """Caption counts, lengths, vocabulary sizes and the quirks of a Flickr8k captions file."""
    path = Path(path)
    kaggle = path.suffix == ".txt" and path.name != "Flickr8k.token.txt"
    reader = read_kaggle_captions if kaggle else read_token_captions
    rows, skipped = reader(path)
    splits = {s: (official_splits_dir() / f).read_text(encoding="utf-8").split() for s, f in SPLIT_FILES.items()}
    in_split = {name for names in splits.values() for name in names}
    raw: dict[str, list[str]] = {}
    for name, caption, _ in rows:
        raw.setdefault(name, []).append(caption)
    cleaned = {name: [c for c in map(clean_caption, caps) if c] for name, caps in raw.items()}
    empty = sorted({caption for caps in raw.values() for caption in caps if not clean_caption(caption)})
    train = [c for name in splits["train"] for c in cleaned.get(name, [])]
    dev = [c for name in splits["dev"] for c in cleaned.get(name, [])]
    lengths = np.array([len(c.split()) for c in train])
    vocabularies = {m: Vocabulary.build(train, min_count=m) for m in MIN_COUNTS}
    hyphenated = Counter(w.lower() for caps in raw.values() for c in caps for w in re.findall(r"\w+(?:-\w+)+", c))
    return {
        "file": path.name, "rows": len(rows), "rows_without_caption": len(skipped), "images": len(raw),
        "images_in_no_split": len(set(raw) - in_split), "names_not_ending_in_jpg": sorted(n for n in raw
                                                                                        if not n.endswith(".jpg")),
        "split_images": {s: sum(n in cleaned for n in names) for s, names in splits.items()},
        "train_captions": len(train), "train_words": int(lengths.sum()),
        "length_median": float(np.median(lengths)), "length_p95": float(np.percentile(lengths, 95)),
        "length_max": int(lengths.max()),
        "vocabulary_tokens": {m: len(v) for m, v in vocabularies.items()},
        "train_tokens_unknown": {m: v.unknown_rate(train) for m, v in vocabularies.items()},
        "dev_words_unknown": {m: v.unknown_rate(dev) for m, v in vocabularies.items()},
        "captions_empty_after_cleaning": empty,
        "hyphenated_words": hyphenated.most_common(5),
        "hyphenated_kept_whole": [w for w, _ in hyphenated.most_common(20) if clean_caption(w) == w],
    }


def lines(result: dict) -> list[str]:
    """The figures, one a line, as bench/README.md quotes them."""
    vocab, dev = result["vocabulary_tokens"], result["dev_words_unknown"]
    return [
        f"{result['file']}: {result['rows']:,} caption rows of {result['images']:,} images "
        f"({result['images_in_no_split']} in no official split)",
        f"train captions: {result['train_captions']:,}, {result['train_words']:,} words after cleaning; length median "
        f"{result['length_median']:.0f}, 95th percentile {result['length_p95']:.0f}, longest {result['length_max']}",
        "vocabulary (tokens, with the 4 reserved): " + ", ".join(f"min_count {m}: {n:,}" for m, n in vocab.items()),
        "dev words unknown: " + ", ".join(f"min_count {m}: {r:.1%}" for m, r in dev.items()),
        f"captions that clean to nothing: {result['captions_empty_after_cleaning']}",
        f"names that are not .jpg files: {result['names_not_ending_in_jpg']}",
        f"most common hyphenated words: {result['hyphenated_words']}",
    ]
