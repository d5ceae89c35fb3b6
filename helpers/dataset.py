"""Read Flickr8k as learners download it: the Kaggle copy or the original Flickr8k_text release.

Kaggle (adityajn105/flickr8k):       Images/*.jpg + captions.txt (CSV with an `image,caption` header)
Original (Flickr8k_Dataset.zip +     Flicker8k_Dataset/*.jpg (sic) + Flickr8k_text/Flickr8k.token.txt
          Flickr8k_text.zip):        (`name.jpg#k<TAB>caption`) + Flickr8k_text/Flickr_8k.*Images.txt

Both give the same `CaptionDataset`: cleaned captions per image, the official train/dev/test split,
and a list of every row or image that was dropped, with its reason. The bigger datasets (Flickr30k, MS-COCO,
Karpathy's split files) are read by helpers/more_datasets.py into the same `CaptionDataset` (docs/datasets.md).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from helpers.cleaning import clean_caption
from helpers.paths import official_splits_dir

SPLITS = ("train", "dev", "test")
SPLIT_FILES = {s: f"Flickr_8k.{s}Images.txt" for s in SPLITS}
KAGGLE_IMAGE_DIRS = ("Images", "Images/Images")
ORIGINAL_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Flickr8k_Dataset/Flicker8k_Dataset",
                       "Flickr8k_Dataset/Flickr8k_Dataset")
TOKEN_FILE = "Flickr8k_text/Flickr8k.token.txt"
DOWNLOAD_HELP = """\
Get Flickr8k in one of two layouts (see README, "Get Flickr8k"):
  Kaggle:   https://www.kaggle.com/datasets/adityajn105/flickr8k -> unzip so that the folder holds
            Images/ and captions.txt
  Original: Flickr8k_Dataset.zip and Flickr8k_text.zip -> unzip both into one folder so that it holds
            Flicker8k_Dataset/ and Flickr8k_text/Flickr8k.token.txt
