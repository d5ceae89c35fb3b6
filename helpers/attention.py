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

from helpers.decoding import compiled_decoder, allowed_words
from helpers.vocabulary import END_ID, PAD_ID, START_ID, Vocabulary


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
        memory, state = decoder.start(maps)
        words = tf.fill([tf.shape(maps)[0]], START_ID)
        finished = tf.zeros_like(words, dtype=tf.bool)
        chosen = tf.TensorArray(tf.int32, size=steps)
        looked = tf.TensorArray(tf.float32, size=steps)
        for t in tf.range(steps):
            probs, state, weights = decoder.step(memory, words, state)
            words = tf.where(finished, PAD_ID, tf.argmax(probs, axis=-1, output_type=tf.int32))  # after <end>: padding
            chosen = chosen.write(t, words)
            looked = looked.write(t, tf.where(finished[:, None], 0.0, weights))
            finished = finished | (words == END_ID)
        return tf.transpose(chosen.stack()), tf.transpose(looked.stack(), [1, 0, 2])

    return greedy


def attention_beam_function(model: keras.Model, steps: int, beam_width: int) -> Callable:
    """A compiled function: maps -> (ids (B, K, steps), log-probabilities (B, K), weights (B, K, steps, L)) of K beams."""
    decoder, k = AttentionStepDecoder(model), beam_width

    def regroup(x, parent, batch):
        """Rows b*k + j of x, reordered so that beam j of image b continues beam parent[b, j]."""
        grouped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
        return tf.reshape(tf.gather(grouped, parent, batch_dims=1), tf.shape(x))

    @tf.function(input_signature=[_map_spec(model)])
    def beam(maps):
        batch = tf.shape(maps)[0]
        memory, state = decoder.start(maps)
        memory, state = [tf.repeat(m, k, axis=0) for m in memory], [tf.repeat(s, k, axis=0) for s in state]
        locations = tf.shape(memory[0])[1]
        words = tf.fill([batch * k], START_ID)
        scores = tf.tile(tf.constant([[0.0] + [-np.inf] * (k - 1)]), [batch, 1])  # only beam 0 alive at first
        finished = tf.zeros([batch, k], dtype=tf.bool)
        ids = tf.zeros([batch, k, steps], dtype=tf.int32)
        looked = tf.zeros([batch, k, steps, locations])
        for t in tf.range(steps):
            probs, state, weights = decoder.step(memory, words, state)
            vocab_size = tf.shape(probs)[-1]
            log_probs = tf.reshape(tf.math.log(probs), [batch, k, vocab_size])
            pad_only = tf.where(tf.range(vocab_size) == PAD_ID, 0.0, -np.inf)  # a finished beam keeps its score
            log_probs = tf.where(finished[:, :, None], pad_only, log_probs)
            weights = tf.where(finished[:, :, None], 0.0, tf.reshape(weights, [batch, k, locations]))
            scores, best = tf.math.top_k(tf.reshape(scores[:, :, None] + log_probs, [batch, k * vocab_size]), k)
            parent, words = best // vocab_size, best % vocab_size
            state = [regroup(s, parent, batch) for s in state]
            step_mask = tf.one_hot(t, steps)
            looked = tf.gather(looked + weights[:, :, None, :] * step_mask[:, None], parent, batch_dims=1)
            ids = tf.gather(ids, parent, batch_dims=1) + words[:, :, None] * tf.cast(step_mask, tf.int32)
            finished = tf.gather(finished, parent, batch_dims=1) | (words == END_ID)
            words = tf.reshape(words, [-1])
        return ids, scores, looked

    return beam


def _map_batches(maps: np.ndarray, batch_size: int):
    """Slices of `batch_size` maps (images, g, g, F), as float32 tensors."""
    maps = np.asarray(maps)
    if maps.ndim != 4:
        raise ValueError(f"Expected feature maps of shape (images, grid, grid, feature_dim), got {maps.shape}")
    for start in range(0, len(maps), batch_size):
        yield tf.constant(maps[start : start + batch_size], dtype=tf.float32)


def attention_decode(model: keras.Model, maps: np.ndarray, vocab: Vocabulary, beam_width: int = 1,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(word ids (images, steps), attention weights (images, steps, L)): greedy (width 1) or the best beam.

    Beams are ranked by total log-probability, like `helpers.decoding.beam_ids` with length_penalty 0.
    Weights after `<end>` are 0.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    steps = vocab.sequence_length
    if beam_width == 1:
        decode = compiled_decoder(model, ("attention greedy", steps), lambda: attention_greedy_function(model, steps))
        parts = [[x.numpy() for x in decode(batch)] for batch in _map_batches(maps, batch_size)]
    else:
        decode = compiled_decoder(model, ("attention beam", steps, beam_width),
                           lambda: attention_beam_function(model, steps, beam_width))
        parts = []
        for batch in _map_batches(maps, batch_size):
            ids, scores, weights = (x.numpy() for x in decode(batch))
            best = scores.argmax(axis=1)
            rows = np.arange(len(ids))
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
