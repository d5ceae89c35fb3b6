"""Flickr30k in its two layouts: the Kaggle `results.csv` and the original `results_20130124.token`.

flickr30k-kaggle   flickr30k_images/*.jpg (or flickr30k_images/flickr30k_images/) + results.csv
                   (`image_name| comment_number| comment`, pipe-separated)
flickr30k-token    flickr30k-images/*.jpg + results_20130124.token (`name.jpg#k<TAB>caption`)

The split is Karpathy's when dataset_flickr30k.json lies next to the captions, else a seeded split with
Karpathy's sizes (1,000 test, 1,014 dev, the rest train), said in the notes.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from helpers.errors import DatasetError
from helpers.machinery.layouts.base import Found, Layout, LayoutRows, Row, Skipped, first_dir, first_file, read_text
from helpers.machinery.layouts.coco import read_karpathy
from helpers.machinery.layouts.flickr8k import read_token_captions

SEED = 0
IMAGE_DIRS = ("flickr30k_images", "flickr30k_images/flickr30k_images", "flickr30k-images")
CSV_FILES = ("results.csv", "flickr30k_images/results.csv")
TOKEN_FILES = ("results_20130124.token", "flickr30k/results_20130124.token")
KARPATHY_FILES = ("dataset_flickr30k.json", "flickr30k_images/dataset_flickr30k.json")
SIZES = {"test": 1000, "dev": 1014}  # Karpathy's Flickr30k split; the rest is train


def read_results_csv(path: Path) -> tuple[list[Row], list[Skipped], list[str]]:
    """Rows of the Kaggle Flickr30k results.csv: `image_name| comment_number| comment`, spaces after the pipes.

    One row of the real file (line 19,999) has lost a pipe: `2199200615.jpg| 4 A dog runs across the grass .`.
    Its caption is kept and the repair is reported in the notes returned with the rows.
    """
    rows, skipped, notes = [], [], []
    lines = read_text(path).splitlines()
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


def flickr30k_splits(root: Path, names: list[str], notes: list[str]) -> tuple[dict[str, list[str]], str]:
    """Karpathy's split from dataset_flickr30k.json when present, else a seeded split with Karpathy's sizes."""
    karpathy = first_file(root, KARPATHY_FILES)
    if karpathy:
        notes.append(f"Split from {karpathy.name}: val -> dev, restval -> train.")
        return read_karpathy(karpathy).splits, str(karpathy)
    shuffled = sorted(names)
    random.Random(SEED).shuffle(shuffled)
    test, dev = (min(size, max(1, len(names) // 10)) if len(names) >= 3 else 0 for size in SIZES.values())
    notes.append(f"No dataset_flickr30k.json next to the captions: seeded split (seed {SEED}) with Karpathy's sizes, "
                 f"{test} test, {dev} dev, {len(names) - test - dev} train. Put Karpathy's JSON there to compare "
                 "with papers.")
    splits = {"train": sorted(shuffled[test + dev:]), "dev": sorted(shuffled[test:test + dev]),
              "test": sorted(shuffled[:test])}
    return splits, f"a seeded split (seed {SEED}) of the images in the captions file"


def _detector(name: str, caption_files: tuple[str, ...]):
    def detect(root: Path) -> Found | None:
        images = first_dir(root, IMAGE_DIRS)
        captions = first_file(root, caption_files)
        return Found(name, images, captions) if images and captions else None

    return detect


def _read_csv(root: Path, found: Found) -> LayoutRows:
    rows, skipped, notes = read_results_csv(found.captions_file)
    splits, source = flickr30k_splits(root, sorted({key for key, _, _ in rows}), notes)
    return LayoutRows(rows, skipped, splits, notes, source)


def _read_token(root: Path, found: Found) -> LayoutRows:
    rows, skipped = read_token_captions(found.captions_file)  # the same format as Flickr8k.token.txt
    notes: list[str] = []
    splits, source = flickr30k_splits(root, sorted({key for key, _, _ in rows}), notes)
    return LayoutRows(rows, skipped, splits, notes, source)


FLICKR30K_KAGGLE = Layout("flickr30k-kaggle",
                          "flickr30k_images/ + results.csv (Kaggle hsankesara/flickr-image-dataset)",
                          _detector("flickr30k-kaggle", CSV_FILES), _read_csv)
FLICKR30K_TOKEN = Layout("flickr30k-token",
                         "flickr30k-images/ + results_20130124.token (the original Flickr30k release)",
                         _detector("flickr30k-token", TOKEN_FILES), _read_token)
LAYOUTS = (FLICKR30K_KAGGLE, FLICKR30K_TOKEN)
