"""Sampling in the one decoding path: words drawn as often as the model's probabilities say (and never outside
top-k or top-p), repeatable for a seed, the same as greedy search where only one word is left to draw, and bad
settings refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.decoders import decoder_spec, step_decoder_for
from helpers.decoding import Sampling, decode, next_word_log_probs
from helpers.errors import SettingError
from helpers.vocabulary import RESERVED, Vocabulary

FEATURE_DIM = 8


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(RESERVED + tuple(f"w{i}" for i in range(1, 13)), max_length=5)


@pytest.fixture(scope="module")
def model(vocab) -> keras.Model:
    """An untrained merge model: its next-word distribution is spread over many words, a fair test of a draw."""
    keras.utils.set_random_seed(3)
    train = np.random.default_rng(0).normal(size=(16, FEATURE_DIM)).astype("float32")
    return decoder_spec("merge").build(len(vocab), train_features=train, units=16, embedding_dim=16)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(1, FEATURE_DIM)).astype("float32")


def first_word_probabilities(model, image, vocab) -> np.ndarray:
    """The model's distribution of the first word (ruled-out tokens at 0), computed outside the search."""
    decoder = step_decoder_for(model)
    memory, state = decoder.start(image)
    logits, _, _ = decoder.step(memory, np.array([RESERVED.index("<start>")]), state)
    return np.exp(next_word_log_probs(logits, 0).numpy()[0])


def first_words(model, image, vocab, sampling, draws=3000) -> np.ndarray:
    """How often each word was drawn first, out of `draws` captions of the same picture."""
    found = decode(model, np.repeat(image, draws, axis=0), vocab, sampling=sampling, batch_size=draws)
    return np.bincount(found.ids[:, 0], minlength=len(vocab)) / draws


def test_words_are_drawn_as_often_as_the_model_says(model, image, vocab):
    expected = first_word_probabilities(model, image, vocab)
    seen = first_words(model, image, vocab, Sampling(seed=0))
    assert (expected > 0.02).sum() >= 4  # a spread distribution, else the test would prove little
    np.testing.assert_allclose(seen, expected, atol=0.03)  # 3,000 draws: a standard error of at most 0.009
    sharp = first_words(model, image, vocab, Sampling(temperature=0.5, seed=0))
    np.testing.assert_allclose(sharp, expected**2 / (expected**2).sum(), atol=0.03)  # p ** (1 / T), normalised


def test_top_k_and_top_p_draw_only_from_the_words_they_keep(model, image, vocab):
    expected = first_word_probabilities(model, image, vocab)
    order = np.argsort(-expected)
    top2 = first_words(model, image, vocab, Sampling(top_k=2, seed=0))
    assert set(np.flatnonzero(top2)) == set(order[:2])
    np.testing.assert_allclose(top2[order[:2]], expected[order[:2]] / expected[order[:2]].sum(), atol=0.04)
    nucleus = np.flatnonzero(np.cumsum(expected[order]) - expected[order] < 0.5)  # the fewest reaching 0.5
    kept = first_words(model, image, vocab, Sampling(top_p=0.5, seed=0))
    assert set(np.flatnonzero(kept)) == set(order[nucleus])


def test_a_seed_repeats_and_one_word_left_is_greedy_search(model, vocab):
    images = np.random.default_rng(2).normal(size=(40, FEATURE_DIM)).astype("float32")
    once, again = (decode(model, images, vocab, sampling=Sampling(seed=7)) for _ in range(2))
    assert once.captions == again.captions and np.array_equal(once.log_probs, again.log_probs)
    assert decode(model, images, vocab, sampling=Sampling(seed=8)).captions != once.captions
    greedy = decode(model, images, vocab)
    for only_one in (Sampling(top_k=1, seed=5), Sampling(top_p=1e-6, temperature=3.0, seed=5)):
        assert decode(model, images, vocab, sampling=only_one).captions == greedy.captions
    many = decode(model, images, vocab, sampling=Sampling(top_k=10 * len(vocab), seed=7))  # more words than there are
    assert many.captions == once.captions
    assert np.all(np.isfinite(once.log_probs)) and np.all(once.log_probs < 0)  # the model's log-probability


@pytest.mark.parametrize("setting, message", [({"temperature": 0}, "temperature must be above 0"),
                                              ({"temperature": -1.0}, "temperature must be above 0"),
                                              ({"top_k": 0}, "top-k must be a whole number of at least 1"),
                                              ({"top_p": 0.0}, "top-p must be above 0 and at most 1"),
                                              ({"top_p": 1.5}, "top-p must be above 0 and at most 1")])
def test_bad_settings_are_refused(setting, message):
    with pytest.raises(SettingError, match=message):
        Sampling(**setting)


def test_sampling_and_beam_search_do_not_mix(model, image, vocab):
    with pytest.raises(SettingError, match="choose one of them"):
        decode(model, image, vocab, beam_width=3, sampling=Sampling())
