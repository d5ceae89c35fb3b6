"""Notebook 06's measures: BLEU-1..4 with nltk's corpus_bleu, the human agreement baseline (like for like:
`like_for_like`), and how repetitive captions are.

Optionally (`pip install "captioning-course-helpers[eval]"`, which brings pycocoevalcap): CIDEr-D, and METEOR
where Java is installed. Both score the course's own cleaned tokens, not the COCO PTBTokenizer (which needs Java).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence

from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from helpers.cleaning import clean_caption
from helpers.errors import SettingError
from helpers.vocabulary import RESERVED, Vocabulary

BLEU_WEIGHTS = {
    "bleu1": (1.0,),
    "bleu2": (1 / 2, 1 / 2),
    "bleu3": (1 / 3, 1 / 3, 1 / 3),
    "bleu4": (1 / 4, 1 / 4, 1 / 4, 1 / 4),
}
# Words that a fluent caption repeats naturally ("a dog and a cat"); repeating any other word is a symptom.
FUNCTION_WORDS = frozenset(["a", "an", "the", "and", "of", "in", "on", "at", "with", "to", "is", "are", "while",
                            "his", "her", "their", "its"])


def tokens(caption: str) -> list[str]:
    """Drop reserved tokens, then clean the caption the same way as the training data."""
    return list(_cleaned(caption))


@functools.lru_cache(maxsize=2**17)
def _cleaned(caption: str) -> tuple[str, ...]:
    """`tokens`, remembered: the human baseline scores each reference caption a dozen times."""
    return tuple(clean_caption(" ".join(w for w in caption.split() if w not in RESERVED)).split())


def bleu_scores(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 (standard cumulative weights, no smoothing) of hypotheses against their references."""
    if len(references) != len(hypotheses) or not hypotheses:
        raise SettingError(f"Need one list of references per hypothesis, got {len(references)} and {len(hypotheses)}")
    refs = [[tokens(r) for r in image_refs] for image_refs in references]
    hyps = [tokens(h) for h in hypotheses]
    with warnings.catch_warnings():  # nltk warns when a short corpus has no matching 4-gram; the score is 0 then
        warnings.simplefilter("ignore", UserWarning)
        scores = corpus_bleu(refs, hyps, weights=list(BLEU_WEIGHTS.values()))  # the n-grams counted once for all 4
    return {name: float(score) for name, score in zip(BLEU_WEIGHTS, scores, strict=True)}


def _leave_one_out(references: Sequence[Sequence[str]]) -> list[tuple[list[list[str]], list[str]]]:
    """The leave-one-out rounds: in round k, (every image's references but its k-th, every image's k-th)."""
    rounds = min(len(r) for r in references)
    if rounds < 2:
        raise SettingError("The human baseline needs at least two references per image")
    return [([[r for j, r in enumerate(refs) if j != k] for refs in references], [refs[k] for refs in references])
            for k in range(rounds)]


def human_bleu(references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Leave-one-out human agreement: each reference scored against the others, averaged over the choice left out."""
    scores = [bleu_scores(others, left_out) for others, left_out in _leave_one_out(references)]
    return {name: sum(s[name] for s in scores) / len(scores) for name in BLEU_WEIGHTS}


def like_for_like(references: Sequence[Sequence[str]], systems: Mapping[str, Sequence[str]],
                  meteor: bool = False) -> dict:
    """Every metric of each system's captions against all the references, and against the same references as the
    human baseline's.

    In leave-one-out round k, every image's k-th reference (the human) is scored against its other references,
    and so is each system, against those same ones; each figure is the mean over the rounds. A system scored
    against all five references has one reference more to match than the human had: `"all"` flatters it,
    `"same_as_human"` compares like for like. CIDEr-D is computed per round, its n-gram weights from that
    round's references. Returns {"all": {name: scores}, "same_as_human": {"human": scores, name: scores},
    "rounds": k}, scores as `corpus_scores` gives them.
    """
    rounds = _leave_one_out(references)
    names = ["human", *systems]
    corpora = [(references, hyps) for hyps in systems.values()]
    corpora += [(others, left_out if name == "human" else systems[name]) for others, left_out in rounds
                for name in names]
    scored = corpus_scores(corpora, meteor)
    full, per_round = scored[:len(systems)], scored[len(systems):]
    mean = {name: _mean_scores(per_round[i::len(names)]) for i, name in enumerate(names)}
    return {"all": dict(zip(systems, full, strict=True)), "same_as_human": mean, "rounds": len(rounds)}


def _mean_scores(scores: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """Each metric's mean over several score dicts (None where a metric was not computed)."""
    return {name: None if any(s[name] is None for s in scores) else sum(s[name] for s in scores) / len(scores)
            for name in scores[0]}


