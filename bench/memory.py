"""Peak memory of training: the course's tf.data pipeline vs the tutorials' per-word arrays.

Each side runs in its own Python process (so that peaks do not mix) and reports its peak resident set
size (VmHWM in /proc/self/status). The per-word examples are never materialised (they would not fit
on a laptop): their size is computed with `progressive_bytes`, as the tutorials' `np.array(X1), np.array(X2),
np.array(y)` would hold them. Also measured: a process that only imports TensorFlow and builds the same model
(the floor every side pays) and the per-word generator (streamed, one image per batch).

    python -m bench.memory course 6000 50      # worker: images, training steps; prints one JSON line
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from bench.measured import run_worker


def _peak_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux's VmHWM, which starts afresh with the process's program; `ru_maxrss` would not do in a child
    process, as it keeps the parent's peak across fork and exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(kind: str, images: int, steps: int) -> dict:
    """Build the data and the model, train `steps` batches the `kind` way, report the peak."""
    import numpy as np

    from bench.synthetic import flickr8k_like
    from helpers.decoders.merge import build_merge_model
    from helpers.training import make_dataset
    from helpers.tutorial_baselines import build_prefix_model
    from helpers.vocabulary import Vocabulary

    captions, features = flickr8k_like(images)
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    sample = np.stack(list(features.values())[:1000])
    if kind == "course":
        model = build_merge_model(len(vocab), train_features=sample)
        model.fit(make_dataset(captions, features, vocab).take(steps), epochs=1, verbose=0, shuffle=False)
    elif kind == "generator":
        from bench.training import progressive_batches

        model = build_prefix_model(len(vocab), vocab.sequence_length, train_features=sample)
        model.fit(progressive_batches(captions, features, vocab), steps_per_epoch=steps, epochs=1, verbose=0,
                  shuffle=False)
    elif kind == "floor":
        build_merge_model(len(vocab), train_features=sample)
    else:
        raise ValueError(f"Unknown worker {kind!r}")
    return {"peak_rss_mb": _peak_mb()}


def measure(images: int = 6000, steps: int = 50, generator_steps: int = 20) -> dict:
    """Peak RSS of each side in its own process, and the computed size of the materialised per-word arrays."""
    from bench.synthetic import flickr8k_like
    from helpers.tutorial_baselines import count_progressive_examples, progressive_bytes
    from helpers.vocabulary import Vocabulary

    captions, _ = flickr8k_like(images)
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    return {"images": images, "vocab_size": len(vocab), "steps": steps,
            "course_peak_mb": run_worker("bench.memory", "course", images, steps)["peak_rss_mb"],
            "generator_peak_mb": run_worker("bench.memory", "generator", images, generator_steps)["peak_rss_mb"],
            "floor_peak_mb": run_worker("bench.memory", "floor", images, 0)["peak_rss_mb"],
            "materialised_mb": progressive_bytes(captions, vocab) / 2**20,
            "progressive_examples": count_progressive_examples(captions)}


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
