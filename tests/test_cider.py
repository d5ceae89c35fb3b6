"""CIDEr-D and METEOR through pycocoevalcap (the optional `eval` extra), on cases checked by hand."""

import math
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
