"""The encoder registry: each CNN's preprocessing matches Keras', offline ImageNet weights fail helpfully, and
untrained encoders are seeded without touching the global random state."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.encoders import ENCODERS, build_encoder, check_image_size, encoder_spec, verify_weights_file
from helpers.errors import SettingError, WeightsError

SIZE = 71


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_preprocessing_is_what_keras_applications_do(name):
    spec = ENCODERS[name]
    module = {"xception": "xception", "vgg16": "vgg16", "resnet50": "resnet", "inception_v3": "inception_v3",
              "mobilenet_v2": "mobilenet_v2"}[name]
    keras_preprocess = importlib.import_module(f"keras.applications.{module}").preprocess_input
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(spec.preprocess(pixels), keras_preprocess(pixels.copy()), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(n for n, spec in ENCODERS.items() if not spec.shipped))
def test_weights_url_and_hash_are_the_ones_keras_downloads(name):
    spec = ENCODERS[name]
    module = "resnet" if name == "resnet50" else name
    source = Path(importlib.import_module(f"keras.src.applications.{module}").__file__)
    text = source.read_text(encoding="utf-8")
    assert spec.weights_md5 in text and "_weights_tf_dim_ordering_tf_kernels_notop.h5" in text
    assert spec.weights_url.endswith(f"/{spec.weights_file}") and spec.weights_file.startswith(name)


def test_unknown_encoder_lists_the_valid_ones():
    with pytest.raises(SettingError, match="Unknown encoder 'alexnet': choose one of xception, vgg16, resnet50"):
        encoder_spec("alexnet")


def test_too_small_an_image_is_refused_with_the_range():
    with pytest.raises(SettingError, match="xception needs images of at least 71 x 71 pixels, not 32"):
        check_image_size(ENCODERS["xception"], 32)


def test_shipped_weights_are_in_the_package_with_their_hash():
    spec = ENCODERS["mobilenet_v2"]
    path = Path(spec.weights_url)
    assert path.is_file() and path.name == spec.weights_file
    verify_weights_file(spec, path)  # its MD5 is the recorded one
    assert (path.parent / "LICENSE").is_file()
    assert "tools/convert_mobilenet_v2.py" in (path.parent / "NOTICE").read_text(encoding="utf-8")


@pytest.mark.parametrize("name, grid", [("xception", (3, 3, 2048)), ("vgg16", (2, 2, 512)),
                                        ("resnet50", (3, 3, 2048)), ("inception_v3", (1, 1, 2048)),
                                        ("mobilenet_v2", (3, 3, 1280))])
def test_untrained_encoders_give_their_feature_sizes(name, grid):
    size = max(ENCODERS[name].min_size, SIZE) + (4 if name == "inception_v3" else 0)
    vector = build_encoder(name, "none", image_size=size)
    assert vector.output_shape == (None, ENCODERS[name].feature_dim)
    assert build_encoder(name, "none", image_size=size, pooling="none").output_shape == (None, *grid)


def test_untrained_encoder_is_seeded_and_leaves_the_global_random_state_alone():
    import random

    np.random.seed(123)
    random.seed(123)
    expected = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    first = build_encoder("xception", "none", image_size=SIZE, seed=0)
    assert (np.random.random(), random.random()) == expected  # the caller's streams did not move
    second = build_encoder("xception", "none", image_size=SIZE, seed=0)
    other = build_encoder("xception", "none", image_size=SIZE, seed=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(first.predict_on_batch(x), second.predict_on_batch(x))
    assert not np.array_equal(first.predict_on_batch(x), other.predict_on_batch(x))


def test_imagenet_weights_offline_say_how_to_get_them(monkeypatch):
    from keras.src.utils import file_utils

    url = ENCODERS["xception"].weights_url

    def no_network(*args, **kwargs):
        raise Exception(f"URL fetch failure on {url}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(WeightsError) as caught:
        build_encoder("xception", "imagenet", image_size=SIZE)
    message = str(caught.value)
    assert url in message and "--weights PATH" in message and "--weights none" in message
    assert ".keras" in message and "models" in message


def test_weights_files_missing_damaged_or_cut_off_are_named(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.h5"):
        build_encoder("xception", tmp_path / "nowhere.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="junk.h5 is not a weights file for Xception"):
        build_encoder("xception", junk, image_size=SIZE)
    spec = ENCODERS["xception"]
    partial = tmp_path / spec.weights_file
    partial.write_bytes(b"\x89HDF half a download")
    with pytest.raises(WeightsError, match="is not the published .* download was probably cut off"):
        verify_weights_file(spec, partial)


def test_weights_from_a_local_file(tmp_path):
    encoder = build_encoder("xception", "none", image_size=SIZE, seed=3)
    encoder.save_weights(tmp_path / "mine.weights.h5")
    loaded = build_encoder("xception", tmp_path / "mine.weights.h5", image_size=SIZE)
    x = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), encoder.predict_on_batch(x))


def test_importing_the_encoder_registry_does_not_import_tensorflow():
    code = ("import sys, helpers.encoders, helpers.images, helpers.machinery.feature_cache; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
