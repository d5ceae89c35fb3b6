"""Train the merge model with teacher forcing: whole captions, batched by length, checkpointed.

Also, for comparison only, the per-word "progressive" examples that many tutorials train on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from helpers.vocabulary import PAD_ID, Vocabulary


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


STRATEGIES = ("auto", "default", "mirrored")


def strategy_for(name: str | tf.distribute.Strategy = "auto") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy to build and train under: "default" (one device), "mirrored" or "auto".

    "auto" mirrors the model on every visible GPU when there are two or more (data parallelism: each GPU takes a
    slice of every batch, and their gradients are summed before one shared update), else the default strategy.
    A strategy object is returned as it is (e.g. a MirroredStrategy over chosen devices).
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    return tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """A readable name: "DefaultStrategy", "MirroredStrategy", ..."""
    return type(strategy).__name__.strip("_").replace("DistributionStrategy", "Strategy")


def teacher_forcing_arrays(
    captions: Mapping[str, list[str]], vocab: Vocabulary
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One example per caption: (image name, input `<start> w1..wn`, target `w1..wn <end>`), padded with 0.

    Both arrays are (captions, longest caption + 1) int32; the target is the input shifted left by one.
    """
    images, encoded = [], []
    for image, image_captions in captions.items():
        for caption in image_captions:
            images.append(image)
            encoded.append(vocab.encode(caption))
    if not encoded:
        raise ValueError("No captions given: is the split empty?")
    width = max(len(ids) for ids in encoded) - 1
    inputs = np.full((len(encoded), width), PAD_ID, dtype="int32")
    targets = np.full((len(encoded), width), PAD_ID, dtype="int32")
    for row, ids in enumerate(encoded):
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1] = ids[1:]
    return images, inputs, targets


