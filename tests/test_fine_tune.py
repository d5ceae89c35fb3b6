"""End-to-end fine-tuning (`train --fine-tune`): which layers learn, the images and captions it trains on, that it
starts from the very encoder the cache was made with, and that the model it saves captions photos and evaluates
with the fine-tuned encoder."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from helpers import fine_tune
from helpers.encoders import ENCODERS, build_encoder, encoder_spec
from helpers.errors import SettingError
from helpers.images import load_image
from helpers.machinery import cli, fine_tune_stage, pipeline
from helpers.machinery.feature_cache import read_cache
from helpers.machinery.files import file_sha1
from helpers.machinery.paths import fixture_dir
from helpers.machinery.workspace import Workspace
from helpers.training import set_seed
from helpers.vocabulary import PAD_ID, RESERVED, Vocabulary

SIZE = 71  # small: fast (the offline default encoder, MobileNetV2 with its ImageNet weights, at 71 px)
pytestmark = [pytest.mark.slow,  # a minute or more in all: scheduled early (conftest.py)
              pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")]


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_only_the_last_block_learns_and_batch_norm_stays_frozen(name):
    spec = encoder_spec(name)
    encoder = build_encoder(name, "none", spec.min_size if name != "vgg16" else 32, pooling="avg")
    trainable = fine_tune.unfreeze_last_block(encoder, spec.fine_tune_after)
    names = [layer.name for layer in encoder.layers]
    start = names.index(spec.fine_tune_after) + 1
    for index, layer in enumerate(encoder.layers):
        expected = index >= start and not isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == expected, layer.name
    total = sum(int(np.prod(w.shape)) for w in encoder.weights)
    assert trainable == sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
    assert 0.05 * total < trainable < 0.9 * total, (trainable, total)


def test_five_captions_per_image_shifted_for_teacher_forcing():
    vocab = Vocabulary(RESERVED + ("a", "red", "ball", "box"), max_length=6)
    captions = {"one.jpg": ["a red ball", "a box"], "six.jpg": ["a ball"] * 5 + ["a red box"]}
    keys, inputs, targets = fine_tune.grouped_captions(captions, vocab, width=6)
    assert keys == ["one.jpg", "six.jpg"] and inputs.shape == targets.shape == (2, 5, 6)
    first = [vocab.decode(row) for row in inputs[0, :, 1:]]
    assert first == ["a red ball", "a box", "a red ball", "a box", "a red ball"]  # fewer than five: repeated
    assert all(vocab.decode(row[1:]) == "a ball" for row in inputs[1])  # more than five: the first five
    real = inputs[..., 1:] != PAD_ID
    np.testing.assert_array_equal(targets[..., :-1][real], inputs[..., 1:][real])  # the next word


def test_images_are_read_as_extraction_reads_them_and_augmented_repeatably():
    names = (fixture_dir() / "Flickr_8k.trainImages.txt").read_text().split()[:4]
    paths = [fixture_dir() / "Images" / n for n in names]
    ids = np.zeros((4, 5, 3), "int32")
    plain = next(iter(fine_tune.image_dataset(paths, ids, ids, "xception", SIZE, 4, augment=False, seed=0)))
    np.testing.assert_allclose(plain[0]["pixels"].numpy()[2], load_image(paths[2], SIZE), atol=1e-6)

    def augmented():
        set_seed(0)
        return [b[0]["pixels"].numpy() for b in fine_tune.image_dataset(paths, ids, ids, "xception", SIZE, 2,
                                                                          augment=True, seed=0)]
    first, again = augmented(), augmented()
    assert first[0].shape == (2, SIZE, SIZE, 3)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    plain_pixels = plain[0]["pixels"].numpy()
    for picture in np.concatenate(first):  # cropped and jittered: like none of the pictures as read
        assert all(np.abs(picture - original).mean() > 1e-3 for original in plain_pixels)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Workspace:
    """A small model fine-tuned on the fixture: two frozen epochs, then one with the encoder's last block learning."""
    out = str(tmp_path_factory.mktemp("fine_tune"))
    small = ["--image-size", str(SIZE), "--units", "32", "--out", out]
    assert cli.main(["prepare", "--out", out]) == 0
    assert cli.main(["features", *small[:2], "--out", out]) == 0
    assert cli.main(["train", "--epochs", "2", "--fine-tune", "--fine-tune-epochs", "1", *small]) == 0
    return Workspace(out)