Or use the small fixture dataset that ships with the course: leave out --data on the command line, or set
COURSE_DATA=fixture (DATA = "fixture" in a notebook's parameters cell).
Flickr30k and MS-COCO work too: docs/datasets.md says how to get them and the layouts the course reads.
See docs/troubleshooting.md for the messages the course prints and their fixes."""


class DatasetError(FileNotFoundError):
    """The dataset folder is missing or not in a layout the course knows."""


@dataclass(frozen=True)
class Skipped:
    """A caption row or image the loader dropped, and why."""

    file: str
    item: str
    reason: str


@dataclass
class CaptionDataset:
    """Cleaned captions per image, the split, and what was dropped on the way."""

    root: Path
    layout: str
    images_dir: Path
    raw_captions: dict[str, list[str]]
    captions: dict[str, list[str]]
    splits: dict[str, list[str]]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the split was chosen, rows that were repaired

    def image_path(self, name: str) -> Path:
        """Full path of an image of this dataset."""
        return self.images_dir / name

    def split_captions(self, split: str) -> dict[str, list[str]]:
        """Image name -> cleaned captions for the images of one split."""
        return {name: self.captions[name] for name in self.splits[split]}

    @property
    def caption_count(self) -> int:
        """Number of cleaned captions kept."""
        return sum(len(c) for c in self.captions.values())


def _first_dir(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The deepest candidate folder that exists and holds files (handles Images/Images unzips)."""
    found = [root / c for c in candidates if (root / c).is_dir() and any((root / c).glob("*.*"))]
    return max(found, key=lambda p: len(p.parts), default=None)


def detect_layout(root: str | Path) -> tuple[str, Path, Path]:
    """Return (layout, images folder, captions file) for a dataset folder, or raise DatasetError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"Dataset folder not found: {root}\n{DOWNLOAD_HELP}")
    kaggle_images, original_images = _first_dir(root, KAGGLE_IMAGE_DIRS), _first_dir(root, ORIGINAL_IMAGE_DIRS)
    if (root / "captions.txt").is_file() and kaggle_images:
        return "kaggle", kaggle_images, root / "captions.txt"
    if (root / TOKEN_FILE).is_file() and original_images:
        return "original", original_images, root / TOKEN_FILE
    from helpers.more_datasets import detect_more  # imported here: more_datasets builds on this module

    if found := detect_more(root):
        return found
    raise DatasetError(_layout_problem(root, kaggle_images or original_images))


def _layout_problem(root: Path, images: Path | None) -> str:
    """Explain what a dataset folder holds and what was expected instead."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(entries[:12]) + (f" ... ({len(entries)} entries)" if len(entries) > 12 else "")
    hints = []
    if any(name.endswith(".zip") for name in entries):
        hints.append("It holds a .zip archive: unzip it into this folder first.")
    if images and not ((root / "captions.txt").is_file() or (root / TOKEN_FILE).is_file()):
        hints.append(f"Images were found in {images}, but no captions file (captions.txt or {TOKEN_FILE}).")
    if not images and ((root / "captions.txt").is_file() or (root / TOKEN_FILE).is_file()):
        hints.append("A captions file was found, but no folder of images next to it.")
    from helpers.more_datasets import LAYOUT_HELP

    return "\n".join([f"{root} is not a Flickr8k folder in a layout the course knows.",
                      f"Found: {shown or 'nothing (the folder is empty)'}", *hints, DOWNLOAD_HELP, LAYOUT_HELP])


def read_kaggle_captions(path: Path) -> tuple[list[tuple[str, str, str]], list[Skipped]]:
    """Rows (image, caption, row label) of a Kaggle captions.txt, parsed as CSV."""
    rows, skipped = [], []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
            raise DatasetError(f"{path} should start with the header line 'image,caption', found {header!r}. "
                               "Is this the Kaggle Flickr8k captions.txt?")
        for fields in reader:
            label = f"line {reader.line_num}"
            if not any(x.strip() for x in fields):
                continue
            if len(fields) < 2 or not ",".join(fields[1:]).strip():
                skipped.append(Skipped(path.name, label, "row has no caption"))
                continue
            rows.append((fields[0].strip(), ",".join(fields[1:]), label))
    return rows, skipped


def read_token_captions(path: Path) -> tuple[list[tuple[str, str, str]], list[Skipped]]:
    """Rows (image, caption, row label) of an original Flickr8k.token.txt (`name.jpg#k<TAB>caption`)."""
    rows, skipped = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        name = key.rpartition("#")[0] if "#" in key else key
        if not tab or not caption.strip():
            skipped.append(Skipped(path.name, f"line {number}", "row has no caption (expected name.jpg#k<TAB>caption)"))
            continue
        rows.append((name.strip(), caption, f"line {number}"))
    return rows, skipped


def read_split_lists(root: Path, layout: str) -> dict[str, list[str]]:
    """The dataset's own split lists if it has them, else the official lists shipped with the course."""
    own = root / "Flickr8k_text" if layout == "original" else root
    folder = own if all((own / f).is_file() for f in SPLIT_FILES.values()) else official_splits_dir()
    return {s: [n.strip() for n in (folder / f).read_text(encoding="utf-8").split() if n.strip()]
            for s, f in SPLIT_FILES.items()}


def load_dataset(root: str | Path) -> CaptionDataset:
    """Load, clean and split a dataset folder in any layout `detect_layout` knows."""
    layout, images_dir, captions_file = detect_layout(root)
    if layout in ("kaggle", "original"):
        reader = read_kaggle_captions if layout == "kaggle" else read_token_captions
        (rows, skipped), notes = reader(captions_file), []
        split_lists = read_split_lists(Path(root), layout)
    else:
        from helpers.more_datasets import read_more

        rows, skipped, split_lists, notes = read_more(layout, Path(root).expanduser(), captions_file)
    if not rows:
        raise DatasetError(f"{captions_file} holds no caption rows ({len(skipped)} rows without a caption): "
                           f"expected one `image,caption` row per caption (40,455 in Flickr8k). Is the download "
                           f"complete?\n{DOWNLOAD_HELP}")
    on_disk = {name for name in {row[0] for row in rows} if (images_dir / name).is_file()}  # names may hold a folder
    raw, cleaned = defaultdict(list), defaultdict(list)
    for name, caption, label in rows:
        if name not in on_disk:
            skipped.append(Skipped(captions_file.name, label, f"image {name} not found in {images_dir}"))
            continue
        clean = clean_caption(caption)
        if not clean:
            skipped.append(Skipped(captions_file.name, label, f"caption of {name} is empty after cleaning: {caption!r}"))
            continue
        raw[name].append(caption)
        cleaned[name].append(clean)
    splits = {s: [n for n in names if n in cleaned] for s, names in split_lists.items()}
    return CaptionDataset(Path(root), layout, images_dir, dict(raw), dict(cleaned), splits, skipped, notes)
