import pytest

from helpers.errors import SettingError, WorkFolderError
from helpers.machinery.files import fingerprint, write_json
from helpers.vocabulary import END_ID, PAD_ID, RESERVED, START_ID, UNK_ID, Vocabulary

TRAIN = ["a dog runs", "a dog sits at the end", "the cat sleeps", "a start"]


def test_reserved_tokens_come_first_and_real_words_keep_their_own_ids():
    vocab = Vocabulary.build(TRAIN)
    assert vocab.words[:4] == RESERVED and (PAD_ID, UNK_ID, START_ID, END_ID) == (0, 1, 2, 3)
    assert vocab.id_of("end") not in (START_ID, END_ID) and vocab.id_of("start") >= 4


def test_words_are_ordered_by_frequency_then_alphabet():
    assert Vocabulary.build(TRAIN).words[4:8] == ("a", "dog", "the", "at")


def test_min_count_drops_rare_words_and_they_become_unknown():
    vocab = Vocabulary.build(TRAIN, min_count=2)
    assert set(vocab.words[4:]) == {"a", "dog", "the"}
    assert vocab.encode("a cat") == [START_ID, vocab.id_of("a"), UNK_ID, END_ID]
    assert vocab.unknown_rate(["a cat sleeps", "the dog"]) == pytest.approx(2 / 5)


def test_round_trip_and_max_length():
    vocab = Vocabulary.build(TRAIN)
    assert vocab.max_length == 6 and vocab.sequence_length == 7
    for caption in TRAIN:
        assert vocab.decode(vocab.encode(caption)) == caption
    assert vocab.decode([START_ID, vocab.id_of("dog"), END_ID, vocab.id_of("cat")]) == "dog"


def test_json_save_load(tmp_path):
    vocab = Vocabulary.build(TRAIN)
    write_json(tmp_path / "vocab.json", vocab.as_json())
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    assert (tmp_path / "vocab.json").read_text().startswith("{")


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(SettingError, match="train split empty"):
        Vocabulary.build([])
    with pytest.raises(WorkFolderError, match="helpers prepare"):
        Vocabulary.load(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text('{"words": ["<pad>"', encoding="utf-8")
    with pytest.raises(WorkFolderError, match="vocab.json is damaged"):
        Vocabulary.load(tmp_path / "vocab.json")


@pytest.mark.parametrize("min_count", [0, -1, 1.5, True])
def test_min_count_must_be_a_whole_number_of_at_least_one(min_count):
    with pytest.raises(SettingError, match="min_count must be a whole number"):
        Vocabulary.build(TRAIN, min_count=min_count)


def test_a_min_count_that_leaves_no_word_is_refused():
    most = max(sum(c.split().count(w) for c in TRAIN) for w in {w for c in TRAIN for w in c.split()})
    assert Vocabulary.build(TRAIN, min_count=most).words[4:]  # the most frequent word survives its own count
    with pytest.raises(SettingError, match=f"min_count {most + 1} leaves no word: the most frequent train word "
                                           f"occurs {most} times"):
        Vocabulary.build(TRAIN, min_count=most + 1)


def test_fingerprint_changes_with_the_ids():
    vocab = Vocabulary.build(TRAIN)
    assert fingerprint(vocab.as_json()) == fingerprint(Vocabulary.build(list(reversed(TRAIN))).as_json())  # same ids
    assert fingerprint(vocab.as_json()) != fingerprint(Vocabulary.build(TRAIN + ["zebra zebra zebra"]).as_json())
