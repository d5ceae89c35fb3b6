"""The course at Flickr8k's size against the memory budget: `python -m bench --scale N`.

Builds a Flickr8k-shaped dataset of N images (synthetic 500 x 375 JPEGs, a quarter of them upright; 5 captions
each with Flickr8k's lengths and word frequencies, `bench/synthetic.py`; the official split's proportions, 6,000 /
1,000 / 1,000 of 8,091, the rest in no split), then runs every CLI stage and every notebook on it, each in a
process of its own, as a learner would on CPU with the untrained encoder (no download here). For each it records
the wall time, the peak resident memory (VmHWM) and the bytes written to storage. It does so at two sizes, N / 4
and N, fits peak = a + b x images per stage, and extrapolates each peak to Flickr8k's 8,091 images, against the
course's budget of 8 GB (a free Colab machine has 12.7 GB).

Training runs `epochs` epochs (default 2: memory does not grow with epochs; time does, so the seconds an epoch
are reported too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLICKR8K_IMAGES, FLICKR8K_SPLITS = 8091, {"train": 6000, "dev": 1000, "test": 1000}
BUDGET_MB = 8 * 1024
# The smaller size: several full encoder batches (32), so that peaks grow with images, not with batches.
MIN_SMALL_SIZE = 128
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}


def make_flickr8k_like(folder: str | Path, images: int, seed: int = 0) -> Path:
    """An `images`-picture dataset in Flickr8k's Kaggle layout (Images/, captions.txt) with split lists."""
    from PIL import Image

    from bench.synthetic import CAPTIONS_PER_IMAGE, caption_lengths, word_ids

    folder = Path(folder)
    (folder / "Images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"{1000000 + i}_{seed:02d}{i % 97:02x}bench.jpg" for i in range(images)]
    for i, name in enumerate(names):
        size = (375, 500) if i % 4 == 3 else (500, 375)
        blobs = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        pixels = np.asarray(blobs, dtype=np.float32) + rng.normal(0, 10, (size[1], size[0], 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / "Images" / name, quality=90)
    lengths = caption_lengths(images * CAPTIONS_PER_IMAGE, seed)
    ids = word_ids(int(lengths.sum()), seed=seed)
    words = np.array([_letters(i) for i in range(int(ids.max()) + 1)])[ids]
    ends = np.cumsum(lengths)
    rows = ["image,caption"] + [f"{names[k // CAPTIONS_PER_IMAGE]},{' '.join(words[end - n:end])} ."
                                for k, (n, end) in enumerate(zip(lengths, ends, strict=True))]
    (folder / "captions.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    start = 0
    for split, share in FLICKR8K_SPLITS.items():
        count = max(1, round(images * share / FLICKR8K_IMAGES))
        (folder / SPLIT_FILES[split]).write_text("\n".join(names[start:start + count]) + "\n", encoding="utf-8")
        start += count
    return folder


def _letters(number: int) -> str:
    """A word of three or more letters for each number (the cleaning drops digits and one-letter words)."""
    word = ""
    while True:
        number, digit = divmod(number, 26)
        word += chr(ord("a") + digit)
        if number == 0:
            return "qu" + word


def cli_stages(data: Path, work: Path, epochs: int) -> dict[str, list[str]]:
    """Every stage of the command line, in order, with the untrained encoder."""
    common = ["--out", str(work)]
    fit = ["--weights", "none", "--epochs", str(epochs)]
    return {
        "prepare": ["prepare", "--data", str(data), *common],
        "features": ["features", "--weights", "none", *common],
        "features --grid": ["features", "--grid", "--weights", "none", *common],
        "train": ["train", *fit, *common],
        "train --decoder attention": ["train", "--decoder", "attention", "--model", "attention", *fit, *common],
        "evaluate": ["evaluate", *common],
        "evaluate --model attention": ["evaluate", "--model", "attention", *common],
    }


def _environment(data: Path, work: Path, epochs: int) -> dict:
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=python_path, COURSE_DATA=str(data), COURSE_WORK_DIR=str(work),
                COURSE_WEIGHTS="none", COURSE_EPOCHS=str(epochs), COURSE_HEADLESS="1", TQDM_DISABLE="1",
                TF_CPP_MIN_LOG_LEVEL="3", COURSE_FEATURE_STORE="")


def run_cli(data: Path, work: Path, epochs: int, log=print) -> dict:
    """Each CLI stage in its own process: seconds, peak RSS and storage written (MiB); s an epoch for training."""
    results = {}
    env = _environment(data, work, epochs)
    for name, args in cli_stages(data, work, epochs).items():
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
            pass
        done = subprocess.run([sys.executable, "-m", "bench.measured", out.name, "helpers", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=False)
        figures = json.loads(Path(out.name).read_text() or "{}")
        os.unlink(out.name)
        if done.returncode:
            raise RuntimeError(f"`python -m helpers {' '.join(args)}` failed:\n{done.stderr[-3000:]}")
        if args[0] == "train":
            model = "attention" if "attention" in args else "model"
            record = json.loads((work / f"{model}.json").read_text())
            figures["seconds_per_epoch"] = record["seconds"] / record["epochs_this_run"]
        results[name] = figures
        log(f"[scale] {name}: {figures['seconds']:.0f} s, peak {figures['peak_rss_mb']:.0f} MiB", file=sys.stderr)
    return results


def run_notebooks(data: Path, work: Path, epochs: int, notebooks: list[Path] | None = None, log=print) -> dict:
    """Every notebook in order in one work folder, as a learner runs them; each kernel reports its own figures."""
    import nbformat
    from nbclient import NotebookClient

    notebooks = notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    env = _environment(data, work, epochs)
    results = {}
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        for path in notebooks:
            notebook = nbformat.read(path, as_version=4)
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
                pass
            notebook.cells.append(nbformat.v4.new_code_cell(
                f"import json, pathlib\nfrom bench.measured import usage\n"
                f"pathlib.Path({out.name!r}).write_text(json.dumps(usage()))"))
            started = time.perf_counter()
            NotebookClient(notebook, timeout=None, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            figures = {**json.loads(Path(out.name).read_text()), "seconds": time.perf_counter() - started}
            os.unlink(out.name)
            results[path.stem] = figures
            log(f"[scale] {path.stem}: {figures['seconds']:.0f} s, peak {figures['peak_rss_mb']:.0f} MiB",
                file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return results


def extrapolate(small: tuple[int, float], large: tuple[int, float], target: int = FLICKR8K_IMAGES) -> float:
    """The straight line through two (images, value) points, at `target` images."""
    (n1, v1), (n2, v2) = small, large
    return v2 + (v2 - v1) / (n2 - n1) * (target - n2)


def measure(images: int, epochs: int = 2, notebooks: bool = True, out: Path | None = None, log=print) -> dict:
    """Both sizes (images // 4 and images), every stage; the fit of each peak to 8,091 images and the budget."""
    if images // 4 < MIN_SMALL_SIZE:
        raise ValueError(f"--scale needs at least {4 * MIN_SMALL_SIZE} images, not {images}: below that the "
                         "encoder's batches are not full at the smaller size, and the fit measures the batch size")
    sizes = [images // 4, images]
    by_size = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_", dir=out) as tmp:
        for n in sizes:
            started = time.perf_counter()
            data = make_flickr8k_like(Path(tmp) / f"data{n}", n)
            log(f"[scale] {n} images made in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            figures = {"cli": run_cli(data, Path(tmp) / f"cli{n}", epochs, log)}
            if notebooks:
                figures["notebooks"] = run_notebooks(data, Path(tmp) / f"nb{n}", epochs, log=log)
            by_size[n] = figures
    small, large = by_size[sizes[0]], by_size[sizes[1]]
    fit = {}
    for group, stages in large.items():
        for name, figures in stages.items():
            before = small[group][name]
            fit[f"{group}: {name}"] = {key: extrapolate((sizes[0], before[key] or 0), (sizes[1], figures[key] or 0))
                                       for key in ("peak_rss_mb", "written_mb", "seconds")}
    worst = max(fit.values(), key=lambda f: f["peak_rss_mb"])["peak_rss_mb"]
    return {"sizes": sizes, "epochs": epochs, "measured": {str(n): f for n, f in by_size.items()},
            "at_flickr8k": fit, "budget_mb": BUDGET_MB, "worst_peak_mb": worst, "within_budget": worst < BUDGET_MB}


def lines(result: dict) -> list[str]:
    """A markdown table: each stage's figures at the larger size and extrapolated to 8,091 images."""
    n = result["sizes"][-1]
    head = (f"| stage | s at {n:,} | peak MiB at {n:,} | written MiB at {n:,} | s/epoch | peak MiB at 8,091 (fit) "
            f"| s at 8,091 (fit) |")
    out = [head, "|" + "---|" * 7]
    for group, stages in result["measured"][str(n)].items():
        for name, figures in stages.items():
            fit = result["at_flickr8k"][f"{group}: {name}"]
            epoch = f"{figures['seconds_per_epoch']:.0f}" if "seconds_per_epoch" in figures else ""
            out.append(f"| {group}: {name} | {figures['seconds']:.0f} | {figures['peak_rss_mb']:,.0f} | "
                       f"{figures['written_mb'] or 0:,.0f} | {epoch} | {fit['peak_rss_mb']:,.0f} | "
                       f"{fit['seconds']:,.0f} |")
    verdict = "within" if result["within_budget"] else "OVER"
    out.append(f"\nWorst peak at 8,091 images: {result['worst_peak_mb']:,.0f} MiB, {verdict} the budget of "
               f"{result['budget_mb']:,} MiB (sizes {result['sizes'][0]:,} and {n:,}; {result['epochs']} epochs).")
    return out