def corpus_scores(corpora: Sequence[tuple[Sequence[Sequence[str]], Sequence[str]]],
                  meteor: bool = False) -> list[dict[str, float | None]]:
    """BLEU-1..4, CIDEr-D, ROUGE-L and METEOR of each (references, hypotheses) corpus: {"bleu1": ..., "cider": ...,
    "rouge_l": ..., "meteor": ...}. CIDEr-D and ROUGE-L are None without the eval extra; METEOR is None unless
    asked for (and without Java), and is computed for every corpus in one Java process."""
    ciders = [cider_score(*corpora[0])]  # None (said once) without the extra
    ciders += [None if ciders[0] is None else cider_score(refs, hyps) for refs, hyps in corpora[1:]]
    rouges = [None if ciders[0] is None else rouge_l_score(refs, hyps) for refs, hyps in corpora]
    meteors = (meteor_scores(corpora) if meteor else None) or [None] * len(corpora)
    return [{**bleu_scores(refs, hyps), "cider": cider, "rouge_l": rouge, "meteor": score}
            for (refs, hyps), cider, rouge, score in zip(corpora, ciders, rouges, meteors, strict=True)]


def repetition_stats(captions: Sequence[str], vocab: Vocabulary | None = None) -> dict[str, float | int]:
    """How varied the captions are: the share repeating a content word, the distinct words used (and their share of
    the vocabulary's words, with `vocab`), and the share of distinct captions."""
    split = [tokens(c) for c in captions]
    repeats = [any(n > 1 for w, n in Counter(words).items() if w not in FUNCTION_WORDS) for words in split]
    used = {w for words in split for w in words}
    stats = {
        "repeated_word_share": sum(repeats) / max(len(split), 1),
        "distinct_words": len(used),
        "distinct_caption_share": len({" ".join(words) for words in split}) / max(len(split), 1),
    }
    if vocab is not None:
        stats["vocabulary_used_share"] = len(used) / max(len(vocab) - len(RESERVED), 1)
    return stats


def novelty(captions: Sequence[str], train_captions: Mapping[str, list[str]]) -> dict[str, float]:
    """How many captions are new: the share that is not, word for word, one of the train captions (Tanti et al.
    report the share that is)."""
    seen = {_cleaned(c) for caps in train_captions.values() for c in caps}
    return {"novel_share": sum(_cleaned(c) not in seen for c in captions) / max(len(captions), 1)}


def most_frequent_caption(train_captions: Mapping[str, list[str]]) -> tuple[str, int]:
    """The train split's most frequent caption and how many times it is there (ties: the shorter, then the first
    in alphabetical order)."""
    counts = Counter(c for caps in train_captions.values() for c in caps)
    return max(counts.items(), key=lambda item: (item[1], -len(item[0]), item[0]))


def frequent_caption_floor(train_captions: Mapping[str, list[str]], references: Sequence[Sequence[str]]) -> dict:
    """The floor a captioner must clear: BLEU of writing the most frequent train caption for every image.

    A model that ignores the image can do this well; one that looks at the image should do better.
    """
    caption, times = most_frequent_caption(train_captions)
    return {"caption": caption, "times_in_train": times, **bleu_scores(references, [caption] * len(references))}


def sentence_bleus(references: Sequence[Sequence[str]], hypotheses: Sequence[str], order: int = 4) -> list[float]:
    """BLEU-`order` of each caption alone against its references, smoothed (nltk method 1) so few matches are not 0."""
    if len(references) != len(hypotheses):
        raise SettingError(f"Need one list of references per hypothesis, got {len(references)} and {len(hypotheses)}")
    weights, smooth = BLEU_WEIGHTS[f"bleu{order}"], SmoothingFunction().method1
    with warnings.catch_warnings():  # nltk warns about empty hypotheses; they score 0
        warnings.simplefilter("ignore", UserWarning)
        return [float(sentence_bleu([tokens(r) for r in refs], tokens(hyp), weights=weights, smoothing_function=smooth))
                for refs, hyp in zip(references, hypotheses, strict=True)]


