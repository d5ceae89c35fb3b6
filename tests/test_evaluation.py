import math

import pytest

from helpers.evaluation import bleu_scores, human_bleu, repetition_stats


def test_bleu1_by_hand_with_brevity_penalty():
    # 3 hypothesis words, all in a reference; closest reference length 4 -> BP = exp(1 - 4/3)
    scores = bleu_scores([["a dog runs on grass", "the dog is running"]], ["a dog runs"])
    assert scores["bleu1"] == pytest.approx(math.exp(1 - 4 / 3))
    assert scores["bleu2"] == pytest.approx(math.exp(1 - 4 / 3))


def test_bleu_by_hand_with_clipped_counts():
    # "the the the the" vs "the cat": unigram matches clipped to 1 of 4; lengths 4 vs 2 -> no penalty
    scores = bleu_scores([["the cat"]], ["the the the the"])
    assert scores["bleu1"] == pytest.approx(0.25)
    assert scores["bleu4"] < 1e-9


def test_perfect_match_and_special_tokens_stripped():
    scores = bleu_scores([["A dog runs across the grass ."]], ["<start> a dog runs across the grass <end>"])
    assert all(v == pytest.approx(1.0) for v in scores.values())


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        bleu_scores([["a"]], ["a", "b"])


def test_human_baseline_is_leave_one_out():
    refs = [["a dog runs", "a dog runs", "a cat sleeps"]]
    expected = sum(bleu_scores([[r for j, r in enumerate(refs[0]) if j != k]], [refs[0][k]])["bleu1"]
                   for k in range(3)) / 3
    assert human_bleu(refs)["bleu1"] == pytest.approx(expected)
    assert human_bleu(refs)["bleu1"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_repetition_ignores_function_words():
    stats = repetition_stats(["a dog and a cat", "a dog dog dog", "a dog and a cat"])
    assert stats["repeated_word_share"] == pytest.approx(1 / 3)
    assert stats["distinct_words"] == 4
    assert stats["distinct_caption_share"] == pytest.approx(2 / 3)
