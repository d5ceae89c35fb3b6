"""Generate the offline stand-in for Flickr8k that ships in `data/fixture/`: a small synthetic world.

Each 160 x 160 picture shows one to three objects (a ball, a box or a cone; small or big; red, blue, green,
yellow, black or white) on a ground (grass, sand or snow) under a sky. Objects stand to the left or the right of
each other, and one may hide part of another. Some pictures are hard on purpose: a yellow ball on sand, a white box
on snow, two objects of one colour, an object half hidden.

Five simulated annotators describe each picture, each in their own way (a plain one, a terse one, a wordy one, one
who counts and relates the objects, a sloppy one), with synonyms, optional adjectives, several word orders, and a
long tail of rare words and misspellings, so that the vocabulary lesson (notebook 02) has rare words to drop and
dev captions hold words the train captions never saw. The captions keep the quirks of the real files: capitals,
quotes and commas inside captions, digits, hyphens and apostrophes.

`scenes.json` records what each picture shows (the objects, their colours, sizes, positions and boxes in pixels),
so notebooks and tests can measure a lesson, not only show it: whether nearest neighbours share colour and layout
(03), which generated captions name a wrong colour, shape or side (06, `check_caption`), whether the attention
looks at the object being named (07).

Why this world: a model learns it offline in minutes on a CPU, and every picture's content is known, so the
lessons are measured. Its features come from MobileNetV2 with the ImageNet weights that ship with the course:
the pooled vectors know shapes, colours and grounds, and much less where things are (pooling averages the grid),
so sides are the merge model's weak point. Everything is generated deterministically from a seed: the same seed
gives the same files, byte for byte (JPEG pixels may differ by a rounding step between Pillow builds).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from helpers.machinery.layouts.flickr8k import SPLIT_FILES
from helpers.machinery.paths import FIXTURE_GENERATOR, FIXTURE_SCENES

SEED = 12
SIZE = 160  # pixels: small files; the encoder reads them at its own size (299 for Xception)
JPEG_QUALITY = 72
SPLIT_SIZES = {"train": 320, "dev": 60, "test": 60}
COLOURS = {"red": (205, 30, 30), "blue": (30, 60, 215), "green": (40, 165, 55), "yellow": (235, 205, 35),
           "black": (22, 22, 22), "white": (244, 244, 244)}
GROUNDS = {"grass": (62, 138, 42), "sand": (226, 196, 122), "snow": (232, 236, 244)}
SHAPES = ("ball", "box", "cone")
SIZES = {"small": 12.0, "big": 20.0}  # half the width of an object, in pixels, at middle depth
SKY_TOP, SKY_LOW = (110, 160, 225), (200, 220, 240)

# Words the annotators use. Each list starts with its usual word; the rest are rarer, and RARE ones rarest.
COLOUR_WORDS = {"red": ["red", "scarlet", "crimson"], "blue": ["blue", "navy", "azure"],
                "green": ["green", "emerald", "lime"], "yellow": ["yellow", "golden", "lemon"],
                "black": ["black", "dark", "jet"], "white": ["white", "ivory", "snowy"]}
SHAPE_WORDS = {"ball": ["ball", "sphere", "orb"], "box": ["box", "cube", "crate"],
               "cone": ["cone", "pyramid", "spike"]}
SIZE_WORDS = {"small": ["small", "little", "tiny", "wee"], "big": ["big", "large", "huge", "giant"]}
GROUND_WORDS = {"grass": ["the grass", "the green grass", "a green lawn", "a field", "a meadow", "the turf"],
                "sand": ["the sand", "a sandy beach", "the beach", "a dune", "the desert", "the shore"],
                "snow": ["the snow", "a snowy field", "a white slope", "a snowdrift", "the ice", "a glacier"]}
RARE = ["shiny", "glossy", "lonely", "bright", "dull", "distant", "sunny", "cloudy", "quiet", "empty", "round",
        "square", "pointed", "plastic", "wooden", "painted", "tidy", "neat", "odd", "curious", "vivid", "faded",
        "pale", "deep", "warm", "cold", "windy", "hazy", "clear", "calm", "little", "humble", "proud", "simple",
        "strange", "lovely", "pretty", "plain", "solid", "hollow", "heavy", "light", "smooth", "rough", "clean",
        "dusty", "sturdy", "sleek", "gleaming", "matte"]
NUMBERS = {2: "two", 3: "three"}


@dataclass(frozen=True)
class Thing:
    """One object of a scene: what it is, and where (x of its centre, y of its base, both 0..1 of the picture)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def half_width(self) -> float:
        """Half the object's width in pixels: its size, nearer objects (lower in the picture) drawn bigger."""
        return SIZES[self.size] * (0.75 + 0.6 * (self.y - 0.55) / 0.35)

    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels."""
        w, cx, base = self.half_width, self.x * SIZE, self.y * SIZE
        height = {"ball": 2 * w, "box": 2.3 * w, "cone": 2.4 * w}[self.shape]
        return round(cx - w), round(base - height), round(cx + w), round(base)


@dataclass(frozen=True)
class Scene:
    """What one fixture picture shows, its file name, its split, and the seed that renders it."""

    name: str
    split: str
    seed: int
    ground: str
    things: tuple[Thing, ...]


def flickr_names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct Flickr-style file names (`<digits>_<10 hex>.jpg`)."""
    names: dict[str, None] = {}
    while len(names) < n:
        names[f"{rng.integers(10**8, 4 * 10**9)}_{rng.bytes(5).hex()}.jpg"] = None
    return list(names)


