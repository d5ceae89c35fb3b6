"""The pretrained CNN encoders the course can use (notebook 03), and how each is built: Xception (the course's
encoder on Flickr8k), MobileNetV2 (ImageNet weights that ship with the course: the offline default), VGG16, ResNet50,
InceptionV3. Notebook 03 teaches them.

    encoder = build_encoder("xception", weights="imagenet")        # image batch (B, 299, 299, 3) -> (B, 2048)
    grids = build_encoder("mobilenet_v2", pooling="none")         # -> (B, 7, 7, 1280): one vector per cell
    choice = choose_encoder("auto", "auto", fixture=True)         # which encoder and weights "auto" means here

Each encoder has its own input size, its own pixel preprocessing (the one its ImageNet weights were trained
with) and its own feature size. `weights` is "imagenet" (downloaded once by Keras; for MobileNetV2 the file in
`helpers/weights/`, offline and online alike), "none" (random weights, seeded: the same architecture untrained)
or the path of a weights .h5 file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from helpers.errors import SettingError, WeightsError

if TYPE_CHECKING:  # TensorFlow takes seconds to import: load it only when an encoder is built
    import keras

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # converted by tools/convert_mobilenet_v2.py
AUTO = "auto"
PROBE_SECONDS = 5  # how long "auto" waits to learn whether Xception's ImageNet weights can be downloaded
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
    weights_md5: str  # the file_hash Keras checks its download against (or that of the shipped file)
    fine_tune_after: str  # `train --fine-tune` unfreezes the layers after this one: the network's last block
    shipped: bool = False  # its ImageNet weights_file ships in helpers/weights/: no download

    @property
    def weights_url(self) -> str:
        """Where the ImageNet weights (without the classifier) come from: Keras's download, or the shipped file."""
        if self.shipped:
            return str(SHIPPED_WEIGHTS_DIR / self.weights_file)
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
    EncoderSpec("mobilenet_v2", "MobileNetV2", 224, 32, 1280, "tf", "mobilenet_v2_imagenet_notop.weights.h5",
                "546c4b90d69c73bd410c715dba24030c", "block_15_add", shipped=True),
)}
DEFAULT_ENCODER = "xception"  # the course's encoder, where its ImageNet weights can be had
OFFLINE_ENCODER = "mobilenet_v2"  # where they cannot: ImageNet weights that ship with the course


@dataclass(frozen=True)
class EncoderChoice:
    """What "auto" settled on: the encoder, its weights, and one line saying why (empty when nothing was chosen)."""

    encoder: str
    weights: str
    note: str = ""


def choose_encoder(encoder: str = AUTO, weights: str | Path = AUTO, fixture: bool = False) -> EncoderChoice:
    """Resolve "auto" in the encoder and weights settings.

    encoder "auto": Xception with ImageNet weights where they can be had (in Keras's folder, or downloaded now);
    elsewhere, and always on the fixture (offline, in minutes on a CPU), MobileNetV2 with the shipped ImageNet
    weights. weights "auto": ImageNet weights, except for an encoder named on the fixture whose weights would
    need a download (untrained then, as the fixture never downloads).
    """
    if encoder != AUTO:
        spec = encoder_spec(encoder)
        if str(weights) != AUTO:
            return EncoderChoice(encoder, str(weights))
        if fixture and not spec.shipped and not weights_in_keras_folder(spec):
            return EncoderChoice(encoder, "none", f"{encoder} is UNTRAINED here (random weights: the fixture does "
                                                  "not download ImageNet weights; weights='imagenet' would).")
        return EncoderChoice(encoder, "imagenet")
    if str(weights) not in (AUTO, "imagenet"):
        return EncoderChoice(DEFAULT_ENCODER, str(weights))  # untrained or one's own Xception weights
    if not fixture and imagenet_weights_at_hand(DEFAULT_ENCODER):
        return EncoderChoice(DEFAULT_ENCODER, "imagenet")
    why = ("the fixture's default: no download, minutes on a CPU" if fixture else
           "Xception's ImageNet weights cannot be downloaded here; encoder='xception' names the file's address")
    return EncoderChoice(OFFLINE_ENCODER, "imagenet", f"Encoder: MobileNetV2 with ImageNet weights that ship with "
                                                      f"the course ({why}). Xception is the course's encoder on "
                                                      "Flickr8k where its weights can be downloaded.")


