"""The whole pipeline on the shipped fixture, through the real command line: it must learn.

At a small size (71-pixel images, 128 units) to keep the test command short: `.ci/run` runs the README's own
`python -m helpers run`, at the default sizes, before the tests.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.machinery.paths import fixture_dir

SMALL = ("--image-size", "71", "--units", "128")


def helpers_cli(*args: str) -> dict:
    """Run `python -m helpers ... --json` and return its JSON."""
    done = subprocess.run([sys.executable, "-m", "helpers", *args, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("run")
    return work, helpers_cli("run", "--out", str(work), *SMALL)


def test_run_writes_every_stage_output(run):
    work, _ = run
    for name in ("captions.json", "vocab.json", "dataset.json", "mobilenet_v2_imagenet_71/index.json", "model.keras",
                 "model.json", "history.json", "evaluation_test.json"):
        assert (work / name).is_file(), name


def test_fixture_model_learns(run):
    work, result = run
    assert result["bleu4"] > result["floor"]["bleu4"] and result["bleu1"] >= 0.6
    history = json.loads((work / "history.json").read_text())
    assert min(history["val_loss"]) < history["val_loss"][0] and history["loss"][-1] < history["loss"][0]


def test_evaluate_with_beam_search_and_reload(run):
    work, result = run
    greedy = helpers_cli("evaluate", "--out", str(work))
    assert greedy["bleu1"] == result["bleu1"]  # a reloaded model gives the same captions
    beam = helpers_cli("evaluate", "--out", str(work), "--beam", "3")
    assert {f"bleu{n}" for n in range(1, 5)} <= beam.keys()
    assert all(0 <= beam[f"bleu{n}"] <= 1 for n in range(1, 5))
    saved = json.loads((work / "evaluation_test_beam3.json").read_text())
    assert saved["beam_width"] == 3 and saved["captions"] == beam["captions"]
    assert json.loads((work / "evaluation_test.json").read_text())["captions"] == greedy["captions"]


def test_caption_an_image_file(run, tmp_path):
    work, _ = run
    evaluation = json.loads((work / "evaluation_test.json").read_text())
    name, expected = next(iter(evaluation["captions"].items()))
    copy = tmp_path / name.upper()  # any file name, any case of extension
    copy.write_bytes((fixture_dir() / "Images" / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    captioned = helpers_cli("caption", str(copy), str(tmp_path / "notes.txt"), "--out", str(work))
    assert captioned["captions"] == {str(copy): expected}
    assert list(captioned["failed"]) == [str(tmp_path / "notes.txt")]


@pytest.mark.slow
def test_training_is_deterministic(run):
    """The same seed gives the same model: two trainings of 3 epochs, the same losses and the same captions."""
    work, _ = run
    results = []
    for _ in range(2):
        helpers_cli("train", "--out", str(work), "--model", "twin", "--epochs", "3", *SMALL)
        history = json.loads((work / "twin.history.json").read_text())
        results.append((history, helpers_cli("evaluate", "--out", str(work), "--model", "twin")["captions"]))
    assert len(results[0][0]["loss"]) == 3 and results[0] == results[1]


def test_tensorboard_logs_the_curves_and_the_graph(run, tmp_path):
    work, _ = run
    helpers_cli("train", "--out", str(work), "--model", "logged", "--epochs", "2", "--tensorboard", str(tmp_path),
                *SMALL)
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for part in ("train", "validation"):
        events = list((tmp_path / "logged" / part).glob("events.out.tfevents.*"))
        assert events, part
    # TensorFlow 2 writes scalars as tensors; the "keras" tag is the model's structure (TensorBoard's graph tab).
    validation = EventAccumulator(str(tmp_path / "logged" / "validation"), size_guidance={"tensors": 0}).Reload()
    losses = validation.Tensors("epoch_loss")
    assert [event.step for event in losses] == [0, 1]
    history = json.loads((work / "logged.history.json").read_text())
    assert [float(tf.make_ndarray(event.tensor_proto)) for event in losses] == pytest.approx(history["val_loss"])
    train = EventAccumulator(str(tmp_path / "logged" / "train"), size_guidance={"tensors": 0}).Reload()
    structure = tf.make_ndarray(train.Tensors("keras")[0].tensor_proto).item().decode()
    assert '"lstm"' in structure and '"next_word"' in structure


def test_evaluate_and_caption_sample_repeatably_and_refuse_bad_settings(run, capsys):
    work, result = run
    sampled = [helpers_cli("evaluate", "--out", str(work), "--top-p", "0.9", "--sample-seed", "3") for _ in range(2)]
    assert sampled[0]["captions"] == sampled[1]["captions"] != result["captions"]
    assert sampled[0]["sampling"] == {"temperature": 1.0, "top_k": None, "top_p": 0.9, "seed": 3}
    assert (work / "evaluation_test_sample_t1_p0.9_s3.json").is_file()
    assert 0 <= sampled[0]["rouge_l"] <= 1 and 0 <= sampled[0]["novel_share"] <= 1
    done = subprocess.run([sys.executable, "-m", "helpers", "caption", str(fixture_dir() / "Images"), "--out",
                           str(work), "--temperature", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "error: The temperature must be above 0" in done.stderr
