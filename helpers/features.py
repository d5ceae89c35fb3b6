"""Turn images into Xception feature vectors, cached on disk so that each image is encoded once.

    features = extract_features(image_paths, work / feature_cache_name("imagenet", 299), weights="imagenet")
    X = features.matrix(names)           # (len(names), 2048) float32

With `pooling="none"` the same code keeps Xception's last feature map instead of its average: one
(10, 10, 2048) grid of vectors per 299x299 image (stored as float16), in a cache file of its own
(`feature_cache_name(weights, 299, "none")`), for the attention decoder of notebook 07.

The cache is an .npz file (no pickle): arrays `names`, `features`, `failed_names`, `failed_reasons`
and `meta` (a JSON string with the encoder settings). It is checkpointed while the images are encoded,
so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # TensorFlow takes seconds to import: load it only when an encoder is needed
    import keras

IMAGE_SIZE = 299
FEATURE_DIM = 2048
ENCODER = "xception"
WEIGHTS_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/" + WEIGHTS_FILE
WEIGHTS_MD5 = "b0042744bf5b25fce3cb969f33bebb97"  # the file_hash keras.applications.Xception checks its download against
CHECKPOINT_SECONDS = 60.0
POOLINGS = ("avg", "none")  # "avg": one vector per image; "none": the spatial map, a grid of vectors
# Meta data keys that older caches lack, with the value they mean.
META_DEFAULTS = {"pooling": "avg", "dtype": "float32"}


class ImageError(ValueError):
    """An image file that cannot be read; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"Cannot read image {path}: {reason}")
        self.path, self.reason = Path(path), reason


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could not be downloaded (the message says how to get them)."""


class StaleCacheError(ValueError):
    """A feature cache written with other encoder settings than the ones asked for."""


class CorruptCacheError(ValueError):
    """A feature cache file that cannot be read; `reason` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is not a readable feature cache ({reason}). "
                         "Delete it and extract the features again.")
        self.path, self.reason = Path(path), reason


class UntrainedEncoderWarning(UserWarning):
    """The encoder has random weights (fixture / CI mode)."""


# ---------------------------------------------------------------------------------------------
# Settings and names
# ---------------------------------------------------------------------------------------------

def weights_label(weights: str | Path | None) -> str:
    """How a weights setting is recorded: "imagenet", "none", or the weights file's name."""
    if weights is None or str(weights).lower() == "none":
        return "none"
    if str(weights) == "imagenet":
        return "imagenet"
    return Path(weights).name


def _check_pooling(pooling: str) -> str:
    """"avg" or "none", else a ValueError."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    return pooling


def feature_cache_name(weights: str, image_size: int, pooling: str = "avg") -> str:
    """File name of the cache for one encoder setting, e.g. "xception_none_299.npz" ("..._299_map.npz" unpooled)."""
    label = re.sub(r"[^A-Za-z0-9._-]", "_", weights_label(weights))
    suffix = "" if _check_pooling(pooling) == "avg" else "_map"
    return f"{ENCODER}_{label}_{int(image_size)}{suffix}.npz"


def _settings(weights: str | Path | None, image_size: int, pooling: str = "avg") -> dict:
    """The meta data that a cache must match to be reused (pooled caches keep the original keys)."""
    settings = {"encoder": ENCODER, "weights": weights_label(weights), "image_size": int(image_size),
                "feature_dim": FEATURE_DIM}
    if _check_pooling(pooling) != "avg":  # spatial maps are 100 times bigger: half precision
        settings.update(pooling=pooling, dtype="float16")
    return settings


def _meta(meta: dict, key: str):
    """A meta data value, with the default that caches written before the key existed mean."""
    return meta.get(key, META_DEFAULTS.get(key))


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

def _keras_models_dir() -> Path:
    """Where Keras looks for (and downloads) pretrained weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def build_encoder(weights: str | Path | None = "imagenet", image_size: int = IMAGE_SIZE,
                  seed: int = 0, pooling: str = "avg") -> keras.Model:
    """Xception without its classifier: an image batch in, one 2048-number vector per image out.

    weights: "imagenet" (downloaded once by Keras), a path to a weights .h5 file, or "none"
    (random weights, seeded with `seed`: same architecture, no download, for the fixture and CI).
    pooling="none" keeps the last feature map: (10, 10, 2048) per 299x299 image.
    """
    import keras

    label = weights_label(weights)
    options = dict(include_top=False, pooling=None if _check_pooling(pooling) == "none" else pooling,
                   input_shape=(image_size, image_size, 3))
    if label == "none":
        keras.utils.set_random_seed(seed)
        warnings.warn("The Xception encoder is UNTRAINED (weights='none', fixture/CI mode): its features, "
                      "and so the captions, will only reflect colour and layout, not what is in the image.",
                      UntrainedEncoderWarning, stacklevel=2)
        return keras.applications.Xception(weights=None, **options)
    if label == "imagenet":
        try:
            return keras.applications.Xception(weights="imagenet", **options)
        except Exception as error:  # Keras raises a bare Exception when the download fails
            raise WeightsUnavailableError(
                f"Could not get Xception's ImageNet weights ({type(error).__name__}: {error}).\n"
                f"Without internet, fetch the file on another machine:\n  {WEIGHTS_URL}  (about 80 MB)\n"
                f"then either put it in {_keras_models_dir()}/ (Keras finds it there), or pass its path "
                f"with --weights PATH (weights=PATH in Python).\n"
                f"To run without it (fixture/CI mode, untrained encoder): --weights none."
            ) from error
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Encoder weights file {path} does not exist. Download {WEIGHTS_URL} "
                                "and pass its path, or use --weights imagenet or --weights none.")
    verify_weights_file(path)
    return keras.applications.Xception(weights=str(path), **options)