def plan_things(rng: np.random.Generator) -> tuple[Thing, ...]:
    """One to three objects, left to right, at depths that decide which stands in front."""
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    slots = np.sort(rng.choice(np.linspace(0.2, 0.8, 5), count, replace=False) + rng.uniform(-0.05, 0.05, count))
    overlap = count > 1 and rng.random() < 0.25  # one object partly hides another: they share a slot
    if overlap:
        slots[1] = slots[0] + rng.uniform(0.09, 0.14)
    things = []
    for x in slots:
        things.append(Thing(str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))),
                            round(float(x), 3), round(float(rng.uniform(0.6, 0.88)), 3)))
    return tuple(things)


def plan_scenes(seed: int = SEED) -> list[Scene]:
    """Every scene of the fixture, sorted by file name."""
    rng = np.random.default_rng(seed)
    total = sum(SPLIT_SIZES.values())
    names = flickr_names(rng, total)
    splits = [split for split, n in SPLIT_SIZES.items() for _ in range(n)]
    scenes = [Scene(name, split, int(rng.integers(0, 2**31)), str(rng.choice(list(GROUNDS))), plan_things(rng))
              for name, split in zip(names, splits, strict=True)]
    return sorted(scenes, key=lambda scene: scene.name)


# --- Drawing ---------------------------------------------------------------------------------------------


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Soft blotches in [-1, 1]: a `cells` x `cells` random grid stretched to `size` x `size`."""
    coarse = Image.fromarray(rng.uniform(-1, 1, (cells, cells)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR))


def draw_background(rng: np.random.Generator, ground: str, size: int = SIZE) -> np.ndarray:
    """A pale sky over a textured ground, as a float (size, size, 3) RGB array."""
    y = np.linspace(0, 1, size)[:, None, None]
    horizon = rng.uniform(0.3, 0.42)
    sky = np.array(SKY_TOP) + (np.array(SKY_LOW) - SKY_TOP) * y / horizon
    texture = 1 + 0.1 * smooth_noise(rng, size, 6) + 0.05 * smooth_noise(rng, size, 24)
    earth = np.array(GROUNDS[ground]) * texture[..., None] * (0.82 + 0.25 * y)
    return np.clip(np.where(y < horizon, sky, earth), 0, 255)


def _shade(colour: str, amount: float) -> tuple[int, int, int]:
    """The colour lit by `amount` (1: as is; below: darker; above: lighter)."""
    rgb = np.array(COLOURS[colour], dtype=float)
    shaded = rgb * amount if amount <= 1 else rgb + (255 - rgb) * (amount - 1)
    return tuple(int(v) for v in np.clip(shaded, 0, 255))


def draw_thing(image: Image.Image, thing: Thing) -> None:
    """Paint one object, with its shadow, on a PIL image."""
    draw = ImageDraw.Draw(image, "RGBA")
    left, top, right, bottom = thing.box()
    w = thing.half_width
    draw.ellipse((left - 0.2 * w, bottom - 0.25 * w, right + 0.4 * w, bottom + 0.25 * w), fill=(0, 0, 0, 70))
    if thing.shape == "ball":
        draw.ellipse((left, top, right, bottom), fill=_shade(thing.colour, 0.8))
        draw.ellipse((left + 0.2 * w, top + 0.15 * w, right - 0.5 * w, bottom - 0.55 * w),
                     fill=_shade(thing.colour, 1.0))
        draw.ellipse((left + 0.5 * w, top + 0.35 * w, left + 0.9 * w, top + 0.75 * w), fill=_shade(thing.colour, 1.4))
    elif thing.shape == "box":
        depth = 0.45 * w
        draw.rectangle((left, top + depth, right - depth, bottom), fill=_shade(thing.colour, 0.95))
        draw.polygon([(left, top + depth), (left + depth, top), (right, top), (right - depth, top + depth)],
                     fill=_shade(thing.colour, 1.3))
        draw.polygon([(right - depth, top + depth), (right, top), (right, bottom - depth), (right - depth, bottom)],
                     fill=_shade(thing.colour, 0.6))
    else:  # cone: a triangle lit from the left
        middle = (left + right) / 2
        draw.polygon([(middle, top), (left, bottom), (middle, bottom)], fill=_shade(thing.colour, 1.1))
        draw.polygon([(middle, top), (middle, bottom), (right, bottom)], fill=_shade(thing.colour, 0.7))


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """The picture of one scene: background, the objects from far to near, a slight blur and sensor noise."""
    rng = np.random.default_rng(scene.seed)
    image = Image.fromarray(draw_background(rng, scene.ground, size).astype(np.uint8))
    for thing in sorted(scene.things, key=lambda t: t.y):  # far (higher up) first: nearer ones hide them
        draw_thing(image, thing)
    blurred = image.filter(ImageFilter.GaussianBlur(0.7))
    noisy = np.asarray(blurred) + rng.normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(noisy.round(), 0, 255).astype(np.uint8))


# --- Captions by five annotators ---------------------------------------------------------------------------


def side_of(thing: Thing) -> str:
    """Where an object stands in the picture: "left", "middle" or "right"."""
    return "left" if thing.x < 0.4 else "right" if thing.x > 0.6 else "middle"


def in_front(a: Thing, b: Thing) -> bool:
    """Whether `a` hides part of `b`: their boxes overlap and `a` stands nearer (lower in the picture)."""
    (al, _, ar, _), (bl, _, br, _) = a.box(), b.box()
    return al < br and bl < ar and a.y > b.y


class Annotator:
    """One simulated person describing pictures: how often they use rare words, adjectives and typos."""

    def __init__(self, rng: np.random.Generator, rare: float, adjectives: float, typos: float):
        self.rng, self.rare, self.adjectives, self.typos = rng, rare, adjectives, typos

    def pick(self, words: list[str]) -> str:
        """The usual word (the first), or now and then one of the rarer ones."""
        return words[0] if self.rng.random() > self.rare or len(words) == 1 else str(self.rng.choice(words[1:]))

    def noun(self, thing: Thing, article: bool = True) -> str:
        """"a small red ball", with the size and a rare adjective sometimes left in or out."""
        words = [self.pick(COLOUR_WORDS[thing.colour]), self.pick(SHAPE_WORDS[thing.shape])]
        if self.rng.random() < self.adjectives:
            words.insert(0, self.pick(SIZE_WORDS[thing.size]))
        if self.rng.random() < self.rare / 2:
            words.insert(0, str(self.rng.choice(RARE)))
        text = " ".join(words)
        return f"{'an' if text[0] in 'aeiou' else 'a'} {text}" if article else text

    def ground(self, scene: Scene) -> str:
        return self.pick(GROUND_WORDS[scene.ground])

    def relation(self, a: Thing, b: Thing) -> str:
        """How `a` stands to `b`, in this annotator's words (a is to the left of b, unless it hides it)."""
        if in_front(a, b):
            return f"{self.noun(a)} in front of {self.noun(b)}"
        if in_front(b, a):
            return f"{self.noun(b)} in front of {self.noun(a)}"
        if self.rng.random() < 0.5:
            return f"{self.noun(a)} to the left of {self.noun(b)}"
        return f"{self.noun(b)} to the right of {self.noun(a)}"

    def misspell(self, caption: str) -> str:
        """Now and then one word (of four letters or more) typed wrong: a letter dropped, doubled or swapped."""
        words = caption.split(" ")
        candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if candidates and self.rng.random() < self.typos:
            i = int(self.rng.choice(candidates))
            words[i] = typo(words[i], self.rng)
        return " ".join(words)