def feature_matrix(images: list[str], features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack the features of `images` in that order, in their stored dtype (KeyError naming any missing).

    float16 attention maps stay float16 here (half the memory); batches are cast to float32 as they are made.
    """
    missing = sorted({image for image in images if image not in features})
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise KeyError(f"No features for {len(missing)} image(s): {shown}. Extract features for this split first.")
    return np.stack([np.asarray(features[image]) for image in images])


def make_dataset(
    captions: Mapping[str, list[str]],
    features: Mapping[str, np.ndarray],
    vocab: Vocabulary,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    buckets: int = 8,
) -> tf.data.Dataset:
    """Batches `({"image": (B, F), "caption": (B, T)}, targets (B, T))`, T = longest caption in the batch + 1.

    Captions of similar length are batched together (`buckets` length groups of about equal size), so
    little of each batch is padding. Shuffled again every epoch, in an order fixed by `seed`.
    """
    images, inputs, targets = teacher_forcing_arrays(captions, vocab)
    names = list(dict.fromkeys(images))
    matrix = tf.constant(feature_matrix(names, features))
    row_of = {name: row for row, name in enumerate(names)}
    rows = np.array([row_of[image] for image in images], dtype="int32")
    lengths = (inputs != PAD_ID).sum(axis=1).astype("int32")

    dataset = tf.data.Dataset.from_tensor_slices((rows, inputs, targets, lengths))
    if shuffle:
        dataset = dataset.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    # Upper bounds of the length groups: quantiles of the caption lengths.
    quantiles = np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:-1])
    boundaries = sorted({int(q) + 1 for q in quantiles} - {int(lengths.max()) + 1})
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda row, inp, tgt, length: length,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
    )

    def to_model_inputs(row, inp, tgt, length):
        longest = tf.reduce_max(length)
        return {"image": tf.cast(tf.gather(matrix, row), tf.float32), "caption": inp[:, :longest]}, tgt[:, :longest]

    # Each length group yields full batches and then one partial batch: tell Keras how many in all.
    group_sizes = np.bincount(np.searchsorted(boundaries, lengths, side="right"))
    batches = int(sum(-(-size // batch_size) for size in group_sizes))
    dataset = dataset.map(to_model_inputs).apply(tf.data.experimental.assert_cardinality(batches)).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False  # autotune sometimes stalls ~20 s at the end of `fit` (MEASURED.md)
    return dataset.with_options(options)


def _load_checkpoint(model: keras.Model, path: Path) -> None:
    """Load weights and Adam's state from a `.keras` checkpoint, keeping the model's current learning rate."""
    learning_rate = float(model.optimizer.learning_rate)
    model.optimizer.build(model.trainable_variables)  # a built optimizer gets its state restored too
    model.load_weights(path)
    model.optimizer.learning_rate = learning_rate


def train_model(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    dev_ds: tf.data.Dataset,
    epochs: int,
    checkpoint_path: str | Path,
    patience: int = 3,
    verbose: int | str = "auto",
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, list[float]]:
    """Fit with early stopping on the dev loss, keeping the best model in `checkpoint_path` (a `.keras` file).

    On return the model holds the best weights seen. With `resume=True`, start from the checkpoint's
    weights and only overwrite it with a better dev loss; otherwise an existing checkpoint is replaced.
    Returns the history: {"loss": [...], "val_loss": [...], ...}, one value per epoch. `callbacks` are
    added to Keras' own. If training is interrupted (Ctrl-C), the checkpoint holds the best epoch finished.
    """
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.suffix != ".keras":
        raise ValueError(f"The checkpoint must be a .keras file, got {checkpoint_path}")
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    best_dev_loss = None
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"Cannot resume: no checkpoint at {checkpoint_path}. Train without resume first.")
        _load_checkpoint(model, checkpoint_path)
        best_dev_loss = model.evaluate(dev_ds, verbose=0, return_dict=True)["loss"]
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True, verbose=0 if verbose == 0 else 1
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint_path, monitor="val_loss", save_best_only=True, initial_value_threshold=best_dev_loss
        ),
        *callbacks,  # after the checkpoint: an epoch is saved before they see its end
    ]
    history = model.fit(train_ds, validation_data=dev_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                        shuffle=False)  # the dataset shuffles itself
    if resume:  # this run may never have beaten the checkpoint: take the best of both runs
        _load_checkpoint(model, checkpoint_path)
    return {name: [float(v) for v in values] for name, values in history.history.items()}


# --- For comparison only: how many tutorials train (one example per word, one-hot target) -----------


def progressive_examples(
    captions: Mapping[str, list[str]], features: Mapping[str, np.ndarray], vocab: Vocabulary
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Yield `({"image": (F,), "prefix": (L,)}, one-hot next word (V,))` for every prefix of every caption.

    The prefix `<start> w1..wt` is left-padded with 0 to L = `vocab.sequence_length` ids (the longest
    prefix a train caption has); the target is word t+1 (or `<end>`) as a one-hot vector.
    """
    width = vocab.sequence_length
    for image, image_captions in captions.items():
        for caption in image_captions:
            ids = vocab.encode(caption)
            for t in range(1, len(ids)):
                prefix = np.full(width, PAD_ID, dtype="int32")
                kept = ids[:t][-width:]
                prefix[width - len(kept):] = kept
                target = np.zeros(len(vocab), dtype="float32")
                target[ids[t]] = 1.0
                yield {"image": features[image], "prefix": prefix}, target


def count_progressive_examples(captions: Mapping[str, list[str]]) -> int:
    """How many examples `progressive_examples` yields: one per word of each caption, plus one for `<end>`."""
    return sum(len(caption.split()) + 1 for image_captions in captions.values() for caption in image_captions)


def progressive_bytes(captions: Mapping[str, list[str]], vocab: Vocabulary, feature_dim: int = 2048) -> int:
    """Memory those examples take if held in arrays at once (float32 feature and one-hot, int32 prefix)."""
    per_example = 4 * (feature_dim + vocab.sequence_length + len(vocab))
    return count_progressive_examples(captions) * per_example
