"""Flickr8k-like synthetic captions and features: same sizes and shapes as the real train split.

    captions, features = flickr8k_like(images=6000)   # {name: [5 captions]}, {name: (2048,) float32}

- 6,000 train images x 5 captions (30,000 captions).
- Caption lengths (words after the course's cleaning) follow the real Flickr8k train captions': median 10,
  95th percentile 18, longest 36 (a log-normal rounded to whole words, one caption forced to the maximum).
- Words follow a Zipf law over 7,325 word types (the train words of Flickr8k after cleaning), every type used at
  least once, so `Vocabulary.build(min_count=1)` has 7,329 tokens, as on Flickr8k, and `min_count` 5 about 2,570
  (Flickr8k: 2,529).
- Features: 2048 float32 numbers per image (random; the speed of the decoder does not depend on them).
"""

from __future__ import annotations

import numpy as np

CAPTIONS_PER_IMAGE = 5
MEDIAN_LENGTH, P95_LENGTH, MAX_LENGTH = 10, 18, 36
WORD_TYPES = 7325
ZIPF_EXPONENT = 1.25  # min_count 5 -> about 2,560 words, 10 -> 1,370 (Flickr8k train: 2,525 and 1,656)
FEATURE_DIM = 2048


def caption_lengths(count: int, seed: int = 0) -> np.ndarray:
    """`count` caption lengths in words with Flickr8k's median, 95th percentile and maximum."""
    rng = np.random.default_rng(seed)
    sigma = np.log(P95_LENGTH / MEDIAN_LENGTH) / 1.6449  # log-normal: p95 = median * exp(1.645 sigma)
    lengths = np.rint(np.exp(rng.normal(np.log(MEDIAN_LENGTH), sigma, count))).astype(int)
    lengths = np.clip(lengths, 1, MAX_LENGTH)
    lengths[rng.integers(count)] = MAX_LENGTH  # Flickr8k has one caption this long
    return lengths


def word_ids(count: int, word_types: int = WORD_TYPES, seed: int = 0) -> np.ndarray:
    """`count` word ids drawn from a Zipf law over `word_types` types, each type used at least once."""
    rng = np.random.default_rng(seed + 1)
    weights = 1.0 / np.arange(1, word_types + 1) ** ZIPF_EXPONENT
    ids = rng.choice(word_types, size=count, p=weights / weights.sum())
    missing = np.setdiff1d(np.arange(word_types), ids)
    if len(missing) and count >= word_types:  # put every unused type in once, at random places
        ids[rng.choice(count, size=len(missing), replace=False)] = missing
    return ids


def flickr8k_like(images: int = 6000, word_types: int = WORD_TYPES, feature_dim: int = FEATURE_DIM,
                  seed: int = 0) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Synthetic train split: ({image name: 5 captions}, {image name: feature vector})."""
    lengths = caption_lengths(images * CAPTIONS_PER_IMAGE, seed)
    ids = word_ids(int(lengths.sum()), min(word_types, int(lengths.sum())), seed)
    words = np.array([f"w{i}" for i in range(word_types)])[ids]
    ends = np.cumsum(lengths)
    captions_flat = [" ".join(words[end - n:end]) for n, end in zip(lengths, ends, strict=True)]
    names = [f"{i:05d}_synthetic.jpg" for i in range(images)]
    captions = {name: captions_flat[i * CAPTIONS_PER_IMAGE:(i + 1) * CAPTIONS_PER_IMAGE]
                for i, name in enumerate(names)}
    rng = np.random.default_rng(seed + 2)
    matrix = rng.standard_normal((images, feature_dim), dtype=np.float32)
    return captions, dict(zip(names, matrix, strict=True))


def describe(captions: dict[str, list[str]]) -> dict:
    """Caption count, length statistics and vocabulary sizes at a few `min_count`s."""
    from collections import Counter

    lengths = np.array([len(c.split()) for caps in captions.values() for c in caps])
    counts = Counter(w for caps in captions.values() for c in caps for w in c.split())
    return {"images": len(captions), "captions": int(len(lengths)), "tokens": int(lengths.sum()),
            "median_length": float(np.median(lengths)), "p95_length": float(np.percentile(lengths, 95)),
            "max_length": int(lengths.max()),
            "word_types": {m: sum(n >= m for n in counts.values()) for m in (1, 2, 5, 10)}}