def typo(word: str, rng: np.random.Generator) -> str:
    """`word` with one slip of the fingers: a letter dropped, doubled, or swapped with the next one."""
    i = int(rng.integers(1, len(word) - 1))
    kind = rng.integers(3)
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def plain(a: Annotator, scene: Scene) -> str:
    """"A red ball on the left of the grass." / "A red ball to the left of a blue box on the sand ."."""
    things = scene.things
    if len(things) == 1:
        side = side_of(things[0])
        where = "in the middle of" if side == "middle" else f"on the {side} of"
        return f"{a.noun(things[0]).capitalize()} {where} {a.ground(scene)} ."
    return f"{a.relation(things[0], things[1]).capitalize()} on {a.ground(scene)} ."


def terse(a: Annotator, scene: Scene) -> str:
    """"red ball , left , on grass" (no capitals, commas for structure, few words)."""
    t = scene.things
    ground = a.ground(scene).split()[-1]
    if len(t) == 1:
        return f"{a.noun(t[0], article=False)} , {side_of(t[0])} , on {ground}"
    return f"{a.noun(t[0], article=False)} and {a.noun(t[-1], article=False)} on {ground}"


def wordy(a: Annotator, scene: Scene) -> str:
    """Long sentences with every object, a verb, the side and the sky."""
    verb = a.pick(["lying", "sitting", "resting", "standing", "waiting", "placed"])
    things = scene.things
    first = things[0]
    side = side_of(first)
    where = "in the middle" if side == "middle" else f"on the {side} side"
    text = f"There's {a.noun(first)} {verb} {where} of {a.ground(scene)}"
    if len(things) > 1:
        text += f", with {a.noun(things[-1])} nearby" if a.rng.random() < 0.5 else f", and {len(things) - 1} more"
    return text + f", under a {a.pick(['pale', 'blue', 'bright', 'hazy'])} sky ."


