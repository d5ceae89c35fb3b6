"""Find the dataset a notebook should use: the fixture, a Flickr8k copy on this machine, or a folder you name.

    folder, is_fixture = resolve_data("auto")   # Flickr8k if one is found, else the fixture

"auto" looks in the course's data/flickr8k/, ~/flickr8k/, /content/flickr8k/ on Colab, and the newest
kagglehub download of adityajn105/flickr8k. "flickr8k" also downloads it when none is found
(helpers/machinery/download.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from helpers.errors import DatasetError
from helpers.machinery.dataset import detect_layout
from helpers.machinery.paths import data_dir, fixture_dir

IN_COLAB = "google.colab" in sys.modules
KAGGLE_DATASET = "adityajn105/flickr8k"


def flickr8k_candidates() -> list[Path]:
    """Where `resolve_data("auto")` looks for Flickr8k, in order."""
    places = []
    with contextlib.suppress(DatasetError):  # outside a clone of the course: no data/ folder to look in
        places.append(data_dir() / "flickr8k")
    places.append(Path.home() / "flickr8k")
    if IN_COLAB:
        places.append(Path("/content/flickr8k"))
    cache = Path(os.environ.get("KAGGLEHUB_CACHE", Path.home() / ".cache" / "kagglehub"))
    versions = (cache / "datasets" / KAGGLE_DATASET / "versions").glob("*")
    places += sorted(versions, key=lambda p: int(p.name) if p.name.isdigit() else -1, reverse=True)  # newest first
    return places


def find_flickr8k() -> Path | None:
    """The first usable Flickr8k folder among `flickr8k_candidates()`, or None."""
    for place in flickr8k_candidates():
        if not place.is_dir():
            continue
        try:
            detect_layout(place)
        except DatasetError:
            print(f"Skipping {place}: not a usable Flickr8k folder (set COURSE_DATA={place} to see why).")
            continue
        return place
    return None


def _course_relative(path: Path) -> Path:
    """A relative path missing from here, looked up in the course folder instead (kernels start in notebooks/)."""
    if path.is_absolute() or path.exists():
        return path
    try:
        candidate = data_dir().parent / path
    except DatasetError:
        return path
    return candidate if candidate.exists() else path


def resolve_data(mode: str | Path | None = None) -> tuple[Path, bool]:
    """(dataset folder, is it the shipped fixture) for "fixture", "auto", "flickr8k" or a folder; default: $COURSE_DATA.

    "flickr8k" is "auto" that downloads Flickr8k when no copy is found (and fails with the README's
    instructions when it cannot). A copy of the fixture in another layout is not the shipped fixture: the
    notebooks check their lessons' numbers on the shipped one only (a copy gets the fixture's offline encoder,
    MobileNetV2, like the fixture).
    """
    mode = str(mode if mode is not None else os.environ.get("COURSE_DATA", "auto")).strip()
    if mode.lower() == "fixture":
        return fixture_dir(), True
    if mode.lower() in ("", "auto", "flickr8k"):
        found = find_flickr8k()
        if found is None and mode.lower() == "flickr8k":
            from helpers.machinery.download import download_flickr8k

            found = download_flickr8k()
        return (found, False) if found else (fixture_dir(), True)
    folder = _course_relative(Path(mode).expanduser())
    detect_layout(folder)  # raises DatasetError: what the folder holds and how to get Flickr8k
    return folder, folder.resolve() == fixture_dir().resolve()
