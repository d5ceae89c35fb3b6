from helpers.cleaning import clean_caption


def test_rules_on_a_real_looking_caption():
    raw = 'A dog\'s "red" ball, 2 kids - black-and-white 3rd  CAFÉ !'
    assert clean_caption(raw) == "a dogs red ball kids black and white cafe"


def test_cleaning_is_idempotent():
    for raw in ["A man , in a hat .", "It's 4 o'clock!", "  Mixed\tWHITE   space  ", "x y z a"]:
        once = clean_caption(raw)
        assert clean_caption(once) == once


def test_one_letter_words_except_a_are_dropped():
    assert clean_caption("I see a b c") == "see a"


def test_caption_of_only_punctuation_or_digits_becomes_empty():
    assert clean_caption("!!! 42 ...") == ""


def test_reserved_tokens_cannot_survive_cleaning():
    assert clean_caption("<start> the end <end>") == "start the end end"