def counting(a: Annotator, scene: Scene) -> str:
    """"Two objects on the snow: a red ball and a white box to its right." (with digits now and then)."""
    things = scene.things
    if len(things) == 1:
        return f'Just one "{a.noun(things[0], article=False)}" on {a.ground(scene)} , on the {side_of(things[0])} .'
    count = str(len(things)) if a.rng.random() < 0.3 else NUMBERS[len(things)]
    listed = ", ".join(a.noun(t) for t in things[:-1]) + f" and {a.noun(things[-1])}"
    return f"{count.capitalize()} things on {a.ground(scene)} : {listed} , from left to right ."


def sloppy(a: Annotator, scene: Scene) -> str:
    """Capitals, typos and apostrophes: "Someone's RED ball sits in the right-hand corner of the gras"."""
    thing = max(scene.things, key=lambda t: t.half_width)
    side = side_of(thing)
    corner = "middle" if side == "middle" else f"{side}-hand corner"
    colour = a.pick(COLOUR_WORDS[thing.colour])
    text = f"Someone's {colour.upper() if a.rng.random() < 0.3 else colour} {a.pick(SHAPE_WORDS[thing.shape])} " \
           f"sits in the {corner} of {a.ground(scene)}"
    if len(scene.things) > 1:
        text += f" , next to {len(scene.things) - 1} other thing{'s' if len(scene.things) > 2 else ''}"
    return a.misspell(text) + " !"


