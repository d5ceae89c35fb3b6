"""A soft-attention captioning model over Xception's spatial feature map (after Show, Attend and Tell).

    image map (g, g, 2048) -> 100 locations -> normalize -> dropout --+--> mean -> dense (tanh) -> LSTM's h0, c0
                                                                      +--> keys: dense (units)        |
    caption (T,) -> embedding (id 0 = padding) -> dropout -> LSTM (every step, from h0, c0) -> h_t --+
    additive attention: score_ti = v . tanh(W_q h_t + W_k f_i),  alpha_t = softmax_i(score_t),
                        context_t = sum_i alpha_ti f_i  (a 2048-d vector: where the model looks)
    [h_t, context_t] -> dense (tanh) -> dropout -> softmax: word t+1

The attention reads the LSTM's output h_t (Luong et al., 2015, without input feeding) rather than feeding the
context back into the LSTM as Xu et al. (2015) do. The model is then made only of standard Keras layers: it
trains on all steps at once, like the merge model, with `helpers.training`, and its `.keras` file loads with
`keras.models.load_model(path, safe_mode=True)` without importing this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from helpers.decoding import allowed_words, batches, beam_search, best_beams, compiled_decoder, greedy_search
from helpers.vocabulary import PAD_ID, Vocabulary


def channel_stats(maps: np.ndarray | Mapping[str, np.ndarray], chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of each of the 2048 channels over every location of every map, read in chunks (float16 ok)."""
    maps = np.stack(list(maps.values())) if isinstance(maps, Mapping) else np.asarray(maps)
    dim = maps.shape[-1]
    total, squares, count = np.zeros(dim), np.zeros(dim), 0
    for start in range(0, len(maps), chunk):
        part = maps[start : start + chunk].reshape(-1, dim).astype("float64")
        total, squares, count = total + part.sum(0), squares + (part**2).sum(0), count + len(part)
    mean = total / max(count, 1)
    return mean.astype("float32"), np.maximum(squares / max(count, 1) - mean**2, 0).astype("float32")


def _image_branch(image, train_maps, units: int, dropout: float):
    """Locations (B, L, F), standardised per channel with the train statistics, their keys and the initial state."""
    feature_dim = image.shape[-1]
    locations = layers.Reshape((-1, feature_dim), name="locations")(image)  # (B, g, g, F) -> (B, L, F)
    stats = channel_stats(train_maps) if train_maps is not None else (np.zeros(feature_dim), np.ones(feature_dim))
    values = layers.Normalization(axis=-1, mean=stats[0], variance=stats[1], name="normalize")(locations)
    values = layers.Dropout(dropout, name="image_dropout")(values)
    keys = layers.Dense(units, use_bias=False, name="attend_image")(values)  # W_k f_i
    mean = layers.GlobalAveragePooling1D(name="mean_location")(values)
    h0 = layers.Dense(units, activation="tanh", name="init_h")(mean)
    c0 = layers.Dense(units, activation="tanh", name="init_c")(mean)
    return values, keys, [h0, c0]


def build_attention_model(
    vocab_size: int,
    train_maps: np.ndarray | Mapping[str, np.ndarray] | None = None,
    feature_dim: int = 2048,
    units: int = 256,
    embedding_dim: int = 256,
    dropout: float = 0.5,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """(image maps (B, g, g, F), caption ids (B, T)) -> next-word probabilities (B, T, V), attending at every step."""
    image = keras.Input(shape=(None, None, feature_dim), dtype="float32", name="image")
    caption = keras.Input(shape=(None,), dtype="int32", name="caption")
    values, keys, state = _image_branch(image, train_maps, units, dropout)
    words = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(caption)
    words = layers.Dropout(dropout, name="caption_dropout")(words)
    hidden = layers.LSTM(units, return_sequences=True, name="lstm")(words, initial_state=state)
    query = layers.Dense(units, name="attend_query")(hidden)  # W_q h_t (+ bias)
    context = layers.AdditiveAttention(name="attention")([query, values, keys])  # (B, T, F)
    x = layers.Concatenate(name="merge")([hidden, context])
    x = layers.Dense(units, activation="tanh", name="decoder_dense")(x)
    x = layers.Dropout(dropout, name="output_dropout")(x)
    next_word = layers.Dense(vocab_size, activation="softmax", name="next_word")(x)
    model = keras.Model({"image": image, "caption": caption}, next_word, name="attention_captioner")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_ID))  # padding counts for nothing
    return model


