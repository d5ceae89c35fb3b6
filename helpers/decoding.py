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
    """The merge model's layers, rearranged to advance one word at a time for a batch.

    Any decoder with this `start`/`location_count`/`step` interface (the attention model's too) can use
    `greedy_search` and `beam_search`: `start` gives the per-image `memory` (tensors with one row per image)
    and the LSTM state.
    """

    def __init__(self, model: keras.Model):
        layer = model.get_layer
        self.normalize, self.image_dense = layer("normalize"), layer("image_dense")
        self.embedding, self.cell = layer("embedding"), layer("lstm").cell
        self.merge, self.decoder_dense, self.next_word = layer("merge"), layer("decoder_dense"), layer("next_word")
        self.allowed = tf.constant(allowed_words(self.next_word.units))

    def start(self, features: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """Memory [image vectors (B, units)] and the LSTM's empty state [h, c] for a batch of features (B, F)."""
        image_vector = self.image_dense(self.normalize(features))
        zeros = tf.zeros([tf.shape(features)[0], self.cell.units])
        return [image_vector], [zeros, zeros]

    def location_count(self, memory: list[tf.Tensor]) -> int:
        """How many image locations a step attends to: none, the merge model sees one vector."""
        return 0

    def step(self, memory: list[tf.Tensor], words: tf.Tensor, state: list[tf.Tensor]):
        """Previous word ids (B,) -> next-word probabilities (B, V), the new state, and attention weights.

        `<pad>` and `<start>` are ruled out. The merge model looks at no locations: its weights are (B, 0).
        """
        [image_vector] = memory
        vectors = tf.gather(self.embedding.embeddings, words)  # the embedding's lookup, without its padding mask
        output, state = self.cell(vectors, state, training=False)
        probs = self.next_word(self.decoder_dense(self.merge([image_vector, output])))
        return probs * self.allowed, state, tf.zeros([tf.shape(words)[0], 0])


def greedy_search(decoder, inputs: tf.Tensor, steps: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The most likely word at each of `steps` steps: (ids (B, steps), attention weights (B, steps, L)).

    Runs inside a `tf.function`. After `<end>` a row only gets padding (and zero weights); the loop stops
    as soon as every row has ended.
    """
    memory, state = decoder.start(inputs)
    words = tf.fill([tf.shape(inputs)[0]], START_ID)
    finished = tf.zeros_like(words, dtype=tf.bool)
    chosen = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
    looked = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    for t in tf.range(steps):
        probs, state, weights = decoder.step(memory, words, state)
        words = tf.where(finished, PAD_ID, tf.argmax(probs, axis=-1, output_type=tf.int32))  # after <end>: padding
        chosen = chosen.write(t, words)
        looked = looked.write(t, tf.where(finished[:, None], 0.0, weights))
        finished = finished | (words == END_ID)
        if tf.reduce_all(finished):
            break
    ids, weights = tf.transpose(chosen.stack()), tf.transpose(looked.stack(), [1, 0, 2])  # (B, steps taken, ...)
    missing = steps - tf.shape(ids)[1]
    return (tf.pad(ids, [[0, 0], [0, missing]], constant_values=PAD_ID),
            tf.pad(weights, [[0, 0], [0, missing], [0, 0]]))


def beam_search(decoder, inputs: tf.Tensor, steps: int, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The `k` most probable captions per image: (ids (B, k, steps), total log-probabilities (B, k),
    attention weights (B, k, steps, L)). Runs inside a `tf.function`; row b*k + j is beam j of image b."""
    batch = tf.shape(inputs)[0]

    def regroup(x, parent):
        """Rows of x reordered so that beam j of image b continues beam parent[b, j]."""
        grouped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
        return tf.reshape(tf.gather(grouped, parent, batch_dims=1), tf.shape(x))

    memory, state = decoder.start(inputs)
    memory, state = [tf.repeat(m, k, axis=0) for m in memory], [tf.repeat(s, k, axis=0) for s in state]
    words = tf.fill([batch * k], START_ID)
    # Only beam 0 is alive at first, so the first step does not pick the same word k times.
    scores = tf.tile(tf.constant([[0.0] + [-np.inf] * (k - 1)]), [batch, 1])
    finished = tf.zeros([batch, k], dtype=tf.bool)
    ids = tf.zeros([batch, k, steps], dtype=tf.int32)
    locations = decoder.location_count(memory)
    looked = tf.zeros([batch, k, steps, locations])
    for t in tf.range(steps):
        probs, state, weights = decoder.step(memory, words, state)
        vocab_size = tf.shape(probs)[-1]
        log_probs = tf.reshape(tf.math.log(probs), [batch, k, vocab_size])  # ruled-out words: -inf
        # A finished beam can only continue with padding, at no cost: it keeps its score.
        pad_only = tf.where(tf.range(vocab_size) == PAD_ID, 0.0, -np.inf)
        log_probs = tf.where(finished[:, :, None], pad_only, log_probs)
        weights = tf.where(finished[:, :, None], 0.0, tf.reshape(weights, [batch, k, locations]))
        candidates = tf.reshape(scores[:, :, None] + log_probs, [batch, k * vocab_size])
        scores, best = tf.math.top_k(candidates, k)  # the k best (beam, word) pairs per image
        parent, words = best // vocab_size, best % vocab_size
        state = [regroup(s, parent) for s in state]
        step_mask = tf.one_hot(t, steps)
        looked = tf.gather(looked + weights[:, :, None, :] * step_mask[:, None], parent, batch_dims=1)
        ids = tf.gather(ids, parent, batch_dims=1) + words[:, :, None] * tf.cast(step_mask, tf.int32)
        finished = tf.gather(finished, parent, batch_dims=1) | (words == END_ID)
        words = tf.reshape(words, [-1])
    return ids, scores, looked


def best_beams(ids: np.ndarray, scores: np.ndarray, length_penalty: float = 0.0) -> np.ndarray:
    """Index (B,) of each image's best beam: log-probability / (words + 1) ** length_penalty."""
    lengths = (ids != PAD_ID).sum(axis=-1)  # words + <end> (or `steps` if it never ended)
    return (scores / np.maximum(lengths, 1) ** length_penalty).argmax(axis=1)


def greedy_function(model: keras.Model, steps: int) -> Callable:
    """A compiled function: features (B, F) -> the most likely word at each of `steps` steps (B, steps)."""
    decoder = StepDecoder(model)

    @tf.function(input_signature=[tf.TensorSpec([None, model.input["image"].shape[-1]], tf.float32)])
    def greedy(features):
        return greedy_search(decoder, features, steps)[0]

    return greedy


def beam_function(model: keras.Model, steps: int, beam_width: int) -> Callable:
    """A compiled function: features (B, F) -> (ids (B, K, steps), total log-probabilities (B, K)) of K beams."""
    decoder = StepDecoder(model)

    @tf.function(input_signature=[tf.TensorSpec([None, model.input["image"].shape[-1]], tf.float32)])
    def beam(features):
        return beam_search(decoder, features, steps, beam_width)[:2]

    return beam


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: compiled function}


def compiled_decoder(model: keras.Model, settings: tuple, build: Callable[[], Callable]) -> Callable:
    """Compile a decoding function once per model and settings, not on every call (TensorFlow warns)."""
    functions = _COMPILED.setdefault(model, {})
    if settings not in functions:
        functions[settings] = build()
    return functions[settings]


def batches(features: np.ndarray, batch_size: int, shape: str = "(images, feature_dim)"):
    """Slices of `batch_size` images of a feature array with the given `shape`, as float32 tensors."""
    features = np.asarray(features)
    if features.ndim != shape.count(",") + 1:
        raise ValueError(f"Expected features of shape {shape}, got {features.shape}")
    for start in range(0, len(features), batch_size):
        yield tf.constant(features[start : start + batch_size], dtype=tf.float32)


def greedy_ids(model: keras.Model, features: np.ndarray, vocab: Vocabulary, batch_size: int = 64) -> np.ndarray:
    """Word ids (images, vocab.sequence_length) chosen greedily; padding after `<end>`."""
    steps = vocab.sequence_length
    greedy = compiled_decoder(model, ("greedy", steps), lambda: greedy_function(model, steps))
    parts = [greedy(batch).numpy() for batch in batches(features, batch_size)]
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
    for batch in batches(features, batch_size):
        ids, scores = (x.numpy() for x in beam(batch))
        best.append(ids[np.arange(len(ids)), best_beams(ids, scores, length_penalty)])
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
