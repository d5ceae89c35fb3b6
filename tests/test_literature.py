"""The published rows: Tanti et al.'s are the means of the three runs in the results file they released
(github.com/mtanti/where-image2, results/results.txt: the Flickr8k runs of merge and init, copied below), and
every row says what it was built and scored with."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.literature import CAPTIONING, RETRIEVAL, TANTI, literature_rows

# dataset, architecture, run, CIDEr, METEOR, ROUGE_L, Bleu_1..4, R@1, R@5, R@10 (of 1,000), median_rank
RUNS = """flickr8k init 1 0.467578386993 0.193294644335 0.441822161078 0.608578013829 0.417684553449 0.277941427732 0.185274801637 167 422 562 8.0
flickr8k merge 1 0.479622648115 0.194883476263 0.446925017641 0.607947686117 0.419432964407 0.279172113885 0.182779152028 173 408 555 8.5
flickr8k init 2 0.488192598597 0.194456519756 0.445490699657 0.613759262968 0.427442514378 0.28826434991 0.193397607573 179 447 565 7.0
flickr8k merge 2 0.448286138232 0.190845794983 0.438697205618 0.601186883927 0.413160473227 0.273131629465 0.178515885749 175 409 541 8.0
flickr8k init 3 0.488256919556 0.194102502269 0.447479821158 0.611029681515 0.427017859908 0.289848085097 0.194829238617 180 427 556 8.0
flickr8k merge 3 0.479186345372 0.193067908973 0.444843848621 0.590798323423 0.405267573704 0.266520773479 0.172436430488 172 416 543 9.0"""  # noqa: E501
METRICS = ("cider", "meteor", "rouge_l", "bleu1", "bleu2", "bleu3", "bleu4")


def runs(architecture: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split()[3:]] for line in RUNS.splitlines()
                     if line.split()[1] == architecture])


@pytest.mark.parametrize("architecture, name", [("merge", "merge"), ("init", "init-inject")])
def test_tanti_rows_are_the_means_of_their_three_runs(architecture, name):
    row = next(p for p in CAPTIONING if p.model == f"{name} ({TANTI})")
    means = runs(architecture).mean(axis=0)
    for metric, mean in zip(METRICS, means[:7], strict=True):
        assert row.scores[metric] == pytest.approx(100 * mean, abs=0.005), metric
    if architecture == "merge":
        retrieval = next(p for p in RETRIEVAL if TANTI in p.model).scores
        for metric, mean in zip(("r@1", "r@5", "r@10"), means[7:10], strict=True):
            assert retrieval[metric] == pytest.approx(mean / 10, abs=0.005), metric  # counts of 1,000 -> percent
        assert retrieval["median_rank"] == pytest.approx(means[10])


def test_every_row_says_its_rnn_features_and_scorer():
    for paper in CAPTIONING + RETRIEVAL:
        assert paper.rnn and paper.features and paper.scorer and paper.scores
        assert paper.rnn in paper.label and paper.scorer in paper.label
    rows = literature_rows()
    assert len(rows) == len(CAPTIONING)
    assert all(0 < v < 1 for scores in rows.values() for v in scores.values())  # out of 1, as the course prints
    assert literature_rows(RETRIEVAL)[RETRIEVAL[1].label]["median_rank"] == 8.5  # a rank stays a rank