def size_note(name: str, weights: str | Path, image_size: int | None) -> str:
    """One line when trained weights are used at another size than they were trained at (allowed: the networks are
    convolutional, and small pictures are fast), else ""."""
    spec = encoder_spec(name)
    if weights_label(weights) == "none" or image_size in (None, spec.image_size):
        return ""
    scale = "smaller" if image_size < spec.image_size else "larger"
    return (f"Note: {spec.keras_class}'s weights were trained on {spec.image_size} x {spec.image_size} pictures; at "
            f"{image_size} x {image_size} things look {scale} to it than they did in training.")


def weights_in_keras_folder(spec: EncoderSpec) -> bool:
    """Whether Keras has downloaded this encoder's ImageNet weights before (it looks there first)."""
    return (keras_models_dir() / spec.weights_file).is_file()


@functools.cache
def imagenet_weights_at_hand(name: str) -> bool:
    """Whether an encoder's ImageNet weights are shipped, already downloaded, or can be downloaded now (once a
    process: an offline machine is asked once)."""
    spec = encoder_spec(name)
    if spec.shipped or weights_in_keras_folder(spec):
        return True
    try:  # a quiet look first: offline, Keras would print "Downloading data from ..." and then fail
        urllib.request.urlopen(urllib.request.Request(spec.weights_url, method="HEAD"), timeout=PROBE_SECONDS).close()
    except (OSError, ValueError):
        return False
    import keras

    try:
        keras.utils.get_file(spec.weights_file, spec.weights_url, cache_subdir="models", file_hash=spec.weights_md5)
    except Exception:  # Keras raises a bare Exception when the download fails
        return False
    return True


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
    if label == "imagenet" and spec.shipped:
        weights = shipped_weights(spec)
    elif label == "imagenet":
        try:
            return build(weights="imagenet", **options)
        except Exception as error:  # Keras raises a bare Exception when the download fails
            raise WeightsError(
                f"Could not get {spec.keras_class}'s ImageNet weights ({type(error).__name__}: {error}).\n"
                f"Without internet, fetch the file on another machine:\n  {spec.weights_url}\n"
                f"then either put it in {keras_models_dir()}/ (Keras finds it there), or pass its path "
                f"with --weights PATH (weights=PATH in Python).\n"
                f"Offline, --encoder mobilenet_v2 uses ImageNet weights that ship with the course; --weights none "
                f"runs {spec.keras_class} untrained.") from error
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


def shipped_weights(spec: EncoderSpec) -> Path:
    """The ImageNet weights file that ships with the course for this encoder; a WeightsError if it is missing."""
    path = SHIPPED_WEIGHTS_DIR / spec.weights_file
    if not path.is_file():
        raise WeightsError(f"{path} is missing: it ships with the course. Reinstall it (pip install -e . in a clone "
                           "of the repository), or restore the file with git checkout.")
    return path


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


def imagenet_classes(vectors: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
    """What MobileNetV2's ImageNet classifier (shipped beside its weights) makes of pooled MobileNetV2 vectors:
    for each vector, its `top` classes and their probabilities."""
    import keras

    classifier = keras.Sequential([keras.Input((ENCODERS[OFFLINE_ENCODER].feature_dim,)),
                                   keras.layers.Dense(len(imagenet_labels()), name="predictions")])
    classifier.load_weights(SHIPPED_WEIGHTS_DIR / "mobilenet_v2_imagenet_classifier.weights.h5")
    logits = np.asarray(classifier(np.asarray(vectors, np.float32)), np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = imagenet_labels()
    return [[(labels[i], float(row[i])) for i in np.argsort(-row)[:top]] for row in probabilities]


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1,001 class names of the shipped classifier, in its output order (0 is "background")."""
    return (SHIPPED_WEIGHTS_DIR / "imagenet_labels.txt").read_text(encoding="utf-8").splitlines()
