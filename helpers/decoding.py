"""Write captions with a trained decoder: greedy search, beam search or sampling, a whole batch of images at once
(notebook 06 teaches them).

    result = decode(model, features, vocab)                   # greedy: result.captions, result.ids
    result = decode(model, features, vocab, beam_width=3)     # beam search, the best of 3 beams per image
    result = decode(model, features, vocab, sampling=Sampling(temperature=0.7, top_p=0.9, seed=1))  # drawn

One path serves every decoder: each provides a `StepDecoder` (helpers/decoders/base.py) that advances one word
at a time, and the search runs all its steps inside one compiled `tf.function`, hundreds of times faster than
calling `model.predict` for every word (helpers/tutorial_baselines.py keeps that way, for comparison). A model
trained in mixed precision (on a GPU) is searched the same way: its logits are float32, its states float16.
Tokens the decoder may never write are ruled out: `<pad>`, `<start>` and `<unk>` (a caption would show a gap
where it stood) always, and `<end>` as the first word, so no caption comes out empty. Sampling draws each word
from the model's distribution, sharpened or flattened by a temperature and cut to the `top_k` likeliest words
or to the smallest set whose probabilities add up to `top_p` (nucleus sampling); a seed makes it repeatable.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from helpers.decoders import step_decoder_for
from helpers.decoders.base import StepDecoder
from helpers.errors import SettingError
from helpers.vocabulary import END_ID, PAD_ID, RESERVED, START_ID, UNK_ID, Vocabulary


def ruled_out(vocab_size: int, first_step: bool) -> tf.Tensor:
    """0 for every word the decoder may write next, -inf for `<pad>`, `<unk>`, `<start>` (and `<end>` at first)."""
    banned = [PAD_ID, UNK_ID, START_ID] + ([END_ID] if first_step else [])
    mask = np.zeros(vocab_size, dtype="float32")
    mask[banned] = -np.inf
    return tf.constant(mask)


def next_word_log_probs(logits: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Log-probabilities of the next word (B, V) from logits, with the words ruled out at step t at -inf."""
    vocab_size = logits.shape[-1]
    mask = tf.where(t == 0, ruled_out(vocab_size, True), ruled_out(vocab_size, False))
    return tf.nn.log_softmax(tf.cast(logits, tf.float32) + mask, axis=-1)


@dataclass(frozen=True)
class Sampling:
    """Draw each word instead of taking the likeliest: at `temperature` (below 1 sharper, above 1 flatter), from
    the `top_k` likeliest words only (None: all), or from the fewest whose probabilities reach `top_p` (1: all)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.temperature, int | float) or not self.temperature > 0:
            raise SettingError(f"The temperature must be above 0 (1: the model's own distribution; below 1 "
                               f"sharper, above 1 flatter), not {self.temperature!r}.")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise SettingError(f"top-k must be a whole number of at least 1 (the likeliest words to draw from), "
                               f"or none at all, not {self.top_k!r}.")
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise SettingError(f"top-p must be above 0 and at most 1 (the share of the probability to draw from; "
                               f"1: all of it), not {self.top_p!r}.")

    @property
    def name(self) -> str:
        """A short label, as evaluation files and tables name it: "sample_t0.7_p0.9_s1"."""
        parts = [f"t{self.temperature:g}"] + ([f"k{self.top_k}"] if self.top_k else []) + \
            ([f"p{self.top_p:g}"] if self.top_p < 1 else []) + [f"s{self.seed}"]
        return "sample_" + "_".join(parts)


def most_likely(log_probs: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Greedy search's choice: the likeliest word of each row (B,)."""
    return tf.argmax(log_probs, axis=-1, output_type=tf.int32)


