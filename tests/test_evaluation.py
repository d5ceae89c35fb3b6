import math

import pytest

from helpers.errors import SettingError
from helpers.evaluation import bleu_scores, frequent_caption_floor, human_bleu, repetition_stats, sentence_bleus
from helpers.vocabulary import Vocabulary


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
    with pytest.raises(SettingError):
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
    assert "vocabulary_used_share" not in stats
    vocab = Vocabulary.build(["a dog and a cat", "a bird sings", "the end"])  # 8 words
    used = repetition_stats(["a dog and a cat", "a dog dog dog"], vocab)["vocabulary_used_share"]
    assert used == pytest.approx(4 / 8)


def test_the_floor_writes_the_most_frequent_train_caption_for_every_image():
    train = {"1.jpg": ["a dog runs", "a dog"], "2.jpg": ["a dog runs", "a cat sleeps"], "3.jpg": ["a dog runs"]}
    references = [["a dog runs fast", "the dog runs"], ["a cat sleeps", "a cat is asleep"]]
    floor = frequent_caption_floor(train, references)
    assert floor["caption"] == "a dog runs" and floor["times_in_train"] == 3
    assert floor["bleu1"] == pytest.approx(bleu_scores(references, ["a dog runs"] * 2)["bleu1"])
    assert 0 < floor["bleu1"] < 1


def test_sentence_bleus_per_caption():
    refs = [["a red ball on the left of the grass"], ["a blue ball on the right"]]
    scores = sentence_bleus(refs, ["a red ball on the left of the grass", "a dog"])
    assert scores[0] == pytest.approx(1.0)
    assert 0.0 <= scores[1] < 0.1
    assert sentence_bleus([["the cat sat"]], [""])[0] == 0.0  # empty caption: 0, no exception
    assert sentence_bleus([["a red ball"]], ["a red ball <end>"], order=1)[0] == pytest.approx(1.0)
    with pytest.raises(SettingError):
        sentence_bleus([["a"]], ["a", "b"])
