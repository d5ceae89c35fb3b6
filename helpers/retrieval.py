"""Search photos by words with a trained captioner, and measure how well it retrieves.

    search(work, "a red ball on the snow")          the test split's images, best match first
    search(work, "a dog", [photo, ...])             any photos (their features cached in the work folder)
    retrieval_scores(work)                          recall@1/5/10 and median rank, text-to-image, on a split

Two rankings. *Log-probability*: a captioner gives P(words | image), so an image is as good a match as it makes
the query likely (teacher forcing over the query's words and `<end>`, as in training). *Overlap*: the share of
content words the query and the image's greedy caption have in common (an F1 of word sets).
"""

from __future__ import annotations

import json
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from helpers import pipeline
from helpers.cleaning import clean_caption
from helpers.decoding import decode
from helpers.errors import SettingError, check_at_least
from helpers.evaluation import FUNCTION_WORDS
from helpers.feature_cache import CacheSetting
from helpers.files import fingerprint, replacing
from helpers.layouts import flickr8k
from helpers.layouts.base import printable
from helpers.literature import RETRIEVAL, literature_rows
from helpers.paths import is_fixture_folder, official_splits_dir
from helpers.vocabulary import PAD_ID, UNK_ID, Vocabulary
from helpers.workspace import DEFAULT_MODEL, Workspace

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


def photo_features(work: Workspace, config: dict, paths: Sequence[str | Path]) -> tuple[list[str], np.ndarray,
                                                                                           dict[str, str], bool]:
    """Features of image files for the trained model: (names, features, name -> why unreadable, from the cache).

    Encoded as `caption_files` does (through the work folder's `photos/` cache), then kept together in
    `search/<fingerprint of the paths and the encoder setting>.npz` (atomically), with the files' sizes and modification
    times: the next search of the same files reads that one file and encodes nothing, unless one has changed.
    """
    setting = CacheSetting(config["encoder"], config["weights"], config["image_size"], config["pooling"])
    weights = config.get("weights_source", config["weights"])
    images = {str(Path(p)): Path(p).expanduser().resolve() for p in paths}  # as pipeline.encode_photos names them
    named = sorted([name, str(path)] for name, path in images.items())
    cache = work.path("search") / f"{fingerprint([named, setting.as_dict(), weights])}.npz"
    stamps = []
    for path in images.values():
        try:
            stat = path.stat()
            stamps.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            stamps.append([str(path), None, None])
    stamp = fingerprint(stamps)
    try:
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["stamp"]) == stamp:
                return [str(n) for n in saved["names"]], saved["features"], json.loads(str(saved["failed"])), True
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # no cache yet, or a damaged one: encode (and rewrite it)
    images, found = pipeline.encode_photos(work, config, paths)
    names = [name for name in images if name in found]
    features = found.stack(names, dtype=None)  # grids stay in half precision
    with replacing(cache, suffix=".npz") as tmp:
        np.savez(tmp, stamp=np.array(stamp), names=np.array(names, dtype=str), features=features,
                 failed=np.array(json.dumps(found.failed)))
    return names, features, found.failed, False


def _split_features(work: Workspace, config: dict, split: str) -> tuple[dict[str, list[str]], list[str], np.ndarray]:
    """A split's captions (of the images that have features), their keys, and the features in that order."""
    if split not in ("train", "dev", "test"):
        raise SettingError(f"Unknown split {split!r}: choose train, dev or test.")
    captions = work.read_json("captions.json")
    features = pipeline.trained_features(work, config, list(captions[split]))
    keys = [k for k in captions[split] if k in features]
    if not keys:
        raise SettingError(f"No image of the {split} split has features: run `python -m helpers features --out "
                           f"{work.root}` first.")
    return captions, keys, features.stack(keys)


def search(work: Workspace, query: str, paths: Sequence[str | Path] | None = None, top: int = 5,
           normalisation: str = DEFAULT_NORMALISATION, model_name: str = DEFAULT_MODEL, trained: tuple | None = None
           ) -> dict:
    """The `top` images that best match `query`, best first, with their scores and greedy captions.

    paths: image files to search (their features cached, see `photo_features`); None: the test split's images.
    Unreadable files are skipped and named in `failed`. Scores are in nats (see `normalise`).
    trained: the (model, vocab, config) of `pipeline.load_trained`, when the caller keeps them loaded.
    """
    check_at_least("top", top)
    check_normalisation(normalisation)
    model, vocab, config = trained or pipeline.load_trained(work, model_name)
    ids, unknown = query_ids(vocab, query)
    captions = work.read_json("captions.json")
    failed, cached = {}, None
    if paths is None:
        _, keys, features = _split_features(work, config, "test")
        files = pipeline.images_of(work)
        names = [str(files[k]) for k in keys]
    else:
        names, features, failed, cached = photo_features(work, config, paths)
    if not names:
        raise SettingError(f"None of the {len(paths)} image files could be read ({'; '.join(failed.values())}): "
                           "give JPEG or PNG photos.")
    log_probs, scores = scores_for(model, features, vocab, [ids], normalisation, captions["train"])
    best = np.argsort(-scores[0], kind="stable")[:top]
    shown = decode(model, features[best], vocab).captions
    results = [{"rank": rank, "score": float(scores[0, i]), "log_prob": float(log_probs[0, i]), "image": names[i],
                "caption": caption} for rank, (i, caption) in enumerate(zip(best, shown, strict=True), start=1)]
    return {"query": query, "words": clean_caption(query), "unknown_words": unknown, "normalisation": normalisation,
            "images": len(names), "results": results, "failed": failed, "features_from_cache": cached}


