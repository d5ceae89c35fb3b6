"""Batched greedy and beam search agree with the slow full-model loop and find memorised captions."""

import keras
import numpy as np
import pytest

from helpers.decoding import beam_captions, beam_ids, greedy_captions, greedy_ids, predict_loop_caption, predict_loop_ids
from helpers.model import build_merge_model
from helpers.vocabulary import END_ID, PAD_ID, RESERVED, START_ID, Vocabulary

FEATURE_DIM = 16
CAPTIONS = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10", "w2 w2 w11"]  # one per image


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(RESERVED + tuple(f"w{i}" for i in range(1, 27)), max_length=6)


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(CAPTIONS), FEATURE_DIM)).astype("float32")


def build(vocab, features, seed=0, **kwargs) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_merge_model(len(vocab), features, feature_dim=FEATURE_DIM, units=32, embedding_dim=32, **kwargs)


@pytest.fixture(scope="module")
def trained(vocab, features) -> keras.Model:
    """A model that has memorised image i -> CAPTIONS[i]."""
    model = build(vocab, features, dropout=0.0, learning_rate=1e-2)
    width = vocab.sequence_length
    inputs = np.zeros((len(CAPTIONS), width), dtype="int32")
    targets = np.zeros_like(inputs)
    for row, caption in enumerate(CAPTIONS):
        ids = vocab.encode(caption)
        inputs[row, : len(ids) - 1], targets[row, : len(ids) - 1] = ids[:-1], ids[1:]
    repeats = 16
    x = {"image": np.repeat(features, repeats, axis=0), "caption": np.repeat(inputs, repeats, axis=0)}
    model.fit(x, np.repeat(targets, repeats, axis=0), batch_size=8, epochs=15, verbose=0)  # 120 steps
    return model


@pytest.fixture(scope="module")
def untrained(vocab, features) -> keras.Model:
    return build(vocab, features, seed=1)


@pytest.fixture(scope="module")
def many_features() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(10, FEATURE_DIM)).astype("float32")


def test_greedy_finds_the_memorised_captions(trained, features, vocab):
    assert greedy_captions(trained, features, vocab) == CAPTIONS
    assert greedy_captions(trained, features, vocab, batch_size=3) == CAPTIONS  # a full and a partial batch


@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_stepwise_greedy_matches_the_full_model_word_by_word(which, request, vocab, features, many_features):
    model = request.getfixturevalue(which)
    images = np.concatenate([features, many_features[:4]])
    fast = greedy_ids(model, images, vocab, batch_size=5)
    assert fast.shape == (len(images), vocab.sequence_length)
    for row, image in zip(fast, images):
        slow = predict_loop_ids(model, image, vocab)
        assert row[: len(slow)].tolist() == slow
        assert (row[len(slow):] == PAD_ID).all()
    assert greedy_captions(model, images[:3], vocab) == [predict_loop_caption(model, f, vocab) for f in images[:3]]


@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_beam_width_1_is_greedy(which, request, vocab, many_features):
    model = request.getfixturevalue(which)
    np.testing.assert_array_equal(beam_ids(model, many_features, vocab, beam_width=1, batch_size=4),
                                  greedy_ids(model, many_features, vocab))


def test_beam_search_finds_the_memorised_captions(trained, features, vocab):
    assert beam_captions(trained, features, vocab, beam_width=3) == CAPTIONS
    assert beam_captions(trained, features, vocab, beam_width=3, length_penalty=1.0) == CAPTIONS


def test_beam_search_on_an_untrained_model_stays_within_the_length(untrained, many_features, vocab):
    ids = beam_ids(untrained, many_features, vocab, beam_width=3, batch_size=4)
    assert ids.shape == (len(many_features), vocab.sequence_length)
    assert any(END_ID not in row for row in ids.tolist())  # some captions only stop at the length limit
    for row in ids.tolist():
        ended = row.index(END_ID) + 1 if END_ID in row else len(row)  # stopped at <end> or at the length limit
        assert PAD_ID not in row[:ended] and START_ID not in row[:ended]
        assert row[ended:] == [PAD_ID] * (len(row) - ended)
    for caption in beam_captions(untrained, many_features, vocab, beam_width=3):
        assert len(caption.split()) <= vocab.sequence_length
        assert not set(caption.split()) & set(RESERVED)


def test_decoding_stops_at_end(vocab, features):
    model = build(vocab, features)
    next_word = model.get_layer("next_word")
    bias = next_word.bias.numpy()
    bias[END_ID] = 50.0  # <end> always wins
    next_word.bias.assign(bias)
    expected = np.zeros((len(features), vocab.sequence_length), dtype="int32")
    expected[:, 0] = END_ID
    np.testing.assert_array_equal(greedy_ids(model, features, vocab), expected)
    np.testing.assert_array_equal(beam_ids(model, features, vocab, beam_width=3), expected)
    assert greedy_captions(model, features, vocab) == [""] * len(features)
    assert predict_loop_ids(model, features[0], vocab) == [END_ID]
