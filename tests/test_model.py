"""The merge model: shapes, feature standardisation, masked loss, learning, saving."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras.ops import convert_to_numpy as to_numpy

from helpers.model import build_merge_model, build_prefix_model, describe_shapes
from helpers.vocabulary import END_ID, PAD_ID, START_ID

VOCAB_SIZE, FEATURE_DIM, UNITS = 24, 8, 16


def tiny_model(train_features=None, **kwargs) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_merge_model(VOCAB_SIZE, train_features, feature_dim=FEATURE_DIM, units=UNITS, embedding_dim=UNITS, **kwargs)


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    """Like untrained Xception features: a large offset, tiny differences between images."""
    rng = np.random.default_rng(0)
    return (3.0 + 1e-5 * rng.normal(size=(12, FEATURE_DIM))).astype("float32")


@pytest.fixture(scope="module")
def batch(features):
    """Three captions of different lengths, padded to the longest: inputs and targets shifted by one."""
    captions = [[5, 6, 7], [8], [9, 10, 11, 12]]
    width = max(map(len, captions)) + 1
    inputs = np.full((3, width), PAD_ID, dtype="int32")
    targets = np.full((3, width), PAD_ID, dtype="int32")
    for row, words in enumerate(captions):
        inputs[row, : len(words) + 1] = [START_ID, *words]
        targets[row, : len(words) + 1] = [*words, END_ID]
    return {"image": features[:3], "caption": inputs}, targets


def test_output_has_one_distribution_per_step_for_any_length(features):
    model = tiny_model(features)
    for length in (3, 7):
        ids = np.full((2, length), 5, dtype="int32")
        out = to_numpy(model({"image": features[:2], "caption": ids}, training=False))
        assert out.shape == (2, length, VOCAB_SIZE)
        np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


def test_describe_shapes_follows_the_data_through_the_layers(features):
    shapes = describe_shapes(tiny_model(features), batch_size=2, length=5)
    assert shapes["image_dense"] == (2, UNITS)
    assert shapes["lstm"] == (2, 5, UNITS)
    assert shapes["merge"] == (2, 5, UNITS)
    assert shapes["next_word"] == (2, 5, VOCAB_SIZE)


def test_normalization_standardises_the_train_features(features):
    model = tiny_model(features)
    standardised = to_numpy(model.get_layer("normalize")(features))
    # float32 holds 3.0 only to about 2e-7, a few percent of these features' spread: close, not exact.
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=0.05)


def test_loss_ignores_padding(features, batch):
    model = tiny_model(features)
    inputs, targets = batch
    loss = model.evaluate(inputs, targets, verbose=0)
    padded = {"image": inputs["image"], "caption": np.pad(inputs["caption"], ((0, 0), (0, 6)))}
    assert model.evaluate(padded, np.pad(targets, ((0, 0), (0, 6))), verbose=0) == pytest.approx(loss, rel=1e-5)
    # The loss is the mean cross-entropy over the real target words only.
    probs = to_numpy(model(inputs, training=False))
    real = targets != PAD_ID
    p_target = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    assert loss == pytest.approx(-np.log(p_target[real]).mean(), rel=1e-4)


def test_a_few_training_steps_lower_the_loss(features, batch):
    model = tiny_model(features, dropout=0.0, learning_rate=1e-2)
    inputs, targets = batch
    before = model.evaluate(inputs, targets, verbose=0)
    model.fit(inputs, targets, epochs=30, batch_size=3, verbose=0)
    after = model.evaluate(inputs, targets, verbose=0)
    assert after < 0.5 * before


def test_saved_model_loads_in_safe_mode_with_identical_outputs(features, batch, tmp_path):
    model = tiny_model(features)
    inputs, targets = batch
    model.fit(inputs, targets, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_numpy(loaded(inputs, training=False)), to_numpy(model(inputs, training=False)))
    assert loaded.evaluate(inputs, targets, verbose=0) == pytest.approx(model.evaluate(inputs, targets, verbose=0))


def test_saved_model_loads_where_helpers_is_not_imported(features, tmp_path):
    """Nothing custom in the file: `python -m helpers evaluate` or a fresh notebook can load it."""
    path = tmp_path / "model.keras"
    model = tiny_model(features)
    model.save(path)
    code = f"import keras; m = keras.models.load_model({str(path)!r}, safe_mode=True); print(m.count_params())"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(model.count_params())


def test_prefix_model_predicts_one_word_per_prefix(features):
    keras.utils.set_random_seed(0)
    model = build_prefix_model(VOCAB_SIZE, 6, features, feature_dim=FEATURE_DIM, units=UNITS, embedding_dim=UNITS,
                               dropout=0.0, learning_rate=1e-2)
    prefixes = np.array([[0, 0, 0, 0, 0, START_ID], [0, 0, 0, 0, START_ID, 5]], dtype="int32")
    inputs = {"image": features[:2], "prefix": prefixes}
    one_hot = np.eye(VOCAB_SIZE, dtype="float32")[[5, END_ID]]
    assert to_numpy(model(inputs, training=False)).shape == (2, VOCAB_SIZE)
    before = model.evaluate(inputs, one_hot, verbose=0)[0]  # [loss, accuracy]
    model.fit(inputs, one_hot, epochs=20, verbose=0)
    assert model.evaluate(inputs, one_hot, verbose=0)[0] < 0.5 * before
