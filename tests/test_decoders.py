"""The three decoders (merge, init-inject, soft attention): shapes, logits, standardisation, the fused masked loss,
learning, saving, and their step decoders, which must agree with the whole model position by position."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy as to_numpy

from helpers.decoders import DECODERS, decoder_spec, step_decoder_for
from helpers.decoders.attention import build_attention_model, location_stats, pool_grids
from helpers.decoders.base import describe_shapes
from helpers.decoders.merge import build_merge_model
from helpers.errors import SettingError
from helpers.machinery.feature_cache import FeatureSet
from helpers.tutorial_baselines import build_prefix_model
from helpers.vocabulary import END_ID, PAD_ID, START_ID

VOCAB_SIZE, FEATURE_DIM, UNITS, GRID = 24, 8, 16, 3


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Like untrained Xception features: a large offset, tiny differences between images."""
    rng = np.random.default_rng(0)
    return (3.0 + 1e-5 * rng.normal(size=(12, FEATURE_DIM))).astype("float32")


@pytest.fixture(scope="module")
def grids() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(12, GRID, GRID, FEATURE_DIM)).astype("float32")


def images_for(name, vectors, grids):
    return grids if DECODERS[name].pooling == "none" else vectors


def build(name, vectors, grids, **options) -> keras.Model:
    """A small model of the decoder `name`, with what its registry entry learns from the train features."""
    keras.utils.set_random_seed(0)
    images = FeatureSet.from_arrays({str(i): image for i, image in enumerate(images_for(name, vectors, grids))})
    learnt = decoder_spec(name).statistics(images, list(images), 1)
    return decoder_spec(name).build(VOCAB_SIZE, feature_dim=FEATURE_DIM, units=UNITS, embedding_dim=UNITS,
                                    **learnt, **options)


def test_each_decoder_learns_its_standardisation_from_the_train_features(vectors, grids):
    vector_set = FeatureSet.from_arrays({str(i): v for i, v in enumerate(vectors)})
    np.testing.assert_array_equal(decoder_spec("merge").statistics(vector_set, ["1", "0"])["train_features"],
                                  vectors[[1, 0]])
    grid_set = FeatureSet.from_arrays({str(i): g for i, g in enumerate(grids)})
    learnt = decoder_spec("attention").statistics(grid_set, list(grid_set), 1)
    mean, variance = learnt["stats"]
    assert learnt["pool"] == 1 and mean.shape == variance.shape == (GRID * GRID, FEATURE_DIM)
    np.testing.assert_allclose(mean, grids.reshape(len(grids), -1, FEATURE_DIM).mean(axis=0), rtol=1e-5, atol=1e-6)


