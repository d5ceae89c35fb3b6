"""Teacher-forcing data, the length-bucketed dataset, training with checkpoints, the progressive examples."""

import json

import keras
import numpy as np
import pytest

from helpers.decoders.merge import build_merge_model
from helpers.decoding import decode
from helpers.errors import SettingError, WorkFolderError
from helpers.evaluation import bleu_scores
from helpers.machinery import cli, pipeline
from helpers.machinery.feature_cache import FeatureSet
from helpers.machinery.files import save_model
from helpers.machinery.workspace import Workspace
from helpers.training import make_dataset, set_seed, teacher_forcing_arrays, train_model
from helpers.tutorial_baselines import count_progressive_examples, progressive_bytes, progressive_examples
from helpers.vocabulary import END_ID, PAD_ID, START_ID, Vocabulary

FEATURE_DIM = 8


@pytest.fixture(scope="module")
def captions() -> dict[str, list[str]]:
    """30 images with 2 captions each, of 1 to 12 words from a 20-word vocabulary."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(20)]
    return {f"img{i}.jpg": [" ".join(rng.choice(words, rng.integers(1, 13))) for _ in range(2)] for i in range(30)}


@pytest.fixture(scope="module")
def vocab(captions) -> Vocabulary:
    return Vocabulary.build(c for caps in captions.values() for c in caps)


@pytest.fixture(scope="module")
def features(captions) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {name: rng.normal(size=FEATURE_DIM).astype("float32") for name in captions}


def tiny_model(vocab, features, learning_rate=1e-3, seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_merge_model(len(vocab), np.stack(list(features.values())), feature_dim=FEATURE_DIM, units=16,
                             embedding_dim=16, learning_rate=learning_rate)


def batches(dataset):
    return [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in dataset]


def test_teacher_forcing_targets_are_the_inputs_shifted_by_one(vocab):
    images, inputs, targets = teacher_forcing_arrays({"a.jpg": ["w1 w2", "w3"], "b.jpg": ["w4 w5 w6"]}, vocab)
    assert images == ["a.jpg", "a.jpg", "b.jpg"]
    assert inputs.shape == targets.shape == (3, 4)  # longest caption (3 words) + 1
    assert inputs[0].tolist() == [START_ID, vocab.id_of("w1"), vocab.id_of("w2"), PAD_ID]
    assert targets[0].tolist() == [vocab.id_of("w1"), vocab.id_of("w2"), END_ID, PAD_ID]
    np.testing.assert_array_equal(inputs[:, 1:][targets[:, :-1] != END_ID], targets[:, :-1][targets[:, :-1] != END_ID])


def test_batches_are_trimmed_to_their_longest_caption(captions, vocab, features):
    dataset = make_dataset(captions, features, vocab, batch_size=8, seed=0)
    seen = batches(dataset)
    assert len(seen) == len(dataset)  # the announced number of batches is the real one
    for x, y in seen:
        assert x["image"].shape == (len(y), FEATURE_DIM) and x["image"].dtype == np.float32
        assert x["caption"].shape == y.shape and len(y) <= 8
        lengths = (x["caption"] != PAD_ID).sum(axis=1)
        assert y.shape[1] == lengths.max()  # longest caption in the batch + 1 (<start>)
        assert (x["caption"][:, 0] == START_ID).all()
        assert ((y == END_ID).sum(axis=1) == 1).all()
        real = y != PAD_ID
        np.testing.assert_array_equal(x["caption"] != PAD_ID, real)
        both = real[:, :-1] & real[:, 1:]
        np.testing.assert_array_equal(x["caption"][:, 1:][both], y[:, :-1][both])
    # Bucketing: less padding than one random batch of the same captions would have.
    padding = sum((x["caption"] == PAD_ID).sum() for x, _ in seen) / sum(y.size for _, y in seen)
    assert padding < 0.3


def test_every_caption_comes_once_per_epoch_with_its_own_image(captions, vocab, features):
    dataset = make_dataset(captions, features, vocab, batch_size=8, seed=0)
    expected = sorted((name, vocab.decode(vocab.encode(c)[1:])) for name, caps in captions.items() for c in caps)
    by_feature = {features[name].tobytes(): name for name in captions}
    for _ in range(2):
        seen = sorted((by_feature[image.tobytes()], vocab.decode(target))
                      for x, y in batches(dataset) for image, target in zip(x["image"], y, strict=True))
        assert seen == expected


def test_order_is_fixed_by_the_seed_and_changes_each_epoch(captions, vocab, features):
    def order(dataset):
        return [y.tobytes() for _, y in batches(dataset)]

    first, again = make_dataset(captions, features, vocab, seed=3), make_dataset(captions, features, vocab, seed=3)
    assert order(first) == order(again)
    assert order(first) != order(first)  # reshuffled every epoch...
    assert order(make_dataset(captions, features, vocab, seed=4)) != order(again)  # ...differently for another seed
    unshuffled = make_dataset(captions, features, vocab, shuffle=False)
    assert order(unshuffled) == order(unshuffled)


def test_missing_features_are_an_error_naming_the_image(captions, vocab, features):
    partial = {name: f for name, f in features.items() if name != "img7.jpg"}
    with pytest.raises(WorkFolderError, match="img7.jpg"):
        make_dataset(captions, partial, vocab)


def test_half_precision_grids_from_a_feature_set_arrive_as_float32(captions, vocab):
    rng = np.random.default_rng(2)
    grids = FeatureSet.from_arrays({name: rng.normal(size=(2, 2, 4)).astype("float16") for name in captions},
                                   meta={"dtype": "float16"})
    x, _ = batches(make_dataset(captions, grids, vocab, batch_size=8, shuffle=False))[0]
    assert x["image"].dtype == np.float32 and x["image"].shape[1:] == (2, 2, 4)


@pytest.mark.parametrize("setting, value", [("batch_size", 0), ("batch_size", -3)])
def test_a_batch_size_below_one_is_refused(captions, vocab, features, setting, value):
    with pytest.raises(SettingError, match="batch_size must be a whole number of at least 1"):
        make_dataset(captions, features, vocab, **{setting: value})


def test_train_model_saves_the_best_model_and_reports_history(captions, vocab, features, tmp_path):
    model = tiny_model(vocab, features, learning_rate=1e-2)
    train = make_dataset(captions, features, vocab, batch_size=16)
    dev = make_dataset(captions, features, vocab, batch_size=16, shuffle=False)
    checkpoint = tmp_path / "models" / "best.keras"
    history = train_model(model, train, dev, epochs=3, checkpoint_path=checkpoint, verbose=0)
    assert {"loss", "val_loss"} <= set(history) and len(history["loss"]) == 3
    assert all(np.isfinite(history["loss"])) and history["val_loss"][-1] < history["val_loss"][0]
    assert checkpoint.is_file()
    saved = keras.models.load_model(checkpoint, safe_mode=True)
    assert saved.evaluate(dev, verbose=0) == pytest.approx(min(history["val_loss"]), rel=1e-4)


def test_early_stopping_stops_when_the_dev_loss_stalls(captions, vocab, features, tmp_path):
    model = tiny_model(vocab, features, learning_rate=0.0)  # nothing changes: no epoch beats the first
    train = make_dataset(captions, features, vocab, batch_size=32)
    dev = make_dataset(captions, features, vocab, batch_size=32, shuffle=False)
    history = train_model(model, train, dev, epochs=10, checkpoint_path=tmp_path / "m.keras", patience=1, verbose=0)
    assert len(history["loss"]) == 2


def test_resume_starts_from_the_checkpoint(captions, vocab, features, tmp_path):
    train = make_dataset(captions, features, vocab, batch_size=16)
    dev = make_dataset(captions, features, vocab, batch_size=16, shuffle=False)
    checkpoint = tmp_path / "m.keras"
    with pytest.raises(WorkFolderError, match="resume"):
        train_model(tiny_model(vocab, features), train, dev, 1, checkpoint, resume=True, verbose=0)
    trained = tiny_model(vocab, features, learning_rate=1e-2)
    train_model(trained, train, dev, epochs=2, checkpoint_path=checkpoint, verbose=0)
    fresh = tiny_model(vocab, features, learning_rate=0.0, seed=1)  # lr 0: its weights can only come from the file
    assert not np.array_equal(fresh.get_layer("lstm").get_weights()[0], trained.get_layer("lstm").get_weights()[0])
    train_model(fresh, train, dev, epochs=1, checkpoint_path=checkpoint, resume=True, verbose=0)
    for mine, theirs in zip(fresh.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # the checkpoint's Adam state, but our learning rate (a Keras variable has no __float__ before Keras 3.5)
    assert float(keras.ops.convert_to_numpy(fresh.optimizer.learning_rate)) == 0.0


def test_epochs_and_patience_below_one_are_refused_before_anything_is_written(captions, vocab, features, tmp_path):
    train = make_dataset(captions, features, vocab, batch_size=16)
    for options in ({"epochs": 0}, {"epochs": 2, "patience": 0}):
        with pytest.raises(SettingError, match="at least 1"):
            train_model(tiny_model(vocab, features), train, train, checkpoint_path=tmp_path / "m.keras",
                        **{"epochs": 1, **options})
    assert not (tmp_path / "m.keras").exists()


def test_the_checkpoint_on_disk_is_never_half_written(captions, vocab, features, tmp_path, monkeypatch):
    """A crash (or a full disk) in the middle of a save leaves the previous checkpoint, complete; a reader that
    looks at the checkpoint at any moment of training finds a whole model."""
    checkpoint = tmp_path / "m.keras"
    train = make_dataset(captions, features, vocab, batch_size=16)
    dev = make_dataset(captions, features, vocab, batch_size=16, shuffle=False)
    model = tiny_model(vocab, features, learning_rate=1e-2)
    seen = []

    class Reader(keras.callbacks.Callback):  # opens the checkpoint between batches, as `evaluate` could
        def on_train_batch_end(self, batch, logs=None):
            if checkpoint.exists():
                seen.append(keras.models.load_model(checkpoint, safe_mode=True).count_params())

    train_model(model, train, dev, epochs=3, checkpoint_path=checkpoint, verbose=0, callbacks=[Reader()],
                save=save_model)
    assert seen and set(seen) == {model.count_params()}
    good = checkpoint.read_bytes()

    real_save = keras.Model.save

    def save_half_then_fail(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        with open(path, "r+b") as file:
            file.truncate(1000)  # the disk filled up here
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        train_model(tiny_model(vocab, features, seed=5), train, dev, epochs=1, checkpoint_path=checkpoint, verbose=0,
                    save=save_model)
    assert checkpoint.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left behind


def test_set_seed_makes_models_repeatable(vocab):
    weights = []
    for _ in range(2):
        set_seed(7)
        weights.append(build_merge_model(len(vocab), feature_dim=FEATURE_DIM, units=8, embedding_dim=8).get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_progressive_examples_one_per_word_plus_end(vocab):
    captions = {"a.jpg": ["w1 w2", "w3"], "b.jpg": ["w4 w5 w6"]}
    features = {"a.jpg": np.ones(FEATURE_DIM, "float32"), "b.jpg": np.zeros(FEATURE_DIM, "float32")}
    examples = list(progressive_examples(captions, features, vocab))
    assert len(examples) == count_progressive_examples(captions) == 3 + 2 + 4
    width = vocab.sequence_length
    (x0, y0), (x1, y1), (x2, y2) = examples[:3]  # "w1 w2": <start> -> w1, <start> w1 -> w2, <start> w1 w2 -> <end>
    assert x0["prefix"].shape == (width,) and y0.shape == (len(vocab),)
    assert x0["prefix"].tolist() == [PAD_ID] * (width - 1) + [START_ID]
    assert x2["prefix"].tolist()[-3:] == [START_ID, vocab.id_of("w1"), vocab.id_of("w2")]
    assert x2["prefix"][: width - 3].tolist() == [PAD_ID] * (width - 3)
    assert [int(y.argmax()) for y in (y0, y1, y2)] == [vocab.id_of("w1"), vocab.id_of("w2"), END_ID]
    assert all(y.sum() == 1.0 for _, y in examples)
    np.testing.assert_array_equal(examples[-1][0]["image"], features["b.jpg"])
    assert progressive_bytes(captions, vocab, FEATURE_DIM) == 9 * 4 * (FEATURE_DIM + width + len(vocab))


def test_early_stopping_on_a_caption_metric_keeps_the_epoch_of_the_best_score(tmp_path):
    """`monitor="bleu4"`: every epoch's dev BLEU-4 of the greedy captions is in the history, the checkpoint is
    the epoch of the best one (not of the best dev loss), and the record says so."""
    out = str(tmp_path)
    assert cli.main(["prepare", "--out", out]) == 0
    assert cli.main(["features", "--image-size", "32", "--out", out]) == 0
    history = pipeline.train(Workspace(tmp_path), image_size=32, units=16, epochs=4, patience=4, monitor="bleu4",
                             verbose=0)
    record = json.loads((tmp_path / "model.json").read_text())
    scores = history["val_bleu4"]
    assert len(scores) == len(history["val_loss"]) == 4 and all(0 <= s <= 1 for s in scores)
    assert record["monitor"] == "bleu4" and record["best_epoch"] == int(np.argmax(scores)) + 1
    assert record["best_score"] == pytest.approx(max(scores))
    model, vocab, config = pipeline.load_trained(Workspace(tmp_path))
    captions = json.loads((tmp_path / "captions.json").read_text())["dev"]
    features = pipeline.trained_features(Workspace(tmp_path), config, list(captions))
    written = decode(model, features, vocab, keys=list(captions)).captions
    assert bleu_scores(list(captions.values()), written)["bleu4"] == pytest.approx(max(scores), abs=1e-6)
    with pytest.raises(SettingError, match="Unknown monitor 'accuracy'"):
        pipeline.train(Workspace(tmp_path), image_size=32, monitor="accuracy")
