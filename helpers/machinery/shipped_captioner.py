"""The captioner that ships with the course: a merge model trained on Flickr8k's photos, so that a learner can
caption a photo of their own before training anything (`python -m helpers caption PHOTO`, the demo, notebook 06).

    model, vocab, record = load_shipped()      # None where the course was installed without it
    record["scores"]                           # what it scored on Flickr8k's test split, and how it was measured

The folder `helpers/captioner/` holds its weights in float16 (`captioner.weights.h5`), its vocabulary
(`vocab.json`), its record (`captioner.json`: the settings it was built with, what it was trained on and what
it scored) and a NOTICE. `tools/export_captioner.py` writes them from a trained model of a work folder.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.decoders import decoder_spec
from helpers.errors import WorkFolderError
from helpers.machinery.files import fingerprint
from helpers.vocabulary import Vocabulary

if TYPE_CHECKING:
    import keras

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "captioner"  # helpers/captioner/
WEIGHTS, VOCABULARY, RECORD = "captioner.weights.h5", "vocab.json", "captioner.json"


def shipped_record(folder: Path | None = None) -> dict | None:
    """The shipped captioner's record (in `folder`, by default SHIPPED_DIR), or None when the course has none."""
    path = (folder or SHIPPED_DIR) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_shipped(folder: Path | None = None) -> tuple[keras.Model, Vocabulary, dict]:
    """The shipped captioner, its vocabulary and its record, checked to belong together (loaded once a process)."""
    return _load(folder or SHIPPED_DIR)


@functools.lru_cache(maxsize=2)
def _load(folder: Path) -> tuple[keras.Model, Vocabulary, dict]:
    """`load_shipped` for one folder."""
    record = shipped_record(folder)
    if record is None:
        raise WorkFolderError(f"No captioner ships in {folder}: train one (`python -m helpers train`).")
    vocab = Vocabulary.load(folder / VOCABULARY)
    if (len(vocab), fingerprint(vocab.as_json())) != (record["vocab_size"], record["fingerprints"]["vocabulary"]):
        raise WorkFolderError(f"{folder / VOCABULARY} is not the vocabulary {folder / RECORD} was trained with: "
                              "reinstall the course (or restore the folder with git checkout).")
    model = build_from_record(record)
    try:
        model.load_weights(folder / WEIGHTS)
    except (OSError, ValueError) as error:
        raise WorkFolderError(f"{folder / WEIGHTS} is damaged ({type(error).__name__}: {error}): reinstall the course "
                              "(or restore the folder with git checkout).") from error
    return model, vocab, record


def build_from_record(record: dict) -> keras.Model:
    """A fresh, untrained model of the shipped captioner's architecture (its optimizer not built yet)."""
    return decoder_spec(record["decoder"]).build(
        record["vocab_size"], feature_dim=record["feature_dim"], units=record["units"], embedding_dim=record["units"],
        dropout=record["dropout"], learning_rate=record["learning_rate"])


def shipped_note(record: dict) -> str:
    """One line saying that the shipped captioner is in use, what it is and how to use one's own."""
    scores = record["scores"]
    return (f"Using the captioner that ships with the course ({record['decoder']} decoder on {record['encoder']} "
            f"features, trained on {record['trained_on']}; test BLEU-4 {scores['bleu4']:.3f} with beam "
            f"{scores['beam_width']}): no model has been trained in this work folder yet.")
