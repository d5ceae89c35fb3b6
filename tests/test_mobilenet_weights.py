"""The MobileNetV2 weights that ship with the course are Google's ImageNet ones: the tool that converts them from
the official TFLite file gives the shipped arrays (and the same bytes twice), the converted network names the
TFLite network's class on real photos, and its pooled features agree with the TFLite network's own; "auto" picks
it where Xception's weights cannot be had."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from helpers.encoders import (
    ENCODERS,
    SHIPPED_WEIGHTS_DIR,
    build_encoder,
    choose_encoder,
    imagenet_classes,
    imagenet_labels,
    size_note,
)
from helpers.errors import WeightsError
from helpers.machinery import cli
from helpers.machinery.paths import data_dir, fixture_dir

ROOT = Path(__file__).resolve().parents[1]
TFLITE = ROOT / "tests" / "data" / "mobilenet_v2_1.0_224_quant.tflite"
PHOTOS = {"cat.jpg": "Egyptian cat", "hot_dog.jpg": "hotdog, hot dog, red hot", "grace_hopper.jpg": "military uniform"}
TOOL = ROOT / "tools" / "convert_mobilenet_v2.py"
sys.path.insert(0, str(TOOL.parent))
convert = importlib.import_module("convert_mobilenet_v2")  # the tool itself, on the tests' side


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path inside it."""
    found = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return found


def pictures(paths: list[Path]) -> np.ndarray:
    """RGB 0..255 at 224 x 224, read as the course reads pictures (bilinear resize), uint8."""
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
                     for p in paths])


@pytest.fixture(scope="module")
def tflite():
    """Google's network with its own pooled activations readable: (classify, pooled) over uint8 pictures."""
    model = convert.interpreter(TFLITE)
    source, output = model.get_input_details()[0], model.get_output_details()[0]
    pool = next(t for t in model.get_tensor_details() if t["name"] == "MobilenetV2/Logits/AvgPool")

    def run(rgb: np.ndarray) -> tuple[int, np.ndarray]:
        model.set_tensor(source["index"], rgb[np.newaxis])
        model.invoke()
        scale, zero = pool["quantization"]
        return int(model.get_tensor(output["index"])[0].argmax()), \
            (model.get_tensor(pool["index"]).reshape(-1).astype(np.float64) - zero) * scale

    return run


