"""The captioner that ships with the course: `tools/export_captioner.py` writes a trained model so that it loads
back with the same captions, its record belongs to its vocabulary, and `caption` and `demo` use it where a work
folder has no model yet (and say so)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.decoding import decode
from helpers.errors import WorkFolderError
from helpers.machinery import cli, pipeline, shipped_captioner
from helpers.machinery.demo import CaptionDemo
from helpers.machinery.files import write_json
from helpers.machinery.paths import fixture_dir
from helpers.machinery.pipeline import load_trained, trained_features
from helpers.machinery.shipped_captioner import RECORD, VOCABULARY, load_shipped
from helpers.machinery.workspace import Workspace
from helpers.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Workspace, Path]:
    """A small merge model trained on the fixture and scored at beam 2, and its export."""
    out = tmp_path_factory.mktemp("trained")
    small = ["--image-size", "64", "--out", str(out)]
    for args in (["prepare", "--out", str(out)], ["features", *small],
                 ["train", "--units", "16", "--epochs", "2", *small], ["evaluate", "--beam", "2", "--out", str(out)]):
        assert cli.main(args) == 0, args
    folder = tmp_path_factory.mktemp("captioner")
    done = subprocess.run([sys.executable, "tools/export_captioner.py", str(out), "--beam", "2", "--trained-on",
                           "the fixture", "--out", str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Workspace(out), folder


def test_the_export_loads_back_with_the_same_captions(exported):
    work, folder = exported
    model, vocab, record = load_shipped(folder)
    trained, trained_vocab, config = load_trained(work)
    assert vocab == trained_vocab and record["scores"]["beam_width"] == 2 and record["trained_on"] == "the fixture"
    assert record["scores"]["bleu4"] == json.loads(work.model().evaluation("test", 2).read_text())["bleu4"]
    keys = sorted(work.read_json("captions.json")["test"])
    features = trained_features(work, config, keys)
    ours, theirs = decode(model, features, vocab, keys=keys), decode(trained, features, vocab, keys=keys)
    same = np.mean([a == b for a, b in zip(ours.captions, theirs.captions, strict=True)])
    assert same >= 0.9, same  # float16 weights: a near tie may go the other way, seldom
    np.testing.assert_allclose(ours.log_probs, theirs.log_probs, atol=0.05 * np.abs(theirs.log_probs).max())
    assert (folder / "captioner.weights.h5").stat().st_size < (work.model().keras.stat().st_size / 2)


def test_a_vocabulary_of_another_model_is_refused(exported, tmp_path):
    _, folder = exported
    for name in (RECORD, VOCABULARY, "captioner.weights.h5"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    write_json(tmp_path / VOCABULARY, Vocabulary(("<pad>", "<unk>", "<start>", "<end>", "other"), 5).as_json())
    with pytest.raises(WorkFolderError, match="is not the vocabulary"):
        load_shipped(tmp_path)


def test_caption_uses_it_where_no_model_is_trained_and_says_so(exported, tmp_path, monkeypatch, capsys):
    _, folder = exported
    monkeypatch.setattr(shipped_captioner, "SHIPPED_DIR", folder)
    photo = fixture_dir() / "Images" / sorted((fixture_dir() / "Images").iterdir())[0].name
    assert cli.main(["caption", str(photo), "--out", str(tmp_path / "fresh")]) == 0
    out = capsys.readouterr().out
    assert "Using the captioner that ships with the course (merge decoder on mobilenet_v2 features" in out
    model, vocab, record = load_shipped(folder)
    expected, _ = pipeline.caption_files(Workspace(tmp_path / "other"), [photo])
    assert f"{photo.name}: {expected[str(photo)]}" in out or f"{photo}: {expected[str(photo)]}" in out


def test_a_work_folders_own_model_comes_first(exported, monkeypatch, capsys):
    work, folder = exported
    monkeypatch.setattr(shipped_captioner, "SHIPPED_DIR", folder)
    model, _, config = pipeline.load_captioner(work)
    assert "ships with the course" not in capsys.readouterr().out and "fingerprints" in config
    assert "captions" in config["fingerprints"]  # the work folder's record, not the shipped one
    about = CaptionDemo(work).about()
    assert f"Model `{work.model('model').keras}`:" in about and "ships with the course" not in about


def test_a_fixture_model_says_so_when_it_captions_a_photo(exported, capsys):
    work, _ = exported
    fixture_picture = next((fixture_dir() / "Images").glob("*.jpg"))
    assert cli.main(["caption", "--out", str(work.root), str(fixture_picture)]) == 0
    assert "Note:" not in capsys.readouterr().err  # its own kind of picture: nothing to say
    assert cli.main(["caption", "--out", str(work.root), str(ROOT / "data" / "photos" / "cat.jpg")]) == 0
    note = capsys.readouterr().err
    assert f"Note: {work.model('model').keras} learnt only the fixture's synthetic scenes" in note
    assert "the captioner that ships with the course" in note and "--out" in note


def test_the_demo_names_the_shipped_captioner_where_it_answers(exported, tmp_path, monkeypatch):
    _, folder = exported
    monkeypatch.setattr(shipped_captioner, "SHIPPED_DIR", folder)
    about = CaptionDemo(Workspace(tmp_path / "empty")).about()
    assert about.startswith(f"Model `{folder / shipped_captioner.WEIGHTS}` (the captioner that ships with the course")


def test_without_a_shipped_captioner_demo_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shipped_captioner, "SHIPPED_DIR", tmp_path / "none")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "model.keras is missing" in error and "python -m helpers train" in error


# --- the captioner in helpers/captioner/, trained on Flickr8k by the real-data benchmark -------------------------

def test_the_shipped_captioner_belongs_together_and_says_what_it_is():
    model, vocab, record = load_shipped()
    assert record["encoder"] == "mobilenet_v2" and record["weights"] == "imagenet" and record["image_size"] == 224
    assert model.input["image"].shape[-1] == record["feature_dim"] == 1280 and len(vocab) == record["vocab_size"]
    assert record["scores"]["split"] == "test" and record["scores"]["images"] == 1000
    assert 0 < record["scores"]["bleu4"] < record["scores"]["bleu1"] < 1
    notice = (shipped_captioner.SHIPPED_DIR / "NOTICE").read_text(encoding="utf-8")
    assert "research and teaching use only" in notice and f"{record['scores']['bleu4']:.3f}" in notice
    assert sum(p.stat().st_size for p in shipped_captioner.SHIPPED_DIR.iterdir()) < 10_000_000


def test_the_shipped_captioner_describes_each_photo_best_by_its_own_caption(tmp_path):
    """Its caption of each of the three ImageNet test photos (data/photos/) is likelier given that photo than given
    either other one: what it writes comes from the picture, not from the language model alone."""
    from helpers.retrieval import caption_log_probs

    photos = sorted((ROOT / "data" / "photos").glob("*.jpg"))
    written, failed = pipeline.caption_files(Workspace(tmp_path), photos)
    assert not failed and len(set(written.values())) == len(photos)
    model, vocab, record = load_shipped()
    _, found = pipeline.encode_photos(Workspace(tmp_path), record, photos)
    keys = [str(p) for p in photos]
    features = np.stack([found[k] for k in keys])
    log_probs = caption_log_probs(model, features, [vocab.encode(written[k]) for k in keys])
    assert (log_probs.argmax(axis=1) == np.arange(len(photos))).all(), log_probs
