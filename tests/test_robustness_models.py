"""Files from different runs are caught at load time; interrupted training keeps its best epoch and resumes;
the encoder weights file is verified against the hash Keras publishes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import cli, pipeline
from helpers.features import WEIGHTS_FILE, WEIGHTS_MD5, build_encoder, feature_cache_name
from helpers.model import build_merge_model
from helpers.training import make_dataset, train_model
from helpers.vocabulary import Vocabulary
from helpers.workspace import Workspace

SIZE = 71  # Xception's smallest input: fast on the fixture
# The tiny saved models below were never trained, so Keras has no optimizer state to restore and says so.
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


# --- A saved model, vocabulary or feature cache from another run ------------------------------------


@pytest.fixture
def saved_run(tmp_path) -> Workspace:
    """A work folder as `train` leaves it, with a tiny untrained model: vocab.json, model.keras, model.json."""
    work = Workspace(tmp_path / "work")
    vocab = Vocabulary.build(["a dog runs", "a red ball on grass"])
    vocab.save(work.path("vocab.json"))
    build_merge_model(len(vocab), units=8, embedding_dim=8).save(work.path("model.keras"))
    work.write_json("model.json", {"weights": "none", "image_size": SIZE, "vocab_size": len(vocab),
                                   "max_length": vocab.max_length, "units": 8, "seed": 0, "epochs_run": 1})
    return work


def write_cache(work: Workspace, meta: dict, weights: str = "none") -> Path:
    """A feature cache file named for `weights` / SIZE, holding `meta`."""
    path = work.path(feature_cache_name(weights, SIZE))
    full = {"encoder": "xception", "weights": "none", "image_size": SIZE, "feature_dim": 2048, **meta}
    np.savez(path, names=np.array(["x.jpg"]), features=np.zeros((1, full["feature_dim"]), np.float32),
             failed_names=np.array([], str), failed_reasons=np.array([], str), meta=np.array(json.dumps(full)))
    return path


def test_matching_files_load(saved_run):
    write_cache(saved_run, {})
    model, vocab, config = pipeline.load_trained(saved_run)
    assert model.output_shape[-1] == len(vocab) == config["vocab_size"]


def test_a_local_weights_file_matches_its_cache(saved_run):
    """model.json keeps the weights file's path; the cache records its name: the same encoder."""
    config = saved_run.read_json("model.json")
    saved_run.write_json("model.json", {**config, "weights": "/offline/xception_notop.h5"})
    write_cache(saved_run, {"weights": "xception_notop.h5"}, weights="/offline/xception_notop.h5")
    assert pipeline.load_trained(saved_run)[2]["weights"] == "/offline/xception_notop.h5"


def test_vocabulary_rebuilt_after_training(saved_run):
    Vocabulary.build(["a cat sleeps on a mat"]).save(saved_run.path("vocab.json"))
    with pytest.raises(ValueError, match="the vocabulary was rebuilt after training") as error:
        pipeline.load_trained(saved_run)
    assert str(saved_run.path("vocab.json")) in str(error.value)


def test_model_from_another_run_with_its_own_model_json(saved_run):
    """model.json agrees with vocab.json, but model.keras was copied from elsewhere: its output size differs."""
    build_merge_model(len(Vocabulary.load(saved_run.path("vocab.json"))) + 5, units=8,
                      embedding_dim=8).save(saved_run.path("model.keras"))
    with pytest.raises(ValueError, match="come from different runs") as error:
        pipeline.load_trained(saved_run)
    message = str(error.value)
    assert str(saved_run.path("model.keras")) in message and "Train again" in message


@pytest.mark.parametrize("meta, named", [({"weights": "imagenet"}, "weights 'imagenet' in the cache"),
                                         ({"image_size": 299}, "image_size 299 in the cache"),
                                         ({"feature_dim": 1024}, "feature_dim 1024 in the cache, 2048")])
def test_features_from_another_encoder(saved_run, meta, named):
    path = write_cache(saved_run, meta)
    with pytest.raises(ValueError, match=named) as error:
        pipeline.load_trained(saved_run)
    assert str(path) in str(error.value) and "python -m helpers features" in str(error.value)


