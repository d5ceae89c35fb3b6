"""Download Flickr8k once, check it, and keep it where `resolve_data("auto")` finds it next time.

    folder = download_flickr8k()        # DATA = "flickr8k" in a notebook does this when no copy is found

Two sources, in order: kagglehub (Colab ships it; the Kaggle dataset adityajn105/flickr8k, kept in kagglehub's
cache), then the original two zip files (Flickr8k_Dataset.zip, 1.1 GB, and Flickr8k_text.zip), unpacked into
`dest` (the course's data/flickr8k/, or ~/flickr8k outside a clone). Each zip is downloaded to a `.part` file that
is renamed when complete, unpacked into a temporary folder beside `dest`, checked, then renamed into place: an
interrupted download never leaves a half dataset where the course would read it, and a complete zip is not
downloaded again.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from helpers.errors import DatasetError
from helpers.machinery.dataset import DOWNLOAD_HELP, detect_layout
from helpers.machinery.paths import data_dir
from helpers.machinery.progress import progress_bar

ORIGINAL_URL = os.environ.get("COURSE_FLICKR8K_URL", "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k")
ORIGINAL_ZIPS = {"Flickr8k_Dataset.zip": ".", "Flickr8k_text.zip": "Flickr8k_text"}  # zip -> folder it fills
KAGGLE_DATASET = "adityajn105/flickr8k"


def default_destination() -> Path:
    """data/flickr8k/ in a clone of the course, else ~/flickr8k (both are places `resolve_data` looks)."""
    with contextlib.suppress(DatasetError):
        return data_dir() / "flickr8k"
    return Path.home() / "flickr8k"


def download_flickr8k(dest: str | Path | None = None, base_url: str = ORIGINAL_URL,
                      use_kagglehub: bool = True) -> Path:
    """A checked Flickr8k folder: from kagglehub when it is installed, else the original zips unpacked in `dest`."""
    problems = []
    if use_kagglehub:
        try:
            return _from_kagglehub()
        except ImportError:
            problems.append("kagglehub is not installed (pip install kagglehub)")
        except Exception as error:  # kagglehub raises many kinds (network, HTTP, credentials): fall back on the zips
            problems.append(f"kagglehub failed: {type(error).__name__}: {error}")
    dest = Path(dest).expanduser() if dest else default_destination()
    try:
        return _from_zips(dest, base_url.rstrip("/"))
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, DatasetError) as error:
        problems.append(f"the original zips from {base_url} failed: {type(error).__name__}: {error}")
    raise DatasetError("Could not download Flickr8k (" + "; ".join(problems) + ").\nWithout internet access, "
                       "download it on another machine and copy the folder here.\n" + DOWNLOAD_HELP)


def _from_kagglehub() -> Path:
    import kagglehub

    print(f"Downloading Flickr8k with kagglehub ({KAGGLE_DATASET}, about 1 GB) ...")
    folder = Path(kagglehub.dataset_download(KAGGLE_DATASET))
    detect_layout(folder)
    return folder


def _from_zips(dest: Path, base_url: str) -> Path:
    """Download (or reuse) both zips, unpack them into a temporary folder, check it, move it to `dest`."""
    if dest.is_dir():
        with contextlib.suppress(DatasetError):
            detect_layout(dest)
            return dest
        if any(dest.iterdir()):
            raise DatasetError(f"{dest} exists and is not a usable Flickr8k folder: move it away, or download into "
                               "another folder (download_flickr8k(dest=...)).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    downloads = dest.parent / f"{dest.name}.downloads"
    downloads.mkdir(exist_ok=True)
    zips = {name: _fetch(f"{base_url}/{name}", downloads / name) for name in ORIGINAL_ZIPS}
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, path in zips.items():
            _unpack(path, staging, ORIGINAL_ZIPS[name])
        detect_layout(staging)
        with contextlib.suppress(FileNotFoundError):
            dest.rmdir()  # an empty folder left by the user
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    print(f"Flickr8k is in {dest}")
    return dest


def _fetch(url: str, path: Path) -> Path:
    """Download `url` to `path` (via `path.part`, with a progress bar); a complete earlier download is reused."""
    if path.is_file():
        return path
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(total, True, path.name, unit="B", unit_scale=True) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise OSError(f"{url} ended after {part.stat().st_size} of {total} bytes")
    except (OSError, http.client.HTTPException):  # URLError is an OSError; a cut connection an IncompleteRead
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def _unpack(archive: Path, staging: Path, folder: str) -> None:
    """Unpack a zip into staging/folder (its members already inside `folder/`: into staging), skipping __MACOSX."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if not m.startswith("__MACOSX/")]
            nested = folder != "." and all(m.startswith(f"{folder}/") for m in members)
            target = staging if folder == "." or nested else staging / folder
            if zipped.testzip() is not None:
                raise zipfile.BadZipFile("a member fails its CRC check")
            for member in members:
                zipped.extract(member, target)
    except zipfile.BadZipFile as error:
        archive.unlink()  # the next try downloads it again
        raise zipfile.BadZipFile(f"{archive.name} is damaged ({error}); it was deleted: try again") from None