def drawn(settings: tf.Tensor, seed: tf.Tensor) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Sampling's choice at step t: one word per row, drawn (repeatably, from `seed`) from the distribution at
    temperature settings[0], cut to the settings[1] likeliest words and to the fewest reaching settings[2]."""
    temperature, top_k, top_p = settings[0], tf.cast(settings[1], tf.int32), settings[2]

    def choose(log_probs: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        scores = log_probs / temperature
        ordered = tf.sort(scores, axis=-1, direction="DESCENDING")
        kth = ordered[:, top_k - 1:top_k]  # keep the top_k likeliest words
        before = tf.math.cumsum(tf.nn.softmax(ordered, axis=-1), axis=-1, exclusive=True)
        nucleus = tf.reduce_min(tf.where(before < top_p, ordered, np.inf), axis=-1, keepdims=True)  # reach top_p
        scores = tf.where(scores < tf.maximum(kth, nucleus), -np.inf, scores)
        draw = tf.random.stateless_categorical(scores, 1, seed=tf.stack([seed[0], seed[1] * 1000 + t]))
        return tf.cast(draw[:, 0], tf.int32)

    return choose


def greedy_search(decoder: StepDecoder, inputs: tf.Tensor, steps: int, choose=most_likely
                  ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One word at each of `steps` steps, the likeliest (or the one `choose` picks: sampling): (ids (B, steps),
    log-probabilities (B,), weights (B, steps, L)).

    Runs inside a `tf.function`. After `<end>` a row only gets padding (and zero weights); the loop stops as soon
    as every row has ended.
    """
    memory, state = decoder.start(inputs)
    words = tf.fill([tf.shape(inputs)[0]], START_ID)
    finished = tf.zeros_like(words, dtype=tf.bool)
    total = tf.zeros([tf.shape(inputs)[0]])
    chosen = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
    looked = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
    for t in tf.range(steps):
        logits, state, weights = decoder.step(memory, words, state)
        weights = tf.cast(weights, tf.float32)  # float16 in a mixed-precision model
        log_probs = next_word_log_probs(logits, t)
        best = choose(log_probs, t)
        total += tf.where(finished, 0.0, tf.gather(log_probs, best, batch_dims=1))
        words = tf.where(finished, PAD_ID, best)  # after <end>: padding
        chosen = chosen.write(t, words)
        looked = looked.write(t, tf.where(finished[:, None], 0.0, weights))
        finished = finished | (words == END_ID)
        if tf.reduce_all(finished):
            break
    ids, weights = tf.transpose(chosen.stack()), tf.transpose(looked.stack(), [1, 0, 2])  # (B, steps taken, ...)
    missing = steps - tf.shape(ids)[1]
    return (tf.pad(ids, [[0, 0], [0, missing]], constant_values=PAD_ID), total,
            tf.pad(weights, [[0, 0], [0, missing], [0, 0]]))


def beam_search(decoder: StepDecoder, inputs: tf.Tensor, steps: int, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The `k` most probable captions per image: (ids (B, k, steps), total log-probabilities (B, k),
    attention weights (B, k, steps, L)). Runs inside a `tf.function`; row b*k + j is beam j of image b."""
    batch = tf.shape(inputs)[0]

    def regroup(x, parent):
        """Rows of x reordered so that beam j of image b continues beam parent[b, j]."""
        grouped = tf.reshape(x, tf.concat([[batch, k], tf.shape(x)[1:]], 0))
        return tf.reshape(tf.gather(grouped, parent, batch_dims=1), tf.shape(x))

    memory, state = decoder.start(inputs)
    memory, state = [tf.repeat(m, k, axis=0) for m in memory], [tf.repeat(s, k, axis=0) for s in state]

    def advance(t, words, state, scores, finished, ids, looked):
        """One step of every beam: extend each by every word, keep the k best of all extensions."""
        logits, state, weights = decoder.step(memory, words, state)
        weights = tf.cast(weights, tf.float32)  # float16 in a mixed-precision model
        vocab_size, locations = tf.shape(logits)[-1], tf.shape(weights)[-1]
        log_probs = tf.reshape(next_word_log_probs(logits, t), [batch, k, vocab_size])
        # A finished beam can only continue with padding, at no cost: it keeps its score.
        pad_only = tf.where(tf.range(vocab_size) == PAD_ID, 0.0, -np.inf)
        log_probs = tf.where(finished[:, :, None], pad_only, log_probs)
        weights = tf.where(finished[:, :, None], 0.0, tf.reshape(weights, [batch, k, locations]))
        candidates = tf.reshape(scores[:, :, None] + log_probs, [batch, k * vocab_size])
        scores, best = tf.math.top_k(candidates, k)  # the k best (beam, word) pairs per image
        parent, words = best // vocab_size, best % vocab_size
        state = [regroup(s, parent) for s in state]
        step_mask = tf.one_hot(t, steps)
        if looked is None:  # the first step tells how many locations there are
            looked = tf.zeros([batch, k, steps, locations])
        looked = tf.gather(looked + weights[:, :, None, :] * step_mask[:, None], parent, batch_dims=1)
        ids = tf.gather(ids, parent, batch_dims=1) + words[:, :, None] * tf.cast(step_mask, tf.int32)
        finished = tf.gather(finished, parent, batch_dims=1) | (words == END_ID)
        return tf.reshape(words, [-1]), state, scores, finished, ids, looked

    # Only beam 0 is alive at first, so the first step does not pick the same word k times.
    scores = tf.tile(tf.constant([[0.0] + [-np.inf] * (k - 1)]), [batch, 1])
    carried = advance(tf.constant(0), tf.fill([batch * k], START_ID), state, scores,
                      tf.zeros([batch, k], dtype=tf.bool), tf.zeros([batch, k, steps], dtype=tf.int32), None)
    words, state, scores, finished, ids, looked = carried
    for t in tf.range(1, steps):
        words, state, scores, finished, ids, looked = advance(t, words, state, scores, finished, ids, looked)
    return ids, scores, looked


def best_beams(ids: np.ndarray, scores: np.ndarray, length_penalty: float = 0.0) -> np.ndarray:
    """Index (B,) of each image's best beam: log-probability / (words + 1) ** length_penalty."""
    lengths = (ids != PAD_ID).sum(axis=-1)  # words + <end> (or `steps` if it never ended)
    return (scores / np.maximum(lengths, 1) ** length_penalty).argmax(axis=1)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: compiled function}