def test_the_command_line_prints_the_mismatch_not_a_traceback(saved_run, capsys):
    Vocabulary.build(["a cat sleeps on a mat"]).save(saved_run.path("vocab.json"))
    assert cli.main(["evaluate", "--out", str(saved_run.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "vocabulary was rebuilt" in err and "Traceback" not in err


# --- Interrupted training -----------------------------------------------------------------------------


class CtrlC(keras.callbacks.Callback):
    """Raise KeyboardInterrupt in the middle of epoch `epoch` (0-based), as Ctrl-C or a stopped cell does."""

    def __init__(self, epoch: int):
        super().__init__()
        self.at, self.epoch = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.at and batch == 1:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    captions = {f"i{i}.jpg": [" ".join(rng.choice(words, rng.integers(2, 8))) for _ in range(2)] for i in range(24)}
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    features = {n: rng.normal(size=8).astype("float32") for n in captions}
    return (captions, vocab, features, make_dataset(captions, features, vocab, batch_size=8),
            make_dataset(captions, features, vocab, batch_size=8, shuffle=False))


def toy_model(toy, learning_rate=1e-2, seed=0):
    keras.utils.set_random_seed(seed)
    return build_merge_model(len(toy[1]), np.stack(list(toy[2].values())), feature_dim=8, units=16,
                             embedding_dim=16, learning_rate=learning_rate)


def test_interrupted_training_keeps_the_best_epoch_and_resumes(toy, tmp_path):
    _, _, _, train, dev = toy
    checkpoint = tmp_path / "model.keras"
    model = toy_model(toy)
    with pytest.raises(KeyboardInterrupt):
        train_model(model, train, dev, epochs=5, checkpoint_path=checkpoint, verbose=0, callbacks=[CtrlC(epoch=2)])
    saved = keras.models.load_model(checkpoint, safe_mode=True)
    best_after_two = saved.evaluate(dev, verbose=0)
    assert best_after_two < toy_model(toy).evaluate(dev, verbose=0)  # it holds trained weights, not the start

    resumed = toy_model(toy, seed=1)
    history = train_model(resumed, train, dev, epochs=2, checkpoint_path=checkpoint, verbose=0, resume=True)
    assert len(history["loss"]) == 2
    assert resumed.evaluate(dev, verbose=0) <= best_after_two + 1e-6  # never worse than where it stopped
    assert keras.models.load_model(checkpoint, safe_mode=True).evaluate(dev, verbose=0) <= best_after_two + 1e-6


@pytest.fixture(scope="module")
def fixture_features(tmp_path_factory) -> Path:
    """The fixture prepared and encoded (untrained encoder, small images) in a work folder."""
    out = tmp_path_factory.mktemp("work")
    assert cli.main(["prepare", "--out", str(out)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["features", "--out", str(out), "--image-size", str(SIZE)]) == 0
    return out


def test_ctrl_c_during_train_says_what_was_saved_and_resume_continues(fixture_features, monkeypatch, capsys):
    from helpers import training

    out = str(fixture_features)
    args = ["train", "--out", out, "--image-size", str(SIZE), "--units", "16"]
    real_train_model = training.train_model
    monkeypatch.setattr(training, "train_model",
                        lambda *a, **k: real_train_model(*a, **k, callbacks=[CtrlC(epoch=1)]))
    assert cli.main([*args, "--epochs", "4"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: the best epoch so far is saved in" in err and "train --resume" in err
    config = json.loads((fixture_features / "model.json").read_text())
    assert config["interrupted"] and config["image_size"] == SIZE
    model, vocab, _ = pipeline.load_trained(Workspace(fixture_features))  # usable as it is
    assert model.output_shape[-1] == len(vocab)

    monkeypatch.setattr(training, "train_model", real_train_model)
    assert cli.main([*args, "--epochs", "1", "--resume"]) == 0
    assert "Trained 1 epochs" in capsys.readouterr().out
    assert "interrupted" not in json.loads((fixture_features / "model.json").read_text())


def test_ctrl_c_during_features_says_a_rerun_continues(fixture_features, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "extract_features", interrupted)
    assert cli.main(["features", "--out", str(fixture_features), "--image-size", str(SIZE)]) == 130
    assert "run the same command again" in capsys.readouterr().err


# --- The ImageNet weights file ------------------------------------------------------------------------


def test_published_hash_is_the_one_keras_checks():
    import inspect

    from keras.src.applications import xception

    assert f'file_hash="{WEIGHTS_MD5}"' in inspect.getsource(xception)


def test_cut_off_weights_download_is_refused_with_a_message(tmp_path):
    partial = tmp_path / WEIGHTS_FILE
    partial.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1000))
    with pytest.raises(ValueError, match="not the published") as error:
        build_encoder(partial, image_size=SIZE)
    assert WEIGHTS_MD5 in str(error.value) and "download" in str(error.value)
