"""The soft-attention decoder: shapes, weights, loss, training, saving, decoding, and the spatial feature cache."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers.attention import (AttentionStepDecoder, attention_captions, attention_decode, attention_maps,
                               build_attention_model, channel_stats)
from helpers.features import extract_features, feature_cache_name, load_features
from helpers.training import make_dataset, set_seed
from helpers.vocabulary import Vocabulary

DIM, GRID = 16, 3
CAPTIONS = {"red.png": ["a red ball on the left", "red ball on the left"],
            "blue.png": ["a blue ball on the right", "blue ball on the right"]}


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.build([c for caps in CAPTIONS.values() for c in caps])


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=(GRID, GRID, DIM)).astype("float16") for name in CAPTIONS}


def small_model(vocab, maps, **options):
    set_seed(0)
    options = {"dropout": 0.0, "learning_rate": 1e-2, **options}
    return build_attention_model(len(vocab), train_maps=maps, feature_dim=DIM, units=8, embedding_dim=8, **options)


def test_shapes_and_weights_sum_to_one(vocab, maps):
    model = small_model(vocab, maps)
    batch = {"image": np.stack(list(maps.values())).astype("float32"), "caption": np.array([[2, 5, 6, 0]] * 2)}
    assert tuple(model(batch).shape) == (2, 4, len(vocab))
    decoder = AttentionStepDecoder(model)
    memory, state = decoder.start(batch["image"])
    assert tuple(memory[0].shape) == (2, GRID * GRID, DIM) and tuple(memory[1].shape) == (2, GRID * GRID, 8)
    probs, state, weights = decoder.step(memory, np.array([2, 2]), state)
    assert tuple(probs.shape) == (2, len(vocab)) and tuple(weights.shape) == (2, GRID * GRID)
    np.testing.assert_allclose(weights.numpy().sum(axis=-1), 1.0, atol=1e-5)


def test_channel_stats_standardise_every_channel(maps):
    mean, variance = channel_stats(maps)
    flat = np.stack(list(maps.values())).reshape(-1, DIM).astype("float64")
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-5)
    np.testing.assert_allclose(variance, flat.var(0), atol=1e-4)


def test_padding_does_not_count_in_the_loss(vocab, maps):
    model = small_model(vocab, maps)
    image = np.stack(list(maps.values())).astype("float32")[:1]
    short = model.evaluate({"image": image, "caption": np.array([[2, 5, 6]])}, np.array([[5, 6, 3]]), verbose=0)
    padded = model.evaluate({"image": image, "caption": np.array([[2, 5, 6, 0, 0]])}, np.array([[5, 6, 3, 0, 0]]),
                            verbose=0)
    assert padded == pytest.approx(short, rel=1e-5)


def test_a_few_epochs_lower_the_loss(vocab, maps):
    model = small_model(vocab, maps)
    dataset = make_dataset(CAPTIONS, maps, vocab, batch_size=2, seed=0)
    history = model.fit(dataset, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


def test_saved_model_loads_without_helpers_and_gives_the_same_outputs(vocab, maps, tmp_path):
    model = small_model(vocab, maps)
    batch = {"image": np.stack(list(maps.values())).astype("float32"), "caption": np.array([[2, 5, 6, 7]] * 2)}
    np.save(tmp_path / "image.npy", batch["image"])
    np.save(tmp_path / "caption.npy", batch["caption"])
    np.save(tmp_path / "expected.npy", model.predict(batch, verbose=0))
    model.save(tmp_path / "model.keras")
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.models.load_model(r"{tmp_path / 'model.keras'}", safe_mode=True)
        batch = {{"image": np.load(r"{tmp_path / 'image.npy'}"), "caption": np.load(r"{tmp_path / 'caption.npy'}")}}
        np.testing.assert_allclose(model.predict(batch, verbose=0), np.load(r"{tmp_path / 'expected.npy'}"), atol=1e-6)
        assert "helpers" not in sys.modules
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_greedy_ends_and_beam_width_one_is_greedy(vocab, maps):
    model = small_model(vocab, maps)
    dataset = make_dataset(CAPTIONS, maps, vocab, batch_size=2, seed=0)
    model.fit(dataset, epochs=30, verbose=0)
    image = np.stack(list(maps.values()))
    ids, weights = attention_decode(model, image, vocab)
    assert ids.shape == (2, vocab.sequence_length) and weights.shape == (2, vocab.sequence_length, GRID * GRID)
    assert all(3 in row for row in ids)  # every caption reached <end>
    live = ids != 0
    np.testing.assert_allclose(weights.sum(-1)[live], 1.0, atol=1e-5)
    assert (weights.sum(-1)[~live] == 0).all()
    beam_ids, beam_weights = attention_decode(model, image, vocab, beam_width=1)
    assert np.array_equal(beam_ids, ids) and np.allclose(beam_weights, weights)
    assert len(attention_captions(model, image, vocab, beam_width=3)) == 2
    words = attention_maps(model, image[0], vocab)
    assert words[-1][0] == "<end>" and all(grid.shape == (GRID, GRID) for _, grid in words)


def test_spatial_cache_round_trip(tmp_path):
    from PIL import Image

    paths = []
    for i, colour in enumerate(["red", "blue", "green"]):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("RGB", (40, 30), colour).save(paths[-1])
    cache = tmp_path / feature_cache_name("none", 71, pooling="none")
    assert cache.name == "xception_none_71_map.npz" and feature_cache_name("none", 71) == "xception_none_71.npz"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        found = extract_features(paths, cache, weights="none", image_size=71, batch_size=2, progress=False,
                                 pooling="none")
    assert found.meta["pooling"] == "none" and found.meta["dtype"] == "float16"
    assert all(m.shape == (3, 3, 2048) and m.dtype == np.float16 for m in found.features.values())
    loaded = load_features(cache)
    assert loaded.meta == found.meta
    assert all(np.array_equal(loaded.features[n], found.features[n]) for n in found.features)
    again = extract_features(paths, cache, weights="none", image_size=71, progress=False, pooling="none",
                             encoder=object())  # all cached: the encoder is never used
    assert set(again.features) == set(found.features)
