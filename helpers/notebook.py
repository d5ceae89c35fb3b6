"""What every notebook does first: find the data and the work folder, seed, print versions; and shared figures.

Light on purpose: importing this module never imports TensorFlow (notebooks 01-02 do not need it).
"""

from __future__ import annotations

import os
import platform
import random
import re
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from helpers import __version__
from helpers.dataset import DatasetError, detect_layout
from helpers.paths import PACKAGE_DIR, data_dir, default_work_dir, fixture_dir
from helpers.workspace import Workspace

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Only used where pyproject.toml cannot be found; tools/set_repository.py rewrites it with the setting.
FALLBACK_REPOSITORY = "captioning-course/cnn-lstm-captioning"
IN_COLAB = "google.colab" in sys.modules
KAGGLE_DATASET = "adityajn105/flickr8k"


def _course_pyprojects() -> list[Path]:
    """The pyproject.toml files that may be the course's: beside the package, or beside data/ (a Colab clone)."""
    places = [PACKAGE_DIR.parent / "pyproject.toml"]
    try:
        places.append(data_dir().parent / "pyproject.toml")
    except FileNotFoundError:
        pass
    return places


def read_repository(pyproject: Path) -> str | None:
    """The `[tool.course] repository` setting of a pyproject.toml, or None if it has none."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the one line
        table = re.search(r"^\[tool\.course\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
        found = table and re.search(r'^repository\s*=\s*"([^"]+)"', table.group(1), re.MULTILINE)
        return found.group(1) if found else None
    return tomllib.loads(text).get("tool", {}).get("course", {}).get("repository")


def repository() -> str:
    """GitHub owner/name of the course, from pyproject.toml's `[tool.course]`."""
    for pyproject in _course_pyprojects():
        if pyproject.is_file() and (found := read_repository(pyproject)):
            return found
    return FALLBACK_REPOSITORY


def flickr8k_candidates() -> list[Path]:
    """Where `resolve_data("auto")` looks for Flickr8k, in order."""
    places = []
    try:
        places.append(data_dir() / "flickr8k")
    except FileNotFoundError:
        pass
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


def _is_fixture(folder: Path) -> bool:
    """Whether `folder` is the shipped fixture."""
    try:
        return folder.resolve() == fixture_dir().resolve()
    except FileNotFoundError:
        return False


def _course_relative(path: Path) -> Path:
    """A relative path missing from here, looked up in the course folder instead (kernels start in notebooks/)."""
    if path.is_absolute() or path.exists():
        return path
    try:
        candidate = data_dir().parent / path
    except FileNotFoundError:
        return path
    return candidate if candidate.exists() else path


def resolve_data(mode: str | Path | None = None) -> tuple[Path, bool]:
    """(dataset folder, is it the fixture) for "fixture", "auto" or a Flickr8k folder; default: $COURSE_DATA."""
    mode = str(mode if mode is not None else os.environ.get("COURSE_DATA", "auto")).strip()
    if mode.lower() == "fixture":
        return fixture_dir(), True
    if mode.lower() in ("", "auto"):
        found = find_flickr8k()
        return (found, False) if found else (fixture_dir(), True)
    folder = _course_relative(Path(mode).expanduser())
    detect_layout(folder)  # raises DatasetError: what the folder holds and how to get Flickr8k
    return folder, _is_fixture(folder)


def _display_path(path: Path) -> str:
    """`path` relative to the course folder when it lies inside it."""
    try:
        return str(path.resolve().relative_to(data_dir().parent.resolve()))
    except (FileNotFoundError, ValueError):
        return str(path)


def banner(folder: Path, is_fixture: bool) -> None:
    """Say in one line which dataset this notebook uses, and how to switch."""
    layout, images_dir, _ = detect_layout(folder)
    images = sum(1 for p in images_dir.iterdir() if p.is_file())
    if is_fixture:
        print(f"Using the FIXTURE dataset ({_display_path(folder)}: {images} tiny synthetic images). To use Flickr8k, "
              "download it (README 'Get Flickr8k') and set COURSE_DATA=/path/to/flickr8k (or DATA below).")
    else:
        print(f"Using Flickr8k from {folder} ({layout} layout, {images} images).")


def work_dir() -> Workspace:
    """The work folder the notebooks share: $COURSE_WORK_DIR, else `work/` in the course folder."""
    return Workspace(default_work_dir())


def ensure_prepared(work: Workspace, folder: Path) -> dict:
    """Notebook 01's outputs for `folder` in `work`, rerunning its `prepare` stage if they are missing or stale."""
    from helpers.pipeline import prepare

    if work.path("captions.json").exists() and work.path("dataset.json").exists():
        summary = work.read_json("dataset.json")
        if Path(summary["data_dir"]) == Path(folder).resolve():
            print(f"Found notebook 01's captions.json in {work.root}.")
            return summary
        reason = f"the work folder holds captions of another dataset ({summary['data_dir']})"
    else:
        reason = "notebook 01 has not run in this work folder (on Colab, each notebook runs on a fresh machine)"
    print(f"Running notebook 01's prepare stage now: {reason}.")
    return prepare(work, folder)



