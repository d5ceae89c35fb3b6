"""The pretrained CNN encoders the course can use, and how each is built: Xception (the default), VGG16, ResNet50,
InceptionV3.

    encoder = build_encoder("xception", weights="imagenet")        # image batch (B, 299, 299, 3) -> (B, 2048)
    grids = build_encoder("xception", "none", pooling="none")     # -> (B, 10, 10, 2048): one vector per cell

Each encoder has its own input size, its own pixel preprocessing (the one its ImageNet weights were trained
with) and its own feature size. `weights` is "imagenet" (downloaded once by Keras), "none" (random weights,
seeded: the same architecture offline, for the fixture and CI) or the path of a weights .h5 file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helpers.errors import SettingError, WeightsError

if TYPE_CHECKING:  # TensorFlow takes seconds to import: load it only when an encoder is built
    import keras

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
POOLINGS = ("avg", "none")  # "avg": one vector per image; "none": the last feature map, a grid of vectors
IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class EncoderSpec:
    """One pretrained CNN: its Keras class, native input size, feature size, preprocessing and weights file."""

    name: str
    keras_class: str  # the class in keras.applications
    image_size: int  # the size its ImageNet weights were trained at
    min_size: int  # the smallest input Keras accepts
    feature_dim: int  # numbers per image (or per grid cell) after the last convolution
    preprocessing: str  # "tf": scale to [-1, 1]; "caffe": RGB -> BGR, minus the ImageNet mean
    weights_file: str
    weights_md5: str  # the file_hash Keras checks its download against
    fine_tune_after: str  # `train --fine-tune` unfreezes the layers after this one: the network's last block

    @property
    def weights_url(self) -> str:
        """Where Keras downloads the ImageNet weights (without the classifier) from."""
        folder = "resnet" if self.name.startswith("resnet") else self.name
        return f"{KERAS_WEIGHTS}{folder}/{self.weights_file}"

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """RGB pixels 0..255 (float32) -> this network's input, as keras.applications' preprocess_input does."""
        if self.preprocessing == "tf":
            return pixels / 127.5 - 1.0
        return pixels[..., ::-1] - IMAGENET_BGR_MEAN


ENCODERS = {spec.name: spec for spec in (
    EncoderSpec("xception", "Xception", 299, 71, 2048, "tf", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "b0042744bf5b25fce3cb969f33bebb97", "block12_sepconv3_bn"),
    EncoderSpec("vgg16", "VGG16", 224, 32, 512, "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "6d6bbae143d832006294945121d1f1fc", "block4_pool"),
    EncoderSpec("resnet50", "ResNet50", 224, 32, 2048, "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                "4d473c1dd8becc155b73f8504c6f6626", "conv4_block6_out"),
    EncoderSpec("inception_v3", "InceptionV3", 299, 75, 2048, "tf",
                "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "bcbd6486424b2319ff4ef7d526e38f63",
                "mixed9"),
)}
DEFAULT_ENCODER = "xception"


def encoder_spec(name: str) -> EncoderSpec:
    """The spec of an encoder by name; a SettingError listing the valid names otherwise."""
    if name not in ENCODERS:
        raise SettingError(f"Unknown encoder {name!r}: choose one of {', '.join(ENCODERS)}.")
    return ENCODERS[name]


def check_image_size(spec: EncoderSpec, image_size: int) -> int:
    """`image_size` if the encoder accepts it, else a SettingError with its range."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < spec.min_size:
        raise SettingError(f"{spec.name} needs images of at least {spec.min_size} x {spec.min_size} pixels, "
                           f"not {image_size!r} (its ImageNet weights were trained at {spec.image_size}).")
    return image_size


def check_pooling(pooling: str) -> str:
    """"avg" or "none", else a SettingError."""
    if pooling not in POOLINGS:
        raise SettingError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
    return pooling


def weights_label(weights: str | Path | None) -> str:
    """How a weights setting is recorded: "imagenet", "none", or the weights file's name."""
    if weights is None or str(weights).lower() == "none":
        return "none"
    if str(weights) == "imagenet":
        return "imagenet"
    return Path(weights).name


def keras_models_dir() -> Path:
    """Where Keras looks for (and downloads) pretrained weights."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def build_encoder(name: str = DEFAULT_ENCODER, weights: str | Path | None = "imagenet", image_size: int | None = None,
                  seed: int = 0, pooling: str = "avg") -> keras.Model:
    """A pretrained CNN without its classifier: an image batch in, one vector per image (or a grid) out.

    image_size defaults to the encoder's own (299 for Xception). pooling="none" keeps the last feature map:
    (10, 10, 2048) per 299x299 image for Xception. weights="none" gives random weights seeded with `seed`
    (a generator of its own: the global random state is left alone).
    """
    import keras

    spec = encoder_spec(name)
    image_size = check_image_size(spec, image_size or spec.image_size)
    build = getattr(keras.applications, spec.keras_class)
    options = dict(include_top=False, pooling=None if check_pooling(pooling) == "none" else pooling,
                   input_shape=(image_size, image_size, 3))
    label = weights_label(weights)
    if label == "none":
        return _seeded(lambda: build(weights=None, **options), seed)
    if label == "imagenet":
        try:
            return build(weights="imagenet", **options)
        except Exception as error:  # Keras raises a bare Exception when the download fails
            raise WeightsError(
                f"Could not get {spec.keras_class}'s ImageNet weights ({type(error).__name__}: {error}).\n"
                f"Without internet, fetch the file on another machine:\n  {spec.weights_url}\n"
                f"then either put it in {keras_models_dir()}/ (Keras finds it there), or pass its path "
                f"with --weights PATH (weights=PATH in Python).\n"
                f"To run without it (fixture/CI mode, untrained encoder): --weights none.") from error
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"Encoder weights file {path} does not exist. Download {spec.weights_url} "
                           "and pass its path, or use --weights imagenet or --weights none.")
    verify_weights_file(spec, path)
    try:
        return build(weights=str(path), **options)
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path} is not a weights file for {spec.keras_class} without its classifier "
                           f"({type(error).__name__}: {error}). Download {spec.weights_url} and pass its path."
                           ) from error


@functools.lru_cache(maxsize=2)
def shared_encoder(name: str, weights: str, image_size: int, seed: int = 0, pooling: str = "avg") -> keras.Model:
    """`build_encoder` once per setting in a process (the last two kept): later calls of `extract_features` reuse
    the model and its compiled predict function instead of building and tracing a new one."""
    return build_encoder(name, weights, image_size, seed, pooling)


def _seeded(build, seed: int):
    """Run `build` with Keras' initialisers seeded by `seed`, leaving every global random state as it was.

    A Keras initialiser without a seed draws one from Python's `random` module when it is made, so seeding that
    module, and putting its state back afterwards, makes the weights repeatable without side effects.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        return build()
    finally:
        random.setstate(state)


def verify_weights_file(spec: EncoderSpec, path: Path) -> None:
    """A file named like Keras' published weights must have their MD5 (a partial download does not)."""
    if path.name != spec.weights_file:
        return  # weights of one's own (fine-tuned, converted): nothing published to compare with
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec.weights_md5:
        raise WeightsError(f"{path} ({path.stat().st_size:,} bytes) is not the published {spec.weights_file}: its "
                           f"MD5 is {digest.hexdigest()}, Keras expects {spec.weights_md5}. The download was probably "
                           f"cut off: delete it and download {spec.weights_url} again.")