def is_flickr8k_test(work: Workspace, split: str, keys: Sequence[str]) -> bool:
    """Whether `keys` are Flickr8k's official 1,000 test images (where published figures apply)."""
    dataset = work.read_json("dataset.json")
    if split != "test" or dataset.get("layout") not in {layout.name for layout in flickr8k.LAYOUTS} \
            or is_fixture_folder(dataset["data_dir"]):
        return False
    official = (official_splits_dir() / flickr8k.SPLIT_FILES["test"]).read_text(encoding="utf-8").split()
    return set(keys) == set(official)


def retrieval_scores(work: Workspace, split: str = "test", normalisation: str = DEFAULT_NORMALISATION,
                     model_name: str = DEFAULT_MODEL) -> dict:
    """Text-to-image retrieval on a split: every reference caption is a query, its own image the right answer.

    Recall@1/5/10 and median rank of the log-probability ranking (with `normalisation`) and of the overlap
    ranking, beside every normalisation, a random ranking and, on Flickr8k's test split, the published rankings
    (`helpers.literature.RETRIEVAL`). Also the protocol of Tanti et al.'s captioner-based retrieval: each image's
    first caption the only query of that image ("first caption").
    """
    check_normalisation(normalisation)
    model, vocab, config = pipeline.load_trained(work, model_name)
    captions, keys, features = _split_features(work, config, split)
    queries = [c for k in keys for c in captions[split][k]]
    right = [i for i, k in enumerate(keys) for _ in captions[split][k]]
    ids = [vocab.encode(q) for q in queries]
    log_probs = caption_log_probs(model, features, ids)
    average = caption_log_probs(model, features.mean(axis=0, keepdims=True), ids)[:, 0]
    generic = [vocab.encode(c) for c in generic_captions(captions["train"])]
    prior = caption_log_probs(model, features, generic).mean(axis=0)
    by_normalisation = {n: recall_at_k(normalise(log_probs, n, average, prior), right) for n in NORMALISATIONS}
    first = [right.index(i) for i in range(len(keys))]  # the row of each image's first caption
    generated = decode(model, features, vocab).captions
    return {"split": split, "images": len(keys), "queries": len(queries), "decoder": config["decoder"],
            "normalisation": normalisation,
            "rankings": {"log-prob": by_normalisation[normalisation],
                         "overlap": recall_at_k(overlap_scores(queries, generated), right),
                         "first caption": recall_at_k(log_probs[first], range(len(keys)))},
            "normalisations": by_normalisation, "random": random_baseline(len(keys)),
            "literature": literature_rows(RETRIEVAL) if is_flickr8k_test(work, split, keys) else None}


def _percent(row: dict) -> str:
    return "  ".join(f"{100 * row[k]:5.1f}" for k in ("r@1", "r@5", "r@10"))


def retrieval_table(result: dict) -> str:
    """`retrieval_scores` as a small table: recall@K in percent and the median rank of each ranking."""
    lines = [f"Text-to-image retrieval on {result['images']} {result['split']} images, {result['queries']} queries "
             f"({result['decoder']} decoder):", f"  {'ranking':<36} R@1    R@5   R@10  median rank"]
    rows = {f"log-prob ({result['normalisation']})": result["rankings"]["log-prob"],
            "caption overlap (content-word F1)": result["rankings"]["overlap"],
            "log-prob, first caption of each image": result["rankings"]["first caption"],
            **{f"  log-prob ({n})": row for n, row in result["normalisations"].items()
               if n != result["normalisation"]},
            "random": result["random"]}
    lines += [f"  {name:<36} {_percent(row)}  {row['median_rank']:8.1f}" for name, row in rows.items()]
    for number, row in enumerate((result["literature"] or {}).values(), 1):
        median = f"  {row['median_rank']:8.1f}" if "median_rank" in row else ""
        lines.append(f"  {f'published [{number}]':<36} {_percent(row)}{median}")
    lines += [f"  [{number}] {label}" for number, label in enumerate(result["literature"] or {}, 1)]
    return "\n".join(lines)


def search_table(result: dict) -> str:
    """`search`'s results as lines: rank, score, image, greedy caption."""
    unknown = f" ({', '.join(result['unknown_words'])}: not in the vocabulary)" if result["unknown_words"] else ""
    lines = [f"Best {len(result['results'])} of {result['images']} images for {result['words']!r}{unknown}, "
             f"{result['normalisation']} score in nats:"]
    lines += [f"  {r['rank']:>3}  {r['score']:8.2f}  {printable(r['image'])}  {r['caption']}"
              for r in result["results"]]
    return "\n".join(lines)