def verify_weights_file(path: Path) -> None:
    """A file named like Keras' published Xception weights must have their MD5 (a partial download does not)."""
    if path.name != WEIGHTS_FILE:
        return  # weights of one's own (fine-tuned, converted): nothing published to compare with
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != WEIGHTS_MD5:
        raise ValueError(f"{path} ({path.stat().st_size:,} bytes) is not the published {WEIGHTS_FILE}: its MD5 is "
                         f"{digest.hexdigest()}, Keras expects {WEIGHTS_MD5}. The download was probably cut off: "
                         f"delete it and download {WEIGHTS_URL} again.")


# ---------------------------------------------------------------------------------------------
# Reading one image
# ---------------------------------------------------------------------------------------------

def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grayscale image to 0..255."""
    pixels = np.nan_to_num(pixels.astype(np.float64))
    if mode.startswith("I;16") or (mode == "I" and pixels.max() > 255):
        pixels = pixels / 257.0  # 0..65535 -> 0..255
    elif mode == "F" and pixels.min() >= 0 and pixels.max() <= 1:
        pixels = pixels * 255.0  # 0..1 -> 0..255
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparent pixels become white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = Image.fromarray(_to_uint8(np.asarray(image), image.mode), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return image.convert("RGB")


def _read_rgb(path: Path) -> Image.Image:
    """Decode an image file, upright (EXIF orientation applied), as RGB; ImageError if it can't be."""
    if not path.is_file():
        raise ImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageError(path, "the file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that truncated data fails here (LOAD_TRUNCATED_IMAGES stays False)
            return _to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise ImageError(path, f"refused as a possible decompression bomb ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise ImageError(path, f"not an image format Pillow can read (is it really a {path.suffix} file?)") from error
    except (OSError, SyntaxError, EOFError) as error:  # how Pillow reports damaged data
        raise ImageError(path, f"truncated or damaged image data ({error or type(error).__name__})") from error
    except Exception as error:  # anything else Pillow cannot make sense of (e.g. an unusual mode)
        raise ImageError(path, f"cannot decode it ({type(error).__name__}: {error})") from error


def load_image(path: str | Path, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Read an image as Xception expects it: RGB, image_size x image_size, float32 in [-1, 1]."""
    from keras.applications.xception import preprocess_input

    rgb = _read_rgb(Path(path)).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return preprocess_input(np.asarray(rgb, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Features and their cache
# ---------------------------------------------------------------------------------------------

@dataclass
class FeatureSet:
    """One feature vector per image name, the images that could not be read, and the encoder settings."""

    features: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """The features of `names` stacked in that order: shape (len(names), 2048) (or maps), float32."""
        missing = [name for name in names if name not in self.features]
        if missing:
            shown = ", ".join(f"{n} ({self.failed[n]})" if n in self.failed else n for n in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise KeyError(f"No features for {len(missing)} image(s): {shown}{more}. "
                           "Run extract_features on them (images that cannot be read have none).")
        if not names:
            return np.zeros((0, self.meta.get("feature_dim", FEATURE_DIM)), dtype=np.float32)
        return np.stack([self.features[name] for name in names]).astype(np.float32, copy=False)


def _write_cache(cache_path: Path, data: FeatureSet) -> None:
    """Save atomically (temporary file in the same folder, then rename): never half a cache."""
    names = sorted(data.features)
    failed = sorted(data.failed)
    dim, dtype = data.meta.get("feature_dim", FEATURE_DIM), _meta(data.meta, "dtype")
    empty = (0, dim) if _meta(data.meta, "pooling") == "avg" else (0, 0, 0, dim)
    arrays = {
        "names": np.array(names, dtype=str),
        "features": np.stack([data.features[n] for n in names]).astype(dtype) if names
        else np.zeros(empty, dtype=dtype),
        "failed_names": np.array(failed, dtype=str),
        "failed_reasons": np.array([data.failed[n] for n in failed], dtype=str),
        "meta": np.array(json.dumps(data.meta)),
    }
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:  # a file object, so that numpy does not append ".npz"
            np.savez(file, **arrays)
        os.replace(tmp, cache_path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_cache(cache_path: Path) -> FeatureSet:
    """Read a cache file; CorruptCacheError if it is not one."""
    try:
        with open(cache_path, "rb") as file:
            if file.read(4) != b"PK\x03\x04":
                raise ValueError("it is not an .npz (zip) archive")
            file.seek(0)
            with np.load(file, allow_pickle=False) as npz:
                names, features = npz["names"], npz["features"]
                failed_names, failed_reasons = npz["failed_names"], npz["failed_reasons"]
                meta = json.loads(str(npz["meta"]))
        if (not isinstance(meta, dict) or features.ndim != (2 if _meta(meta, "pooling") == "avg" else 4)
                or len(names) != len(features) or features.shape[-1] != meta.get("feature_dim")
                or len(failed_names) != len(failed_reasons)):
            raise ValueError("its arrays do not fit together")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptCacheError(cache_path, f"{type(error).__name__}: {error}") from error
    features = features.astype(_meta(meta, "dtype"), copy=False)
    return FeatureSet(features={str(n): row for n, row in zip(names, features)},
                      failed={str(n): str(r) for n, r in zip(failed_names, failed_reasons)}, meta=meta)


def load_features(cache_path: Path) -> FeatureSet:
    """Load features that extract_features cached."""
    cache_path = Path(cache_path)
    if not cache_path.is_file():
        raise FileNotFoundError(f"No feature cache at {cache_path}: run `python -m helpers features` "
                                "or notebook 03 first (with the same encoder settings and work folder).")
    return _read_cache(cache_path)


def cache_meta(cache_path: Path) -> dict:
    """The encoder settings a cache was written with, without loading its features."""
    try:
        with np.load(cache_path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptCacheError(Path(cache_path), f"{type(error).__name__}: {error}") from error
    return meta


def _open_cache(cache_path: Path, settings: dict) -> FeatureSet:
    """The cache to extend: empty if there is none, moved aside if corrupt, an error if stale."""
    if not cache_path.exists():
        return FeatureSet(meta=settings)
    try:
        cached = _read_cache(cache_path)
    except CorruptCacheError as error:
        aside = cache_path.with_name(cache_path.name + ".corrupt")
        os.replace(cache_path, aside)
        warnings.warn(f"{cache_path} is not a readable feature cache ({error.reason}): moved it aside to "
                      f"{aside.name} and starting over.", stacklevel=3)
        return FeatureSet(meta=settings)
    differences = [f"{key} {_meta(cached.meta, key)!r} in the cache, {_meta(settings, key)!r} asked for"
                   for key in {**settings, **META_DEFAULTS} if _meta(cached.meta, key) != _meta(settings, key)]
    if differences:
        raise StaleCacheError(
            f"{cache_path} holds features for other encoder settings ({'; '.join(differences)}). Delete it, or "
            f"use another cache path: feature_cache_name() gives one per setting, e.g. "
            f"{feature_cache_name(settings['weights'], settings['image_size'], _meta(settings, 'pooling'))}.")
    return cached


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

def _index_by_name(image_paths: Iterable[str | Path]) -> dict[str, Path]:
    """Image file name -> path; two different files with the same name are an error."""
    if isinstance(image_paths, (str, Path)):
        raise TypeError("image_paths must be a list of paths, not a single path")
    by_name: dict[str, Path] = {}
    for path in map(Path, image_paths):
        seen = by_name.setdefault(path.name, path)
        if seen != path and seen.resolve() != path.resolve():
            raise ValueError(f"Two images share the file name {path.name!r}: {seen} and {path}. "
                             "Features are cached by file name: rename one of them.")
    return by_name


def _batches_to_encode(names: list[str], cache: FeatureSet, paths: dict[str, Path],
                       batch_size: int) -> list[list[str]]:
    """Fixed slices of the sorted names that still hold an image without features.

    The slices never move, so a resumed run batches every image exactly as a clean run does
    (the encoder's results can differ in the last bits with the batch). A slice whose only missing
    images failed before is skipped if they still cannot be read (checked without the encoder).
    """
    todo = []
    for start in range(0, len(names), batch_size):
        batch = names[start:start + batch_size]
        missing = [name for name in batch if name not in cache.features]
        if missing and not all(_still_fails(name, cache, paths) for name in missing):
            todo.append(batch)
    return todo


def _still_fails(name: str, cache: FeatureSet, paths: dict[str, Path]) -> bool:
    """Whether an image that failed before still cannot be read (its reason is updated)."""
    if name not in cache.failed:
        return False
    try:
        _read_rgb(paths[name])
    except ImageError as error:
        cache.failed[name] = error.reason
        return True
    return False


def _image_batches(paths: list[Path], image_size: int, batch_size: int):
    """tf.data pipeline: decode in parallel (in order), batch, prefetch; yields (pixels, reasons)."""
    import tensorflow as tf

    def read(path: bytes) -> tuple[np.ndarray, bytes]:
        try:
            return load_image(os.fsdecode(path), image_size), b""
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


def _progress_bar(total: int, enabled: bool):
    """tqdm bar over images; off when enabled is False or TQDM_DISABLE is set.

    (tqdm reads TQDM_DISABLE itself, but only when it is imported, and its notebook bar ignores it.)
    """
    disabled = not enabled or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    if disabled:  # the plain bar: tqdm.auto would warn about a missing ipywidgets for nothing
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(total=total, unit="img", desc="Xception features", disable=disabled)


def _warn_failed(failed: dict[str, str], total: int) -> None:
    """One line: how many images could not be read, and the first few with their reasons."""
    if failed:
        shown = "; ".join(f"{name}: {reason}" for name, reason in sorted(failed.items())[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        warnings.warn(f"{len(failed)} of {total} images could not be read and have no features "
                      f"({shown}{more}).", stacklevel=3)


def extract_features(image_paths: Sequence[Path], cache_path: Path, weights: str = "none",
                     image_size: int = IMAGE_SIZE, batch_size: int = 32, progress: bool = True,
                     encoder: keras.Model | None = None,
                     checkpoint_seconds: float = CHECKPOINT_SECONDS, pooling: str = "avg") -> FeatureSet:
    """Xception features of every image, keyed by file name: cached ones are reused, the others computed.

    The cache is saved every `checkpoint_seconds` and when the run stops (even by Ctrl-C), so a rerun
    only encodes what is left. `encoder` (built by build_encoder with the same weights) saves a rebuild.
    pooling="none": the (10, 10, 2048) feature map of each image instead, stored as float16.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    paths = _index_by_name(image_paths)
    names = sorted(paths)
    cache_path = Path(cache_path)
    cache = _open_cache(cache_path, _settings(weights, image_size, pooling))
    batches = _batches_to_encode(names, cache, paths, batch_size)
    if batches:
        encoder = encoder if encoder is not None else build_encoder(weights, image_size, pooling=pooling)
        _encode(batches, paths, cache, cache_path, encoder, image_size, batch_size, progress, checkpoint_seconds)
    result = FeatureSet(features={n: cache.features[n] for n in names if n in cache.features},
                        failed={n: cache.failed[n] for n in names if n in cache.failed and n not in cache.features},
                        meta=dict(cache.meta))
    _warn_failed(result.failed, len(names))
    return result


def _encode(batches: list[list[str]], paths: dict[str, Path], cache: FeatureSet, cache_path: Path,
            encoder: keras.Model, image_size: int, batch_size: int, progress: bool,
            checkpoint_seconds: float) -> None:
    """Run the encoder over the batches, adding to `cache` and saving it as it goes."""
    expected = encoder.input_shape[1:3]
    if None not in expected and tuple(expected) != (image_size, image_size):
        raise ValueError(f"The encoder takes {expected[0]}x{expected[1]} images, not {image_size}x{image_size}: "
                         f"build it with build_encoder(weights, image_size={image_size}).")
    pooling = _meta(cache.meta, "pooling")
    output_shape = getattr(encoder, "output_shape", None)  # (wrappers of an encoder may not say)
    if output_shape is not None and len(output_shape) != (2 if pooling == "avg" else 4):
        raise ValueError(f"The encoder outputs {output_shape}, not what pooling={pooling!r} stores: "
                         f"build it with build_encoder(weights, image_size, pooling={pooling!r}).")
    pipeline = _image_batches([paths[n] for batch in batches for n in batch], image_size, batch_size)
    bar = _progress_bar(sum(map(len, batches)), progress)
    last_save, unsaved = time.monotonic(), False
    try:
        for batch, (pixels, reasons) in zip(batches, pipeline, strict=True):
            vectors = np.asarray(encoder.predict_on_batch(pixels), dtype=_meta(cache.meta, "dtype"))
            for name, vector, reason in zip(batch, vectors, reasons.numpy()):
                if name in cache.features:  # computed before: keep it as it was
                    continue
                if reason:
                    cache.failed[name] = reason.decode()
                else:
                    cache.features[name] = vector
                    cache.failed.pop(name, None)
            unsaved = True
            bar.update(len(batch))
            if time.monotonic() - last_save >= checkpoint_seconds:
                _write_cache(cache_path, cache)
                last_save, unsaved = time.monotonic(), False
    finally:
        bar.close()
        if unsaved:  # also after Ctrl-C or an error: what was computed is kept
            _write_cache(cache_path, cache)
