"""Flickr8k as learners download it: the Kaggle copy or the original Flickr8k_text release.

Kaggle (adityajn105/flickr8k):       Images/*.jpg + captions.txt (CSV with an `image,caption` header)
Original (Flickr8k_Dataset.zip +     Flicker8k_Dataset/*.jpg (sic) + Flickr8k_text/Flickr8k.token.txt
          Flickr8k_text.zip):        (`name.jpg#k<TAB>caption`) + Flickr8k_text/Flickr_8k.*Images.txt

Both use the official 6,000 / 1,000 / 1,000 split: the dataset's own split lists where it has them (beside the
captions, or in the other layout's place for them), else the ones that ship with the course (the Kaggle copy has
none).
"""

from __future__ import annotations

import csv
from pathlib import Path

from helpers.errors import DatasetError
from helpers.machinery.layouts.base import (
    SPLITS,
    Found,
    Layout,
    LayoutRows,
    Row,
    Skipped,
    first_dir,
    read_name_list,
    read_text,
)
from helpers.machinery.paths import official_splits_dir

SPLIT_FILES = {s: f"Flickr_8k.{s}Images.txt" for s in SPLITS}
KAGGLE_IMAGE_DIRS = ("Images", "Images/Images")
ORIGINAL_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Flickr8k_Dataset/Flicker8k_Dataset",
                       "Flickr8k_Dataset/Flickr8k_Dataset")
KAGGLE_CAPTIONS = "captions.txt"
TOKEN_FILE = "Flickr8k_text/Flickr8k.token.txt"
SPLIT_FOLDERS = {"kaggle": ("", "Flickr8k_text"), "original": ("Flickr8k_text", "")}  # where each looks, in order


def read_kaggle_captions(path: Path) -> tuple[list[Row], list[Skipped]]:
    """Rows (image, caption, row label) of a Kaggle captions.txt, parsed as CSV.

    A quote that is never closed makes the CSV reader swallow the lines after it into one caption: such a row
    is dropped and reported with the lines it spans, so the rows after it are read again from the next line.
    """
    lines = read_text(path).splitlines(keepends=True)
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
        raise DatasetError(f"{path} should start with the header line 'image,caption', found {header!r}. "
                           "Is this the Kaggle Flickr8k captions.txt?")
    rows, skipped = [], []
    base = reader.line_num + 1  # the line a fresh reader starts at
    while base <= len(lines):
        reader, end = csv.reader(lines[base - 1:]), base - 1
        for fields in reader:
            first, end = end + 1, base + reader.line_num - 1
            label = f"line {first}"
            if any("\n" in f or "\r" in f for f in fields):
                skipped.append(Skipped(path.name, label, f"an unbalanced quote (\") joins lines {first} to {end} "
                                       "into one row: close the quote (or double it) on that line"))
                base = first + 1  # read again from the line after the broken one
                break
            if not any(x.strip() for x in fields):
                continue
            if len(fields) < 2 or not ",".join(fields[1:]).strip():
                skipped.append(Skipped(path.name, label, "row has no caption"))
                continue
            rows.append((fields[0].strip(), ",".join(fields[1:]), label))
        else:
            break
    return rows, skipped


def read_token_captions(path: Path) -> tuple[list[Row], list[Skipped]]:
    """Rows (image, caption, row label) of a token file: `name.jpg#k<TAB>caption` (Flickr8k, Flickr30k)."""
    rows, skipped = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name = key.rpartition("#")[0] if "#" in key else key
        if not tab or not caption.strip():
            skipped.append(Skipped(path.name, f"line {number}", "row has no caption (expected name.jpg#k<TAB>caption)"))
            continue
        rows.append((name.strip(), caption, f"line {number}"))
    return rows, skipped


def read_split_lists(*folders: Path) -> tuple[dict[str, list[str]], str]:
    """The Flickr8k split lists of the first of `folders` that holds all three, else the official ones shipped with
    the course."""
    has_all = (folder for folder in folders if all((folder / f).is_file() for f in SPLIT_FILES.values()))
    folder = next(has_all, official_splits_dir())
    files = {s: folder / f for s, f in SPLIT_FILES.items()}
    return {s: read_name_list(path) for s, path in files.items()}, ", ".join(str(p) for p in files.values())


def _detect_kaggle(root: Path) -> Found | None:
    images = first_dir(root, KAGGLE_IMAGE_DIRS)
    if images and (root / KAGGLE_CAPTIONS).is_file():
        return Found("kaggle", images, root / KAGGLE_CAPTIONS)
    return None


def _detect_original(root: Path) -> Found | None:
    images = first_dir(root, ORIGINAL_IMAGE_DIRS)
    if images and (root / TOKEN_FILE).is_file():
        return Found("original", images, root / TOKEN_FILE)
    return None


def _read(reader, layout: str):
    def read(root: Path, found: Found) -> LayoutRows:
        rows, skipped = reader(found.captions_file)
        splits, source = read_split_lists(*(root / folder for folder in SPLIT_FOLDERS[layout]))
        return LayoutRows(rows, skipped, splits, split_source=source)

    return read


KAGGLE = Layout("kaggle", "Images/ + captions.txt (Kaggle adityajn105/flickr8k)", _detect_kaggle,
                _read(read_kaggle_captions, "kaggle"))
ORIGINAL = Layout("original", "Flicker8k_Dataset/ + Flickr8k_text/Flickr8k.token.txt (the original release)",
                  _detect_original, _read(read_token_captions, "original"))
LAYOUTS = (KAGGLE, ORIGINAL)
