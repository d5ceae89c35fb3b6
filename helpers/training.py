"""Train a captioning decoder with teacher forcing: whole captions, batched by length, the best epoch kept
(notebook 05).

    train_ds = make_dataset(train_captions, features, vocab, batch_size=64)
    history = train_model(model, train_ds, dev_ds, epochs=30, checkpoint_path=work.path("model.keras"))

Features stay where they are (a FeatureSet reads them from the cache on disk): each batch gathers the rows it
needs, so even the 3 GB of Flickr8k's attention grids pass through a few batches' worth of memory.

On a GPU with tensor cores (compute capability 7.0 or more: V100, Colab's T4, A100, ...) the course trains in
mixed precision (Keras' "mixed_float16", chosen by `helpers.machinery.device.precision_policy`): layers compute
in float16 and keep their weights in float32, which halves the memory of the activations (larger batches fit) and
runs the matrix products on the tensor cores, which are built for float16. The image's standardisation, the
next-word layer (the logits) and the loss stay in float32, and Keras scales the loss so that small gradients do not
vanish in float16. On the CPU nothing changes: float32 throughout, as before (float16 is no faster there). A model
trained either way loads, captions and resumes on any machine (resumed on another kind of device, the optimizer's
running averages start again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from helpers.decoders.base import stack_rows
from helpers.errors import SettingError, WorkFolderError, check_at_least
from helpers.vocabulary import PAD_ID, Vocabulary


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def precision(policy: str) -> Iterator[None]:
    """Build (and compile) models under the Keras dtype policy `policy`; the global policy is restored afterwards.

    A model built under "mixed_float16" keeps that policy when saved and loaded; one compiled under it gets
    Keras' loss scaling (a LossScaleOptimizer around its optimizer)."""
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(before)


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
        raise SettingError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    return tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """A readable name: "DefaultStrategy", "MirroredStrategy", ..."""
    return type(strategy).__name__.strip("_").replace("DistributionStrategy", "Strategy")


def teacher_forcing_arrays(
    captions: Mapping[str, list[str]], vocab: Vocabulary
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One example per caption: (image key, input `<start> w1..wn`, target `w1..wn <end>`), padded with 0.

    Both arrays are (captions, longest caption + 1) int32; the target is the input shifted left by one.
    """
    images, encoded = [], []
    for image, image_captions in captions.items():
        for caption in image_captions:
            images.append(image)
            encoded.append(vocab.encode(caption))
    if not encoded:
        raise SettingError("No captions given: is the split empty?")
    width = max(len(ids) for ids in encoded) - 1
    inputs = np.full((len(encoded), width), PAD_ID, dtype="int32")
    targets = np.full((len(encoded), width), PAD_ID, dtype="int32")
    for row, ids in enumerate(encoded):
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1] = ids[1:]
    return images, inputs, targets


def make_dataset(
    captions: Mapping[str, list[str]],
    features: Mapping[str, np.ndarray],
    vocab: Vocabulary,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    buckets: int = 8,
) -> tf.data.Dataset:
    """Batches `({"image": (B, *feature shape), "caption": (B, T)}, targets (B, T))`, T = its longest caption + 1.

    Captions of similar length are batched together (`buckets` length groups of about equal size), so little
    of each batch is padding. Shuffled again every epoch, in an order fixed by `seed`. `features` is a
    FeatureSet (or any mapping key -> array); each batch reads its images' rows from it.
    """
    check_at_least("batch_size", batch_size)
    images, inputs, targets = teacher_forcing_arrays(captions, vocab)
    keys = list(dict.fromkeys(images))
    missing = [k for k in keys if k not in features]
    if missing:
        raise WorkFolderError(f"No features for {len(missing)} image(s) with captions, e.g. {missing[:3]}: extract "
                              "the features of this split first (`python -m helpers features`).")
    row_of = {key: row for row, key in enumerate(keys)}
    rows = np.array([row_of[image] for image in images], dtype="int32")
    lengths = (inputs != PAD_ID).sum(axis=1).astype("int32")
    if hasattr(features, "stack"):  # a FeatureSet: the rows stay on disk in their own dtype (grids in float16)
        stored, row_shape = np.dtype(features.meta.get("dtype", "float32")), features.row_shape
    else:  # any mapping key -> array, in memory
        first = np.asarray(features[keys[0]])
        stored, row_shape = first.dtype, first.shape

    def gather(batch_rows: np.ndarray) -> np.ndarray:
        return stack_rows(features, [keys[i] for i in batch_rows], dtype=stored)

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
        image = tf.numpy_function(gather, [row], tf.as_dtype(stored), stateful=False)
        image = tf.ensure_shape(tf.cast(image, tf.float32), [None, *row_shape])
        longest = tf.reduce_max(length)
        return {"image": image, "caption": inp[:, :longest]}, tgt[:, :longest]

    # Each length group yields full batches and then one partial batch: tell Keras how many in all.
    group_sizes = np.bincount(np.searchsorted(boundaries, lengths, side="right"))
    batches = int(sum(-(-size // batch_size) for size in group_sizes))
    dataset = dataset.map(to_model_inputs).apply(tf.data.experimental.assert_cardinality(batches)).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False  # autotune can stall for seconds at the end of `fit` (pipeline teardown)
    return dataset.with_options(options)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever the monitored dev figure improves (the dev loss by default), with `save(model, path)`
    (Keras' `model.save` unless told otherwise). After each save `on_save(epoch, value)` is called (the course
    records its progress there).

    Keras' own ModelCheckpoint writes the checkpoint in place, so a crash or a full disk during the save leaves
    a broken model. The course's stages pass a `save` that writes a temporary file first and then renames it over
    the checkpoint (`helpers.machinery.files.save_model`): the checkpoint is always a complete model, the old one or
    the new one.
    """

    def __init__(self, path: Path, best: float | None = None, on_save: Callable[[int, float], None] | None = None,
                 monitor: str = "val_loss", save: Callable[[keras.Model, Path], None] | None = None):
        super().__init__()
        self.path, self.best, self.on_save, self.monitor = Path(path), best, on_save, monitor
        self.save = save or (lambda model, path: model.save(path))
        self.sign = 1.0 if monitor == "val_loss" else -1.0  # a loss falls, a score rises

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get(self.monitor, self.sign * np.inf))
        if self.best is None or self.sign * value < self.sign * self.best:
            self.best = value
            self.save(self.model, self.path)
            if self.on_save is not None:
                self.on_save(epoch + 1, value)


