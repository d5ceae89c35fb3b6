"""Where the course finds its shipped data and where it writes its work."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.errors import DatasetError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # helpers/, above this machinery folder
FIXTURE_SCENES = "scenes.json"  # what each fixture picture shows; written by helpers.machinery.fixture
FIXTURE_GENERATOR = "helpers.fixture"  # the mark in the fixture's scenes.json (its maker's module when it was made)


def data_dir() -> Path:
    """The repository's `data/` folder (set COURSE_DATA_DIR to override)."""
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"])
    for base in (PACKAGE_DIR.parent, *Path.cwd().resolve().parents, Path.cwd().resolve()):
        if (base / "data" / "fixture").is_dir():
            return base / "data"
    raise DatasetError(
        "Cannot find the course's data/ folder (with data/fixture inside). Run from a clone of the "
        "course repository, or set COURSE_DATA_DIR to its data/ folder."
    )


def fixture_dir() -> Path:
    """The tiny dataset that ships with the course (Kaggle layout)."""
    return data_dir() / "fixture"


def is_fixture_folder(folder: str | Path) -> bool:
    """Whether a dataset folder is the fixture, or a copy of it in another layout (it carries the scene file)."""
    scenes = Path(folder) / FIXTURE_SCENES
    if not scenes.is_file():
        return False
    try:
        return json.loads(scenes.read_text(encoding="utf-8")).get("generator") == FIXTURE_GENERATOR
    except (ValueError, AttributeError):
        return False


def official_splits_dir() -> Path:
    """The official Flickr8k train/dev/test image lists."""
    return data_dir() / "flickr8k_splits"


def default_work_dir() -> Path:
    """Where the command line writes its results unless told otherwise (ignored by git)."""
    if os.environ.get("COURSE_WORK_DIR"):
        return Path(os.environ["COURSE_WORK_DIR"])
    return data_dir().parent / "work"


def feature_store() -> Path | None:
    """The folder of features shared by every work folder ($COURSE_FEATURE_STORE), or None when it is not set."""
    return Path(os.environ["COURSE_FEATURE_STORE"]).expanduser() if os.environ.get("COURSE_FEATURE_STORE") else None
