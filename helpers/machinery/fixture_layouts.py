"""Copies of the fixture in every dataset layout the course reads, so that every layout can be run offline.

    write_fixture_layout("coco2017", tmp / "coco")             # the whole fixture, laid out as MS-COCO 2017
    write_fixture_layout("karpathy", tmp / "k", every=5)        # a fifth of it, as Karpathy's JSON split file

Each copy holds the fixture's pictures and raw captions in that layout's files, with the quirks of the real
files (the original Flickr8k token file's rows for a picture that does not exist, Flickr30k's row that lost a
pipe), and the fixture's scene file, by which the course knows a copy of the fixture (it uses the offline
encoder, MobileNetV2, there). `every=k` keeps every k-th image of each split: a tiny copy for quick runs.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from helpers.errors import SettingError
from helpers.machinery.dataset import CaptionDataset, load_dataset
from helpers.machinery.fixture import SIZE
from helpers.machinery.layouts.base import SPLITS
from helpers.machinery.layouts.flickr8k import SPLIT_FILES
from helpers.machinery.paths import FIXTURE_SCENES, fixture_dir

# The image the real Flickr8k.token.txt gives five rows, none of which is in the image folder: one as
# `2258277193_586949ec62.jpg.1#0`, four as `2258277193_586949ec62.jpg#1` to `#4`. A copy gets the same quirk.
MISSING_IMAGE = "2258277193_586949ec62.jpg"


def _subset(data: CaptionDataset, every: int) -> dict[str, list[str]]:
    """Every `every`-th key of each split, in order."""
    return {split: keys[::every] for split, keys in data.splits.items()}


def _copy_images(data: CaptionDataset, keys: list[str], folder: Path, names: dict[str, str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys:
        shutil.copyfile(data.image_path(key), folder / (names or {}).get(key, key))


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


def _write_scenes(data: CaptionDataset, keys: dict[str, str], out: Path) -> None:
    """The fixture's scene file, keyed by the copy's image keys (its mark of a fixture copy)."""
    scenes = json.loads((data.root / FIXTURE_SCENES).read_text(encoding="utf-8"))
    scenes["images"] = {new: scenes["images"][old] for old, new in keys.items() if old in scenes["images"]}
    (out / FIXTURE_SCENES).write_text(json.dumps(scenes, indent=1) + "\n", encoding="utf-8")


def _kaggle(data, splits, out):
    keys = [k for s in SPLITS for k in splits[s]]
    _copy_images(data, keys, out / "Images")
    with (out / "captions.txt").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows((k, c) for k in keys for c in data.raw_captions[k])
    for split, name in SPLIT_FILES.items():
        _write_lines(out / name, splits[split])
    return {k: k for k in keys}


def _original(data, splits, out):
    keys = [k for s in SPLITS for k in splits[s]]
    _copy_images(data, keys, out / "Flicker8k_Dataset")  # sic: the original zip's spelling
    rows = [f"{k}#{i}\t{c}" for k in keys for i, c in enumerate(data.raw_captions[k])]
    first = data.raw_captions[keys[0]]
    rows = rows[1::2] + rows[::2]  # not grouped by image, as in the real file
    rows.insert(len(rows) // 2, f"{MISSING_IMAGE}.1#0\t{first[0]}")
    rows += [f"{MISSING_IMAGE}#{i}\t{c}" for i, c in enumerate(first[1:5], start=1)]
    _write_lines(out / "Flickr8k_text" / "Flickr8k.token.txt", rows)
    for split, name in SPLIT_FILES.items():
        _write_lines(out / "Flickr8k_text" / name, splits[split])
    return {k: k for k in keys}


def _flickr30k_kaggle(data, splits, out):
    keys = [k for s in SPLITS for k in splits[s]]
    _copy_images(data, keys, out / "flickr30k_images" / "flickr30k_images")
    lines = ["image_name| comment_number| comment"]
    for n, key in enumerate(keys):
        for i, caption in enumerate(data.raw_captions[key]):
            merged = n == 1 and i == 4  # like the real file's line 19,999, which lost its second pipe
            lines.append(f"{key}| {i} {caption}" if merged else f"{key}| {i}| {caption}")
    _write_lines(out / "flickr30k_images" / "results.csv", lines)
    return {k: k for k in keys}


def _flickr30k_token(data, splits, out):
    keys = [k for s in SPLITS for k in splits[s]]
    _copy_images(data, keys, out / "flickr30k-images")
    _write_lines(out / "results_20130124.token", [f"{k}#{i}\t{c}" for k in keys
                                                   for i, c in enumerate(data.raw_captions[k])])
    return {k: k for k in keys}


def _karpathy(data, splits, out):
    names = {"train": "train", "dev": "val", "test": "test"}
    entries = [{"filename": k, "split": names[s], "sentences": [{"raw": c} for c in data.raw_captions[k]]}
               for s in SPLITS for k in splits[s]]
    _copy_images(data, [e["filename"] for e in entries], out / "images")
    (out / "dataset_flickr8k.json").write_text(json.dumps({"images": entries, "dataset": "flickr8k"}), encoding="utf-8")
    return {e["filename"]: e["filename"] for e in entries}


def _coco2017(data, splits, out):
    """train and dev go to train2017/ (COCO picks its own dev from them), test to val2017/."""
    folders = {"train2017": splits["train"] + splits["dev"], "val2017": splits["test"]}
    keys, next_id = {}, 1
    for folder, members in folders.items():
        _copy_images(data, members, out / folder)
        images, annotations = [], []
        for key in members:
            images.append({"id": next_id, "file_name": key, "width": SIZE, "height": SIZE})
            annotations += [{"id": next_id * 10 + i, "image_id": next_id, "caption": c}
                            for i, c in enumerate(data.raw_captions[key])]
            keys[key], next_id = f"{folder}/{key}", next_id + 1
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / f"captions_{folder}.json").write_text(
            json.dumps({"info": {"description": "the course's fixture as MS-COCO 2017"}, "images": images,
                        "annotations": annotations}), encoding="utf-8")
    return keys


WRITERS: dict[str, Callable] = {"kaggle": _kaggle, "original": _original, "flickr30k-kaggle": _flickr30k_kaggle,
                                "flickr30k-token": _flickr30k_token, "karpathy": _karpathy, "coco2017": _coco2017}


def write_fixture_layout(layout: str, out_dir: str | Path, fixture: str | Path | None = None, every: int = 1) -> Path:
    """Write the fixture (every `every`-th image of each split) in `layout` into `out_dir`; returns `out_dir`."""
    if layout not in WRITERS:
        raise SettingError(f"Unknown layout {layout!r}: choose one of {', '.join(WRITERS)}")
    data = load_dataset(fixture or fixture_dir())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = WRITERS[layout](data, _subset(data, every), out)
    _write_scenes(data, keys, out)
    return out
