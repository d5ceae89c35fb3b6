"""Generate the tiny offline stand-in for Flickr8k that ships in `data/fixture/`.

Each picture is a big ball on the left or right of a ground (grass or sand) under a sky, and its
five captions say the ball's colour, its side and the ground. Why so plain: the course cannot
download ImageNet weights offline, so CI and the fixture run use an UNTRAINED (random-init)
Xception. Its features are tiny (about 1e-5) and barely change from one image to the next, yet
after standardising each feature with the train mean and std a linear probe still reads colour and
coarse position well, while it cannot tell shapes apart (without that standardisation it cannot
tell left from right either). So every word that depends on the picture is a colour, a side or
a ground: 3 colours x 2 sides x 2 grounds = 12 scenes, which a captioner learns in minutes.
Noise, jitter and varied caption templates keep images and captions from repeating, and the
captions carry the punctuation, capitals, digits and quotes that caption cleaning must handle.

`make_fixture` writes the Kaggle layout (`Images/`, `captions.txt`, split lists);
`write_original_layout` copies it into the original Flickr8k layout, for tests. Both are
deterministic: the same seed gives the same files, byte for byte (JPEG pixels may differ by a
rounding step between Pillow builds).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from helpers.dataset import SPLIT_FILES, read_kaggle_captions

SEED = 8
SIZE = 160
JPEG_QUALITY = 85
COLOURS = {"red": (205, 25, 25), "blue": (25, 55, 215), "black": (18, 18, 18)}
GROUNDS = {"grass": (60, 135, 40), "sand": (225, 195, 120)}
SIDES = ("left", "right")
BALL_X = {"left": 0.27, "right": 0.73}
SKY_TOP, SKY_LOW = (110, 160, 225), (200, 220, 240)
PER_COMBINATION = {"train": 10, "dev": 1, "test": 1}
GROUND_PHRASES = {
    "grass": ("the green grass", "the grass", "a green lawn", "the green field"),
    "sand": ("the yellow sand", "the sand", "a sandy beach", "the beach"),
}
TEMPLATES = (  # {c} colour, {C} Colour, {U} COLOUR, {s} side, {g} a ground phrase
    "A {c} ball is on the {s} of {g} .",
    "A {c} ball lies on {g} , on the {s} side .",
    "There's a {c} ball on the {s} side of {g} .",
    'The "{c} ball" sits on the {s} of {g} .',
    "1 {c} ball in the {s} - hand half of {g} !",
    "On the {s}, a {c} ball rests on {g} .",
    "{C} ball on {g} , {s} side .",
    "Someone's {c} ball was left in the {s}-hand corner of {g} .",
    "A {U} ball on the {s} of {g} , in 1 corner .",
)


@dataclass(frozen=True)
class Scene:
    """What one fixture image shows, its file name, split and the seed that renders it."""

    name: str
    colour: str
    side: str
    ground: str
    split: str
    seed: int


def flickr_names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct Flickr-style file names (`<digits>_<10 hex>.jpg`)."""
    names: dict[str, None] = {}
    while len(names) < n:
        names[f"{rng.integers(10**8, 4 * 10**9)}_{rng.bytes(5).hex()}.jpg"] = None
    return list(names)


