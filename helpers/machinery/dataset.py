"""Load any dataset layout the course knows into one `CaptionDataset`: cleaned captions, the split, what was dropped.

The layouts (helpers/machinery/layouts/) are tried in the order of `LAYOUTS`; each says whether a folder holds it and
reads its rows. This module checks every row the same way (a safe image name, an image on disk, a caption
left after cleaning) and reports each row it drops with its reason.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from helpers.cleaning import clean_caption
from helpers.errors import DatasetError
from helpers.machinery.layouts import coco, flickr8k, flickr30k
from helpers.machinery.layouts.base import SPLITS, Found, Layout, Skipped, printable, unsafe_key
from helpers.machinery.paths import official_splits_dir

LAYOUTS: tuple[Layout, ...] = (*flickr8k.LAYOUTS, *flickr30k.LAYOUTS, *coco.LAYOUTS)
DOWNLOAD_HELP = """\
Get Flickr8k in one of two layouts (see README, "Get Flickr8k"):
  Kaggle:   https://www.kaggle.com/datasets/adityajn105/flickr8k -> unzip so that the folder holds
            Images/ and captions.txt
  Original: Flickr8k_Dataset.zip and Flickr8k_text.zip -> unzip both into one folder so that it holds
            Flicker8k_Dataset/ and Flickr8k_text/Flickr8k.token.txt
Or use the small fixture dataset that ships with the course: leave out --data on the command line, or set
COURSE_DATA=fixture (DATA = "fixture" in a notebook's parameters cell).
See docs/troubleshooting.md for the messages the course prints and their fixes."""
LAYOUT_HELP = "Every layout the course reads (docs/datasets.md says where to get each one):\n" + "\n".join(
    f"  {layout.name + ':':<18}{layout.summary}" for layout in LAYOUTS)


@dataclass
class CaptionDataset:
    """Cleaned captions per image key, the split, and what was dropped on the way.

    An image's key is its path relative to `images_dir` (a file name for Flickr8k, `val2014/x.jpg` for COCO):
    the one name the course uses for that image everywhere (captions.json, feature caches, evaluation).
    """

    root: Path
    layout: str
    images_dir: Path
    raw_captions: dict[str, list[str]]
    captions: dict[str, list[str]]
    splits: dict[str, list[str]]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the split was chosen, rows that were repaired
    split_source: str = ""  # the split-list files (or the field) the split came from

    def image_path(self, key: str) -> Path:
        """Full path of an image of this dataset."""
        return self.images_dir / key

    def split_captions(self, split: str) -> dict[str, list[str]]:
        """Image key -> cleaned captions for the images of one split."""
        return {key: self.captions[key] for key in self.splits[split]}

    @property
    def caption_count(self) -> int:
        """Number of cleaned captions kept."""
        return sum(len(c) for c in self.captions.values())


def detect_layout(root: str | Path) -> Found:
    """Which layout a dataset folder holds, with its images folder and captions file; else a DatasetError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}\n{DOWNLOAD_HELP}")
    for layout in LAYOUTS:
        if found := layout.detect(root):
            return found
    raise DatasetError(_layout_problem(root))


def _layout_problem(root: Path) -> str:
    """Explain what a dataset folder holds and what was expected instead."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(entries[:12]) + (f" ... ({len(entries)} entries)" if len(entries) > 12 else "")
    images = flickr8k.first_dir(root, flickr8k.KAGGLE_IMAGE_DIRS + flickr8k.ORIGINAL_IMAGE_DIRS)
    captions = (root / flickr8k.KAGGLE_CAPTIONS).is_file() or (root / flickr8k.TOKEN_FILE).is_file()
    hints = []
    if any(name.endswith(".zip") for name in entries):
        hints.append("It holds a .zip archive: unzip it into this folder first.")
    if images and not captions:
        hints.append(f"Images were found in {images}, but no captions file "
                     f"({flickr8k.KAGGLE_CAPTIONS} or {flickr8k.TOKEN_FILE}).")
    if captions and not images:
        hints.append("A captions file was found, but no folder of images next to it.")
    return "\n".join([f"{root} is not a dataset folder in a layout the course knows.",
                      f"Found: {shown or 'nothing (the folder is empty)'}", *hints, DOWNLOAD_HELP, LAYOUT_HELP])


def split_lists_help(data: CaptionDataset) -> str | None:
    """How to give a dataset in a Flickr8k layout its own split when it has no split lists and Flickr8k's official
    ones, used instead, name none of its images; None in any other case."""
    shipped = data.split_source.startswith(str(official_splits_dir()))
    if data.layout not in flickr8k.SPLIT_FOLDERS or not shipped or any(data.splits.values()):
        return None
    place, files = data.root / flickr8k.SPLIT_FOLDERS[data.layout][0], flickr8k.SPLIT_FILES
    return (f"it has no split lists of its own, and the official Flickr8k lists name none of its images. Write the "
            f"names of the images of each split, one a line, to {place / files['train']}, {files['dev']} and "
            f"{files['test']} beside it, then run prepare again.")


def load_dataset(root: str | Path) -> CaptionDataset:
    """Load, clean and split a dataset folder in any layout `detect_layout` knows."""
    root = Path(root).expanduser()
    found = detect_layout(root)
    layout = next(layout for layout in LAYOUTS if layout.name == found.layout)
    read = layout.read(root, found)
    if not read.rows:
        raise DatasetError(f"{found.captions_file} holds no caption rows ({len(read.skipped)} rows without a "
                           f"caption): expected one row per caption (40,455 in Flickr8k). Is the download "
                           f"complete?\n{DOWNLOAD_HELP}")
    file, skipped = found.captions_file.name, list(read.skipped)
    problems = {key: unsafe_key(key) for key in {row[0] for row in read.rows}}
    on_disk = {key for key, problem in problems.items() if problem is None and (found.images_dir / key).is_file()}
    raw, cleaned = defaultdict(list), defaultdict(list)
    for key, caption, label in read.rows:
        if problems[key]:
            skipped.append(Skipped(file, label, f"image {printable(key)!r}: {problems[key]}"))
        elif key not in on_disk:
            skipped.append(Skipped(file, label, f"image {printable(key)} not found in {found.images_dir}"))
        elif not (clean := clean_caption(caption)):
            skipped.append(Skipped(file, label, f"caption of {printable(key)} has no words left after cleaning: "
                                   f"{printable(caption)!r}"))
        else:
            raw[key].append(caption)
            cleaned[key].append(clean)
    splits = {s: [key for key in dict.fromkeys(read.splits.get(s, [])) if key in cleaned] for s in SPLITS}
    return CaptionDataset(root, found.layout, found.images_dir, dict(raw), dict(cleaned), splits, skipped,
                          read.notes, read.split_source)
