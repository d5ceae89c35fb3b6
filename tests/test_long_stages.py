"""When the machine fails a long stage: memory that runs out (TensorFlow's ResourceExhaustedError on a GPU, the
host's MemoryError) ends features, training, fine-tuning and evaluation in one line that names the stage and the
settings that need less memory (exit code 2, nothing changed); METEOR whose Java dies is skipped, and the other
scores are still reported. The errors are injected into each stage's inner step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from helpers import decoding, training
from helpers.errors import CourseError, OutOfMemoryError
from helpers.machinery import cli, fine_tune_stage, pipeline
from helpers.machinery.files import stage

SIZE = "71"  # small pictures: fast
TRAIN = ["--image-size", SIZE, "--units", "16", "--epochs", "2"]
OOM = ("OOM when allocating tensor with shape[64,35,7329] and type float on /job:localhost/replica:0/task:0/device:"
       "GPU:0 by allocator GPU_0_bfc\n\t [[{{node next_word_1/MatMul}}]]\nHint: If you want to see a list of "
       "allocated tensors when OOM happens, add report_tensor_allocations_upon_oom to RunOptions for current "
       "allocation info.")
SAID = ("ResourceExhaustedError: OOM when allocating tensor with shape[64,35,7329] and type float on "
        "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


def run(*args: str) -> int:
    return cli.main(list(args))


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """The fixture prepared, encoded and trained for two epochs in a small work folder."""
    out = tmp_path_factory.mktemp("trained")
    assert run("prepare", "--out", str(out)) == 0
    assert run("features", "--out", str(out), "--image-size", SIZE) == 0
    assert run("train", "--out", str(out), *TRAIN) == 0
    assert run("evaluate", "--out", str(out)) == 0
    return out


@pytest.fixture
def work(trained_folder, tmp_path) -> Path:
    """A copy of the trained work folder to change."""
    return Path(shutil.copytree(trained_folder, tmp_path / "work"))


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def raises(error: BaseException):
    def inner(*args, **kwargs):
        raise error

    return inner


def out_of_memory(capsys, *args: str) -> str:
    """Run a command that runs out of memory: exit code 2 and one `error:` line, no traceback. Returns the line."""
    assert run(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def test_features_out_of_memory_say_to_encode_fewer_pictures_at_a_time(work, monkeypatch, capsys):
    before = hashes(work)
    monkeypatch.setattr(pipeline, "extract_features", raises(tf.errors.ResourceExhaustedError(None, None, OOM)))
    assert out_of_memory(capsys, "features", "--out", str(work), "--image-size", SIZE) == (
        f"error: `python -m helpers features` ran out of memory ({SAID}): encode fewer pictures at a time (features "
        "--batch-size 8, or run --image-batch-size 8; 32 by default) or use a smaller encoder (--encoder "
        "mobilenet_v2), then run it again: the features encoded so far are kept")
    monkeypatch.setattr(pipeline, "extract_features", raises(MemoryError(
        "Unable to allocate 1.17 GiB for an array with shape (32, 299, 299, 3) and data type float32")))
    assert out_of_memory(capsys, "features", "--out", str(work), "--image-size", SIZE).startswith(
        "error: `python -m helpers features` ran out of memory (MemoryError: Unable to allocate 1.17 GiB for an "
        "array with shape (32, 299, 299, 3) and data type float32): encode fewer pictures at a time")
    assert hashes(work) == before


def test_training_out_of_memory_says_to_use_smaller_batches_or_a_coarser_grid(work, monkeypatch, capsys):
    before = hashes(work)
    monkeypatch.setattr(training, "train_model", raises(tf.errors.ResourceExhaustedError(None, None, OOM)))
    assert out_of_memory(capsys, "train", "--out", str(work), *TRAIN) == (
        f"error: `python -m helpers train` ran out of memory ({SAID}): train on smaller batches (--batch-size 32; 64 "
        "by default) or a smaller decoder (--units 128); for the attention decoder, a coarser grid too (--grid-pool "
        "2) or a smaller encoder's (--encoder mobilenet_v2), then run it again")
    assert hashes(work) == before


def test_fine_tuning_out_of_memory_says_to_take_fewer_pictures_a_step(work, monkeypatch, capsys):
    monkeypatch.setattr(fine_tune_stage, "train_model", raises(tf.errors.ResourceExhaustedError(None, None, OOM)))
    assert out_of_memory(capsys, "train", "--fine-tune", "--out", str(work), *TRAIN[:-1], "1") == (
        f"error: `python -m helpers train --fine-tune` ran out of memory ({SAID}): fine-tune on fewer pictures a step "
        "(--fine-tune-batch-size 8; 16 by default) or with a smaller encoder (--encoder mobilenet_v2, for both "
        "stages), then run it again")
    assert json.loads((work / "model.json").read_text())["status"] == "complete"  # stage 1's model, as it was
    assert "fine_tune" not in json.loads((work / "model.json").read_text())


def test_evaluation_out_of_memory_says_to_narrow_the_beam(work, monkeypatch, capsys):
    before = hashes(work)
    monkeypatch.setattr(decoding, "decode", raises(tf.errors.ResourceExhaustedError(None, None, OOM)))
    assert out_of_memory(capsys, "evaluate", "--beam", "5", "--out", str(work)) == (
        f"error: `python -m helpers evaluate` ran out of memory ({SAID}): write the captions with a narrower beam "
        "(--beam 1, greedy search, needs the least), then run it again")
    assert hashes(work) == before


def test_the_outermost_stage_names_the_memory_that_ran_out():
    @stage("features", "fewer pictures")
    def inner():
        raise MemoryError

    @stage("train --fine-tune", "fewer steps")
    def outer():
        inner()

    with pytest.raises(OutOfMemoryError) as error:
        outer()
    assert isinstance(error.value, CourseError) and isinstance(error.value.__cause__, MemoryError)
    assert str(error.value) == "`python -m helpers train --fine-tune` ran out of memory (MemoryError): fewer steps"


def test_a_gpu_out_of_memory_that_tensorflow_calls_another_error_is_one_too():
    @stage("train", "smaller batches")
    def copying():
        raise tf.errors.InternalError(None, None, "Dst tensor is not initialized.")

    with pytest.raises(OutOfMemoryError) as error:
        copying()
    assert str(error.value) == ("`python -m helpers train` ran out of memory (InternalError: Dst tensor is not "
                                "initialized.): smaller batches")


def test_other_errors_in_a_stage_keep_their_traceback():
    @stage("train", "fewer")
    def broken():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        broken()

    @stage("train", "fewer")
    def graph_bug():
        raise tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [64,35] vs. [64,36]")

    with pytest.raises(tf.errors.InvalidArgumentError):
        graph_bug()


def test_a_long_message_is_cut_to_its_first_line():
    long = "x" * 300 + "\nsecond line"
    assert str(OutOfMemoryError(MemoryError(long), "evaluate", "less")) == \
        f"`python -m helpers evaluate` ran out of memory (MemoryError: {'x' * 160}...): less"


def test_meteor_whose_java_dies_is_skipped_and_the_other_scores_are_printed(work, tmp_path, monkeypatch, capsys):
    pytest.importorskip("pycocoevalcap", reason='the optional eval extra is not installed: pip install ".[eval]"')
    without = json.loads((work / "evaluation_test.json").read_text())
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\nread line\necho "Could not reserve enough space for 2097152KB object heap" >&2\n'
                    "exit 1\n", encoding="utf-8")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", f"{java.parent}{os.pathsep}{os.environ['PATH']}")
    assert run("evaluate", "--meteor", "--out", str(work)) == 0
    out = capsys.readouterr().out
    assert ("METEOR skipped: Java started, then failed (exit code 1: Could not reserve enough space for 2097152KB "
            "object heap); check that `java -jar` runs with the 2 GB of memory METEOR asks for (-Xmx2G), or leave "
            "out --meteor (meteor=True in Python). The other scores do not need it.") in out.splitlines()
    metrics = [name for _, name in cli.EVALUATION_METRICS]
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()[0] in metrics]
    assert rows == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L"]  # every one but METEOR
    result = json.loads((work / "evaluation_test.json").read_text())
    assert result["meteor"] is None and result["human"]["meteor"] is None
    assert {key: result[key] for key in ("bleu1", "bleu4", "cider", "rouge_l", "human", "floor")} == \
        {key: without[key] for key in ("bleu1", "bleu4", "cider", "rouge_l", "human", "floor")}
