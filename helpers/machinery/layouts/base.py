"""What every dataset layout shares: the row and skip types, the `Layout` interface, and safe small readers.

A layout is a name, a `detect(root)` that says whether a folder holds it (and where its images and captions
are), and a `read(root, found)` that returns its caption rows and its split. `helpers.machinery.dataset` tries every
registered layout in turn and turns the rows into a `CaptionDataset`.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from helpers.errors import DatasetError

SPLITS = ("train", "dev", "test")
Row = tuple[str, str, str]  # (image key, raw caption, row label such as "line 7")


@dataclass(frozen=True)
class Skipped:
    """A caption row or image the loader dropped, and why."""

    file: str
    item: str
    reason: str


@dataclass(frozen=True)
class Found:
    """Where a detected layout keeps its images and its captions."""

    layout: str
    images_dir: Path
    captions_file: Path


@dataclass
class LayoutRows:
    """What a layout's reader returns: caption rows, dropped rows, the split (image keys) and notes."""

    rows: list[Row]
    skipped: list[Skipped] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    split_source: str = ""  # the files (or field) the split came from, for messages


@dataclass(frozen=True)
class Layout:
    """One dataset layout: its name, a line of help, and how to detect and read it."""

    name: str
    summary: str
    detect: Callable[[Path], Found | None]
    read: Callable[[Path, Found], LayoutRows]


def first_dir(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The deepest candidate folder that exists and holds files (handles Images/Images unzips)."""
    found = [root / c for c in candidates if (root / c).is_dir() and any((root / c).glob("*.*"))]
    return max(found, key=lambda p: len(p.parts), default=None)


def first_file(root: Path, candidates: tuple[str, ...]) -> Path | None:
    """The first candidate file that exists."""
    return next((root / c for c in candidates if (root / c).is_file()), None)


def read_text(path: Path) -> str:
    """A caption or split file as text; a DatasetError naming the file if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text (byte {error.start:,} is {error.object[error.start]:#04x}): "
                           "open it in a text editor and save it as UTF-8, or download it again.") from error


def read_name_list(path: Path) -> list[str]:
    """One image name per line (names may hold spaces); blank lines are ignored."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def unsafe_key(key: str) -> str | None:
    """Why an image key from a captions or split file may not be opened, or None when it is safe.

    A key names a file inside the images folder; an absolute path or one that climbs out with `..` would make
    the course read (and cache) files that are not part of the dataset.
    """
    if not key:
        return "the image name is empty"
    if os.path.isabs(key) or key.startswith(("/", "\\")) or (len(key) > 1 and key[1] == ":"):
        return "the image name is an absolute path, outside the images folder"
    if os.path.normpath(key.replace("\\", "/")).split(os.sep)[0] == "..":
        return "the image name climbs out of the images folder ('..')"
    return None


def printable(text: str) -> str:
    """`text` with control characters escaped, safe to print in a terminal."""
    if all(unicodedata.category(c)[0] != "C" for c in text):
        return text
    return "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in text)