def test_the_saved_encoder_is_the_fine_tuned_one_and_captions_photos(tuned):
    record = json.loads(tuned.model("model").record.read_text())
    history = json.loads(tuned.model("model").history.read_text())
    assert record["fine_tune"]["from_weights"] == "imagenet" and record["fine_tune"]["epochs_run"] == 1
    assert record["fine_tune"]["from_epoch"] == 3 and len(history["val_loss"]) == 3  # both stages' curve
    weights = tuned.root / record["weights"]
    assert weights.is_file() and file_sha1(weights)[:10] in weights.name
    assert list(tuned.root.glob("*.fine_tuning.keras")) == []  # the stage's checkpoint is not left behind
    cache = read_cache(tuned.path(f"mobilenet_v2_{record['weights']}_{SIZE}"))
    before = read_cache(tuned.path(f"mobilenet_v2_imagenet_{SIZE}"))  # the offline default: ImageNet weights
    key = next(iter(json.loads(tuned.path("captions.json").read_text())["test"]))
    assert key in cache and not np.allclose(cache[key], before[key], rtol=0.01, atol=0)  # the new encoder's
    result = pipeline.evaluate(tuned)
    photo = fixture_dir() / "Images" / key
    captions, failed = pipeline.caption_files(tuned, [photo])
    assert not failed and captions[str(photo)] == result["captions"][key]  # photo -> fine-tuned encoder -> words


def test_stage_two_starts_from_the_encoder_the_cache_was_made_with(tmp_path):
    out = str(tmp_path)
    assert cli.main(["prepare", "--out", out]) == 0
    assert cli.main(["features", "--image-size", str(SIZE), "--out", out]) == 0
    cached = read_cache(tmp_path / f"mobilenet_v2_imagenet_{SIZE}")
    keys = sorted(cached)[:4]
    encoder = build_encoder("mobilenet_v2", "imagenet", SIZE, pooling="avg")
    pixels = np.stack([load_image(fixture_dir() / "Images" / k, SIZE, "mobilenet_v2") for k in keys])
    np.testing.assert_allclose(encoder.predict(pixels, verbose=0), cached.stack(keys), rtol=1e-3, atol=1e-4)


def test_refused_choices_say_what_to_do(tmp_path, capsys):
    out = str(tmp_path)
    assert cli.main(["prepare", "--out", out]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    assert cli.main(["train", "--decoder", "attention", "--fine-tune", "--out", out]) == 2
    assert "--fine-tune trains the merge or inject decoder" in capsys.readouterr().err
    assert cli.main(["train", "--encoder", "vgg16", "--fine-tune", "--out", out]) == 2
    assert "vgg16_none_224: run `python -m helpers features`" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_fine_tuned_model_is_not_fine_tuned_again(tuned):
    with pytest.raises(SettingError, match="is fine-tuned already"):
        fine_tune_stage.fine_tune(tuned)


def test_fine_tuning_into_another_name_leaves_stage_one_as_it_was(tuned):
    assert cli.main(["train", "--model", "frozen", "--epochs", "2", "--units", "32", "--image-size", str(SIZE),
                     "--out", str(tuned.root)]) == 0
    frozen = tuned.model("frozen")
    before = {path: path.read_bytes() for path in (frozen.keras, frozen.record, frozen.history)}
    stale = tuned.root / "copy_encoder_0123456789.weights.h5"  # what an earlier run of the same cell left
    stale.write_bytes(b"an earlier fine-tuning's encoder")
    fine_tune_stage.fine_tune(tuned, "frozen", epochs=1, save_as="copy", verbose=0)
    assert {path: path.read_bytes() for path in before} == before
    record = json.loads(tuned.model("copy").record.read_text())
    history = json.loads(tuned.model("copy").history.read_text())
    assert record["fine_tune"]["from_epoch"] == 3 and len(history["val_loss"]) == 3
    assert history["val_loss"][:2] == json.loads(before[frozen.history])["val_loss"]
    assert [p.name for p in tuned.root.glob("copy_encoder_*.weights.h5")] == [record["weights"]]  # stale: gone
    assert pipeline.load_trained(tuned, "copy")[2]["weights_source"] == str(tuned.root / record["weights"])


def test_fine_tuning_does_not_change_the_model_others_have_loaded(tuned):
    """Models are loaded once and shared: fine-tuning must train a copy, not the shared one."""
    import keras

    tuned.copy_model("model", "shared")
    shared, _, _ = pipeline.load_trained(tuned, "shared")
    before = [w.copy() for w in shared.get_weights()]
    copy, _, _ = pipeline.load_trained(tuned, "shared", to_train=True)
    assert copy is not shared and pipeline.load_trained(tuned, "shared")[0] is shared
    copy.get_layer("next_word").kernel.assign(np.zeros(copy.get_layer("next_word").kernel.shape))
    assert all(np.array_equal(a, b) for a, b in zip(before, shared.get_weights(), strict=True))
    assert isinstance(copy, keras.Model)
