"""The course's figures: loss curves, images with their captions, a model's graph, attention over a picture.

Light on purpose: importing this module never imports TensorFlow, and matplotlib only when a figure is drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

CAPTION_POINTS = 8  # the captions' font size
MONOSPACE_WIDTH = 0.6  # a monospace character's width, in font sizes (DejaVu Sans Mono: 0.602)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


DEV_SCORES = {"val_cider": "dev CIDEr-D", "val_bleu4": "dev BLEU-4"}  # what `train(monitor=...)` records


def plot_history(history: Mapping[str, Sequence[float]], title: str = "Training and dev loss") -> Figure:
    """Train and dev loss per epoch (from `train`'s history), with the best dev epoch marked; a dev caption score
    (`monitor="cider"` or `"bleu4"`) on a second axis, its best epoch then the one saved."""
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, history["loss"], "o-", markersize=3, label="train loss")
    score = next((key for key in DEV_SCORES if history.get(key)), None)
    if history.get("val_loss"):
        dev = list(history["val_loss"])
        best = min(range(len(dev)), key=dev.__getitem__)
        ax.plot(epochs, dev, "s-", markersize=3, label="dev loss")
        ax.axvline(best + 1, color="0.6", linestyle=":")
        ax.annotate(f"best dev loss {dev[best]:.3f}\n(epoch {best + 1}{'' if score else ', saved'})",
                    (best + 1, dev[best]), xytext=(-10, 25), textcoords="offset points", ha="right", fontsize=9)
    ax.set(xlabel="epoch", ylabel="cross-entropy per word", title=title)
    ax.legend(loc="lower left")
    if score:
        values = list(history[score])
        best = max(range(len(values)), key=values.__getitem__)
        twin = ax.twinx()
        twin.plot(epochs, values, "^-", color="C2", markersize=4, label=DEV_SCORES[score])
        twin.axvline(best + 1, color="C2", linestyle=":")
        twin.annotate(f"best {DEV_SCORES[score]} {values[best]:.3f}\n(epoch {best + 1}, saved)",
                      (best + 1, values[best]), xytext=(-12, -55), textcoords="offset points", ha="right", fontsize=9,
                      color="C2")
        twin.set_ylabel(f"{DEV_SCORES[score]} (greedy captions)")
        twin.legend(loc="center right")
    fig.tight_layout()
    return fig


def show_captioned(images: Sequence[str | Path], captions: Sequence[str | Sequence[str]], ncols: int = 3,
                   size: float = 3.2, width: int = 42) -> Figure:
    """A grid of images, each above its caption(s), wrapped to `width` characters (fewer if the panel is narrower)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    gap = 0.25  # inches between panels
    width = min(width, int((size + 0.8 * gap) * 72 / (MONOSPACE_WIDTH * CAPTION_POINTS)))  # not into the next panel
    blocks = [[c] if isinstance(c, str) else list(c) for c in captions]
    texts = ["\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines) for lines in blocks]
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    title_h, text_h = 0.3, 0.15 * max(t.count("\n") + 1 for t in texts) + 0.25  # inches
    row_h = title_h + size + text_h
    fig = plt.figure(figsize=(ncols * (size + gap), nrows * row_h))
    fig_w, fig_h = fig.get_size_inches()
    for i, (image, text) in enumerate(zip(images, texts, strict=True)):
        row, col = divmod(i, ncols)
        top = row * row_h + title_h
        left = col * (size + gap) + gap / 2
        ax = fig.add_axes((left / fig_w, 1 - (top + size) / fig_h, size / fig_w, size / fig_h))
        with Image.open(image) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_anchor("N")  # a wide image sits at the top of its square, right under its name
        ax.axis("off")
        ax.set_title(Path(image).name, fontsize=8, color="0.4")
        ax.text(0, -0.03, text, transform=ax.transAxes, va="top", ha="left", fontsize=CAPTION_POINTS,
                family="monospace")
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
                                    boxstyle="round,pad=0.02",
                                    facecolor="#dbe9f6" if parents[layer.name] else "#fde2c8",
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


def plot_attention(image: str | Path, words: Sequence[str], maps, ncols: int = 6) -> Figure:
    """The picture, then one panel per word with that word's attention map (g, g) stretched over the picture."""
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    with Image.open(image) as im:
        picture = np.asarray(im.convert("RGB"))
    nrows = -(-(len(words) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.4 * nrows), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(picture)
    axes[0].set_title(Path(image).name, fontsize=8)
    extent = (0, picture.shape[1], picture.shape[0], 0)  # the grid stretched over the whole picture
    for ax, word, grid in zip(axes[1:], words, maps, strict=False):
        ax.imshow(picture)
        ax.imshow(grid / grid.max(), cmap="inferno", alpha=0.55, extent=extent, interpolation="bilinear")
        ax.set_title(f"{word} (max {grid.max():.2f})", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig
