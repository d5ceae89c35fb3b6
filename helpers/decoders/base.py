"""What every captioning decoder shares: the fused loss, the step interface the search runs on, the shapes probe
(notebook 04).

Every decoder is a Keras model `{"image": features, "caption": ids (B, T)} -> logits (B, T, V)`: unnormalised
scores of the next word at each position. The loss applies the softmax itself (`from_logits=True`), the
numerically stable form, and skips padding (`ignore_class=PAD_ID`); probabilities are computed only where they
are shown or searched.

To write a caption the search (helpers/decoding.py) needs the model one word at a time: each decoder provides a
`StepDecoder` made of its own layers, with `start` (per-image memory and the first state) and `step`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from helpers.vocabulary import PAD_ID


def compile_captioner(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam and the masked, fused cross-entropy on logits.

    No accuracy metric: Keras's own would count padding, and a custom one would make the saved model unloadable
    wherever this module is not imported.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID))
    return model


VARIANCE_FLOOR = 1e-2  # of the median variance: what standardising may divide by, at least
FEATURE_DIM = 2048  # Xception's, where neither the train features nor feature_dim say


def stack_rows(features, keys: Sequence[str], dtype=None) -> np.ndarray:
    """The features of `keys` stacked in that order: a FeatureSet's own `stack` (its rows read from the cache on
    disk), or the arrays of any mapping key -> array; `dtype` None keeps theirs."""
    if hasattr(features, "stack"):
        return features.stack(keys, dtype=dtype)
    return np.stack([np.asarray(features[key], dtype=dtype) for key in keys])


def vector_statistics(features, keys: Sequence[str], grid_pool: int = 1) -> dict:
    """What a decoder of one vector an image learns from the train split before training: the train vectors, for
    its standardisation (`standardiser`). `features` is a FeatureSet; `grid_pool` is for grid decoders."""
    return {"train_features": features.stack(keys)}


def image_input(train_features: np.ndarray | None, feature_dim: int | None) -> keras.KerasTensor:
    """The model's image input: `feature_dim` numbers, by default as many as the train features have."""
    width = feature_dim or (np.shape(train_features)[-1] if train_features is not None else FEATURE_DIM)
    return keras.Input(shape=(width,), dtype="float32", name="image")


def standardiser(train_features: np.ndarray | None, name: str = "normalize") -> keras.layers.Layer:
    """A Normalization layer with the train features' mean and (floored) variance per feature (identity before).

    It computes in float32 even in mixed precision: untrained features can differ by 1e-5 between images, which
    float16 would round away."""
    layer = keras.layers.Normalization(name=name, dtype="float32")
    if train_features is not None:
        layer.adapt(np.asarray(train_features, dtype="float32"))
        layer.adapt_variance.assign(floored_variance(keras.ops.convert_to_numpy(layer.adapt_variance)))
        layer.finalize_state()  # the variance it divides by; a saved model keeps (and reloads) the floored one
    return layer


def floored_variance(variance: np.ndarray) -> np.ndarray:
    """Variances raised to at least VARIANCE_FLOOR x their median (of those above 0), as float32.

    A feature constant over the train images (a unit of an untrained CNN that barely fires on them) would
    otherwise divide any other value by almost 0: one such channel of ResNet50 put a dev image 60,000 standard
    deviations out, and the dev loss went up from the first epoch.
    """
    variance = np.asarray(variance, dtype="float64")
    positive = variance[variance > 0]
    floor = VARIANCE_FLOOR * (float(np.median(positive)) if positive.size else 1.0)
    return np.maximum(variance, floor).astype("float32")


class StepDecoder(Protocol):
    """A decoder run one word at a time for a batch of images (what greedy and beam search need).

    `start` turns a batch of image features into per-image `memory` (tensors with one row per image, read at
    every step) and the recurrent `state`; `step` takes the previous word ids (B,) and returns the next word's
    logits (B, V), the new state, and the attention weights over the image's locations (B, L) (L = 0 without
    attention).
    """

    def start(self, features: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]: ...

    def step(self, memory: list[tf.Tensor], words: tf.Tensor,
             state: list[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor], tf.Tensor]: ...


def embed(embedding: keras.layers.Embedding, words: tf.Tensor) -> tf.Tensor:
    """The embedding's lookup of word ids (B,), without its padding mask (a step never reads padding)."""
    return tf.gather(embedding.embeddings, words)


def describe_shapes(model: keras.Model, batch_size: int = 2, length: int = 5) -> dict[str, tuple[int, ...]]:
    """Each layer's output shape on a dummy batch of `batch_size` images and captions of `length` ids."""
    probe = keras.Model(model.input, {layer.name: layer.output for layer in model.layers})
    image_shape = tuple(d if d is not None else 10 for d in model.input["image"].shape[1:])
    dummy = {"image": np.zeros((batch_size, *image_shape), dtype="float32"),
             "caption": np.ones((batch_size, length), dtype="int32")}
    outputs = probe(dummy, training=False)
    return {name: tuple(output.shape) for name, output in outputs.items()}
