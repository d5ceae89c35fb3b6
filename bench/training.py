"""Decoder training speed: the course's teacher forcing on tf.data vs the tutorials' per-word generator.

Both train the same layers (`build_merge_model` / `build_prefix_model`, 256 units) on the same
Flickr8k-like synthetic split (bench.synthetic). Speed is target tokens per second: one token per word of
each caption plus its `<end>`, i.e. `count_progressive_examples`, which is the same for both ways.

- Course: `make_dataset` (batch 64, 8 length buckets, each batch trimmed to its longest caption) and
  `model.fit`. Timed over `course_steps` batches after a warm-up (compilation, and one batch of every caption
  length), or over a real full epoch when `course_steps` is None.
- Tutorials: a Python generator yielding one image's examples per batch (all prefixes of its 5
  captions, left-padded to the longest caption, one-hot next word) into `build_prefix_model`, timed over
  `baseline_images` images after a warm-up and extrapolated to a full epoch.
"""

from __future__ import annotations

import time

import numpy as np

from bench.synthetic import flickr8k_like


def _vocab(captions, min_count: int):
    from helpers.vocabulary import Vocabulary

    return Vocabulary.build((c for caps in captions.values() for c in caps), min_count=min_count)


def _tokens_in(batches) -> int:
    """Target tokens (non-padding) in a list of (inputs, targets) batches."""
    return int(sum(int(np.count_nonzero(t.numpy())) for _, t in batches))


class _BatchClock:
    """A Keras callback that notes the time at the end of every training batch."""

    def __new__(cls):
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times: list[float] = []

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter())

        return Clock()


def _one_batch_per_length(dataset) -> list:
    """The first batch of each caption length in one pass over `dataset`.

    TensorFlow (oneDNN) prepares its kernels once per tensor shape, and each batch is trimmed to its longest
    caption: a first fit pays that set-up at every new length. Training each length once first keeps it out of
    the timed batches, as a long run amortises it (and as the generator's fixed length does for the baseline).
    """
    seen = {}
    for inputs, targets in dataset:
        seen.setdefault(int(targets.shape[1]), (inputs, targets))
    return list(seen.values())


