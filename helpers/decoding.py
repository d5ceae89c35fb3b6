"""Generate captions from a trained merge model: greedy and beam search, a whole batch of images at once.

The full model reads a whole caption at once. To generate, we need it one word at a time, so we take
its layers by name and run them step by step: the LSTM's cell carries the (h, c) state from one word
to the next. Every step of a batch runs inside one compiled `tf.function`, which is hundreds of times
faster than calling `model.predict` for every word of every image (`predict_loop_caption`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from helpers.vocabulary import END_ID, PAD_ID, START_ID, Vocabulary


def allowed_words(vocab_size: int) -> np.ndarray:
    """1.0 for every word the decoder may produce, 0.0 for `<pad>` and `<start>` (never targets in training)."""
    allowed = np.ones(vocab_size, dtype="float32")
    allowed[[PAD_ID, START_ID]] = 0.0
    return allowed


class StepDecoder:
    """The merge model's layers, rearranged to advance one word at a time for a batch."""

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        self.normalize, self.image_dense = layer("normalize"), layer("image_dense")
        self.embedding, self.cell = layer("embedding"), layer("lstm").cell
        self.merge, self.decoder_dense, self.next_word = layer("merge"), layer("decoder_dense"), layer("next_word")
        self.allowed = tf.constant(allowed_words(self.next_word.units))

    def start(self, features: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Image vectors (B, units) and the LSTM's empty state [h, c] for a batch of features (B, F)."""
        image_vector = self.image_dense(self.normalize(features))
        zeros = tf.zeros([tf.shape(features)[0], self.cell.units])
        return image_vector, [zeros, zeros]

    def step(self, image_vector: tf.Tensor, words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word probabilities (B, V) and the new state (`<pad>`, `<start>` ruled out)."""
        vectors = tf.gather(self.embedding.embeddings, words)  # the embedding's lookup, without its padding mask
        output, state = self.cell(vectors, state, training=False)
        probs = self.next_word(self.decoder_dense(self.merge([image_vector, output])))
        return probs * self.allowed, state


def greedy_function(model: keras.Model, steps: int) -> Callable:
    """A compiled function: features (B, F) -> the most likely word at each of `steps` steps (B, steps)."""
    decoder = StepDecoder(model)

    @tf.function(input_signature=[tf.TensorSpec([None, model.input["image"].shape[-1]], tf.float32)])
    def greedy(features):
        image_vector, state = decoder.start(features)
        words = tf.fill([tf.shape(features)[0]], START_ID)
        finished = tf.zeros_like(words, dtype=tf.bool)
        chosen = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        for t in tf.range(steps):
            probs, state = decoder.step(image_vector, words, state)
            words = tf.argmax(probs, axis=-1, output_type=tf.int32)
            words = tf.where(finished, PAD_ID, words)  # after <end>, only padding
            chosen = chosen.write(t, words)
            finished = finished | (words == END_ID)
            if tf.reduce_all(finished):
                break
        chosen = tf.transpose(chosen.stack())  # (B, steps taken)
        return tf.pad(chosen, [[0, 0], [0, steps - tf.shape(chosen)[1]]], constant_values=PAD_ID)

    return greedy


def beam_function(model: keras.Model, steps: int, beam_width: int) -> Callable:
    """A compiled function: features (B, F) -> (ids (B, K, steps), total log-probabilities (B, K)) of K beams."""
    decoder, k = StepDecoder(model), beam_width
    units = decoder.cell.units

    @tf.function(input_signature=[tf.TensorSpec([None, model.input["image"].shape[-1]], tf.float32)])
    def beam(features):
        batch = tf.shape(features)[0]
        image_vector, state = decoder.start(features)
        image_vector = tf.repeat(image_vector, k, axis=0)  # row b*k + j is beam j of image b
        state = [tf.repeat(s, k, axis=0) for s in state]
        words = tf.fill([batch * k], START_ID)
        # Only beam 0 is alive at first, so the first step does not pick the same word k times.
        scores = tf.tile(tf.constant([[0.0] + [-np.inf] * (k - 1)]), [batch, 1])
        finished = tf.zeros([batch, k], dtype=tf.bool)
        ids = tf.zeros([batch, k, steps], dtype=tf.int32)
        for t in tf.range(steps):
            probs, state = decoder.step(image_vector, words, state)
            vocab_size = tf.shape(probs)[-1]
            log_probs = tf.reshape(tf.math.log(probs), [batch, k, vocab_size])  # ruled-out words: -inf
            # A finished beam can only continue with padding, at no cost: it keeps its score.
            pad_only = tf.where(tf.range(vocab_size) == PAD_ID, 0.0, -np.inf)
            log_probs = tf.where(finished[:, :, None], pad_only, log_probs)
            candidates = tf.reshape(scores[:, :, None] + log_probs, [batch, k * vocab_size])
            scores, best = tf.math.top_k(candidates, k)  # the k best (beam, word) pairs per image
            parent, words = best // vocab_size, best % vocab_size
            state = [tf.reshape(tf.gather(tf.reshape(s, [batch, k, units]), parent, batch_dims=1), [batch * k, units])
                     for s in state]
            ids = tf.gather(ids, parent, batch_dims=1) + words[:, :, None] * tf.one_hot(t, steps, dtype=tf.int32)
            finished = tf.gather(finished, parent, batch_dims=1) | (words == END_ID)
            words = tf.reshape(words, [-1])
        return ids, scores

    return beam


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: compiled function}


def compiled_decoder(model: keras.Model, settings: tuple, build: Callable[[], Callable]) -> Callable:
    """Compile a decoding function once per model and settings, not on every call (TensorFlow warns)."""
    functions = _COMPILED.setdefault(model, {})
    if settings not in functions:
        functions[settings] = build()
    return functions[settings]


def _batches(features: np.ndarray, batch_size: int):
    """Slices of `batch_size` rows of a (images, F) feature matrix, as float32 tensors."""
    features = np.asarray(features, dtype="float32")
    if features.ndim != 2:
        raise ValueError(f"Expected features of shape (images, feature_dim), got {features.shape}")
    for start in range(0, len(features), batch_size):
        yield tf.constant(features[start : start + batch_size])


def greedy_ids(model: keras.Model, features: np.ndarray, vocab: Vocabulary, batch_size: int = 64) -> np.ndarray:
    """Word ids (images, vocab.sequence_length) chosen greedily; padding after `<end>`."""
    steps = vocab.sequence_length
    greedy = compiled_decoder(model, ("greedy", steps), lambda: greedy_function(model, steps))
    parts = [greedy(batch).numpy() for batch in _batches(features, batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, steps), dtype="int32")


def greedy_captions(model: keras.Model, features: np.ndarray, vocab: Vocabulary, batch_size: int = 64) -> list[str]:
    """One caption per row of `features` (images, F), taking the most likely word at each step."""
    return [vocab.decode(ids) for ids in greedy_ids(model, features, vocab, batch_size)]


def beam_ids(
    model: keras.Model,
    features: np.ndarray,
    vocab: Vocabulary,
    beam_width: int = 3,
    batch_size: int = 64,
    length_penalty: float = 0.0,
) -> np.ndarray:
    """Word ids (images, vocab.sequence_length) of the best of `beam_width` beams; padding after `<end>`.

    The search keeps the `beam_width` highest total log-probabilities. At the end, each finished beam
    is ranked by log-probability / (words + 1) ** length_penalty: 0 (default) ranks by probability,
    which favours short captions; 1 ranks by the average log-probability per word.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    steps = vocab.sequence_length
    beam = compiled_decoder(model, ("beam", steps, beam_width), lambda: beam_function(model, steps, beam_width))
    best = []
    for batch in _batches(features, batch_size):
        ids, scores = (x.numpy() for x in beam(batch))
        lengths = (ids != PAD_ID).sum(axis=-1)  # words + <end> (or `steps` if it never ended)
        ranked = scores / np.maximum(lengths, 1) ** length_penalty
        best.append(ids[np.arange(len(ids)), ranked.argmax(axis=1)])
    return np.concatenate(best) if best else np.zeros((0, steps), dtype="int32")


def beam_captions(
    model: keras.Model,
    features: np.ndarray,
    vocab: Vocabulary,
    beam_width: int = 3,
    batch_size: int = 64,
    length_penalty: float = 0.0,
) -> list[str]:
    """One caption per row of `features`, by beam search (see `beam_ids`); beam_width=1 is greedy."""
    return [vocab.decode(ids) for ids in beam_ids(model, features, vocab, beam_width, batch_size, length_penalty)]


# --- For comparison only: the tutorials' way, one full-model call per word, one image ----------------


def predict_loop_ids(model: keras.Model, feature: np.ndarray, vocab: Vocabulary) -> list[int]:
    """Greedy word ids for one image, running the whole model again for every new word (slow)."""
    caption = np.full((1, vocab.sequence_length), PAD_ID, dtype="int32")  # fixed shape: compiled once
    caption[0, 0] = START_ID
    image = np.asarray(feature, dtype="float32")[None]
    ids = []
    for t in range(vocab.sequence_length):
        probs = model.predict_on_batch({"image": image, "caption": caption})[0, t]  # seen <start> + t words
        word = int(np.argmax(probs * allowed_words(len(probs))))
        ids.append(word)
        if word == END_ID or t + 1 == vocab.sequence_length:
            break
        caption[0, t + 1] = word
    return ids


def predict_loop_caption(model: keras.Model, feature: np.ndarray, vocab: Vocabulary) -> str:
    """The caption `predict_loop_ids` finds for one image's features (F,)."""
    return vocab.decode(predict_loop_ids(model, feature, vocab))