class AttentionStepDecoder:
    """The attention model's layers, rearranged to advance one word at a time; each step also gives its weights."""

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        self.locations, self.normalize, self.attend_image = layer("locations"), layer("normalize"), layer("attend_image")
        self.mean, self.init_h, self.init_c = layer("mean_location"), layer("init_h"), layer("init_c")
        self.embedding, self.cell, self.attend_query = layer("embedding"), layer("lstm").cell, layer("attend_query")
        self.attention, self.merge = layer("attention"), layer("merge")
        self.decoder_dense, self.next_word = layer("decoder_dense"), layer("next_word")
        self.allowed = tf.constant(allowed_words(self.next_word.units))

    def start(self, maps: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """[values (B, L, F), keys (B, L, units)] and the LSTM's initial state [h, c] for a batch of maps."""
        values = self.normalize(self.locations(maps))
        mean = self.mean(values)
        return [values, self.attend_image(values)], [self.init_h(mean), self.init_c(mean)]

    def location_count(self, memory: list[tf.Tensor]) -> tf.Tensor:
        """How many image locations a step attends to (g * g)."""
        return tf.shape(memory[0])[1]

    def step(self, memory: list[tf.Tensor], words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word probabilities (B, V), new state, attention weights (B, L)."""
        vectors = tf.gather(self.embedding.embeddings, words)  # the embedding's lookup, without its padding mask
        output, state = self.cell(vectors, state, training=False)
        query = self.attend_query(output)[:, None, :]  # one query per image: (B, 1, units)
        context, weights = self.attention([query, *memory], return_attention_scores=True, training=False)
        probs = self.next_word(self.decoder_dense(self.merge([output, context[:, 0]])))
        return probs * self.allowed, state, weights[:, 0]


def _map_spec(model: keras.Model) -> tf.TensorSpec:
    """Input signature of the decoding functions: a batch of maps of any grid size."""
    return tf.TensorSpec([None, None, None, model.input["image"].shape[-1]], tf.float32)


def attention_greedy_function(model: keras.Model, steps: int) -> Callable:
    """A compiled function: maps (B, g, g, F) -> (word ids (B, steps), attention weights (B, steps, L))."""
    decoder = AttentionStepDecoder(model)

    @tf.function(input_signature=[_map_spec(model)])
    def greedy(maps):
        return greedy_search(decoder, maps, steps)

    return greedy


def attention_beam_function(model: keras.Model, steps: int, beam_width: int) -> Callable:
    """A compiled function: maps -> (ids (B, K, steps), log-probabilities (B, K), weights (B, K, steps, L)) of K beams."""
    decoder = AttentionStepDecoder(model)

    @tf.function(input_signature=[_map_spec(model)])
    def beam(maps):
        return beam_search(decoder, maps, steps, beam_width)

    return beam


def attention_decode(model: keras.Model, maps: np.ndarray, vocab: Vocabulary, beam_width: int = 1,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(word ids (images, steps), attention weights (images, steps, L)): greedy (width 1) or the best beam.

    Beams are ranked by total log-probability, like `helpers.decoding.beam_ids` with length_penalty 0.
    Weights after `<end>` are 0.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    steps = vocab.sequence_length
    shape = "(images, grid, grid, feature_dim)"
    if beam_width == 1:
        decode = compiled_decoder(model, ("attention greedy", steps), lambda: attention_greedy_function(model, steps))
        parts = [[x.numpy() for x in decode(batch)] for batch in batches(maps, batch_size, shape)]
    else:
        decode = compiled_decoder(model, ("attention beam", steps, beam_width),
                                  lambda: attention_beam_function(model, steps, beam_width))
        parts = []
        for batch in batches(maps, batch_size, shape):
            ids, scores, weights = (x.numpy() for x in decode(batch))
            best, rows = best_beams(ids, scores), np.arange(len(ids))
            parts.append([ids[rows, best], weights[rows, best]])
    if not parts:
        return np.zeros((0, steps), dtype="int32"), np.zeros((0, steps, 0), dtype="float32")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def attention_captions(model: keras.Model, maps: np.ndarray, vocab: Vocabulary, beam_width: int = 1,
                       batch_size: int = 64) -> list[str]:
    """One caption per map: greedy (beam_width 1) or beam search."""
    ids, _ = attention_decode(model, maps, vocab, beam_width, batch_size)
    return [vocab.decode(row) for row in ids]


def attention_maps(model: keras.Model, feature_map: np.ndarray, vocab: Vocabulary,
                   beam_width: int = 1) -> list[tuple[str, np.ndarray]]:
    """For one image's map (g, g, F): each generated word (and `<end>`) with where the model looked, a (g, g) grid."""
    grid = feature_map.shape[:2]
    ids, weights = attention_decode(model, np.asarray(feature_map)[None], vocab, beam_width)
    result = []
    for word, step_weights in zip(ids[0], weights[0]):
        if word == PAD_ID:
            break
        result.append((vocab.words[word], step_weights.reshape(grid)))
    return result
