"""Search photos by words with a trained captioner, and measure how well it retrieves (notebook 08).

    caption_log_probs(model, features, ids)         log P(words | image) of every query for every image
    normalise(log_probs, "pmi", average)            minus what the words score on an average image
    recall_at_k(scores, right)                      recall@1/5/10 and the median rank, text-to-image

The stages over a work folder (`search`, `retrieval_scores`) are in helpers/machinery/search_stage.py.

Two rankings. *Log-probability*: a captioner gives P(words | image), so an image is as good a match as it makes
the query likely (teacher forcing over the query's words and `<end>`, as in training). *Overlap*: the share of
content words the query and the image's greedy caption have in common (an F1 of word sets).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from helpers.cleaning import clean_caption
from helpers.errors import SettingError
from helpers.evaluation import FUNCTION_WORDS
from helpers.vocabulary import PAD_ID, UNK_ID, Vocabulary

NORMALISATIONS = ("none", "pmi", "image")
# Measured on the fixture's 300 test queries (R@1 / R@5 / R@10 in %, `evaluate --retrieval`), merge models on
# 71-pixel features. The one of tests/test_retrieval.py (64 units, 15 epochs): none = pmi 7.7 / 28.0 / 54.0,
# image 6.7 / 28.3 / 53.3. The default size (256 units, 22 epochs): none = pmi 11.3 / 34.3 / 57.0, image 7.0 /
# 34.0 / 58.3. Only a barely trained model (16 units, 2 epochs) gained from "image" (1.7 / 12.0 / 31.3 -> 3.0 /
# 16.0 / 34.0). So the default is "pmi": the ranking of "none", with scores comparable across queries.
DEFAULT_NORMALISATION = "pmi"
LOGITS_PER_BATCH = 2**24  # pairs per forward pass: about this many logits (64 MB of float32)
REFERENCES = 100  # train captions whose mean log-probability is an image's "explains anything" level
STOP_WORDS = FUNCTION_WORDS | {"there", "some", "two", "three", "one", "other", "each", "by", "from", "for",
                               "something", "things", "thing", "it", "this", "that"}


def query_ids(vocab: Vocabulary, query: str) -> tuple[list[int], list[str]]:
    """`<start> words <end>` ids of a query cleaned like the captions, and its unknown words (scored as `<unk>`).

    An empty query, or one made only of unknown words, is a SettingError that says so.
    """
    words = clean_caption(query).split()
    if not words:
        raise SettingError(f"The query {query!r} has no words to search for: type a few words, e.g. \"a dog "
                           "running on the grass\".")
    ids = vocab.encode(" ".join(words))
    unknown = [w for w, i in zip(words, ids[1:-1], strict=True) if i == UNK_ID]
    if len(unknown) == len(words):
        raise SettingError(f"No word of the query {query!r} is in the model's vocabulary ({', '.join(unknown)}): "
                           "use words of the training captions.")
    return ids, unknown


_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled pair scorer


def _scorer(model):
    """The compiled log-probability of the targets for (image row, input, target) triples: built once per model."""
    if model not in _SCORERS:
        image_spec = tf.TensorSpec([None, *model.input["image"].shape[1:]], tf.float32)
        ids_spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[image_spec, tf.TensorSpec([None], tf.int32), ids_spec, ids_spec],
                     reduce_retracing=True)
        def score(images, rows, inputs, targets):
            logits = model({"image": tf.gather(images, rows), "caption": inputs}, training=False)
            picked = tf.gather(tf.nn.log_softmax(logits, axis=-1), targets, batch_dims=2)  # (B, T)
            return tf.reduce_sum(tf.where(targets == PAD_ID, 0.0, picked), axis=1)

        _SCORERS[model] = score
    return _SCORERS[model]


def caption_log_probs(model, features: np.ndarray, query_ids: Sequence[Sequence[int]],
                      batch_size: int | None = None) -> np.ndarray:
    """log P(query | image) for every query and image: (queries, images), in nats.

    features: the images' features (N, *shape): vectors, or grids for attention. query_ids: each query as
    `vocab.encode` gives it, `<start> w1..wn <end>`; as in training the input is `<start> w1..wn`, the target
    `w1..wn <end>`, and a pair's score is the sum of log softmax(logits) at the targets (the plain softmax of
    training: no word is ruled out as in decoding). Pairs run `batch_size` at a time (by default as many as
    make about LOGITS_PER_BATCH logits), queries sorted by length so each batch is trimmed to its longest.
    """
    features = np.asarray(features, dtype="float32")
    count, width = len(features), max((len(q) - 1 for q in query_ids), default=0)
    out = np.zeros((len(query_ids), count), dtype="float32")
    if not count or not len(query_ids):
        return out
    vocab_size = model.outputs[0].shape[-1]  # `model.output` is a list in Keras 3.1
    batch_size = batch_size or max(1, LOGITS_PER_BATCH // (width * vocab_size))
    order = sorted(range(len(query_ids)), key=lambda q: len(query_ids[q]))
    inputs = np.full((len(order), width), PAD_ID, dtype="int32")
    targets = np.full((len(order), width), PAD_ID, dtype="int32")
    for row, q in enumerate(order):
        ids = list(query_ids[q])
        inputs[row, :len(ids) - 1], targets[row, :len(ids) - 1] = ids[:-1], ids[1:]
    lengths = (targets != PAD_ID).sum(axis=1)
    images, score = tf.constant(features), _scorer(model)
    pairs = np.arange(len(order) * count)  # pair p: query row p // count, image p % count
    flat = np.zeros(len(pairs), dtype="float32")
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        rows, image_rows = chunk // count, chunk % count
        longest = int(lengths[rows].max())
        flat[chunk] = score(images, tf.constant(image_rows, tf.int32), tf.constant(inputs[rows, :longest]),
                            tf.constant(targets[rows, :longest])).numpy()
    out[order] = flat.reshape(len(order), count)
    return out


def normalise(log_probs: np.ndarray, normalisation: str, average: np.ndarray | None = None,
              prior: np.ndarray | None = None) -> np.ndarray:
    """Scores (queries, images) from log P(query | image).

    "none": log P(q | i) itself. "pmi": minus log P(q | average image), `average` (queries,), the query's
    log-probability under the mean of the images' features: pointwise mutual information. Subtracting a
    constant per query changes no query's ranking of the images; it only makes scores comparable across
    queries (long and rare queries are less likely under every image). "image": minus `prior` (images,), each
    image's mean log-probability of a fixed set of generic captions, which does change the ranking: it
    penalises images that make every caption likely (hubs), whatever the query. It did not rank better on the
    fixture once the model had learned (see DEFAULT_NORMALISATION), and costs REFERENCES more queries a search.
    """
    if check_normalisation(normalisation) == "pmi":
        return log_probs - np.asarray(average)[:, None]
    if normalisation == "image":
        return log_probs - np.asarray(prior)[None, :]
    return log_probs


def check_normalisation(normalisation: str) -> str:
    """`normalisation` if it is one of NORMALISATIONS, else a SettingError listing them."""
    if normalisation not in NORMALISATIONS:
        raise SettingError(f"Unknown normalisation {normalisation!r}: choose one of {', '.join(NORMALISATIONS)}.")
    return normalisation


def content_words(text: str) -> set[str]:
    """The cleaned words of a caption or query, without function words ("a", "the", "on", ...)."""
    return set(clean_caption(text).split()) - STOP_WORDS


def overlap_scores(queries: Sequence[str], captions: Sequence[str]) -> np.ndarray:
    """F1 of the content-word sets of each query and each caption: 2|Q & C| / (|Q| + |C|), (queries, captions)."""
    caption_sets = [content_words(c) for c in captions]
    out = np.zeros((len(queries), len(captions)), dtype="float64")
    for row, query in enumerate(queries):
        words = content_words(query)
        for col, found in enumerate(caption_sets):
            if words or found:
                out[row, col] = 2 * len(words & found) / (len(words) + len(found))
    return out


def ranks(scores: np.ndarray, right: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """For each query (row), how many images score above its right image and how many others tie with it."""
    scores = np.asarray(scores)
    right_scores = scores[np.arange(len(scores)), np.asarray(right)][:, None]
    return (scores > right_scores).sum(axis=1), (scores == right_scores).sum(axis=1) - 1


def recall_at_k(scores: np.ndarray, right: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Recall@K (the share of queries whose right image is in the top K) and the median rank (1-based).

    scores: (queries, images), higher is better; right: each query's right image (column). Ties are broken at
    random, in expectation: a right image behind `g` better images and tied with `e` others is at each place
    g+1..g+e+1 with equal chance, so it counts for recall@K with probability (K - g) / (e + 1) (clipped to
    0..1), and its rank is g + 1 + e/2. All scores equal is then exactly the random ranking.
    """
    better, tied = ranks(scores, right)
    result = {f"r@{k}": float(np.clip((k - better) / (tied + 1), 0, 1).mean()) for k in ks}
    return {**result, "median_rank": float(np.median(better + 1 + tied / 2))}