def _compiled(model: keras.Model, steps: int, beam_width: int, sampled: bool) -> Callable:
    """The compiled search of one model, steps, beam width, and whether it samples: built once, then reused (no
    retracing; the sampling settings and the seed are inputs, so other settings reuse it too)."""
    functions = _COMPILED.setdefault(model, {})
    key = (steps, beam_width, sampled)
    if key not in functions:
        decoder = step_decoder_for(model)
        spec = tf.TensorSpec([None, *model.input["image"].shape[1:]], tf.float32)
        inputs = [spec, tf.TensorSpec([3], tf.float32), tf.TensorSpec([2], tf.int32)]

        @tf.function(input_signature=inputs, reduce_retracing=True)
        def search(features, settings, seed):
            if beam_width == 1:
                choose = drawn(settings, seed) if sampled else most_likely
                ids, scores, weights = greedy_search(decoder, features, steps, choose)
                return ids[:, None], scores[:, None], weights[:, None]
            return beam_search(decoder, features, steps, beam_width)

        functions[key] = search
    return functions[key]


@dataclass
class Decoded:
    """What `decode` found for each image: word ids (N, steps), total log-probability (N,), the caption text,
    and the attention weights of each step (N, steps, L), zero after `<end>` (L = 0 without attention)."""

    ids: np.ndarray
    log_probs: np.ndarray
    captions: list[str]
    weights: np.ndarray


def check_beam_width(beam_width: int, vocab: Vocabulary) -> int:
    """`beam_width` if it is between 1 and the number of real words, else a SettingError."""
    words = len(vocab) - len(RESERVED)
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or not 1 <= beam_width <= max(words, 1):
        raise SettingError(f"The beam width must be a whole number from 1 (greedy search) to {words} (the words of "
                           f"the vocabulary), not {beam_width!r}; 3 to 5 is usual.")
    return beam_width


def decode(model: keras.Model, features: np.ndarray | Mapping, vocab: Vocabulary, beam_width: int = 1,
           keys: Sequence[str] | None = None, batch_size: int = 64, length_penalty: float = 0.0,
           sampling: Sampling | None = None) -> Decoded:
    """Captions for a batch of images: greedy search (beam_width 1), the best of `beam_width` beams, or a caption
    drawn word by word (`sampling`; the same seed, features and batch size give the same captions).

    features: an array (images, *feature shape), or a FeatureSet (or any mapping) with the `keys` to caption,
    read `batch_size` images at a time. Beams are ranked by log-probability / (words + 1) ** length_penalty:
    0 (the default) ranks by probability, which favours short captions; 1 by the mean log-probability per word.
    The log-probabilities are the model's own (a sampled caption's, not the filtered distribution's).
    """
    check_beam_width(beam_width, vocab)
    if sampling is not None and beam_width != 1:
        raise SettingError(f"Sampling draws one caption a word at a time; beam search keeps the {beam_width} "
                           "likeliest: choose one of them (beam width 1 with sampling).")
    steps = vocab.sequence_length
    search = _compiled(model, steps, beam_width, sampling is not None)
    every = sampling or Sampling()  # greedy and beam search ignore the settings
    top_k = min(every.top_k or len(vocab), len(vocab))
    settings = tf.constant([every.temperature, top_k, every.top_p], tf.float32)
    count = len(keys) if keys is not None else len(features)
    parts = []
    for start in range(0, count, batch_size):
        if keys is not None:
            chunk = keys[start:start + batch_size]
            batch = features.stack(chunk) if hasattr(features, "stack") else np.stack([features[k] for k in chunk])
        else:
            batch = np.asarray(features[start:start + batch_size])
        seed = tf.constant([sampling.seed if sampling else 0, start // batch_size], tf.int32)
        ids, scores, weights = (x.numpy() for x in search(tf.constant(batch, dtype=tf.float32), settings, seed))
        best = best_beams(ids, scores, length_penalty) if beam_width > 1 else np.zeros(len(ids), dtype=int)
        rows = np.arange(len(ids))
        parts.append((ids[rows, best], scores[rows, best], weights[rows, best]))
    if not parts:
        return Decoded(np.zeros((0, steps), "int32"), np.zeros(0, "float32"), [], np.zeros((0, steps, 0), "float32"))
    ids, scores, weights = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return Decoded(ids, scores, [vocab.decode(row) for row in ids], weights)


def attention_maps(decoded: Decoded, row: int, vocab: Vocabulary) -> tuple[list[str], np.ndarray]:
    """The words of caption `row`, then `<end>`, and the attention map of each: (words, g, g) for a g x g grid."""
    words = [vocab.words[i] for i in decoded.ids[row] if i != PAD_ID]
    weights = decoded.weights[row, :len(words)]
    cells = round(weights.shape[-1] ** 0.5)
    if cells * cells != weights.shape[-1] or cells == 0:
        raise SettingError(f"No square attention grid in these captions ({weights.shape[-1]} weights a step): "
                           "only an attention model has maps to show.")
    return words, weights.reshape(len(words), cells, cells)