def batch(images):
    """Three captions of different lengths, padded to the longest: inputs and targets shifted by one."""
    captions = [[5, 6, 7], [8], [9, 10, 11, 12]]
    width = max(map(len, captions)) + 1
    inputs = np.full((3, width), PAD_ID, dtype="int32")
    targets = np.full((3, width), PAD_ID, dtype="int32")
    for row, words in enumerate(captions):
        inputs[row, : len(words) + 1] = [START_ID, *words]
        targets[row, : len(words) + 1] = [*words, END_ID]
    return {"image": images[:3], "caption": inputs}, targets


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_logits_for_every_position_of_any_length(name, vectors, grids):
    model = build(name, vectors, grids)
    images = images_for(name, vectors, grids)
    for length in (3, 7):
        out = to_numpy(model({"image": images[:2], "caption": np.full((2, length), 5, "int32")}, training=False))
        assert out.shape == (2, length, VOCAB_SIZE)
        assert not np.allclose(out.sum(-1), 1.0)  # logits, not probabilities: the loss applies the softmax
    assert model.get_layer("next_word").activation.__name__ == "linear"


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_loss_is_the_masked_cross_entropy_of_the_softmax(name, vectors, grids):
    model = build(name, vectors, grids)
    inputs, targets = batch(images_for(name, vectors, grids))
    loss = model.evaluate(inputs, targets, verbose=0)
    padded = {"image": inputs["image"], "caption": np.pad(inputs["caption"], ((0, 0), (0, 6)))}
    assert model.evaluate(padded, np.pad(targets, ((0, 0), (0, 6))), verbose=0) == pytest.approx(loss, rel=1e-5)
    probs = to_numpy(keras.ops.softmax(model(inputs, training=False), axis=-1))
    real = targets != PAD_ID
    p_target = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    assert loss == pytest.approx(-np.log(p_target[real]).mean(), rel=1e-4)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_few_training_steps_lower_the_loss(name, vectors, grids):
    model = build(name, vectors, grids, dropout=0.0, learning_rate=1e-2)
    inputs, targets = batch(images_for(name, vectors, grids))
    before = model.evaluate(inputs, targets, verbose=0)
    model.fit(inputs, targets, epochs=30, batch_size=3, verbose=0)
    assert model.evaluate(inputs, targets, verbose=0) < 0.5 * before


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_step_decoder_matches_the_whole_model(name, vectors, grids):
    """Run one caption through the step decoder word by word: the logits equal the full model's at each position."""
    model = build(name, vectors, grids)
    images = images_for(name, vectors, grids)[:2]
    caption = np.array([[START_ID, 5, 9, 7], [START_ID, 8, 8, 6]], dtype="int32")
    full = to_numpy(model({"image": images, "caption": caption}, training=False))
    decoder = step_decoder_for(model)
    memory, state = decoder.start(images)
    for t in range(caption.shape[1]):
        logits, state, weights = decoder.step(memory, caption[:, t], state)
        np.testing.assert_allclose(to_numpy(logits), full[:, t], rtol=1e-4, atol=1e-4)
        expected_locations = GRID * GRID if name == "attention" else 0
        assert tuple(weights.shape) == (2, expected_locations)
        if expected_locations:
            np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["merge", "inject"])
def test_normalization_standardises_the_train_features(name, vectors, grids):
    standardised = to_numpy(build(name, vectors, grids).get_layer("normalize")(vectors))
    # float32 holds 3.0 only to about 2e-7, a few percent of these features' spread: close, not exact.
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=0.05)


def test_location_stats_stream_in_chunks(grids):
    mean, variance = location_stats(dict(enumerate(grids)), chunk=5)
    flat = grids.reshape(len(grids), -1, FEATURE_DIM).astype("float64")
    assert mean.shape == (GRID * GRID, FEATURE_DIM)
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-5)
    np.testing.assert_allclose(variance, flat.var(0), atol=1e-4)


def test_grid_pooling_attends_to_the_averaged_blocks():
    """A 4 x 4 grid pooled 2 x 2 is a 2 x 2 grid of block means: the same model as one fed those means directly."""
    grids4 = np.random.default_rng(2).normal(size=(6, 4, 4, FEATURE_DIM)).astype("float32")
    blocks = pool_grids(grids4, 2)
    np.testing.assert_allclose(blocks[0, 1, 0], grids4[0, 2:4, 0:2].mean(axis=(0, 1)), atol=1e-6)
    stats = location_stats(dict(enumerate(grids4)), pool=2)
    np.testing.assert_allclose(stats[0], blocks.reshape(6, 4, FEATURE_DIM).mean(0), atol=1e-5)
    models = []
    for pool, stats_of in ((2, grids4), (1, blocks)):
        keras.utils.set_random_seed(0)
        models.append(build_attention_model(VOCAB_SIZE, location_stats(dict(enumerate(stats_of)), pool=pool),
                                            feature_dim=FEATURE_DIM, units=UNITS, embedding_dim=UNITS, pool=pool))
    caption = np.array([[START_ID, 5, 9], [START_ID, 8, 6]], dtype="int32")
    pooled = to_numpy(models[0]({"image": grids4[:2], "caption": caption}, training=False))
    direct = to_numpy(models[1]({"image": blocks[:2], "caption": caption}, training=False))
    np.testing.assert_allclose(pooled, direct, rtol=1e-4, atol=1e-4)
    decoder = step_decoder_for(models[0])
    memory, state = decoder.start(grids4[:2])
    logits, _, weights = decoder.step(memory, caption[:, 0], state)
    assert tuple(weights.shape) == (2, 4)
    np.testing.assert_allclose(to_numpy(logits), pooled[:, 0], rtol=1e-4, atol=1e-4)
    with pytest.raises(SettingError, match="cannot be pooled in blocks of 3"):
        location_stats(dict(enumerate(grids4)), pool=3)


