"""The first stage: load a dataset, clean and split it, build the vocabulary; write captions.json, vocab.json and
dataset.json to the work folder, together.

dataset.json records the fingerprints of the other two, so a later stage can tell that they belong together.
When new captions or a new vocabulary would leave a trained model in the folder unusable, the model and the
files it needs move to `archive/<time>/` first (a work folder of their own): nothing trained is ever lost.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from helpers.errors import DatasetError, WorkFolderError
from helpers.machinery.dataset import CaptionDataset, load_dataset, split_lists_help
from helpers.machinery.files import fingerprint, json_text, replace_together, room_for, stage
from helpers.machinery.layouts.base import SPLITS
from helpers.machinery.paths import fixture_dir
from helpers.machinery.workspace import Workspace
from helpers.vocabulary import Vocabulary

# min_count 5 is the usual Flickr8k threshold (Show and Tell): on Flickr8k it shrinks the output layer from 7,329
# tokens to 2,529 (bench/flickr8k_text.py computes it), the biggest speed lever in training (bench/README.md).
MIN_COUNT = 5
PREPARED = ("captions.json", "vocab.json", "dataset.json")


def summarise(data: CaptionDataset, vocab: Vocabulary, min_count: int, captions: dict) -> dict:
    """What `prepare` found: sizes, the split, the vocabulary, and every row it dropped."""
    in_split = {key for keys in data.splits.values() for key in keys}
    dev_captions = [c for caps in captions["dev"].values() for c in caps]
    return {
        "data_dir": str(data.root.resolve()),
        "layout": data.layout,
        "images": len(data.captions),
        "captions": data.caption_count,
        "splits": {s: len(keys) for s, keys in data.splits.items()},
        "split_source": data.split_source,
        "unsplit_images": len(set(data.captions) - in_split),
        "vocab_size": len(vocab),
        "max_length": vocab.max_length,
        "min_count": min_count,
        "dev_unknown_rate": vocab.unknown_rate(dev_captions),
        "skipped": [s.__dict__ for s in data.skipped],
        "notes": data.notes,
    }


@stage("prepare")
def prepare(work: Workspace, data_dir: str | Path | None = None, min_count: int = MIN_COUNT) -> dict:
    """Load, clean and split the captions, build the vocabulary on train; write the three prepared files together.

    Returns the summary (also in dataset.json); `summary["archived"]` names the folder a now-stale model moved to.
    """
    data = load_dataset(data_dir or fixture_dir())
    empty = [s for s in SPLITS if not data.splits[s]]
    if empty:
        splits = f"{' and '.join(empty)} split{'s' if len(empty) > 1 else ''}"
        lists = split_lists_help(data)
        why = f": {lists}" if lists else (f" (the split came from {data.split_source}). Check that those lists name "
                                           "images of this dataset, and that the images are there.")
        raise DatasetError(f"The {splits} of {data.root} {'have' if len(empty) > 1 else 'has'} no image with "
                           f"captions{why}")
    captions = {s: data.split_captions(s) for s in SPLITS}
    vocab = Vocabulary.build((c for caps in captions["train"].values() for c in caps), min_count=min_count)
    summary = summarise(data, vocab, min_count, captions)
    captions_text = json_text(captions)
    dataset = {**summary, "images_dir": str(data.images_dir.resolve()),
               "fingerprints": {"captions": fingerprint(captions), "vocabulary": fingerprint(vocab.as_json())}}
    archived = []
    replace_together({work.path("captions.json"): captions_text.encode("utf-8"),
                      work.path("vocab.json"): json_text(vocab.as_json()).encode("utf-8"),
                      work.path("dataset.json"): json_text(dataset).encode("utf-8")},
                     before_renaming=lambda: archived.append(archive_stale_model(work, dataset["fingerprints"])))
    return {**summary, "archived": str(archived[0]) if archived[0] else None}


@stage("prepare")
def save_vocabulary(work: Workspace, vocab: Vocabulary, min_count: int) -> Path | None:
    """Replace the work folder's vocabulary (notebook 02 does, with its own min_count), keeping dataset.json in step.

    Returns the archive folder if a model trained with the old vocabulary had to move there.
    """
    dataset = work.read_json("dataset.json")
    fingerprints = {**dataset["fingerprints"], "vocabulary": fingerprint(vocab.as_json())}
    archived = []
    dataset.update(fingerprints=fingerprints, vocab_size=len(vocab), max_length=vocab.max_length, min_count=min_count)
    replace_together({work.path("vocab.json"): json_text(vocab.as_json()).encode("utf-8"),
                      work.path("dataset.json"): json_text(dataset).encode("utf-8")},
                     before_renaming=lambda: archived.append(archive_stale_model(work, fingerprints)))
    return archived[0]


def archive_stale_model(work: Workspace, fingerprints: dict) -> Path | None:
    """Move the trained models that new captions or vocabulary would make unusable to `archive/<time>/`, with the
    prepared files they were trained on; None if there is none, or every model still fits."""
    stale = []
    for files in work.models():
        try:
            trained_on = files.read_record()["fingerprints"] if files.record.exists() else {}
        except WorkFolderError:  # a damaged record: the model cannot be used here either
            trained_on = {}
        if any(trained_on.get(k) != v for k, v in fingerprints.items()):
            stale.append(files)
    if not stale:
        return None
    folder = work.path("archive") / time.strftime("%Y%m%d-%H%M%S")
    while folder.exists():
        folder = folder.with_name(folder.name + "+")
    _copy_prepared(work, folder)
    for files in stale:
        for path in files.files():
            path.replace(folder / path.name)
    names = ", ".join(files.keras.name for files in stale)
    print(f"The trained model ({names}) in {work.root} was trained on other captions or another vocabulary: moved "
          f"it, with the files it needs, to {folder} (evaluate it there with --out {folder}).")
    return folder


def _copy_prepared(work: Workspace, folder: Path) -> None:
    """Copy the prepared files into a new archive folder; on any error (a full disk) remove the folder again."""
    copies = [work.path(name) for name in PREPARED if work.path(name).exists()]
    try:
        with room_for(folder / PREPARED[0], sum(path.stat().st_size for path in copies)):
            folder.mkdir(parents=True)
            for path in copies:
                shutil.copy2(path, folder / path.name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # archive/ itself, when this was to be its first folder
        raise


def load_prepared(work: Workspace) -> tuple[dict, Vocabulary, dict]:
    """captions.json, vocab.json and dataset.json, checked to come from the same `prepare` (or notebook 02)."""
    captions, vocab, dataset = work.read_json("captions.json"), Vocabulary.load(work.require("vocab.json")), \
        work.read_json("dataset.json")
    recorded = dataset.get("fingerprints", {})
    now = {"captions.json": ("captions", fingerprint(captions)),
           "vocab.json": ("vocabulary", fingerprint(vocab.as_json()))}
    changed = [name for name, (key, value) in now.items() if recorded.get(key) != value]
    if changed:
        raise WorkFolderError(f"{' and '.join(changed)} in {work.root} do not match dataset.json: they come from "
                              f"different runs of `prepare` (one was stopped, or a file was copied in by hand). "
                              f"Run `python -m helpers prepare` again (same --data and --out).")
    return captions, vocab, dataset
