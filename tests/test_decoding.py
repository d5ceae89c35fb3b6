"""One decoding path for every decoder: batched greedy and beam search agree with the slow full-model loop, find
memorised captions, never write an empty caption, and refuse beam widths outside 1..words."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.decoders import DECODERS, decoder_spec
from helpers.decoders.attention import location_stats
from helpers.decoding import Sampling, check_beam_width, decode
from helpers.errors import SettingError
from helpers.machinery.device import MIXED
from helpers.training import precision
from helpers.tutorial_baselines import predict_loop_ids
from helpers.vocabulary import END_ID, PAD_ID, RESERVED, START_ID, Vocabulary

FEATURE_DIM, GRID = 16, 2
CAPTIONS = ["w1 w2 w3", "w4 w5", "w6 w7 w8 w9 w10", "w2 w2 w11"]  # one per image


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(RESERVED + tuple(f"w{i}" for i in range(1, 27)), max_length=6)


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """Four training images as vectors and as grids, and ten more to caption."""
    rng = np.random.default_rng(0)
    return {"avg": rng.normal(size=(len(CAPTIONS), FEATURE_DIM)).astype("float32"),
            "none": rng.normal(size=(len(CAPTIONS), GRID, GRID, FEATURE_DIM)).astype("float32"),
            "avg_more": rng.normal(size=(10, FEATURE_DIM)).astype("float32"),
            "none_more": rng.normal(size=(10, GRID, GRID, FEATURE_DIM)).astype("float32")}


def build(name: str, vocab, train, seed=0, **options) -> keras.Model:
    keras.utils.set_random_seed(seed)
    normaliser = {"stats": location_stats(dict(enumerate(train)))} if name == "attention" else {"train_features": train}
    return decoder_spec(name).build(len(vocab), feature_dim=FEATURE_DIM, units=32, embedding_dim=32,
                                    **normaliser, **options)


def memorise(model, vocab, train) -> keras.Model:
    """Train `model` until image i -> CAPTIONS[i]."""
    width = vocab.sequence_length
    inputs = np.zeros((len(CAPTIONS), width), dtype="int32")
    targets = np.zeros_like(inputs)
    for row, caption in enumerate(CAPTIONS):
        ids = vocab.encode(caption)
        inputs[row, : len(ids) - 1], targets[row, : len(ids) - 1] = ids[:-1], ids[1:]
    repeats = 16
    x = {"image": np.repeat(train, repeats, axis=0), "caption": np.repeat(inputs, repeats, axis=0)}
    model.fit(x, np.repeat(targets, repeats, axis=0), batch_size=8, epochs=15, verbose=0)  # 120 steps
    return model


@pytest.fixture(scope="module", params=sorted(DECODERS))
def trained(request, vocab, images):
    name = request.param
    pooling = DECODERS[name].pooling
    train = images[pooling]
    model = memorise(build(name, vocab, train, dropout=0.0, learning_rate=1e-2), vocab, train)
    return name, model, train, images[f"{pooling}_more"]


def test_greedy_and_beam_find_the_memorised_captions(trained, vocab):
    name, model, train, _ = trained
    assert decode(model, train, vocab).captions == CAPTIONS
    assert decode(model, train, vocab, batch_size=3).captions == CAPTIONS  # a full and a partial batch
    assert decode(model, train, vocab, beam_width=3).captions == CAPTIONS
    assert decode(model, train, vocab, beam_width=3, length_penalty=1.0).captions == CAPTIONS


def test_batched_greedy_matches_the_full_model_word_by_word(trained, vocab):
    _, model, train, more = trained
    images = np.concatenate([train, more[:4]])
    fast = decode(model, images, vocab, batch_size=5).ids
    assert fast.shape == (len(images), vocab.sequence_length)
    for row, image in zip(fast, images, strict=True):
        slow = predict_loop_ids(model, image, vocab)
        assert row[: len(slow)].tolist() == slow
        assert (row[len(slow):] == PAD_ID).all()
    assert decode(model, images[:3], vocab).captions == [vocab.decode(predict_loop_ids(model, f, vocab))
                                                         for f in images[:3]]


def test_beam_width_1_is_greedy_and_log_probs_add_up(trained, vocab):
    _, model, _, more = trained
    greedy = decode(model, more, vocab, batch_size=4)
    np.testing.assert_array_equal(decode(model, more, vocab, beam_width=1).ids, greedy.ids)
    beam = decode(model, more, vocab, beam_width=4)
    assert (beam.log_probs >= greedy.log_probs - 1e-4).all()  # the best of 4 beams is at least as likely
    assert (greedy.log_probs < 0).all() and np.isfinite(greedy.log_probs).all()


def test_keys_read_from_a_feature_mapping_give_the_same_captions(trained, vocab):
    _, model, _, more = trained
    keys = [f"img{i}" for i in range(len(more))]
    mapping = dict(zip(keys, more, strict=True))
    assert decode(model, mapping, vocab, keys=keys[::-1], batch_size=3).captions == \
        decode(model, more[::-1], vocab).captions


def test_untrained_beams_stay_within_the_length_and_use_only_words(vocab, images):
    model = build("merge", vocab, images["avg"], seed=1)
    result = decode(model, images["avg_more"], vocab, beam_width=3, batch_size=4)
    assert result.ids.shape == (10, vocab.sequence_length)
    for row in result.ids.tolist():
        ended = row.index(END_ID) + 1 if END_ID in row else len(row)  # stopped at <end> or at the length limit
        assert PAD_ID not in row[:ended] and START_ID not in row[:ended]
        assert row[ended:] == [PAD_ID] * (len(row) - ended)
    assert all(caption and not set(caption.split()) & set(RESERVED) for caption in result.captions)


@pytest.mark.parametrize("beam_width", [1, 3, 26])
def test_end_is_never_the_first_word(vocab, images, beam_width):
    """A model that always prefers `<end>` still writes one word first: no caption comes out empty."""
    model = build("merge", vocab, images["avg"])
    next_word = model.get_layer("next_word")
    bias = next_word.bias.numpy()
    bias[END_ID] = 50.0  # <end> always wins where it is allowed
    next_word.bias.assign(bias)
    result = decode(model, images["avg"], vocab, beam_width=beam_width)
    assert (result.ids[:, 0] > END_ID).all() and (result.ids[:, 1] == END_ID).all()
    assert all(len(caption.split()) == 1 for caption in result.captions)
    assert predict_loop_ids(model, images["avg"][0], vocab)[1] == END_ID


@pytest.mark.parametrize("width", [0, 27, 100, 2.5])
def test_beam_widths_outside_one_to_the_number_of_words_are_refused(vocab, width):
    with pytest.raises(SettingError, match="from 1 \\(greedy search\\) to 26"):
        check_beam_width(width, vocab)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # loaded without its loss scaling
@pytest.mark.parametrize("name", sorted(DECODERS))
def test_a_mixed_precision_model_finds_its_captions_and_keeps_them_when_saved(name, vocab, images, tmp_path):
    """What a GPU trains (float16 layers, float32 logits) is searched the same way, on the CPU too."""
    train = images[DECODERS[name].pooling]
    with precision(MIXED):
        model = build(name, vocab, train, dropout=0.0, learning_rate=1e-2)
    assert model.get_layer("lstm").compute_dtype == "float16"
    memorise(model, vocab, train)
    found = decode(model, train, vocab)
    assert found.captions == CAPTIONS and found.log_probs.dtype == np.float32 and (found.log_probs < 0).all()
    assert decode(model, train, vocab, beam_width=3).captions == CAPTIONS
    assert decode(model, train, vocab, sampling=Sampling(top_k=1)).captions == CAPTIONS  # the likeliest word
    if name == "attention":  # each word's attention weights, float32 from float16, still sum to 1
        words = found.ids != PAD_ID
        np.testing.assert_allclose(found.weights.sum(axis=-1)[words], 1.0, atol=1e-2)
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras", safe_mode=True)
    assert loaded.get_layer("lstm").compute_dtype == "float16"
    again = decode(loaded, train, vocab)
    assert again.captions == CAPTIONS
    np.testing.assert_allclose(again.log_probs, found.log_probs, rtol=1e-5)
