"""What every captioning decoder shares: the fused loss, the step interface the search runs on, the shapes probe.

Every decoder is a Keras model `{"image": features, "caption": ids (B, T)} -> logits (B, T, V)`: unnormalised
scores of the next word at each position. The loss applies the softmax itself (`from_logits=True`), the
numerically stable form, and skips padding (`ignore_class=PAD_ID`); probabilities are computed only where they
are shown or searched.

To write a caption the search (helpers/decoding.py) needs the model one word at a time: each decoder provides a
`StepDecoder` made of its own layers, with `start` (per-image memory and the first state) and `step`.
"""

from __future__ import annotations

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


def standardiser(train_features: np.ndarray | None, name: str = "normalize") -> keras.layers.Layer:
    """A Normalization layer adapted to the train features' mean and variance per feature (identity before that)."""
    layer = keras.layers.Normalization(name=name)
    if train_features is not None:
        layer.adapt(np.asarray(train_features, dtype="float32"))
    return layer


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