def course_speed(captions, features, min_count: int = 1, batch_size: int = 64, buckets: int = 8,
                 steps: int | None = 60, warmup_steps: int = 8) -> dict:
    """Tokens/s of the course's training; steps=None times one real full epoch."""
    import keras

    from helpers.decoders.merge import build_merge_model
    from helpers.training import make_dataset
    from helpers.tutorial_baselines import count_progressive_examples

    keras.utils.set_random_seed(0)
    vocab = _vocab(captions, min_count)
    names = list(captions)
    model = build_merge_model(len(vocab), train_features=np.stack([features[n] for n in names[:1000]]))
    dataset = make_dataset(captions, features, vocab, batch_size=batch_size, buckets=buckets, seed=0)
    epoch_tokens = count_progressive_examples(captions)
    if steps is None:  # warm up (trace the train step for a few batch lengths), then one real epoch
        model.fit(dataset.take(warmup_steps), epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - start
        tokens, batches = epoch_tokens, int(dataset.cardinality())
    else:  # warm up on one batch of every length, then time `steps` batches (after `warmup_steps` more)
        for inputs, targets in _one_batch_per_length(dataset):
            model.train_on_batch(inputs, targets)
        clock = _BatchClock()
        model.fit(dataset.take(warmup_steps + steps), epochs=1, verbose=0, shuffle=False, callbacks=[clock])
        seconds = clock.times[-1] - clock.times[warmup_steps - 1]
        # The same batches again, from a fresh dataset with the same seed (its first pass has the same order).
        again = make_dataset(captions, features, vocab, batch_size=batch_size, buckets=buckets, seed=0)
        tokens = _tokens_in(list(again.skip(warmup_steps).take(steps)))
        batches = steps
    rate = tokens / seconds
    return {"tokens_per_s": rate, "epoch_s": epoch_tokens / rate if steps is not None else seconds,
            "epoch_measured": steps is None, "timed_tokens": tokens, "timed_batches": batches,
            "timed_s": seconds, "vocab_size": len(vocab), "batch_size": batch_size, "buckets": buckets,
            "min_count": min_count, "epoch_tokens": epoch_tokens}


def progressive_batches(captions, features, vocab):
    """The tutorials' generator: one image per batch, all prefixes of its captions, one-hot next word."""
    from helpers.tutorial_baselines import progressive_examples

    while True:
        for name, image_captions in captions.items():
            examples = list(progressive_examples({name: image_captions}, features, vocab))
            yield ({"image": np.stack([x["image"] for x, _ in examples]),
                    "prefix": np.stack([x["prefix"] for x, _ in examples])},
                   np.stack([y for _, y in examples]))


def baseline_speed(captions, features, images: int = 40, warmup_images: int = 3, min_count: int = 1) -> dict:
    """Tokens/s of the per-word generator over `images` images (after a warm-up), extrapolated to an epoch."""
    import keras

    from helpers.tutorial_baselines import build_prefix_model, count_progressive_examples

    keras.utils.set_random_seed(0)
    vocab = _vocab(captions, min_count)
    names = list(captions)
    model = build_prefix_model(len(vocab), vocab.sequence_length,
                               train_features=np.stack([features[n] for n in names[:1000]]))
    # One fit over warm-up + timed images, timed from the end of the warm-up batches (as for the course).
    timed = {n: captions[n] for n in names[warmup_images:warmup_images + images]}
    tokens = count_progressive_examples(timed)
    clock = _BatchClock()
    model.fit(progressive_batches(captions, features, vocab), steps_per_epoch=warmup_images + images, epochs=1,
              verbose=0, callbacks=[clock], shuffle=False)
    seconds = clock.times[-1] - clock.times[warmup_images - 1]
    rate = tokens / seconds
    epoch_tokens = count_progressive_examples(captions)
    return {"tokens_per_s": rate, "epoch_s": epoch_tokens / rate, "epoch_measured": False,
            "timed_tokens": tokens, "timed_images": images, "timed_s": seconds, "vocab_size": len(vocab),
            "epoch_tokens": epoch_tokens}


def flops_per_token(vocab_size: int, tokens_per_caption: float, units: int = 256, embedding_dim: int = 256,
                    feature_dim: int = 2048) -> dict:
    """The floating-point operations a training step spends on one target token of the merge model.

    Multiply-adds count as two operations. Forward, per token: the LSTM cell (4 gates reading the word vector and
    the previous output), the decoder's dense layer, the output layer over the vocabulary, and the image branch's
    dense layer shared by the caption's tokens. Backward costs about twice the forward (the gradients of the
    activations and of the weights), so a training step is 3 x the forward.
    """
    forward_macs = {"lstm": 4 * (embedding_dim + units) * units, "decoder_dense": units * units,
                    "output": units * vocab_size, "image_dense": feature_dim * units / tokens_per_caption}
    forward = 2 * sum(forward_macs.values())
    return {"forward_macs": forward_macs, "forward_flops": forward, "training_flops": 3 * forward}


def measure(images: int = 6000, course_steps: int | None = None, baseline_images: int = 40,
            levers: bool = True, lever_steps: int = 60, peak_n: int = 4096) -> dict:
    """Course vs generator on the Flickr8k-like split, their share of the matmul peak, and the levers if asked."""
    from bench.features import matmul_peak

    captions, features = flickr8k_like(images)
    baseline = baseline_speed(captions, features, images=baseline_images)
    course = course_speed(captions, features, steps=course_steps)
    peak = matmul_peak(peak_n)
    tokens_per_caption = course["epoch_tokens"] / sum(map(len, captions.values()))
    flops = flops_per_token(course["vocab_size"], tokens_per_caption)
    for side in (course, baseline):  # the same useful work per token on both sides
        side["gflops"] = side["tokens_per_s"] * flops["training_flops"] / 1e9
        side["share_of_peak"] = side["gflops"] / peak["gflops"]
    result = {"images": images, "captions": sum(map(len, captions.values())), "course": course,
              "baseline": baseline, "speedup": course["tokens_per_s"] / baseline["tokens_per_s"],
              "flops_per_token": flops, "matmul_peak": peak, "levers": {}}
    if levers:
        for label, kwargs in {"batch64_min_count1": {}, "min_count5": {"min_count": 5},
                              "min_count10": {"min_count": 10}, "batch128": {"batch_size": 128},
                              "min_count5_batch128": {"min_count": 5, "batch_size": 128}}.items():
            result["levers"][label] = course_speed(captions, features, steps=lever_steps, **kwargs)
    return result
