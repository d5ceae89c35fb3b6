import math
import shutil

import pytest

from helpers import evaluation
from helpers.errors import SettingError
from helpers.evaluation import (
    bleu_scores,
    frequent_caption_floor,
    human_bleu,
    like_for_like,
    most_frequent_caption,
    repetition_stats,
    sentence_bleus,
)
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
    assert most_frequent_caption(train) == ("a dog runs", 3)
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


FIVE = [["a dog runs on the grass", "a brown dog is running on a lawn", "the dog plays in a park",
         "a puppy runs across the green grass", "one dog running outside"],
        ["a man rides a red bike", "a cyclist on a red bicycle", "a person riding a bike down the road",
         "a man on a bicycle", "someone cycles along a street"]]


def test_a_copy_of_a_reference_scores_less_against_the_humans_four_than_against_all_five():
    # The model writes each image's first reference. Against all five it is matched word for word (BLEU-4 = 1);
    # in round 0 that reference is the human's, left out, so the copy has only the other four to match.
    copies = [refs[0] for refs in FIVE]
    scores = like_for_like(FIVE, {"model": copies})
    assert scores["rounds"] == 5 and scores["all"]["model"]["bleu4"] == pytest.approx(1.0)
    round_0 = bleu_scores([refs[1:] for refs in FIVE], copies)["bleu4"]
    assert round_0 < 0.5
    assert scores["same_as_human"]["model"]["bleu4"] == pytest.approx((round_0 + 4 * 1.0) / 5)
    assert scores["same_as_human"]["model"]["bleu4"] < scores["all"]["model"]["bleu4"]
    assert scores["same_as_human"]["human"]["bleu4"] == pytest.approx(human_bleu(FIVE)["bleu4"])


