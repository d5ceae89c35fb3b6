"""A soft-attention captioning model over the encoder's grid of feature vectors (after Show, Attend and Tell;
notebook 07).

    grid (g, g, F) -> [average p x p blocks] -> L = (g/p)^2 locations -> normalize -> dropout -> f_1..f_L
    f_1..f_L -> mean -> dense (tanh) -> the LSTM's h0, c0;      f_i -> dense (units, no bias) -> keys W_k f_i
    caption (T,) -> embedding (id 0 = padding) -> dropout -> LSTM (every step, from h0, c0) -> h_t
    additive attention: score_ti = v . tanh(W_q h_t + W_k f_i),  alpha_t = softmax_i(score_t),
                        context_t = sum_i alpha_ti f_i  (an F-number vector: where the model looks)
    [h_t, context_t] -> dense (tanh) -> dropout -> next-word logits

Each cell's features are standardised with the mean and variance of that channel at that cell over the train
pictures: an untrained encoder's cells all look alike, and what is unusual about a cell, compared with the same
cell of other pictures, is where an object is.

The attention reads the LSTM's output h_t (Luong et al., 2015, without input feeding) rather than feeding the
context back into the LSTM as Xu et al. (2015) do. The model is then made only of standard Keras layers: it
trains on all steps at once, like the merge model, and its `.keras` file loads with
`keras.models.load_model(path, safe_mode=True)` without importing this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from helpers.decoders.base import compile_captioner, embed, floored_variance, stack_rows
from helpers.errors import SettingError, check_at_least


def pool_grids(grids: np.ndarray, pool: int) -> np.ndarray:
    """(N, g, g, F) grids with each `pool` x `pool` block of cells averaged: (N, g / pool, g / pool, F)."""
    n, side, _, channels = grids.shape
    if side % pool:
        raise SettingError(f"A {side} x {side} grid cannot be pooled in blocks of {pool}: choose a divisor of {side}.")
    return grids.reshape(n, side // pool, pool, side // pool, pool, channels).mean(axis=(2, 4))


def grid_statistics(grids, keys: Sequence[str], grid_pool: int = 1) -> dict:
    """What the attention decoder learns from the train split before training: each location's mean and variance
    over the train grids (`location_stats`), pooled as it will pool them."""
    return {"stats": location_stats(grids, keys, pool=grid_pool), "pool": grid_pool}


def location_stats(grids: Mapping[str, np.ndarray], keys: Sequence[str] | None = None,
                   chunk: int = 64, pool: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each channel at each location (L, F) over the grids of `keys`, in one streaming pass.

    `grids` is a FeatureSet (or any mapping key -> (g, g, F) array); `chunk` grids are read at a time, so the
    statistics of a 3 GB grid cache take a few megabytes. `pool` > 1: of the grids pooled as the model pools them.
    """
    keys = list(grids) if keys is None else list(keys)
    total = squares = None
    for start in range(0, len(keys), chunk):
        part = stack_rows(grids, keys[start:start + chunk]).astype("float64")
        if pool > 1:
            part = pool_grids(part, pool)
        flat = part.reshape(len(part), -1, part.shape[-1])  # (images, L, F)
        total = flat.sum(0) if total is None else total + flat.sum(0)
        np.square(flat, out=flat)  # in place: one chunk in float64 at a time, no second copy
        squares = flat.sum(0) if squares is None else squares + flat.sum(0)
        del part, flat  # before the next chunk is read
    if total is None:
        raise SettingError("location_stats needs at least one grid")
    mean = total / len(keys)
    return mean.astype("float32"), np.maximum(squares / len(keys) - mean**2, 0).astype("float32")


