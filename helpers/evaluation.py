"""BLEU-1..4 with nltk's corpus_bleu, the human agreement baseline, and how repetitive captions are."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Sequence

from nltk.translate.bleu_score import corpus_bleu

from helpers.cleaning import clean_caption
from helpers.vocabulary import RESERVED

BLEU_WEIGHTS = {
    "bleu1": (1.0,),
    "bleu2": (1 / 2, 1 / 2),
    "bleu3": (1 / 3, 1 / 3, 1 / 3),
    "bleu4": (1 / 4, 1 / 4, 1 / 4, 1 / 4),
}
# Published results on the Flickr8k test split (BLEU x 100), for the notebook's comparison table.
LITERATURE = {
    "Show and Tell (Vinyals et al., 2015)": {"bleu1": 63.0},
    "Show, Attend and Tell, soft (Xu et al., 2015)": {"bleu1": 67.0, "bleu4": 19.5},
    "Show, Attend and Tell, hard (Xu et al., 2015)": {"bleu1": 67.0, "bleu4": 21.3},
}
# Words that a fluent caption repeats naturally ("a dog and a cat"); repeating any other word is a symptom.
FUNCTION_WORDS = frozenset("a an the and of in on at with to is are while his her their its".split())


def tokens(caption: str) -> list[str]:
    """Drop reserved tokens, then clean the caption the same way as the training data."""
    return clean_caption(" ".join(w for w in caption.split() if w not in RESERVED)).split()


def bleu_scores(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 (standard cumulative weights, no smoothing) of hypotheses against their references."""
    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError(f"Need one list of references per hypothesis, got {len(references)} and {len(hypotheses)}")
    refs = [[tokens(r) for r in image_refs] for image_refs in references]
    hyps = [tokens(h) for h in hypotheses]
    with warnings.catch_warnings():  # nltk warns when a short corpus has no matching 4-gram; the score is 0 then
        warnings.simplefilter("ignore", UserWarning)
        return {name: float(corpus_bleu(refs, hyps, weights=w)) for name, w in BLEU_WEIGHTS.items()}


def human_bleu(references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Leave-one-out human agreement: each reference scored against the others, averaged over the choice left out."""
    rounds = min(len(r) for r in references)
    if rounds < 2:
        raise ValueError("The human baseline needs at least two references per image")
    scores = [bleu_scores([[r for j, r in enumerate(refs) if j != k] for refs in references],
                          [refs[k] for refs in references]) for k in range(rounds)]
    return {name: sum(s[name] for s in scores) / rounds for name in BLEU_WEIGHTS}


def repetition_stats(captions: Sequence[str]) -> dict[str, float]:
    """Share of captions repeating a content word, distinct words used, and share of distinct captions."""
    split = [tokens(c) for c in captions]
    repeats = [any(n > 1 for w, n in Counter(words).items() if w not in FUNCTION_WORDS) for words in split]
    return {
        "repeated_word_share": sum(repeats) / max(len(split), 1),
        "distinct_words": len({w for words in split for w in words}),
        "distinct_caption_share": len({" ".join(words) for words in split}) / max(len(split), 1),
    }