def test_like_for_like_averages_the_rounds_by_hand():
    # References "a dog runs", "a dog runs", "a cat sleeps"; the model writes "a cat runs" (3 words, no brevity
    # penalty). BLEU-1 against the two references left in each round:
    #   rounds 0 and 1: "a dog runs" + "a cat sleeps" hold a, cat and runs -> 3/3; round 2: two "a dog runs" -> 2/3.
    # The human: rounds 0 and 1 "a dog runs" is in the others -> 1; round 2 "a cat sleeps" matches only "a" -> 1/3.
    # The floor writes "a dog": 2/2 matched every round, brevity penalty exp(1 - 3/2).
    refs = [["a dog runs", "a dog runs", "a cat sleeps"]]
    scores = like_for_like(refs, {"model": ["a cat runs"], "floor": ["a dog"]})
    same = scores["same_as_human"]
    assert same["model"]["bleu1"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert same["human"]["bleu1"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    assert same["floor"]["bleu1"] == pytest.approx(math.exp(1 - 3 / 2))
    assert scores["all"]["model"]["bleu1"] == pytest.approx(1.0)  # all three references: every word is in one
    assert set(same["model"]) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l", "meteor"}
    assert same["model"]["meteor"] is None  # not asked for


def test_like_for_like_cider_takes_its_weights_from_each_rounds_references():
    pytest.importorskip("pycocoevalcap", reason="CIDEr-D needs the eval extra")
    hypotheses = ["a dog runs on a lawn", "a man on a red bike"]
    scores = like_for_like(FIVE, {"model": hypotheses})
    rounds = [([[r for j, r in enumerate(refs) if j != k] for refs in FIVE], [refs[k] for refs in FIVE])
              for k in range(5)]
    model = [evaluation.cider_score(others, hypotheses) for others, _ in rounds]
    human = [evaluation.cider_score(others, left_out) for others, left_out in rounds]
    assert scores["same_as_human"]["model"]["cider"] == pytest.approx(sum(model) / 5)
    assert scores["same_as_human"]["human"]["cider"] == pytest.approx(sum(human) / 5)
    assert scores["all"]["model"]["cider"] == pytest.approx(evaluation.cider_score(FIVE, hypotheses))
    assert len(set(model)) > 1  # the rounds differ: an average of one repeated figure would pass by luck


def test_like_for_like_scores_meteor_of_every_corpus_in_one_call(monkeypatch):
    calls = []

    def fake_meteor(corpora):  # one Java process for everything: one call, a figure per corpus
        calls.append(len(corpora))
        return [len(hyps[0].split()) / 10 for _, hyps in corpora]

    monkeypatch.setattr(evaluation, "meteor_scores", fake_meteor)
    scores = like_for_like([["a dog runs", "a dog", "a cat"]], {"model": ["a b c d e"]}, meteor=True)
    assert calls == [1 + 3 * 2]  # the model against all; then the human and the model in each of 3 rounds
    assert scores["all"]["model"]["meteor"] == pytest.approx(0.5)
    assert scores["same_as_human"]["model"]["meteor"] == pytest.approx(0.5)
    assert scores["same_as_human"]["human"]["meteor"] == pytest.approx((3 + 2 + 2) / 3 / 10)


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR runs in Java, and no `java` is on the PATH")
def test_meteor_scores_each_corpus_on_its_own():
    pytest.importorskip("pycocoevalcap", reason="METEOR needs the eval extra")
    references = [["a dog runs on the grass", "a brown dog is running"], ["a cat sleeps on a red sofa"]]
    same, other = evaluation.meteor_scores([(references, ["a dog runs on the grass", "a cat sleeps on a red sofa"]),
                                            (references, ["two birds fly away", "people walk home"])])
    assert 0.9 < same <= 1 and other < 0.1  # pooled over both corpora, each would be about 0.5


def test_the_printed_evaluation_says_what_each_column_compares(capsys):
    from helpers.machinery.cli import _print_evaluation

    hypotheses = ["a dog runs on a lawn", "a man on a red bike"]
    scores = like_for_like(FIVE, {"model": hypotheses, "floor": ["a dog"] * 2})
    same = scores["same_as_human"]
    result = {"images": 2, "split": "test", "decoder": "merge", "encoder": "mobilenet_v2", "weights": "imagenet",
              "beam_width": 3, **scores["all"]["model"], "human": same["human"],
              "floor": {"caption": "a dog", "times_in_train": 9, **scores["all"]["floor"]},
              "like_for_like": {"rounds": 5, "model": same["model"], "floor": same["floor"]},
              "repetition": repetition_stats(hypotheses) | {"vocabulary_used_share": 0.5}, "novel_share": 0.5}
    _print_evaluation(result)
    out = capsys.readouterr().out
    who, against = out.splitlines()[1:3]
    assert who.split() == ["model", "model", "human", "floor", "floor"]
    assert [c.strip() for c in against.split("  ") if c.strip()] == [
        "vs all 5 refs", "vs the human's 4", "vs the other 4", "vs all 5 refs", "vs the human's 4"]
    bleu4 = next(line for line in out.splitlines() if line.strip().startswith("BLEU-4")).split()[1:]
    assert [float(x) for x in bleu4] == pytest.approx([round(v, 3) for v in (
        result["bleu4"], same["model"]["bleu4"], same["human"]["bleu4"], scores["all"]["floor"]["bleu4"],
        same["floor"]["bleu4"])], abs=1e-9)
    assert "METEOR" not in out  # not computed: no row


def test_rouge_l_is_the_longest_common_subsequence_f_measure():
    pytest.importorskip("pycocoevalcap", reason="ROUGE-L needs the eval extra")
    assert evaluation.rouge_l_score([["a dog runs on the grass"]], ["a dog runs on the grass"]) == pytest.approx(1.0)
    # hypothesis "a dog on grass" against "a dog runs on the grass": LCS "a dog on grass" = 4 words,
    # precision 4/4, recall 4/6, F with beta 1.2: (1 + 1.44) * P * R / (R + 1.44 * P)
    p, r = 1.0, 4 / 6
    expected = (1 + 1.2**2) * p * r / (r + 1.2**2 * p)
    assert evaluation.rouge_l_score([["a dog runs on the grass"]], ["a dog on grass"]) == pytest.approx(expected)
    assert evaluation.rouge_l_score([["a dog runs"]], ["the cat sleeps"]) == 0.0


def test_novelty_is_the_share_of_captions_no_train_caption_matches_word_for_word():
    train = {"a.jpg": ["A dog runs.", "a cat sleeps"], "b.jpg": ["two men talk"]}
    found = evaluation.novelty(["a dog runs", "a dog runs fast", "two men talk", "a bird sings"], train)
    assert found == {"novel_share": 0.5}  # "a dog runs" (cleaned) and "two men talk" are train captions