STYLES = (plain, terse, wordy, counting, sloppy)
ANNOTATORS = ((0.08, 0.3, 0.05), (0.06, 0.1, 0.08), (0.2, 0.8, 0.05), (0.08, 0.5, 0.05), (0.3, 0.2, 0.6))


def captions_for(scene: Scene) -> list[str]:
    """Five captions of one scene, one by each annotator, in their own styles and words."""
    rng = np.random.default_rng([scene.seed, 1])
    captions = []
    for style, (rare, adjectives, typos) in zip(STYLES, ANNOTATORS, strict=True):
        annotator = Annotator(rng, rare, adjectives, typos)
        captions.append(annotator.misspell(style(annotator, scene)) if style is not sloppy else style(annotator, scene))
    return captions


# --- Reading captions back: what a caption says, checked against its scene ---------------------------------

CANONICAL = {**{w: c for c, words in COLOUR_WORDS.items() for w in words},
             **{w: s for s, words in SHAPE_WORDS.items() for w in words}}
SCENERY = {phrase.split()[-1] for phrases in GROUND_WORDS.values() for phrase in phrases} | {"sky", "slope", "field"}


def _named(words: list[str], start: int, step: int, things: list[dict]) -> dict | None:
    """The object a phrase names, reading from `start` in direction `step`: the first shape word met, with the
    colour word just before it; None unless exactly one object fits."""
    i = start
    while 0 <= i < len(words) and CANONICAL.get(words[i]) not in SHAPES:
        i += step
    if not 0 <= i < len(words):
        return None
    shape = CANONICAL[words[i]]
    colour = CANONICAL.get(words[i - 1]) if i else None
    fits = [t for t in things if t["shape"] == shape and (colour not in COLOURS or t["colour"] == colour)]
    return fits[0] if len(fits) == 1 else None


def check_caption(caption: str, scene: dict) -> list[str]:
    """What a (cleaned) caption gets wrong about its scene (an entry of scenes.json): [] if nothing.

    It checks the colour and shape words it knows, and the pairs of them ("a red ball"), against the objects; the
    ground; "left"/"right" of a lone object; and "X to the left (right) of Y" between two objects. Words it does
    not know are not judged.
    """
    words = caption.split()
    things = scene["things"]
    problems = []
    for i, word in enumerate(words):
        meaning = CANONICAL.get(word)
        if meaning in COLOURS and words[i + 1:i + 2] and words[i + 1] in SCENERY:
            continue  # "the green grass", "a white slope", "a blue sky": the scenery's colour
        if meaning in COLOURS and not any(t["colour"] == meaning for t in things):
            problems.append(f"names a {meaning} object; there is none")
        elif meaning in SHAPES and not any(t["shape"] == meaning for t in things):
            problems.append(f"names a {meaning}; there is none")
        elif meaning in SHAPES and i and CANONICAL.get(words[i - 1]) in COLOURS:
            colour = CANONICAL[words[i - 1]]
            if any(t["colour"] == colour for t in things) and \
                    not any(t["shape"] == meaning and t["colour"] == colour for t in things):
                problems.append(f"calls the {colour} object a {meaning}")
        if word in ("left", "right") and len(things) == 1 and things[0]["side"] != word:
            problems.append(f"says {word}; the object is on the {things[0]['side']}")
        if word in ("left", "right") and words[i - 2:i] == ["to", "the"] and words[i + 1:i + 2] == ["of"]:
            a, b = _named(words, i - 3, -1, things), _named(words, i + 2, 1, things)
            if a and b and a is not b and (a["x"] < b["x"]) != (word == "left"):
                problems.append(f"puts the {a['colour']} {a['shape']} to the {word} of the {b['colour']} "
                                f"{b['shape']}; it is the other way round")
    grounds = [g for g in GROUNDS if g in words]
    if grounds and scene["ground"] not in grounds:
        problems.append(f"says {grounds[0]}; the ground is {scene['ground']}")
    return list(dict.fromkeys(problems))  # a mistake said twice ("a red ball and a red ball") counts once


