"""The committed fixture is what its generator writes, is small, and is a world rich enough for every lesson:
its captions match its pictures (as the scene file says), and its vocabulary has a long tail of rare words."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cleaning import clean_caption
from helpers.machinery.dataset import load_dataset
from helpers.machinery.fixture import (
    COLOURS,
    GROUNDS,
    MISTAKE_KINDS,
    SPLIT_SIZES,
    Scene,
    Thing,
    check_caption,
    make_fixture,
    mistake_kind,
    render,
    scene_record,
)
from helpers.machinery.layouts.flickr8k import SPLIT_FILES
from helpers.machinery.paths import fixture_dir, is_fixture_folder
from helpers.vocabulary import Vocabulary

FIXTURE = fixture_dir()
OFFICIAL_SPLITS = FIXTURE.parent / "flickr8k_splits"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the fixture, written by the generator."""
    return make_fixture(tmp_path_factory.mktemp("fixture"))


@pytest.fixture(scope="module")
def data():
    return load_dataset(FIXTURE)


@pytest.fixture(scope="module")
def scenes() -> dict:
    return json.loads((FIXTURE / "scenes.json").read_text(encoding="utf-8"))["images"]


def pixels(path: Path) -> np.ndarray:
    """An image as a float RGB array."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("file_name", ["captions.txt", "scenes.json", *SPLIT_FILES.values()])
def test_text_files_are_byte_identical(regenerated: Path, file_name: str) -> None:
    assert (regenerated / file_name).read_bytes() == (FIXTURE / file_name).read_bytes()


def test_images_match_the_committed_ones(regenerated: Path) -> None:
    names = sorted(p.name for p in (FIXTURE / "Images").glob("*.jpg"))
    assert names == sorted(p.name for p in (regenerated / "Images").glob("*.jpg"))
    for name in names:
        diff = np.abs(pixels(regenerated / "Images" / name) - pixels(FIXTURE / "Images" / name))
        assert diff.mean() < 1 and diff.max() <= 16, name


def test_fixture_is_small_and_knows_it_is_the_fixture() -> None:
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 3 * 2**20, f"the fixture is {size / 2**20:.1f} MB"
    assert is_fixture_folder(FIXTURE)


def test_splits_have_the_promised_sizes_and_are_disjoint(data) -> None:
    assert {s: len(keys) for s, keys in data.splits.items()} == SPLIT_SIZES
    assert sum(SPLIT_SIZES.values()) == len(data.captions) and not data.skipped
    sets = [set(keys) for keys in data.splits.values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    official = {n for p in OFFICIAL_SPLITS.glob("*.txt") for n in p.read_text().split()}
    assert not official & set(data.captions), "a fixture name is a real Flickr8k name"
    assert all(re.fullmatch(r"\d+_[0-9a-f]{10}\.jpg", name) for name in data.captions)


def test_scenes_have_one_to_three_objects_and_hard_cases(scenes) -> None:
    counts = Counter(len(s["things"]) for s in scenes.values())
    assert set(counts) == {1, 2, 3} and min(counts.values()) >= 40
    things = [t for s in scenes.values() for t in s["things"]]
    assert {t["shape"] for t in things} == {"ball", "box", "cone"} and {t["colour"] for t in things} == set(COLOURS)
    assert {t["size"] for t in things} == {"small", "big"} and {s["ground"] for s in scenes.values()} == set(GROUNDS)
    low_contrast = [s for s in scenes.values() for t in s["things"]
                    if (t["colour"], s["ground"]) in {("yellow", "sand"), ("white", "snow"), ("green", "grass")}]
    same_colour = [s for s in scenes.values() if len({t["colour"] for t in s["things"]}) < len(s["things"])]
    occluded = []
    for s in scenes.values():
        boxes = [t["box"] for t in s["things"]]
        occluded += [s for i, a in enumerate(boxes) for b in boxes[i + 1:] if a[0] < b[2] and b[0] < a[2]]
    assert min(len(low_contrast), len(same_colour), len(occluded)) >= 10


def test_pictures_show_what_the_scene_file_says(scenes) -> None:
    """The middle of each object's box has the object's colour more than the ground's."""
    checked = 0
    for name, scene in list(scenes.items())[:80]:
        picture = pixels(FIXTURE / "Images" / name)
        for thing in scene["things"]:
            left, top, right, bottom = thing["box"]
            overlapped = any(o is not thing and o["y"] > thing["y"] and o["box"][0] < right and left < o["box"][2]
                             for o in scene["things"])
            if overlapped:  # partly hidden by a nearer object: its middle may show the other one
                continue
            cy, cx = (top + bottom) // 2, (left + right) // 2
            middle = picture[cy - 2:cy + 2, cx - 2:cx + 2]
            colour = middle.reshape(-1, 3).mean(0)
            to_object = np.abs(colour - COLOURS[thing["colour"]]).mean()
            to_ground = np.abs(colour - GROUNDS[scene["ground"]]).mean()
            assert to_object < to_ground or to_object < 60, (name, thing)
            checked += 1
    assert checked > 60