def random_baseline(images: int, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """What a random ranking of `images` images scores in expectation: R@K = K/N, median rank (N+1)/2."""
    return {**{f"r@{k}": min(k / images, 1.0) for k in ks}, "median_rank": (images + 1) / 2}


def generic_captions(train: dict[str, list[str]], count: int = REFERENCES) -> list[str]:
    """A fixed sample of `count` train captions: what "explains any caption well" is measured on."""
    every = [caption for captions in train.values() for caption in captions]
    chosen = np.random.default_rng(0).choice(len(every), min(count, len(every)), replace=False)
    return [every[i] for i in sorted(chosen)]


def scores_for(model, features: np.ndarray, vocab: Vocabulary, ids: Sequence[Sequence[int]], normalisation: str,
               train: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(log P(q | i), the normalised scores), both (queries, images), computing only what `normalisation` needs."""
    features = np.asarray(features, dtype="float32")
    log_probs = caption_log_probs(model, features, ids)
    average = prior = None
    if normalisation == "pmi":
        average = caption_log_probs(model, features.mean(axis=0, keepdims=True), ids)[:, 0]
    if normalisation == "image":
        prior = caption_log_probs(model, features, [vocab.encode(c) for c in generic_captions(train)]).mean(axis=0)
    return log_probs, normalise(log_probs, normalisation, average, prior)