MISTAKE_KINDS = ("shape", "colour", "side", "ground")


def mistake_kind(problem: str) -> str:
    """Which of MISTAKE_KINDS a `check_caption` message is about."""
    if problem.startswith("calls the ") or (problem.startswith("names a ") and " object;" not in problem):
        return "shape"  # "calls the red object a ball", "names a cone; there is none"
    if problem.startswith("names a "):
        return "colour"  # "names a green object; there is none"
    if problem.startswith(("puts the ", "says left", "says right")):
        return "side"
    if problem.startswith("says "):
        return "ground"
    raise ValueError(f"not a check_caption message: {problem!r}")


def attention_on_objects(words: list[str], maps: np.ndarray, scene: dict) -> list[tuple[str, float, float]]:
    """Where the attention was when a word named an object: (word, attention mass on the object, its share).

    For every word that names exactly one object of the scene (by its colour or its shape), the mass is the sum of
    that word's attention weights (a (g, g) map over the picture) on the cells the object's box covers, each cell
    counted by the part of it the box covers; the share is that part of the whole picture. A mass above the share
    means the model looked at the object more than at a random place.
    """
    grid = maps.shape[-1]
    cell = SIZE / grid
    found = []
    for word, weights in zip(words, maps, strict=False):
        meaning = CANONICAL.get(word)
        named = [t for t in scene["things"] if meaning in (t["colour"], t["shape"])]
        if len(named) != 1:
            continue
        left, top, right, bottom = named[0]["box"]
        edges = np.arange(grid + 1) * cell
        across = np.clip(np.minimum(right, edges[1:]) - np.maximum(left, edges[:-1]), 0, None) / cell
        down = np.clip(np.minimum(bottom, edges[1:]) - np.maximum(top, edges[:-1]), 0, None) / cell
        covered = np.outer(down, across)  # the part of each cell the box covers
        found.append((word, float((weights * covered).sum()), float(covered.mean())))
    return found


# --- Writing the fixture -----------------------------------------------------------------------------------


def scene_record(scene: Scene) -> dict:
    """What scenes.json holds for one picture."""
    return {"split": scene.split, "ground": scene.ground,
            "things": [{**asdict(t), "side": side_of(t), "box": list(t.box())} for t in scene.things]}


def write_lines(path: Path, lines: list[str]) -> None:
    """One item a line, '\\n' line ends on every system."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


def make_fixture(out_dir: Path, seed: int = SEED, size: int = SIZE) -> Path:
    """Write the fixture in the Kaggle Flickr8k layout (Images/, captions.txt, split lists) and its scenes.json."""
    out_dir = Path(out_dir)
    scenes = plan_scenes(seed)
    images = out_dir / "Images"
    images.mkdir(parents=True, exist_ok=True)
    for stale in set(images.glob("*.jpg")) - {images / s.name for s in scenes}:
        stale.unlink()
    for scene in scenes:
        render(scene, size).save(images / scene.name, quality=JPEG_QUALITY, optimize=True)
    with (out_dir / "captions.txt").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows((s.name, c) for s in scenes for c in captions_for(s))
    for split, file_name in SPLIT_FILES.items():
        write_lines(out_dir / file_name, [s.name for s in scenes if s.split == split])
    record = {"generator": FIXTURE_GENERATOR, "seed": seed, "size": size,
              "images": {s.name: scene_record(s) for s in scenes}}
    (out_dir / FIXTURE_SCENES).write_text(json.dumps(record, indent=None, separators=(",", ":")) + "\n",
                                          encoding="utf-8")
    return out_dir