def build_attention_model(
    vocab_size: int,
    stats: tuple[np.ndarray, np.ndarray],
    feature_dim: int = 2048,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
    pool: int = 1,
) -> keras.Model:
    """(grids (B, g, g, F), caption ids (B, T)) -> next-word logits (B, T, V), attending at every step.

    `stats`: the train grids' mean and variance of each channel at each of the L locations
    (`location_stats`, with the same `pool`), for the normalisation: what is unusual about a cell, compared with
    the same cell of other pictures, is where an object is. `pool` > 1 averages each pool x pool block of cells
    first: L = (g / pool)^2 locations, and about pool^2 times less work per word. The grid size is fixed by them.
    """
    mean, variance = stats
    check_at_least("pool", pool)
    cells = mean.shape[0]
    side = int(round(cells**0.5))
    if mean.shape[1] != feature_dim:
        raise SettingError(f"The grid statistics have {mean.shape[1]} channels, the features {feature_dim}.")
    image = keras.Input(shape=(side * pool, side * pool, feature_dim), dtype="float32", name="image")
    caption = keras.Input(shape=(None,), dtype="int32", name="caption")
    # The grid is pooled and standardised in float32, also in mixed precision: what sets the cells apart is small.
    pooled = layers.AveragePooling2D(pool, name="pool_grid", dtype="float32")(image) if pool > 1 else image
    locations = layers.Reshape((cells, feature_dim), name="locations", dtype="float32")(pooled)  # (B, L, F)
    values = layers.Normalization(axis=(1, 2), mean=mean, variance=floored_variance(variance), name="normalize",
                                  dtype="float32")(locations)
    values = layers.Dropout(dropout, name="image_dropout")(values)
    keys = layers.Dense(units, use_bias=False, name="attend_image")(values)  # W_k f_i
    average = layers.GlobalAveragePooling1D(name="mean_location")(values)
    state = [layers.Dense(units, activation="tanh", name="init_h")(average),
             layers.Dense(units, activation="tanh", name="init_c")(average)]
    # No padding mask (unlike merge and inject): with one, Keras < 3.7 cannot build the AdditiveAttention below.
    # Padding only follows the words, so the LSTM's outputs at the words are the same, and the loss skips PAD_ID.
    words = layers.Embedding(vocab_size, embedding_dim, name="embedding")(caption)
    words = layers.Dropout(dropout, name="caption_dropout")(words)
    hidden = layers.LSTM(units, return_sequences=True, name="lstm")(words, initial_state=state)
    query = layers.Dense(units, name="attend_query")(hidden)  # W_q h_t (+ bias)
    context = layers.AdditiveAttention(name="attention")([query, values, keys])  # (B, T, F)
    x = layers.Concatenate(name="merge")([hidden, context])
    x = layers.Dense(units, activation="tanh", name="decoder_dense")(x)
    x = layers.Dropout(dropout, name="output_dropout")(x)
    logits = layers.Dense(vocab_size, name="next_word", dtype="float32")(x)  # float32 even in mixed precision
    model = keras.Model({"image": image, "caption": caption}, logits, name="attention_captioner")
    return compile_captioner(model, learning_rate)


class AttentionStepDecoder:
    """The attention model's layers, rearranged to advance one word at a time; each step also gives its weights."""

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        names = {item.name for item in model.layers}
        self.pool = layer("pool_grid") if "pool_grid" in names else (lambda grids: grids)
        self.locations, self.normalize = layer("locations"), layer("normalize")
        self.attend_image = layer("attend_image")
        self.mean, self.init_h, self.init_c = layer("mean_location"), layer("init_h"), layer("init_c")
        self.embedding, self.cell, self.attend_query = layer("embedding"), layer("lstm").cell, layer("attend_query")
        self.attention, self.merge = layer("attention"), layer("merge")
        self.decoder_dense, self.next_word = layer("decoder_dense"), layer("next_word")

    def start(self, grids: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """[values (B, L, F), keys (B, L, units)] and the LSTM's initial state [h, c] for a batch of grids."""
        values = self.normalize(self.locations(self.pool(grids)))
        average = self.mean(values)
        return [values, self.attend_image(values)], [self.init_h(average), self.init_c(average)]

    def step(self, memory: list[tf.Tensor], words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word logits (B, V), the new state, attention weights (B, L)."""
        output, state = self.cell(embed(self.embedding, words), state, training=False)
        query = self.attend_query(output)[:, None, :]  # one query per image: (B, 1, units)
        context, weights = self.attention([query, *memory], return_attention_scores=True, training=False)
        logits = self.next_word(self.decoder_dense(self.merge([output, context[:, 0]])))
        return logits, state, weights[:, 0]
