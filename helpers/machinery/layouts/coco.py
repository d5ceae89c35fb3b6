"""MS-COCO 2017 and Karpathy's split files (for COCO, Flickr30k and Flickr8k).

karpathy   dataset_coco.json, dataset_flickr30k.json or dataset_flickr8k.json + the images, in images/ or
           next to the JSON (COCO: images/val2014/..., images/train2014/...). The JSON's own split:
           "val" -> dev and "restval" -> train (the usual practice: 113,287 COCO training images).
coco2017   annotations/captions_train2017.json + captions_val2017.json, train2017/, val2017/:
           val2017 -> test (5,000 images); dev is 5,000 train2017 images picked with a fixed seed.

Image keys are paths relative to the images folder ("val2014/COCO_val2014_000000000042.jpg"), so they stay
unique when the images live in two folders.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers.errors import DatasetError
from helpers.machinery.layouts.base import Found, Layout, LayoutRows, Skipped, first_dir, first_file, read_text

SEED = 0
KARPATHY_FILES = ("dataset_coco.json", "dataset_flickr30k.json", "dataset_flickr8k.json")
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "dev", "test": "test"}
KARPATHY_IMAGE_DIRS = ("images", "Images", "flickr30k_images", "flickr30k-images", "Flicker8k_Dataset", ".")
COCO_DEV_SIZE = 5000
COCO_FILES = ("annotations/captions_train2017.json", "annotations/captions_val2017.json")


def _load_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON ({error}): is the download complete? {what}") from error
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not an object. {what}")
    return data


def read_karpathy(path: Path) -> LayoutRows:
    """Rows and split of a Karpathy JSON; an image's key is `filepath/filename` (COCO) or `filename`."""
    images = _load_json(path, "Expected Karpathy's split file: an object with an 'images' list.").get("images")
    if not isinstance(images, list):
        raise DatasetError(f"{path} is not a Karpathy split file: it has no 'images' list.")
    rows, skipped, splits = [], [], {"train": [], "dev": [], "test": []}
    for i, image in enumerate(images):
        if not isinstance(image, dict) or not image.get("filename"):
            skipped.append(Skipped(path.name, f"image {i}", "entry has no 'filename'"))
            continue
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
    return LayoutRows(rows, skipped, splits, [f"Split from {path.name}: val -> dev, restval -> train."],
                      f"the 'split' field of {path}")


def _karpathy_images_dir(root: Path, karpathy: Path) -> Path:
    """The folder under which a Karpathy JSON's `filepath/filename` keys are files (images/ by default)."""
    sample = read_karpathy(karpathy).rows[:50]
    for candidate in KARPATHY_IMAGE_DIRS:
        if any((root / candidate / key).is_file() for key, _, _ in sample):
            return root / candidate
    raise DatasetError(f"{karpathy} was found, but none of its first images were found in "
                       f"{', '.join(c + '/' for c in KARPATHY_IMAGE_DIRS)} of {root}.")


def _detect_karpathy(root: Path) -> Found | None:
    if karpathy := first_file(root, KARPATHY_FILES):
        return Found("karpathy", _karpathy_images_dir(root, karpathy), karpathy)
    return None


def _read_karpathy(root: Path, found: Found) -> LayoutRows:
    return read_karpathy(found.captions_file)


def _detect_coco2017(root: Path) -> Found | None:
    if all((root / f).is_file() for f in COCO_FILES) and first_dir(root, ("train2017", "val2017")):
        return Found("coco2017", root, root / COCO_FILES[0])
    return None


def read_coco2017(root: Path, found: Found | None = None) -> LayoutRows:
    """Rows of annotations/captions_{train,val}2017.json; val2017 is test, a seeded 5,000 of train2017 is dev."""
    rows, skipped, by_folder = [], [], {}
    for file in COCO_FILES:
        path, folder = root / file, file.split("_")[-1].removesuffix(".json")
        data = _load_json(path, "Expected COCO's captions file: an object with 'images' and 'annotations'.")
        keys = {image["id"]: f"{folder}/{image['file_name']}" for image in data.get("images", [])}
        by_folder[folder] = sorted(keys.values())
        for annotation in data.get("annotations", []):
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
    splits = {"train": sorted(train[dev:]), "dev": sorted(train[:dev]), "test": by_folder["val2017"]}
    notes = [f"COCO 2017 has no dev split: {dev:,} train2017 images (seed {SEED}) are dev, val2017 is test."]
    return LayoutRows(rows, skipped, splits, notes, "val2017 (test) and a seeded share of train2017 (dev)")


KARPATHY = Layout("karpathy", "dataset_coco.json, dataset_flickr30k.json or dataset_flickr8k.json + images/ "
                  "(Karpathy's splits)", _detect_karpathy, _read_karpathy)
COCO2017 = Layout("coco2017", "annotations/captions_train2017.json + captions_val2017.json, train2017/ and val2017/",
                  _detect_coco2017, read_coco2017)
LAYOUTS = (KARPATHY, COCO2017)
