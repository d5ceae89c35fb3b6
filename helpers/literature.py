"""The published Flickr8k results the course sets its own beside (notebooks 06-09, `evaluate --retrieval`), each
with the RNN, the image features and the scorer it comes from: numbers from different setups differ for reasons
that are not the model.

    for paper in CAPTIONING: paper.label, paper.scores      # BLEU-1..4 and more, x 100, on the 1,000 test photos
    literature_rows()                                       # {label: {metric: score in 0..1}}, ready for a table

Sources. Xu et al. (2015), *Show, Attend and Tell*, ICML, Table 1 (its Show and Tell and log-bilinear rows are
quoted from other papers there). Tanti, Gatt and Camilleri (2018), *Where to put the image in an image caption
generator*, Natural Language Engineering 24(3): the means of their three runs in the results file they released
with their code (github.com/mtanti/where-image2, `results/results.txt`), scored with the MSCOCO caption toolkit,
the scorer the course's CIDEr-D and METEOR come from too (pycocoevalcap). Karpathy and Fei-Fei (2015), *Deep
Visual-Semantic Alignments for Generating Image Descriptions*, CVPR, Table 5 (supplementary): image search.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    """One published result on Flickr8k's test split: the model, its RNN, image features and scorer, its scores."""

    model: str
    rnn: str
    features: str
    scorer: str
    scores: dict[str, float]  # x 100: bleu1..bleu4, meteor, cider, rouge_l; r@1, r@5, r@10 (and median_rank as is)

    @property
    def label(self) -> str:
        """How a table names it: the model, then what it was built and scored with."""
        return f"{self.model} [{self.rnn}; {self.features}; {self.scorer}]"


TANTI = "Tanti et al., 2018, mean of 3 runs"
CAPTIONING = (
    Published("Show and Tell (Vinyals et al., 2015), as Xu et al. quote it", "LSTM", "GoogLeNet",
              "Xu et al.'s Table 1: an ensemble, on another split", {"bleu1": 63.0, "bleu2": 41.0, "bleu3": 27.0}),
    Published("log-bilinear (Kiros et al., 2014), as Xu et al. quote it", "no RNN: a log-bilinear language model",
              "as in Kiros et al.", "Xu et al.'s Table 1", {"bleu1": 65.6, "bleu2": 42.4, "bleu3": 27.7, "bleu4": 17.7,
                                                            "meteor": 17.31}),
    Published("Show, Attend and Tell, soft (Xu et al., 2015)", "LSTM", "VGG conv grid, 14 x 14 x 512",
              "Xu et al.'s Table 1", {"bleu1": 67.0, "bleu2": 44.8, "bleu3": 29.9, "bleu4": 19.5, "meteor": 18.93}),
    Published("Show, Attend and Tell, hard (Xu et al., 2015)", "LSTM", "VGG conv grid, 14 x 14 x 512",
              "Xu et al.'s Table 1", {"bleu1": 67.0, "bleu2": 45.7, "bleu3": 31.4, "bleu4": 21.3, "meteor": 20.30}),
    Published(f"merge ({TANTI})", "GRU, 128 units", "Karpathy's VGG vectors", "COCO toolkit, beam 3",
              {"bleu1": 60.00, "bleu2": 41.26, "bleu3": 27.29, "bleu4": 17.79, "meteor": 19.29, "cider": 46.90,
               "rouge_l": 44.35}),
    Published(f"init-inject ({TANTI})", "GRU, 512 units", "Karpathy's VGG vectors", "COCO toolkit, beam 3",
              {"bleu1": 61.11, "bleu2": 42.40, "bleu3": 28.54, "bleu4": 19.12, "meteor": 19.40, "cider": 48.13,
               "rouge_l": 44.49}),
)
RETRIEVAL = (
    Published("BRNN (Karpathy and Fei-Fei, 2015), image search, Table 5", "bidirectional RNN (a ranking model)",
              "VGG region and image vectors", "every test caption a query (5,000)",
              {"r@1": 11.8, "r@5": 32.1, "r@10": 44.7}),
    Published(f"merge captioner ({TANTI})", "GRU, 128 units", "Karpathy's VGG vectors",
              "each test image's first caption a query (1,000), ranked by log P(caption | image)",
              {"r@1": 17.33, "r@5": 41.10, "r@10": 54.63, "median_rank": 8.5}),
)


def literature_rows(papers: tuple[Published, ...] = CAPTIONING) -> dict[str, dict[str, float]]:
    """{label: {metric: score}} with scores out of 1 (as the course prints its own), median ranks as they are."""
    return {paper.label: {k: v if k == "median_rank" else v / 100 for k, v in paper.scores.items()}
            for paper in papers}
