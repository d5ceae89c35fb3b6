"""Small datasets written by the tests, in both Flickr8k layouts, with the real files' quirks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

# Raw captions as they appear in Flickr8k: commas, escaped quotes, capitals, digits, trailing " ."
CAPTIONS = {
    "1000_aaa.jpg": ["A child in a pink dress , climbing stairs .", 'A girl says "hello" to 2 dogs .',
                     "A little girl climbing into a wooden playhouse ."],
    "2000_bbb.jpg": ["A black dog and a spotted dog are fighting", "Two dogs on pavement moving toward each other ."],
    "3000_ccc.jpg": ["A man's bike, red and blue .", "The END of the race ."],
    "4000_ddd.jpg": ["A boy in a red T-shirt runs .", "A child running on the grass ."],
}
SPLITS = {"train": ["1000_aaa.jpg", "2000_bbb.jpg"], "dev": ["4000_ddd.jpg"], "test": ["3000_ccc.jpg"]}


def write_image(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A small solid JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path)
    return path


def token_rows() -> list[str]:
    """CAPTIONS as rows of an original token file: `name.jpg#k<TAB>caption`."""
    return [f"{name}#{k}\t{caption}" for name, caps in CAPTIONS.items() for k, caption in enumerate(caps)]


def write_splits(folder: Path) -> None:
    """Split lists with the official file names."""
    for split, names in SPLITS.items():
        (folder / f"Flickr_8k.{split}Images.txt").write_text("".join(n + "\n" for n in names))


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    """Kaggle layout: Images/ + captions.txt written with the csv module, plus split lists."""
    root = tmp_path / "kaggle"
    for name in CAPTIONS:
        write_image(root / "Images" / name)
    with (root / "captions.txt").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows((name, caption) for name, caps in CAPTIONS.items() for caption in caps)
    write_splits(root)
    return root


@pytest.fixture
def original_dir(tmp_path: Path) -> Path:
    """Original layout: Flicker8k_Dataset/ + Flickr8k_text/ with ungrouped rows and the bogus `.jpg.1` row."""
    root = tmp_path / "original"
    for name in CAPTIONS:
        write_image(root / "Flicker8k_Dataset" / name)
    rows = token_rows()
    rows = rows[1::2] + rows[::2] + ["1000_aaa.jpg.1#0\tA bogus row for a file that does not exist ."]
    text = root / "Flickr8k_text"
    text.mkdir(parents=True)
    (text / "Flickr8k.token.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write_splits(text)
    return root
