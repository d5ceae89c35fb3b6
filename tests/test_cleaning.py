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


def test_a_hyphen_that_joins_a_single_letter_keeps_the_word_whole():
    cleaned = clean_caption("A boy in a T-shirt takes an X-ray , then a U-turn .")
    assert cleaned == "a boy in a t-shirt takes an x-ray then a u-turn"
    assert clean_caption("A snow-covered merry-go-round") == "a snow covered merry go round"
    assert clean_caption("a 3-year-old child") == "a year old child"
    assert clean_caption(clean_caption("t-shirts")) == "t-shirts"


def test_a_caption_of_nothing_but_a_is_empty():
    assert clean_caption("A") == "" and clean_caption(" a . ") == ""
    assert clean_caption("a a a a") == "a a a a"  # a model's failure is scored as written