def ensure_features(work: Workspace, folder: Path, weights: str = "auto"):
    """Notebook 03's feature cache, extracting (or resuming) whatever is missing; returns the FeatureSet."""
    from helpers.pipeline import extract

    ensure_prepared(work, folder)
    return extract(work, weights)


def ensure_trained(work: Workspace, folder: Path, weights: str = "auto", **train_settings) -> dict:
    """Notebook 05's model.keras and model.json, training with `train_settings` if they are missing."""
    from helpers.pipeline import train

    if work.path("model.keras").exists() and work.path("model.json").exists():
        print(f"Found notebook 05's trained model in {work.root}.")
        return work.read_json("model.json")
    ensure_features(work, folder, weights)
    print("Training the model now: notebook 05 has not run in this work folder.")
    train(work, weights, verbose=2, **train_settings)
    return work.read_json("model.json")

def _version(package: str) -> str:
    """Installed version of a package, without importing it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def setup(seed: int = 0) -> None:
    """Seed Python and NumPy (and Keras/TensorFlow if already imported); print the versions in use."""
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras

        keras.utils.set_random_seed(seed)
    print(f"Python {platform.python_version()} | NumPy {np.__version__} | TensorFlow {_version('tensorflow')} | "
          f"Keras {_version('keras')} | helpers {__version__} | seed {seed}" + (" | on Colab" if IN_COLAB else ""))


def show_captioned(images: Sequence[str | Path], captions: Sequence[str | Sequence[str]], ncols: int = 3,
                   size: float = 3.2, width: int = 42) -> Figure:
    """A grid of images, each above its caption(s), wrapped to `width` characters."""
    import matplotlib.pyplot as plt
    from PIL import Image

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    blocks = [[c] if isinstance(c, str) else list(c) for c in captions]
    texts = ["\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines) for lines in blocks]
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    title_h, text_h, gap = 0.3, 0.15 * max(t.count("\n") + 1 for t in texts) + 0.25, 0.25  # inches
    row_h = title_h + size + text_h
    fig = plt.figure(figsize=(ncols * (size + gap), nrows * row_h))
    fig_w, fig_h = fig.get_size_inches()
    for i, (image, text) in enumerate(zip(images, texts)):
        row, col = divmod(i, ncols)
        top = row * row_h + title_h
        left = col * (size + gap) + gap / 2
        ax = fig.add_axes((left / fig_w, 1 - (top + size) / fig_h, size / fig_w, size / fig_h))
        with Image.open(image) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_anchor("N")  # a wide image sits at the top of its square, right under its name
        ax.axis("off")
        ax.set_title(Path(image).name, fontsize=8, color="0.4")
        ax.text(0, -0.03, text, transform=ax.transAxes, va="top", ha="left", fontsize=8, family="monospace")
    return fig


def draw_model(model, box_width: float = 2.6, box_height: float = 0.62) -> Figure:
    """A Keras functional model as boxes (layer name, type, output shape) and arrows, without pydot or graphviz."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    names = [layer.name for layer in model.layers]
    parents = {layer.name: list(dict.fromkeys(
        t._keras_history.operation.name for node in layer._inbound_nodes for t in node.input_tensors
        if t._keras_history.operation.name in names)) for layer in model.layers}
    depth: dict[str, int] = {}
    for name in names:  # model.layers is in topological order
        depth[name] = 1 + max((depth[p] for p in parents[name]), default=-1)
    rows = [[n for n in names if depth[n] == d] for d in range(max(depth.values()) + 1)]
    width = max(len(row) for row in rows)
    place = {n: ((i + 0.5) * width / len(row) * (box_width + 0.6), -d * (box_height + 0.45))
             for d, row in enumerate(rows) for i, n in enumerate(row)}
    fig, ax = plt.subplots(figsize=(width * (box_width + 0.6) * 0.95, len(rows) * (box_height + 0.45) * 0.95))
    for layer in model.layers:
        x, y = place[layer.name]
        shape = tuple(layer.output.shape)
        ax.add_patch(FancyBboxPatch((x - box_width / 2, y - box_height / 2), box_width, box_height,
                                    boxstyle="round,pad=0.02", facecolor="#dbe9f6" if parents[layer.name] else "#fde2c8",
                                    edgecolor="0.3"))
        ax.text(x, y + 0.12, layer.name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x, y - 0.14, f"{type(layer).__name__}  {shape}", ha="center", va="center", fontsize=8)
        for parent in parents[layer.name]:
            px, py = place[parent]
            ax.annotate("", xy=(x, y + box_height / 2), xytext=(px, py - box_height / 2),
                        arrowprops=dict(arrowstyle="->", color="0.3"))
    xs = [x for x, _ in place.values()]
    ys = [y for _, y in place.values()]
    ax.set_xlim(min(xs) - box_width / 2 - 0.1, max(xs) + box_width / 2 + 0.1)
    ax.set_ylim(min(ys) - box_height / 2 - 0.1, max(ys) + box_height / 2 + 0.1)
    ax.set_title(model.name, fontsize=10)
    ax.axis("off")
    return fig
