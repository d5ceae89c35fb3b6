"""Search a work folder's photos by words, and measure its model's retrieval: the stages over the lesson code of
helpers/retrieval.py (notebook 08).

    search(work, "a red ball on the snow")          the test split's images, best match first
    search(work, "a dog", [photo, ...])             any photos (their features cached in the work folder)
    retrieval_scores(work)                          recall@1/5/10 and median rank, text-to-image, on a split
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpers.cleaning import clean_caption
from helpers.decoding import decode
from helpers.errors import SettingError, check_at_least
from helpers.literature import RETRIEVAL, literature_rows
from helpers.machinery import pipeline
from helpers.machinery.feature_cache import CacheSetting
from helpers.machinery.files import fingerprint, replacing
from helpers.machinery.layouts import flickr8k
from helpers.machinery.layouts.base import printable
from helpers.machinery.paths import is_fixture_folder, official_splits_dir
from helpers.machinery.workspace import DEFAULT_MODEL, Workspace
from helpers.retrieval import (
    DEFAULT_NORMALISATION,
    NORMALISATIONS,
    caption_log_probs,
    check_normalisation,
    generic_captions,
    normalise,
    overlap_scores,
    query_ids,
    random_baseline,
    recall_at_k,
    scores_for,
)


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