def test_human_captions_agree_with_their_scenes(data, scenes) -> None:
    flagged = [(name, c, check_caption(c, scenes[name])) for name, caps in data.captions.items() for c in caps
               if check_caption(c, scenes[name])]
    assert len(flagged) < 0.01 * data.caption_count, flagged[:5]


def test_captions_come_from_five_annotators_with_varied_lengths(data) -> None:
    assert all(len(caps) == 5 and len(set(caps)) == 5 for caps in data.captions.values())
    lengths = np.array([len(c.split()) for caps in data.captions.values() for c in caps])
    assert lengths.min() >= 5 and lengths.max() <= 25 and np.median(lengths) >= 7


def test_min_count_5_drops_the_long_tail_but_few_words(data) -> None:
    train = [c for k in data.splits["train"] for c in data.captions[k]]
    counts = Counter(w for c in train for w in c.split())
    five = Vocabulary.build(train, min_count=5)
    dropped = 1 - (len(five) - 4) / len(counts)
    assert dropped >= 0.30, f"min_count 5 drops only {dropped:.0%} of the distinct words"
    assert five.unknown_rate(train) <= 0.05
    dev_words = {w for k in data.splits["dev"] for c in data.captions[k] for w in c.split()}
    assert len(dev_words - set(counts)) >= 5, "the dev captions should hold words the train captions never saw"


def test_raw_captions_exercise_cleaning_and_survive_it(data) -> None:
    raw = [c for caps in data.raw_captions.values() for c in caps]
    for pattern in (r"[A-Z]", r"\d", r'"', r",", r"'", r"-", r"!"):
        assert any(re.search(pattern, c) for c in raw), pattern
    with (FIXTURE / "captions.txt").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "caption"] and all(len(r) == 2 for r in rows[1:])
    assert any("," in r[1] for r in rows[1:]), "captions with commas must be quoted in the CSV"
    assert all(clean_caption(c) for c in raw)


def test_check_caption_names_wrong_colours_shapes_sides_and_relations() -> None:
    scene = scene_record(Scene("x.jpg", "test", 0, "sand", (Thing("ball", "red", "small", 0.25, 0.8),
                                                                Thing("box", "blue", "big", 0.75, 0.7))))
    assert check_caption("a red ball to the left of a blue box on the sand", scene) == []
    problems = check_caption("a green ball to the right of a blue cone on the snow", scene)
    assert problems == ["names a green object; there is none", "names a cone; there is none",
                        "says snow; the ground is sand"]
    assert check_caption("a blue ball to the right of a blue box", scene) == ["calls the blue object a ball"]
    assert check_caption("a red ball to the right of a blue box on the sand", scene) == [
        "puts the red ball to the right of the blue box; it is the other way round"]
    lone = scene_record(Scene("y.jpg", "test", 0, "grass", (Thing("cone", "white", "big", 0.8, 0.7),)))
    assert check_caption("a white cone on the left of the green grass", lone) == [
        "says left; the object is on the right"]
    assert check_caption("a white ball and a white ball on the left", lone) == [  # each mistake once
        "names a ball; there is none", "says left; the object is on the right"]


def test_each_mistake_has_its_kind() -> None:
    scene = scene_record(Scene("x.jpg", "test", 0, "sand", (Thing("ball", "red", "small", 0.25, 0.8),
                                                                Thing("box", "blue", "big", 0.75, 0.7))))
    problems = check_caption("a green cone to the right of a blue ball on the snow", scene)
    assert [mistake_kind(p) for p in problems] == ["colour", "shape", "shape", "ground"], problems
    assert [mistake_kind(p) for p in check_caption("a red ball to the right of a blue box", scene)] == ["side"]
    lone = scene_record(Scene("y.jpg", "test", 0, "grass", (Thing("cone", "white", "big", 0.8, 0.7),)))
    assert [mistake_kind(p) for p in check_caption("a box on the left", lone)] == ["shape", "side"]
    assert set(MISTAKE_KINDS) == {"shape", "colour", "side", "ground"}
    with pytest.raises(ValueError, match="not a check_caption message"):
        mistake_kind("something else")


def test_a_scene_of_ones_own_can_be_drawn() -> None:
    picture = render(Scene("mine.jpg", "test", 1, "grass", (Thing("ball", "red", "big", 0.3, 0.75),)))
    assert picture.size == (160, 160)
    left, top, right, bottom = Thing("ball", "red", "big", 0.3, 0.75).box()
    middle = np.asarray(picture)[(top + bottom) // 2, (left + right) // 2].astype(float)
    assert np.abs(middle - COLOURS["red"]).mean() < np.abs(middle - GROUNDS["grass"]).mean()
