"""What end-to-end fine-tuning costs: a training step through the encoder against one on cached features.

Both sides train on the same batches of images, each with its five captions (Flickr8k's vocabulary size, the
course's merge decoder): the frozen side reads the images' cached feature vectors, the end-to-end side their
pixels, through Xception with its last block unfrozen (`helpers.fine_tune`). Each runs in its own process, which
reports its images per second and its peak resident memory (VmHWM); one Flickr8k epoch (6,000 train images) at
that rate is the figure to plan by. Random pixels and features: this times the step, not JPEG decoding.

    python -m bench.fine_tune end_to_end 299 16 5     # worker: kind, image size, images a step, steps
"""

from __future__ import annotations

import json
import sys
import time

from bench.measured import run_worker, usage

FLICKR8K_TRAIN_IMAGES = 6000
VOCABULARY, WIDTH = 7329, 20  # Flickr8k's words at min_count 1; a typical caption batch's length + 1


def _worker(kind: str, image_size: int, batch: int, steps: int) -> dict:
    """Build the `kind` side, train one untimed step (tracing), then `steps` timed ones."""
    import keras
    import numpy as np

    from helpers.decoders.merge import build_merge_model
    from helpers.encoders import build_encoder, encoder_spec
    from helpers.fine_tune import CAPTIONS_PER_IMAGE, end_to_end, unfreeze_last_block

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    captions = rng.integers(1, VOCABULARY, (batch, CAPTIONS_PER_IMAGE, WIDTH)).astype("int32")
    decoder = build_merge_model(VOCABULARY, train_features=rng.normal(size=(64, 2048)).astype("float32"))
    if kind == "end_to_end":
        encoder = build_encoder("xception", "none", image_size, pooling="avg")
        unfreeze_last_block(encoder, encoder_spec("xception").fine_tune_after)
        model = end_to_end(encoder, decoder, image_size, WIDTH, 1e-4)
        inputs = {"pixels": rng.uniform(-1, 1, (batch, image_size, image_size, 3)).astype("float32"),
                  "caption": captions}
        targets = captions
    elif kind == "frozen":
        model = decoder
        inputs = {"image": rng.normal(size=(batch * CAPTIONS_PER_IMAGE, 2048)).astype("float32"),
                  "caption": captions.reshape(-1, WIDTH)}
        targets = captions.reshape(-1, WIDTH)
    else:
        raise ValueError(f"Unknown worker {kind!r}")
    model.train_on_batch(inputs, targets)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(inputs, targets)
    seconds = time.perf_counter() - started
    return {"images_per_s": batch * steps / seconds, **usage()}


def measure(image_size: int = 299, batch: int = 16, steps: int = 5, frozen_steps: int = 50) -> dict:
    """Both sides, each in its own process; the Flickr8k epoch each would take at its rate."""
    sides = {"frozen": run_worker("bench.fine_tune", "frozen", image_size, batch, frozen_steps),
             "end_to_end": run_worker("bench.fine_tune", "end_to_end", image_size, batch, steps)}
    for side in sides.values():
        side["flickr8k_epoch_min"] = FLICKR8K_TRAIN_IMAGES / side["images_per_s"] / 60
    return {"image_size": image_size, "batch": batch, **sides,
            "slowdown": sides["frozen"]["images_per_s"] / sides["end_to_end"]["images_per_s"]}


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