def test_the_tool_gives_the_shipped_arrays_and_the_same_bytes_twice(tmp_path):
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        done = subprocess.run([sys.executable, str(TOOL), str(TFLITE), "--out", str(out)], capture_output=True,
                              text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    for name in (convert.ENCODER_FILE, convert.CLASSIFIER_FILE):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
        made, shipped = arrays(outs[0] / name), arrays(SHIPPED_WEIGHTS_DIR / name)
        assert made.keys() == shipped.keys() and len(made) > 1
        for key, array in made.items():
            assert array.dtype == np.float16
            np.testing.assert_array_equal(array, shipped[key], err_msg=key)
    assert (SHIPPED_WEIGHTS_DIR / convert.ENCODER_FILE).stat().st_size < 10 * 2**20


def test_the_tool_refuses_another_file(tmp_path):
    other = tmp_path / "other.tflite"
    data = bytearray(TFLITE.read_bytes())
    data[1000] ^= 1
    other.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, str(TOOL), str(other), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and "has SHA-256" in done.stderr and convert.TFLITE_SHA256 in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_converted_network_names_what_the_tflite_network_names(tflite):
    paths = [data_dir() / "photos" / name for name in PHOTOS]
    rgb = pictures(paths)
    vectors = build_encoder("mobilenet_v2", "imagenet").predict_on_batch(rgb.astype(np.float32) / 127.5 - 1)
    ours = imagenet_classes(vectors, top=1)
    labels = imagenet_labels()
    for path, picture, (label, probability) in zip(paths, rgb, (row[0] for row in ours), strict=True):
        theirs, _ = tflite(picture)
        assert label == labels[theirs] == PHOTOS[path.name], (path.name, label, labels[theirs])
        assert probability > 0.3


def cosines(encoder, rgb: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each picture's pooled vector from `encoder` with the TFLite network's."""
    ours = encoder.predict_on_batch(rgb.astype(np.float32) / 127.5 - 1).astype(np.float64)
    return (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)


def test_pooled_features_agree_with_the_tflite_network_and_a_wrong_mapping_would_not(tflite):
    """The measure: cosine similarity of the pooled 1,280 numbers. The converted network runs in float where the
    TFLite one rounds every activation to 8 bits, so they cannot be equal: on the fixture's synthetic pictures and
    the photos, the cosine is at least 0.97 (0.99 typical). One wrong piece of the mapping (two blocks' kernels
    swapped, the last project layer's folded bias dropped, the depthwise filters transposed) brings it to 0.6 or
    below for some picture: a floor of 0.95, and 0.98 for the median, catches each of them."""
    paths = sorted((fixture_dir() / "Images").glob("*.jpg"))[:16] + [data_dir() / "photos" / n for n in PHOTOS]
    rgb = pictures(paths)
    reference = np.stack([tflite(picture)[1] for picture in rgb])
    encoder = build_encoder("mobilenet_v2", "imagenet", pooling="avg")
    right = cosines(encoder, rgb, reference)
    assert right.min() >= 0.95 and np.median(right) >= 0.98, right

    first, second = encoder.get_layer("block_14_expand").kernel, encoder.get_layer("block_15_expand").kernel
    kept = first.numpy()
    first.assign(second.numpy())
    second.assign(kept)
    swapped = cosines(encoder, rgb, reference)
    assert swapped.min() < 0.95 and np.median(swapped) < 0.98, swapped


def test_imagenet_weights_build_offline_as_vector_and_grid(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise AssertionError("MobileNetV2's ImageNet weights must not be downloaded: they ship with the course")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    assert build_encoder("mobilenet_v2", "imagenet").output_shape == (None, 1280)
    assert build_encoder("mobilenet_v2", "imagenet", pooling="none").output_shape == (None, 7, 7, 1280)


def test_another_size_is_allowed_with_a_note(tmp_path, capsys):
    assert build_encoder("mobilenet_v2", "imagenet", image_size=96).output_shape == (None, 1280)
    assert "trained on 224 x 224 pictures; at 96 x 96 things look smaller" in size_note("mobilenet_v2", "imagenet", 96)
    assert size_note("mobilenet_v2", "imagenet", 224) == size_note("mobilenet_v2", "none", 96) == ""
    for _ in range(2):  # said every time the features are asked for, cached or not
        assert cli.main(["prepare", "--out", str(tmp_path)]) == 0
        assert cli.main(["features", "--image-size", "32", "--out", str(tmp_path)]) == 0
        assert "at 32 x 32 things look smaller to it" in capsys.readouterr().out


@pytest.mark.parametrize("other", ["xception", "mobilenet_v2 at width 0.5"])
def test_weights_of_another_network_are_refused(tmp_path, other):
    import keras

    if other == "xception":
        network = build_encoder("xception", "none", image_size=71)
    else:
        network = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.5, input_shape=(96, 96, 3))
    path = tmp_path / "other.weights.h5"
    network.save_weights(path)
    with pytest.raises(WeightsError, match="other.weights.h5 is not a weights file for MobileNetV2"):
        build_encoder("mobilenet_v2", path, image_size=96)


def test_auto_means_a_real_encoder_everywhere(monkeypatch):
    fixture = choose_encoder(fixture=True)
    assert (fixture.encoder, fixture.weights) == ("mobilenet_v2", "imagenet") and "ship with the course" in fixture.note
    monkeypatch.setattr("helpers.encoders.imagenet_weights_at_hand", lambda name: False)
    offline = choose_encoder(fixture=False)
    assert (offline.encoder, offline.weights) == ("mobilenet_v2", "imagenet") and "cannot be downloaded" in offline.note
    monkeypatch.setattr("helpers.encoders.imagenet_weights_at_hand", lambda name: True)
    assert choose_encoder(fixture=False) == choose_encoder("xception", "imagenet") == \
        type(fixture)("xception", "imagenet")
    monkeypatch.setattr("helpers.encoders.keras_models_dir", lambda: Path("/nowhere"))
    untrained = choose_encoder("xception", fixture=True)  # named on the fixture: as before, untrained
    assert (untrained.encoder, untrained.weights) == ("xception", "none") and "UNTRAINED" in untrained.note
    assert choose_encoder("xception", "none", fixture=True).note == ""
    assert choose_encoder(weights="none").encoder == "xception"
    assert ENCODERS["mobilenet_v2"].shipped and not ENCODERS["xception"].shipped


def test_offline_the_probe_for_xceptions_weights_is_quiet_and_keras_is_not_asked(monkeypatch, capsys):
    import urllib.request

    from keras.src.utils import file_utils

    from helpers import encoders

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("Keras was asked to download"))
    monkeypatch.setattr(encoders, "keras_models_dir", lambda: Path("/nowhere"))
    encoders.imagenet_weights_at_hand.cache_clear()
    try:
        assert encoders.imagenet_weights_at_hand("xception") is False
        assert encoders.imagenet_weights_at_hand("mobilenet_v2") is True  # shipped: nothing to ask
    finally:
        encoders.imagenet_weights_at_hand.cache_clear()
    assert capsys.readouterr().out == ""