class DevScore(keras.callbacks.Callback):
    """After every epoch, score the model's own captions of the dev split (`score(model)`), into the logs as
    `name`, so that early stopping and the checkpoint can watch it: the dev loss is computed with teacher forcing,
    a caption metric on what the model writes by itself."""

    def __init__(self, name: str, score: Callable[[keras.Model], float]):
        super().__init__()
        self.name, self.score = name, score

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs[self.name] = float(self.score(self.model))


def _load_checkpoint(model: keras.Model, path: Path) -> None:
    """Load weights and Adam's state from a `.keras` checkpoint, keeping the model's current learning rate."""
    learning_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))  # no __float__ before Keras 3.5
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
    on_save: Callable[[int, float], None] | None = None,
    monitor: str = "val_loss",
    score: Callable[[keras.Model], float] | None = None,
    save: Callable[[keras.Model, Path], None] | None = None,
) -> dict[str, list[float]]:
    """Fit with early stopping on the dev loss, keeping the best model in `checkpoint_path` (a `.keras` file).

    On return the model holds the best weights seen. With `resume=True`, start from the checkpoint's weights and
    only overwrite it with a better dev figure; otherwise an existing checkpoint is replaced at the first epoch.
    Returns the history: {"loss": [...], "val_loss": [...]}, one value per epoch. `save(model, path)` writes each
    checkpoint (`BestCheckpoint`); with the course's atomic one, an interrupted training (Ctrl-C, a killed process,
    a full disk) leaves the best epoch finished, complete.
    With `score` (a model -> dev figure, higher is better, such as the CIDEr-D of its greedy dev captions), early
    stopping and the checkpoint watch that figure instead, logged every epoch as `monitor`.
    """
    check_at_least("epochs", epochs)
    check_at_least("patience", patience)
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.suffix != ".keras":
        raise SettingError(f"The checkpoint must be a .keras file, got {checkpoint_path}")
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    best = None
    if resume:
        if not checkpoint_path.is_file():
            raise WorkFolderError(f"Cannot resume: no checkpoint at {checkpoint_path}. Train without resume first.")
        _load_checkpoint(model, checkpoint_path)
        best = score(model) if score else model.evaluate(dev_ds, verbose=0, return_dict=True)["loss"]
    callbacks = [
        *([DevScore(monitor, score)] if score else []),  # first: the others read its figure in the logs
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min" if score is None else "max", patience=patience,
                                      restore_best_weights=True, verbose=0 if verbose == 0 else 1),
        BestCheckpoint(checkpoint_path, best, on_save, monitor, save),
        *callbacks,  # after the checkpoint: an epoch is saved before they see its end
    ]
    history = model.fit(train_ds, validation_data=dev_ds, epochs=epochs, callbacks=callbacks, verbose=verbose,
                        shuffle=False)  # the dataset shuffles itself
    if resume:  # this run may never have beaten the checkpoint: take the best of both runs
        _load_checkpoint(model, checkpoint_path)
    return {name: [float(v) for v in values] for name, values in history.history.items()}
