"""Read the bigger caption datasets into the same `CaptionDataset` as Flickr8k: Flickr30k, MS-COCO, Karpathy JSON.

Layout (folder given to --data)       What it holds
flickr30k-kaggle                      flickr30k_images/*.jpg (or flickr30k_images/flickr30k_images/) + results.csv
                                      (`image_name| comment_number| comment`, pipe-separated)
flickr30k-token                       flickr30k-images/*.jpg + results_20130124.token (`name.jpg#k<TAB>caption`)
karpathy                              dataset_coco.json, dataset_flickr30k.json or dataset_flickr8k.json + the images,
                                      in images/ or next to the JSON (COCO: images/val2014/..., images/train2014/...)
coco2017                              annotations/captions_train2017.json + captions_val2017.json, train2017/, val2017/

Splits (docs/datasets.md explains the choices):
- karpathy: the JSON's own split; "val" -> dev and "restval" -> train (the usual practice: 113,287 COCO training images).
- Flickr30k: the Karpathy split when dataset_flickr30k.json lies next to the captions, else a seeded split with
  Karpathy's sizes (1,000 test, 1,014 dev, the rest train), noted in `CaptionDataset.notes`.
- coco2017: val2017 -> test (5,000 images); dev is 5,000 train2017 images picked with a fixed seed.
Image keys are paths relative to `images_dir` ("val2014/COCO_val2014_000000000042.jpg" for COCO), so they stay unique
when the images live in two folders and `images_dir / key` is always the file.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from helpers.dataset import DatasetError, Skipped, _first_dir, read_token_captions

Rows = list[tuple[str, str, str]]  # (image key, raw caption, row label)
SEED = 0
KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr30k.json", "dataset_flickr8k.json")
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "dev", "test": "test"}
KARPATHY_IMAGE_DIRS = ("images", "Images", "flickr30k_images", "flickr30k-images", "Flicker8k_Dataset", ".")
FLICKR30K_IMAGE_DIRS = ("flickr30k_images", "flickr30k_images/flickr30k_images", "flickr30k-images")
FLICKR30K_CSV = ("results.csv", "flickr30k_images/results.csv")
FLICKR30K_TOKEN = ("results_20130124.token", "flickr30k/results_20130124.token")
FLICKR30K_SIZES = {"test": 1000, "dev": 1014}  # Karpathy's Flickr30k split; the rest is train
COCO_DEV_SIZE = 5000
COCO_FILES = ("annotations/captions_train2017.json", "annotations/captions_val2017.json")
LAYOUT_HELP = """\
Other layouts the course reads (docs/datasets.md says where to get them):
  flickr30k-kaggle: flickr30k_images/ + results.csv (Kaggle hsankesara/flickr-image-dataset)
  flickr30k-token:  flickr30k-images/ + results_20130124.token (the original Flickr30k release)
  karpathy:         dataset_coco.json, dataset_flickr30k.json or dataset_flickr8k.json + images/ (Karpathy's splits)
  coco2017:         annotations/captions_train2017.json + captions_val2017.json, train2017/ and val2017/"""


def _first_file(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The first candidate file that exists."""
    return next((root / c for c in candidates if (root / c).is_file()), None)


def detect_more(root: Path) -> tuple[str, Path, Path] | None:
    """(layout, images folder, captions file) for a Flickr30k, Karpathy or COCO 2017 folder; None if it is none."""
    flickr_images = _first_dir(root, FLICKR30K_IMAGE_DIRS)
    if flickr_images and (csv_file := _first_file(root, FLICKR30K_CSV)):
        return "flickr30k-kaggle", flickr_images, csv_file
    if flickr_images and (token := _first_file(root, FLICKR30K_TOKEN)):
        return "flickr30k-token", flickr_images, token
    if karpathy := _first_file(root, KARPATHY_FILES):
        return "karpathy", _karpathy_images_dir(root, karpathy), karpathy
    if all((root / f).is_file() for f in COCO_FILES) and _first_dir(root, ("train2017", "val2017")):
        return "coco2017", root, root / COCO_FILES[0]
    return None


def read_more(layout: str, root: Path, captions_file: Path) -> tuple[Rows, list[Skipped], dict[str, list[str]], list[str]]:
    """Rows, skipped rows, splits (lists of image keys) and notes for one of the layouts above."""
    notes: list[str] = []
    if layout == "karpathy":
        rows, skipped, splits = read_karpathy(captions_file)
        notes.append(f"Split from {captions_file.name}: val -> dev, restval -> train.")
        return rows, skipped, splits, notes
    if layout == "coco2017":
        rows, skipped, splits = read_coco2017(root)
        notes.append(f"COCO 2017 has no dev split: {len(splits['dev']):,} train2017 images (seed {SEED}) are dev, "
                     "val2017 is test.")
        return rows, skipped, splits, notes
    if layout == "flickr30k-kaggle":
        rows, skipped, notes = read_flickr30k_csv(captions_file)
    else:  # the same `name.jpg#k<TAB>caption` format as Flickr8k.token.txt
        rows, skipped = read_token_captions(captions_file)
    return rows, skipped, flickr30k_splits(root, sorted({name for name, _, _ in rows}), notes), notes


def read_flickr30k_csv(path: Path) -> tuple[Rows, list[Skipped], list[str]]:
    """Rows of the Kaggle Flickr30k results.csv: `image_name| comment_number| comment`, spaces after the pipes.

    One row of the real file (line 19,999) has lost a pipe: `2199200615.jpg| 4 A dog runs across the grass .`.
    Its caption is kept and the repair is reported in the notes returned with the rows.
    """
    rows, skipped, notes = [], [], []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or [h.strip() for h in lines[0].split("|")] != ["image_name", "comment_number", "comment"]:
        raise DatasetError(f"{path} should start with the header line 'image_name| comment_number| comment', "
                           f"found {lines[0][:60] if lines else ''!r}. Is this the Kaggle Flickr30k results.csv?")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|", 2)]
        if len(fields) == 2 and (merged := re.fullmatch(r"(\d+)\s+(.+)", fields[1])):
            notes.append(f"Repaired {path.name} line {number}: comment number and caption share a field "
                         f"({fields[1][:40]!r}); read as comment {merged.group(1)}.")
            fields = [fields[0], *merged.groups()]
        if len(fields) < 3 or not fields[2]:
            skipped.append(Skipped(path.name, f"line {number}", "row has no caption (expected "
                                   "image_name| comment_number| comment)"))
            continue
        rows.append((fields[0], fields[2], f"line {number}"))
    return rows, skipped, notes


def flickr30k_splits(root: Path, names: list[str], notes: list[str]) -> dict[str, list[str]]:
    """Karpathy's split from dataset_flickr30k.json when present, else a seeded split with Karpathy's sizes."""
    karpathy = _first_file(root, ("dataset_flickr30k.json", "flickr30k_images/dataset_flickr30k.json"))
    if karpathy:
        notes.append(f"Split from {karpathy.name}: val -> dev, restval -> train.")
        return read_karpathy(karpathy)[2]
    shuffled = sorted(names)
    random.Random(SEED).shuffle(shuffled)
    test, dev = (min(size, len(names) // 10) for size in FLICKR30K_SIZES.values())
    notes.append(f"No dataset_flickr30k.json next to the captions: seeded split (seed {SEED}) with Karpathy's sizes, "
                 f"{test} test, {dev} dev, {len(names) - test - dev} train. Put Karpathy's JSON there to compare "
                 "with papers.")
    return {"train": sorted(shuffled[test + dev:]), "dev": sorted(shuffled[test:test + dev]), "test": sorted(shuffled[:test])}


def read_karpathy(path: Path) -> tuple[Rows, list[Skipped], dict[str, list[str]]]:
    """Rows and split of a Karpathy JSON; an image's key is `filepath/filename` (COCO) or `filename`."""
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} is not a Karpathy split file (a JSON object with an 'images' list): {error}")
    rows, skipped, splits = [], [], {"train": [], "dev": [], "test": []}
    for i, image in enumerate(images):
        key = "/".join(p for p in (image.get("filepath", ""), image["filename"]) if p)
        split = KARPATHY_SPLITS.get(image.get("split", ""))
        if split is None:
            skipped.append(Skipped(path.name, f"image {i}", f"{key} has an unknown split {image.get('split')!r}"))
            continue
        splits[split].append(key)
        for j, sentence in enumerate(image.get("sentences", [])):
            raw = sentence.get("raw") or " ".join(sentence.get("tokens", []))
            if not raw.strip():
                skipped.append(Skipped(path.name, f"image {i} sentence {j}", "row has no caption"))
                continue
            rows.append((key, raw, f"image {i} sentence {j}"))
    return rows, skipped, splits


def _karpathy_images_dir(root: Path, karpathy: Path) -> Path:
    """The folder under which a Karpathy JSON's `filepath/filename` keys are files (images/ by default)."""
    sample = read_karpathy(karpathy)[0][:50]
    for candidate in KARPATHY_IMAGE_DIRS:
        if any((root / candidate / key).is_file() for key, _, _ in sample):
            return root / candidate
    raise DatasetError(f"{karpathy} was found, but none of its first images were found in "
                       f"{', '.join(c + '/' for c in KARPATHY_IMAGE_DIRS)} of {root}.\n{LAYOUT_HELP}")


def read_coco2017(root: Path) -> tuple[Rows, list[Skipped], dict[str, list[str]]]:
    """Rows of annotations/captions_{train,val}2017.json; val2017 is test, a seeded 5,000 of train2017 is dev."""
    rows, skipped, by_folder = [], [], {}
    for file in COCO_FILES:
        path, folder = root / file, file.split("_")[-1].removesuffix(".json")
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = {image["id"]: f"{folder}/{image['file_name']}" for image in data["images"]}
        by_folder[folder] = sorted(keys.values())
        for annotation in data["annotations"]:
            label = f"annotation {annotation.get('id', '?')}"
            if annotation.get("image_id") not in keys:
                skipped.append(Skipped(path.name, label, f"image id {annotation.get('image_id')} is not in 'images'"))
            elif not str(annotation.get("caption", "")).strip():
                skipped.append(Skipped(path.name, label, "row has no caption"))
            else:
                rows.append((keys[annotation["image_id"]], annotation["caption"], label))
    train = list(by_folder["train2017"])
    random.Random(SEED).shuffle(train)
    dev = min(COCO_DEV_SIZE, len(train) // 10)
    return rows, skipped, {"train": sorted(train[dev:]), "dev": sorted(train[:dev]), "test": by_folder["val2017"]}