def _coco_inputs(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[dict, dict]:
    """pycocoevalcap's input: {image index: [cleaned reference, ...]} and {image index: [cleaned hypothesis]}."""
    if len(references) != len(hypotheses) or not hypotheses:
        raise SettingError(f"Need one list of references per hypothesis, got {len(references)} and {len(hypotheses)}")
    refs = {i: [" ".join(tokens(r)) for r in image_refs] for i, image_refs in enumerate(references)}
    hyps = {i: [" ".join(tokens(h))] for i, h in enumerate(hypotheses)}
    return refs, hyps


def has_eval_extra() -> bool:
    """Whether pycocoevalcap (CIDEr-D, ROUGE-L, METEOR; the `eval` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("pycocoevalcap") is not None


def cider_score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float | None:
    """Corpus CIDEr-D (pycocoevalcap's `Cider`: n-grams 1..4, idf over this corpus, x10), or None without the extra.

    The n-gram weights come from the references of the images scored, so the score depends on the whole corpus:
    compare models only on the same split.
    """
    try:
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        print('CIDEr skipped: pycocoevalcap is not installed (pip install "captioning-course-helpers[eval]").')
        return None
    score, _ = Cider().compute_score(*_coco_inputs(references, hypotheses))
    return float(score)


def rouge_l_score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float | None:
    """Corpus ROUGE-L (pycocoevalcap's `Rouge`: the F-measure of each caption's longest common subsequence with its
    references, beta 1.2, averaged), or None without the extra."""
    try:
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return None  # cider_score has said why
    score, _ = Rouge().compute_score(*_coco_inputs(references, hypotheses))
    return float(score)


def meteor_score(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float | None:
    """Corpus METEOR 1.5 through pycocoevalcap's Java wrapper, or None without the extra or without Java."""
    scores = meteor_scores([(references, hypotheses)])
    return None if scores is None else scores[0]


def meteor_scores(corpora: Sequence[tuple[Sequence[Sequence[str]], Sequence[str]]]) -> list[float] | None:
    """Corpus METEOR 1.5 of each (references, hypotheses) corpus, all in one Java process (it takes about 10 s to
    start), each scored on its own; None without the extra, without Java, or when Java fails (it cannot start, or
    stops halfway: out of memory, a broken installation), said in one line: the other scores do not need it."""
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError:
        print('METEOR skipped: pycocoevalcap is not installed (pip install "captioning-course-helpers[eval]").')
        return None
    if shutil.which("java") is None:
        print("METEOR skipped: it runs in Java, and no `java` is on the PATH.")
        return None

    class Scorer(Meteor):
        """pycocoevalcap's wrapper, stopped by `_stop_meteor` only: its own __del__ would wait for a lock that a
        failed call still holds, or fail on a process that never started."""

        def __del__(self) -> None:
            pass

    inputs = [_coco_inputs(refs, hyps) for refs, hyps in corpora]
    try:
        meteor = Scorer()
    except OSError as error:  # a `java` that cannot be run at all
        print(f"METEOR skipped: `java` could not be started ({error.strerror or error}); check that `java -version` "
              "runs, or leave out --meteor (meteor=True in Python). The other scores do not need it.")
        return None
    failed = None
    try:
        return [float(meteor.compute_score(refs, hyps)[0]) for refs, hyps in inputs]
    except (OSError, ValueError) as error:  # a broken pipe, or an empty or garbled answer: Java stopped halfway
        failed = error
        return None
    finally:
        _stop_meteor(meteor, failed)


METEOR_WAIT = 30.0  # seconds Java gets to end by itself once its input is closed


def _stop_meteor(meteor, failed: Exception | None) -> None:
    """End METEOR's Java process now (not whenever the wrapper is collected); after `failed`, say why in one line."""
    process = meteor.meteor_p
    with contextlib.suppress(OSError):  # the pipe is broken when Java has died
        process.stdin.close()
    try:
        process.wait(timeout=METEOR_WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    said = [line.strip() for line in process.stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
    process.stdout.close()
    process.stderr.close()
    if failed is None:
        return
    code = process.returncode
    if code:
        why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    else:  # it answered, but not with scores
        why = f"{type(failed).__name__}: {failed}"
    if said:
        why += f": {said[-1][:200]}"
    print(f"METEOR skipped: Java started, then failed ({why}); check that `java -jar` runs with the 2 GB of memory "
          "METEOR asks for (-Xmx2G), or leave out --meteor (meteor=True in Python). The other scores do not need "
          "it.")