def plan_scenes(seed: int = SEED) -> list[Scene]:
    """Every colour x side x ground combination PER_COMBINATION[split] times per split, sorted by name."""
    rng = np.random.default_rng(seed)
    combos = [(c, s, g, split) for c, s, g in product(COLOURS, SIDES, GROUNDS)
              for split, n in PER_COMBINATION.items() for _ in range(n)]
    names = flickr_names(rng, len(combos))
    seeds = rng.integers(0, 2**31, len(combos))
    scenes = [Scene(name, *combo, int(s)) for name, combo, s in zip(names, combos, seeds)]
    return sorted(scenes, key=lambda scene: scene.name)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Soft blotches in [-1, 1]: a `cells` x `cells` random grid stretched to `size` x `size`."""
    coarse = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR))


def draw_background(rng: np.random.Generator, ground: str, size: int) -> np.ndarray:
    """A pale sky over a textured ground, as a float (size, size, 3) RGB array."""
    y = np.linspace(0, 1, size)[:, None, None]
    horizon = rng.uniform(0.2, 0.3)
    sky = np.array(SKY_TOP) + (np.array(SKY_LOW) - SKY_TOP) * y / horizon
    texture = 1 + 0.12 * smooth_noise(rng, size, 6) + 0.06 * smooth_noise(rng, size, 24)
    earth = np.array(GROUNDS[ground]) * texture[..., None] * (0.8 + 0.3 * y)
    return np.where(y < horizon, sky, earth)


def draw_ball(image: np.ndarray, rng: np.random.Generator, colour: str, side: str) -> np.ndarray:
    """Paint a shaded ball with its shadow on the left or right half of `image`."""
    size = image.shape[0]
    r = rng.uniform(0.18, 0.22) * size
    cx = (BALL_X[side] + rng.uniform(-0.04, 0.04)) * size
    cy = rng.uniform(0.58, 0.68) * size
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    shadow = 1 - ((xx - cx - 0.2 * r) / (1.1 * r)) ** 2 - ((yy - cy - 0.9 * r) / (0.3 * r)) ** 2
    image = image * (1 - 0.5 * np.clip(shadow, 0, 1))[..., None]
    light = np.hypot(xx - cx + 0.4 * r, yy - cy + 0.4 * r) / r  # lit from the top left
    rgb = np.array(COLOURS[colour]) * rng.uniform(0.9, 1.1)
    shading = np.clip(1.2 - 0.5 * light, 0.4, 1.2)
    ball = rgb * shading[..., None] + 90 * np.exp(-((light / 0.3) ** 2))[..., None]  # plus a highlight
    alpha = np.clip((r - np.hypot(xx - cx, yy - cy)) / 1.5, 0, 1)[..., None]
    return image * (1 - alpha) + ball * alpha


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """The picture of one scene: background, ball, a slight blur and sensor noise."""
    rng = np.random.default_rng(scene.seed)
    pixels = draw_ball(draw_background(rng, scene.ground, size), rng, scene.colour, scene.side)
    sharp = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    blurred = sharp.filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(blurred) + rng.normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(noisy.round(), 0, 255).astype(np.uint8))


def captions_for(scene: Scene) -> list[str]:
    """Five captions from different templates, all naming the ball's colour, side and ground."""
    rng = np.random.default_rng([scene.seed, 1])
    phrases = GROUND_PHRASES[scene.ground]
    picks = sorted(rng.choice(len(TEMPLATES), 5, replace=False))
    return [
        TEMPLATES[i].format(c=scene.colour, C=scene.colour.capitalize(), U=scene.colour.upper(),
                            s=scene.side, g=phrases[rng.integers(len(phrases))])
        for i in picks
    ]


def write_lines(path: Path, lines: list[str]) -> None:
    """One item a line, '\\n' line ends on every system."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


def write_captions_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """`image,caption` CSV quoted like Kaggle's captions.txt (commas and quotes need quoting)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(rows)


def read_captions_csv(path: Path) -> list[tuple[str, str]]:
    """The (image, caption) rows of a Kaggle-layout captions.txt, read by the course's own loader."""
    return [(image, caption) for image, caption, _ in read_kaggle_captions(path)[0]]


def make_fixture(out_dir: Path, seed: int = SEED, size: int = SIZE) -> Path:
    """Write the fixture in the Kaggle Flickr8k layout (Images/, captions.txt, split lists)."""
    out_dir = Path(out_dir)
    scenes = plan_scenes(seed)
    images = out_dir / "Images"
    images.mkdir(parents=True, exist_ok=True)
    for stale in set(images.glob("*.jpg")) - {images / s.name for s in scenes}:
        stale.unlink()
    for scene in scenes:
        render(scene, size).save(images / scene.name, quality=JPEG_QUALITY, optimize=True)
    write_captions_csv(out_dir / "captions.txt", [(s.name, c) for s in scenes for c in captions_for(s)])
    for split, file_name in SPLIT_FILES.items():
        write_lines(out_dir / file_name, [s.name for s in scenes if s.split == split])
    return out_dir


def write_original_layout(fixture_dir: Path, out_dir: Path, seed: int = SEED) -> Path:
    """Copy the fixture into the original Flickr8k layout, quirks included; returns `out_dir`."""
    fixture_dir, out_dir = Path(fixture_dir), Path(out_dir)
    shutil.copytree(fixture_dir / "Images", out_dir / "Flicker8k_Dataset", dirs_exist_ok=True)  # sic
    text_dir = out_dir / "Flickr8k_text"
    text_dir.mkdir(parents=True, exist_ok=True)
    rows = read_captions_csv(fixture_dir / "captions.txt")
    counts: dict[str, int] = {}
    lines = []
    for image, caption in rows:
        counts[image] = counts.get(image, -1) + 1
        lines.append(f"{image}#{counts[image]}\t{caption}")
    lines.append(f"{rows[0][0]}.1#0\t{rows[0][1]}")  # like the real `2258277193_586949ec62.jpg.1#0`
    order = np.random.default_rng(seed).permutation(len(lines))
    write_lines(text_dir / "Flickr8k.token.txt", [lines[i] for i in order])
    for file_name in SPLIT_FILES.values():
        shutil.copyfile(fixture_dir / file_name, text_dir / file_name)
    return out_dir
