"""Encode images into the feature cache: batched through the encoder, checkpointed, resumable.

    features = extract_features({key: path, ...}, work.path("xception_none_299"), weights="none")
    X = features.stack(keys)                                     # (len(keys), 2048) float32

Images whose features are cached (and whose pictures have not changed since) are not encoded again; a picture
replaced under the same name is. The cache is saved every `checkpoint_seconds` and when the run stops, even by
Ctrl-C, so a rerun only encodes what is left.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helpers.encoders import DEFAULT_ENCODER, shared_encoder
from helpers.errors import ImageError, SettingError, check_at_least
from helpers.images import load_image, read_rgb
from helpers.machinery.feature_cache import (
    CacheSetting,
    FeatureSet,
    append_to_cache,
    open_cache,
    picture_changed,
    picture_fingerprint,
)
from helpers.machinery.progress import progress_bar

if TYPE_CHECKING:
    import keras

CHECKPOINT_SECONDS = 60.0
CHECKPOINT_BYTES = 256 * 2**20  # also save once this much is waiting (a GPU encodes a minute of grids fast)


def keys_for_paths(image_paths: Sequence[str | Path]) -> dict[str, Path]:
    """Key -> path for a list of image files (the key is the file name); two files of one name are an error."""
    if isinstance(image_paths, (str, Path)):
        raise TypeError("image_paths must be a list of paths, not a single path")
    by_name: dict[str, Path] = {}
    for path in map(Path, image_paths):
        seen = by_name.setdefault(path.name, path)
        if seen != path and seen.resolve() != path.resolve():
            raise SettingError(f"Two images share the file name {path.name!r}: {seen} and {path}. Features "
                               "are keyed by file name here: rename one of them, or pass {key: path} instead.")
    return by_name


def _stale_keys(keys: list[str], cache: FeatureSet, paths: dict[str, Path]) -> set[str]:
    """Keys whose cached row is missing, or was computed from another picture than the one on disk now."""
    stale = set()
    for key in keys:
        if key in cache:
            if key not in cache.pictures or picture_changed(paths[key], cache.pictures[key]):
                stale.add(key)
        elif not _still_fails(key, cache, paths):
            stale.add(key)
    return stale


def _still_fails(key: str, cache: FeatureSet, paths: dict[str, Path]) -> bool:
    """Whether an image that failed before still cannot be read (checked without the encoder; reason updated)."""
    if key not in cache.failed:
        return False
    try:
        read_rgb(paths[key])
    except ImageError as error:
        cache.failed[key] = error.reason
        return True
    return False


def _batches_to_encode(keys: list[str], stale: set[str], batch_size: int) -> list[list[str]]:
    """Fixed slices of the sorted keys that hold a stale key.

    The slices never move, so a resumed run batches every image exactly as a clean run does (an encoder's
    results can differ in their last bits with the batch it ran in).
    """
    slices = [keys[start:start + batch_size] for start in range(0, len(keys), batch_size)]
    return [batch for batch in slices if stale.intersection(batch)]


def image_batches(paths: list[Path], encoder: str, image_size: int, batch_size: int):
    """tf.data pipeline: decode in parallel (in order), batch, prefetch; yields (pixels, reasons)."""
    import tensorflow as tf

    def read(path: bytes) -> tuple[np.ndarray, bytes]:
        try:
            return load_image(os.fsdecode(path), image_size, encoder).astype(np.float32), b""
        except ImageError as error:  # a bad image gives zeros and a reason instead of stopping the run
            return np.zeros((image_size, image_size, 3), np.float32), error.reason.encode("utf-8", "backslashreplace")

    def read_tf(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels, reason = tf.numpy_function(read, [path], [tf.float32, tf.string], stateful=False)
        pixels.set_shape((image_size, image_size, 3))
        reason.set_shape(())
        return pixels, reason

    dataset = tf.data.Dataset.from_tensor_slices([os.fsencode(p) for p in paths])
    dataset = dataset.map(read_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(1)


def extract_features(images: Mapping[str, str | Path] | Sequence[str | Path], cache_dir: str | Path,
                     encoder: str = DEFAULT_ENCODER, weights: str | Path = "none", image_size: int | None = None,
                     pooling: str = "avg", batch_size: int = 32, progress: bool = True,
                     model: keras.Model | None = None, checkpoint_seconds: float = CHECKPOINT_SECONDS,
                     seed: int = 0, store: str | Path | None = None) -> FeatureSet:
    """Features of every image, cached in `cache_dir`: cached ones are reused, the others computed.

    images: {key: path} (the course passes captions.json's keys), or a list of paths keyed by file name.
    pooling="none": the encoder's last feature map per image (a grid), stored in half precision.
    model: an encoder built by build_encoder with the same settings, to save a rebuild.
    store: a folder shared by work folders (COURSE_FEATURE_STORE), where features are kept by the SHA-1 of the
    picture: a picture encoded once, in any work folder or dataset layout, is not encoded again.
    Returns the FeatureSet of these images; `failed` names those that could not be read, and why.
    """
    check_at_least("the encoder batch size", batch_size)
    paths = {key: Path(p) for key, p in images.items()} if isinstance(images, Mapping) else keys_for_paths(images)
    setting = CacheSetting.of(encoder, weights, image_size, pooling)
    keys = sorted(paths)
    cache_dir = Path(cache_dir)
    cache = open_cache(cache_dir, setting)
    stale = _stale_keys(keys, cache, paths)
    if store is not None and stale:
        cache, stale = _take_from_store(Path(store) / setting.name, setting, stale, paths, cache, cache_dir)
    batches = _batches_to_encode(keys, stale, batch_size)
    if batches:
        if model is None:  # the grid model: a vector is the mean of its grid, so one pass can give both
            model = shared_encoder(encoder, str(weights), setting.image_size, seed, "none")
        sibling = CacheSetting.of(encoder, weights, image_size, "none" if pooling == "avg" else "avg")
        cache, other = _encode(batches, stale, paths, cache, cache_dir, setting, model, progress,
                               checkpoint_seconds, keep_other=store is not None)
        if store is not None:
            _give_to_store(Path(store) / setting.name, setting, cache, stale)
            _give_rows_to_store(Path(store) / sibling.name, sibling, other)
    result = cache.subset(keys)
    if result.failed:
        shown = "; ".join(f"{key}: {reason}" for key, reason in sorted(result.failed.items())[:3])
        more = f"; and {len(result.failed) - 3} more" if len(result.failed) > 3 else ""
        print(f"{len(result.failed)} of {len(keys)} images could not be read and have no features ({shown}{more}).")
    return result


def _take_from_store(folder: Path, setting: CacheSetting, stale: set[str], paths: dict[str, Path], cache: FeatureSet,
                     cache_dir: Path) -> tuple[FeatureSet, set[str]]:
    """Copy the store's rows of the stale pictures it holds into the cache; returns the cache and what is left."""
    shared = open_cache(folder, setting)
    found, pictures = {}, {}
    for key in sorted(stale):
        try:
            picture = picture_fingerprint(paths[key])
        except OSError:
            continue  # a missing file: the encoder pipeline reports it
        if picture["sha1"] in shared:
            found[key], pictures[key] = shared[picture["sha1"]], picture
    if found:
        cache = append_to_cache(cache_dir, setting, cache, found, pictures, {})
    return cache, stale - set(found)


def _give_to_store(folder: Path, setting: CacheSetting, cache: FeatureSet, encoded: set[str]) -> None:
    """Add the rows just encoded to the store, keyed by their pictures' SHA-1."""
    rows = {cache.pictures[k]["sha1"]: cache[k] for k in sorted(encoded) if k in cache and k in cache.pictures}
    _give_rows_to_store(folder, setting, rows)


def _give_rows_to_store(folder: Path, setting: CacheSetting, rows: dict[str, np.ndarray]) -> None:
    """Add {picture SHA-1: row} to the store's folder for `setting`, leaving the rows it has alone."""
    if not rows:
        return
    shared = open_cache(folder, setting)
    rows = {sha1: row for sha1, row in rows.items() if sha1 not in shared}
    if rows:
        append_to_cache(folder, setting, shared, rows, {sha1: {"sha1": sha1} for sha1 in rows}, {})


def _check_model(model: keras.Model, setting: CacheSetting) -> None:
    """The encoder must take the setting's image size and give what its pooling stores."""
    expected = model.input_shape[1:3]
    if None not in expected and tuple(expected) != (setting.image_size, setting.image_size):
        raise SettingError(f"The encoder takes {expected[0]}x{expected[1]} images, not {setting.image_size}x"
                           f"{setting.image_size}: build it with build_encoder(..., image_size={setting.image_size}).")
    output_shape = getattr(model, "output_shape", None)  # (wrappers of an encoder may not say)
    if output_shape is not None and setting.pooling == "none" and len(output_shape) != 4:
        raise SettingError(f"The encoder outputs {output_shape}, not the grid pooling='none' stores: "
                           "build it with build_encoder(..., pooling='none').")


def _rows(output: np.ndarray, pooling: str) -> np.ndarray:
    """The encoder's output as `pooling` stores it: grids (B, g, g, F) in float16, or vectors (B, F), the mean of
    each grid (what Keras' global average pooling computes) unless the encoder pooled already."""
    if pooling == "none":
        return output.astype("float16")
    return output.mean(axis=(1, 2), dtype="float32") if output.ndim == 4 else output.astype("float32")


def _encode(batches: list[list[str]], stale: set[str], paths: dict[str, Path], cache: FeatureSet, cache_dir: Path,
            setting: CacheSetting, model: keras.Model, progress: bool, checkpoint_seconds: float,
            keep_other: bool = False) -> tuple[FeatureSet, dict[str, np.ndarray]]:
    """Run the encoder over the batches, appending to the cache as it goes; returns the cache as saved and, with
    `keep_other` and a grid encoder, the other pooling's rows by picture SHA-1 (for the store)."""
    _check_model(model, setting)
    other_pooling = "none" if setting.pooling == "avg" else "avg"
    other: dict[str, np.ndarray] = {}
    todo = [key for batch in batches for key in batch]
    pipeline = image_batches([paths[k] for k in todo], setting.encoder, setting.image_size, len(batches[0]))
    bar = progress_bar(sum(1 for k in todo if k in stale), progress, f"{setting.encoder} features")
    new: dict[str, np.ndarray] = {}
    pictures: dict[str, dict] = {}
    failed: dict[str, str] = {}
    last_save = time.monotonic()
    try:
        for batch, (pixels, reasons) in zip(batches, pipeline, strict=True):
            output = np.asarray(model.predict_on_batch(pixels), dtype="float32")
            vectors = _rows(output, setting.pooling)
            also = _rows(output, other_pooling) if keep_other and output.ndim == 4 else None
            for row, (key, vector, reason) in enumerate(zip(batch, vectors, reasons.numpy(), strict=True)):
                if key not in stale:  # computed before: keep it as it was
                    continue
                if reason:
                    failed[key] = reason.decode()
                else:
                    new[key], pictures[key] = vector, picture_fingerprint(paths[key])
                    if also is not None:
                        other[pictures[key]["sha1"]] = also[row]
            bar.update(sum(1 for k in batch if k in stale))
            waiting = sum(v.nbytes for v in new.values())
            if time.monotonic() - last_save >= checkpoint_seconds or waiting >= CHECKPOINT_BYTES:
                cache = append_to_cache(cache_dir, setting, cache, new, pictures, failed)
                new, pictures, failed, last_save = {}, {}, {}, time.monotonic()
    finally:
        bar.close()
        if new or failed:  # also after Ctrl-C or an error: what was computed is kept
            cache = append_to_cache(cache_dir, setting, cache, new, pictures, failed)
    return cache, other
