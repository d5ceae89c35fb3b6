"""Memory at Flickr8k's size, measured at two small sizes and extrapolated to 8,091 images: the attention path (the
grid cache read for training, its channel statistics) keeps what it allocates flat as the number of images grows.

The whole stages are measured by `python -m bench --scale N` (peak RSS per CLI stage and notebook); at the few
hundred images a test can afford, RSS is mostly TensorFlow's fixed gigabyte and its growth is noise. This test
counts instead every NumPy array the course's code allocates (NumPy reports them to tracemalloc), exactly and
the same on every run: a copy of all grids, as notebook 07 once made (3.3 GB in float16 at Flickr8k's size,
twice that in float32), shows up as a slope of at least one grid per image.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from bench.scale import BUDGET_MB, FLICKR8K_IMAGES, extrapolate
from helpers.decoders.attention import location_stats
from helpers.machinery.feature_cache import CacheSetting, append_to_cache, open_cache, read_cache
from helpers.training import make_dataset
from helpers.vocabulary import Vocabulary

GRID = (10, 10, 2048)  # Xception's grid at 299 px, as the attention decoder reads it on Flickr8k
GRID_BYTES = int(np.prod(GRID)) * 2  # float16 in the cache
SIZES = (128, 512)  # images: several chunks of location_stats (64 grids) and several batches at both
WORDS = [f"word{i}" for i in range(50)]
MIB = 2**20


def write_grid_cache(folder, images: int, rng: np.random.Generator) -> list[str]:
    """A grid cache of `images` random grids, appended 32 at a time as extraction's checkpoints append them."""
    setting = CacheSetting.of("xception", "none", 299, pooling="none")
    cache, keys = open_cache(folder, setting), [f"{i:05d}.jpg" for i in range(images)]
    for start in range(0, images, 32):
        part = {k: rng.normal(0, 1, GRID).astype("float16") for k in keys[start:start + 32]}
        cache = append_to_cache(folder, setting, cache, part, {}, {})
    return keys


def attention_reads(folder, captions: dict[str, list[str]], vocab: Vocabulary) -> None:
    """What training the attention decoder reads: the channel statistics, then one epoch of batches."""
    features = read_cache(folder)
    location_stats(features, list(captions))
    for _ in make_dataset(captions, features, vocab, batch_size=64, shuffle=True, seed=0):
        pass


def traced_peak(run) -> float:
    """The peak of what Python and NumPy allocate while `run()` runs, in MiB."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_the_attention_path_streams_its_grids_within_budget_at_flickr8k_size(tmp_path):
    rng = np.random.default_rng(0)
    peaks = []
    for images in SIZES:
        folder = tmp_path / f"grids{images}"
        keys = write_grid_cache(folder, images, rng)
        captions = {k: [" ".join(rng.choice(WORDS, int(rng.integers(8, 16)))) for _ in range(5)] for k in keys}
        vocab = Vocabulary.build(c for found in captions.values() for c in found)
        peaks.append(traced_peak(lambda: attention_reads(folder, captions, vocab)))  # noqa: B023 (run at once)
    per_image = (peaks[1] - peaks[0]) / (SIZES[1] - SIZES[0]) * MIB
    at_flickr8k = extrapolate((SIZES[0], peaks[0]), (SIZES[1], peaks[1]), FLICKR8K_IMAGES)
    print(f"\nattention reads: {peaks[0]:.1f} MiB at {SIZES[0]} images, {peaks[1]:.1f} MiB at {SIZES[1]}; "
          f"{per_image:,.0f} bytes an image; {at_flickr8k:,.0f} MiB at {FLICKR8K_IMAGES:,} (budget {BUDGET_MB:,})")
    assert peaks[0] > 64 * GRID_BYTES / MIB  # it does hold grids: a chunk of 64 at least (the test measures)
    assert per_image < GRID_BYTES / 10, per_image  # no copy of every grid: far less than one grid an image
    assert at_flickr8k < BUDGET_MB / 8, at_flickr8k  # an eighth of the budget, the rest is TensorFlow's and the model's
