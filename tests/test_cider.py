"""CIDEr-D and METEOR through pycocoevalcap (the optional `eval` extra), on cases checked by hand."""

import math
import os
import shutil

import pytest

from helpers import evaluation

pytest.importorskip("pycocoevalcap", reason='the optional eval extra is not installed: pip install ".[eval]"')


def test_identical_captions_score_high_and_disjoint_ones_zero():
    references = [["a dog runs on the grass", "a brown dog is running"], ["a cat sleeps on a red sofa"]]
    assert evaluation.cider_score(references, ["a dog runs on the grass", "a cat sleeps on a red sofa"]) > 3
    assert evaluation.cider_score(references, ["two birds fly", "people walk home"]) == 0.0


def test_cider_d_matches_a_computation_by_hand():
    # Two images, one reference each. idf = log(2 images) - log(images whose references hold the n-gram): "a" is in
    # both, so it weighs 0; every other n-gram is in one image only and weighs log 2 (the same for all: it cancels).
    # Image 1, hypothesis = reference: cosine 1 for 1-, 2- and 3-grams, 0 for 4-grams (there are none):
    #   10 * (1 + 1 + 1 + 0) / 4 = 7.5.
    # Image 2, "a cat" against "a cat sleeps": unigrams (0, w) . (0, w, w) -> 1/sqrt2; bigrams "a cat" vs
    # "a cat", "cat sleeps" -> 1/sqrt2; no trigram -> 0. Length penalty exp(-(1-2)^2 / (2 * 6^2)) (lengths in
    # bigrams, as pycocoevalcap counts them): 10 * (2 / sqrt2) / 4 * exp(-1/72).
    # Corpus CIDEr-D: the mean of the two images. Cleaning comes first: "A Dog runs." is "a dog runs".
    expected = (7.5 + 10 * math.sqrt(2) / 4 * math.exp(-1 / 72)) / 2
    score = evaluation.cider_score([["A Dog runs."], ["a cat sleeps"]], ["a dog runs <end>", "a cat"])
    assert score == pytest.approx(expected, rel=1e-9)  # 5.4934


def test_cider_needs_one_reference_list_per_hypothesis():
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        evaluation.cider_score([["a dog"]], ["a dog", "a cat"])


def test_without_the_extra_the_scores_are_none(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_coco(name, *args, **kwargs):
        if name.startswith("pycocoevalcap"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_coco)
    assert evaluation.cider_score([["a dog"]], ["a dog"]) is None
    assert evaluation.meteor_score([["a dog"]], ["a dog"]) is None
    assert "pip install" in capsys.readouterr().out


def test_meteor_is_none_without_java(monkeypatch, capsys):
    monkeypatch.setattr(evaluation.shutil, "which", lambda name: None)
    assert evaluation.meteor_score([["a dog"]], ["a dog"]) is None
    assert "java" in capsys.readouterr().out.lower()


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR runs in Java, and no `java` is on the PATH")
def test_meteor_of_captions_equal_to_a_reference_is_near_one():
    # One call: each starts a Java process that loads METEOR's paraphrase table (about 10 s).
    references = [["a dog runs on the grass", "a brown dog is running"], ["a cat sleeps on a red sofa"]]
    assert 0.9 < evaluation.meteor_score(references, ["a dog runs on the grass", "a cat sleeps on a red sofa"]) <= 1


FAKE_JAVAS = {  # a `java` that starts, then fails: what each does, and what the course says of it
    "exits at once": ('echo "Error: Unable to access jarfile meteor-1.5.jar" >&2\nexit 1',
                      "exit code 1: Error: Unable to access jarfile meteor-1.5.jar"),
    "dies after starting": ('read line\necho "Exception in thread main java.lang.OutOfMemoryError: Java heap space" >&2'
                            "\nexit 1",
                            "exit code 1: Exception in thread main java.lang.OutOfMemoryError: Java heap space"),
    "is killed": ("read line\nkill -9 $$", "killed by signal 9"),
    "answers nonsense": ("while read line; do echo nonsense; done",
                         "ValueError: could not convert string to float: b'nonsense'"),
}


def fake_java(folder, body: str) -> str:
    """A PATH with a `java` first that runs `body` (a shell script) instead of Java."""
    folder.mkdir()
    java = folder / "java"
    java.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    java.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("case", sorted(FAKE_JAVAS))
def test_meteor_whose_java_fails_is_skipped_in_one_line_and_the_rest_is_scored(case, tmp_path, monkeypatch, capsys):
    body, why = FAKE_JAVAS[case]
    references = [["a dog runs on the grass", "a brown dog is running", "a dog on grass"], ["a cat sleeps"] * 3]
    systems = {"model": ["a dog runs on grass", "a cat is sleeping"]}
    without = evaluation.like_for_like(references, systems)
    monkeypatch.setenv("PATH", fake_java(tmp_path / "bin", body))
    assert evaluation.meteor_score(references, systems["model"]) is None
    scored = evaluation.like_for_like(references, systems, meteor=True)
    assert scored == without and scored["all"]["model"]["cider"] > 0 and scored["all"]["model"]["meteor"] is None
    line = (f"METEOR skipped: Java started, then failed ({why}); check that `java -jar` runs with the 2 GB of memory "
            "METEOR asks for (-Xmx2G), or leave out --meteor (meteor=True in Python). The other scores do not "
            "need it.")
    assert capsys.readouterr().out == f"{line}\n{line}\n"


def test_meteor_whose_java_cannot_start_is_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    fake_java(tmp_path / "bin", "")
    (tmp_path / "bin" / "java").write_bytes(b"\x7fELF not really a program")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # alone: no other java to fall back on
    assert evaluation.meteor_score([["a dog"]], ["a dog"]) is None
    assert capsys.readouterr().out == (
        "METEOR skipped: `java` could not be started (Exec format error); check that `java -version` runs, or leave "
        "out --meteor (meteor=True in Python). The other scores do not need it.\n")