def test_describe_shapes_follows_the_data_through_the_layers(vectors, grids):
    shapes = describe_shapes(build("merge", vectors, grids), batch_size=2, length=5)
    assert shapes["image_dense"] == (2, UNITS) and shapes["lstm"] == (2, 5, UNITS)
    assert shapes["merge"] == (2, 5, UNITS) and shapes["next_word"] == (2, 5, VOCAB_SIZE)
    attention = describe_shapes(build("attention", vectors, grids), batch_size=2, length=5)
    assert attention["locations"][1] == GRID * GRID and attention["attention"] == (2, 5, FEATURE_DIM)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_saved_model_loads_where_helpers_is_not_imported(name, vectors, grids, tmp_path):
    """Nothing custom in the file: `python -m helpers evaluate` or a fresh notebook can load it."""
    model = build(name, vectors, grids)
    inputs, _ = batch(images_for(name, vectors, grids))
    np.save(tmp_path / "image.npy", inputs["image"])
    np.save(tmp_path / "caption.npy", inputs["caption"])
    np.save(tmp_path / "expected.npy", to_numpy(model(inputs, training=False)))
    model.save(tmp_path / "model.keras")
    code = (f"import sys, numpy as np, keras; m = keras.models.load_model({str(tmp_path / 'model.keras')!r}, "
            f"safe_mode=True); x = {{'image': np.load('image.npy'), 'caption': np.load('caption.npy')}}; "
            "np.testing.assert_allclose(m(x, training=False), np.load('expected.npy'), atol=1e-5); "
            "assert 'helpers' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_unknown_decoder_lists_the_valid_ones():
    with pytest.raises(SettingError, match="Unknown decoder 'transformer': choose one of merge, inject, attention"):
        decoder_spec("transformer")


def test_prefix_model_predicts_one_word_per_prefix(vectors):
    keras.utils.set_random_seed(0)
    model = build_prefix_model(VOCAB_SIZE, 6, vectors, feature_dim=FEATURE_DIM, units=UNITS, embedding_dim=UNITS,
                               dropout=0.0, learning_rate=1e-2)
    prefixes = np.array([[0, 0, 0, 0, 0, START_ID], [0, 0, 0, 0, START_ID, 5]], dtype="int32")
    inputs = {"image": vectors[:2], "prefix": prefixes}
    one_hot = np.eye(VOCAB_SIZE, dtype="float32")[[5, END_ID]]
    assert to_numpy(model(inputs, training=False)).shape == (2, VOCAB_SIZE)
    before = model.evaluate(inputs, one_hot, verbose=0)[0]  # [loss, accuracy]
    model.fit(inputs, one_hot, epochs=20, verbose=0)
    assert model.evaluate(inputs, one_hot, verbose=0)[0] < 0.5 * before


def test_a_feature_constant_on_the_train_images_is_not_blown_up(tmp_path):
    from helpers.decoders.base import VARIANCE_FLOOR, standardiser

    rng = np.random.default_rng(0)
    train = rng.normal(0, 2, (50, 8)).astype("float32")
    train[:, 3] = 0.0  # a unit that never fires on the train images
    dev = rng.normal(0, 2, (5, 8)).astype("float32")
    dev[:, 3] = 1.0  # and does on a dev image
    out = np.asarray(standardiser(train)(dev))
    np.testing.assert_allclose(np.asarray(standardiser(train)(train))[:, [0, 1, 2]].std(0), 1, rtol=1e-3)
    median_std = float(np.sqrt(np.median(train.var(0)[train.var(0) > 0])))
    np.testing.assert_allclose(out[:, 3], 1.0 / (np.sqrt(VARIANCE_FLOOR) * median_std), rtol=1e-3)
    assert np.abs(out).max() < 20  # the raw Normalization would give 1 / sqrt(1e-7): thousands
    model = build_merge_model(6, feature_dim=8, units=4, embedding_dim=4, train_features=train)
    path = tmp_path / "floored.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded.get_layer("normalize")(dev)), out, rtol=1e-5)  # kept when saved
