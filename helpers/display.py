"""Figures and small tools for notebooks 05-06: loss curves, per-caption BLEU, a demo image, an upload box.

Light on purpose: importing this module never imports TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from helpers.evaluation import BLEU_WEIGHTS, tokens

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Set by the test runners and notebook executors; a person at a notebook has none of them.
HEADLESS_VARIABLES = ("PYTEST_CURRENT_TEST", "PAPERMILL_EXECUTION", "COURSE_HEADLESS")


def plot_history(history: Mapping[str, Sequence[float]], title: str = "Training and dev loss") -> Figure:
    """Train and dev loss per epoch (from `train`'s history), with the best dev epoch marked."""
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, history["loss"], "o-", markersize=3, label="train loss")
    if history.get("val_loss"):
        dev = list(history["val_loss"])
        best = min(range(len(dev)), key=dev.__getitem__)
        ax.plot(epochs, dev, "s-", markersize=3, label="dev loss")
        ax.axvline(best + 1, color="0.6", linestyle=":")
        ax.annotate(f"best dev loss {dev[best]:.3f}\n(epoch {best + 1}, saved)", (best + 1, dev[best]),
                    xytext=(-10, 25), textcoords="offset points", ha="right", fontsize=9)
    ax.set(xlabel="epoch", ylabel="cross-entropy per word", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def sentence_bleus(references: Sequence[Sequence[str]], hypotheses: Sequence[str], order: int = 4) -> list[float]:
    """BLEU-`order` of each caption alone against its references, smoothed (nltk method 1) so few matches are not 0."""
    if len(references) != len(hypotheses):
        raise ValueError(f"Need one list of references per hypothesis, got {len(references)} and {len(hypotheses)}")
    weights, smooth = BLEU_WEIGHTS[f"bleu{order}"], SmoothingFunction().method1
    with warnings.catch_warnings():  # nltk warns about empty hypotheses; they score 0
        warnings.simplefilter("ignore", UserWarning)
        return [float(sentence_bleu([tokens(r) for r in refs], tokens(hyp), weights=weights, smoothing_function=smooth))
                for refs, hyp in zip(references, hypotheses)]


def demo_image(path: str | Path, size: tuple[int, int] = (320, 240), blob: str = "red", ground: str = "green",
               left: bool = True) -> Path:
    """Draw a picture like the fixture's: a `blob`-coloured ball on the left (or right) half of a `ground` field."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, ground)
    centre_x = width // 4 if left else 3 * width // 4
    radius = min(width, height) // 6
    ImageDraw.Draw(image).ellipse((centre_x - radius, height // 2 - radius, centre_x + radius, height // 2 + radius),
                                  fill=blob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def running_interactively() -> bool:
    """Whether a person is probably looking at this kernel: not under pytest/nbval, papermill or COURSE_HEADLESS."""
    if any(os.environ.get(name) for name in HEADLESS_VARIABLES):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # a Jupyter or Colab kernel, not plain python


def upload_box(on_image: Callable[[Path], None], interactive: bool | None = None):
    """A FileUpload widget that saves each uploaded image to a temporary file and calls `on_image(path)`.

    Returns the widget to display, or None when nobody is there to click it (tests, papermill).
    """
    if not (running_interactively() if interactive is None else interactive):
        return None
    import ipywidgets as widgets

    upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload a photo")
    output = widgets.Output()
    folder = Path(tempfile.mkdtemp(prefix="course-upload-"))

    def uploaded(change) -> None:
        if not change["new"]:
            return
        output.clear_output()
        with output:
            for item in change["new"]:  # ipywidgets 8: a tuple of {"name", "content", ...}
                path = folder / Path(item["name"]).name
                path.write_bytes(bytes(item["content"]))
                on_image(path)

    upload.observe(uploaded, names="value")
    return widgets.VBox([upload, output])
