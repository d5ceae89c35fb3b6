"""The committed fixture is what its generator writes, and its captions match its pictures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.fixture import (
    COLOURS,
    GROUND_PHRASES,
    SPLIT_FILES,
    make_fixture,
    plan_scenes,
    read_captions_csv,
    write_original_layout,
)

FIXTURE = Path(__file__).parents[1] / "data" / "fixture"
OFFICIAL_SPLITS = Path(__file__).parents[1] / "data" / "flickr8k_splits"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the fixture, written by the generator."""
    return make_fixture(tmp_path_factory.mktemp("fixture"))


def image_names(fixture_dir: Path) -> list[str]:
    """Sorted names of the fixture's JPEGs."""
    return sorted(p.name for p in (fixture_dir / "Images").glob("*.jpg"))


def split_names(fixture_dir: Path) -> dict[str, list[str]]:
    """Split -> image names, read from the fixture's split lists."""
    return {split: (fixture_dir / name).read_text().split() for split, name in SPLIT_FILES.items()}


def pixels(path: Path) -> np.ndarray:
    """An image as a float RGB array."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("file_name", ["captions.txt", *SPLIT_FILES.values()])
def test_text_files_are_byte_identical(regenerated: Path, file_name: str) -> None:
    assert (regenerated / file_name).read_bytes() == (FIXTURE / file_name).read_bytes()


def test_images_match_the_committed_ones(regenerated: Path) -> None:
    names = image_names(FIXTURE)
    assert names == image_names(regenerated)
    for name in names:
        diff = np.abs(pixels(regenerated / "Images" / name) - pixels(FIXTURE / "Images" / name))
        assert diff.mean() < 1 and diff.max() <= 16, name


def test_names_look_like_flickr_and_are_not_real_ones() -> None:
    names = image_names(FIXTURE)
    assert all(re.fullmatch(r"\d{9,10}_[0-9a-f]{10}\.jpg", name) for name in names)
    official = {n for f in OFFICIAL_SPLITS.glob("*.txt") for n in f.read_text().split()}
    assert not official & set(names)


def test_five_captions_per_image_in_a_kaggle_csv() -> None:
    text = (FIXTURE / "captions.txt").read_text(encoding="utf-8")
    assert text.startswith("image,caption\n") and "\r" not in text
    rows = read_captions_csv(FIXTURE / "captions.txt")
    images = [image for image, _ in rows]
    assert images == sorted(images)
    assert {image: images.count(image) for image in images} == {name: 5 for name in image_names(FIXTURE)}


def test_splits_are_disjoint_and_cover_every_image() -> None:
    splits = split_names(FIXTURE)
    everything = [name for names in splits.values() for name in names]
    assert len(everything) == len(set(everything))
    assert sorted(everything) == image_names(FIXTURE)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [120, 12, 12]


def test_every_combination_is_in_train() -> None:
    train = set(split_names(FIXTURE)["train"])
    seen = {(s.colour, s.side, s.ground) for s in plan_scenes() if s.name in train}
    assert len(seen) == 12


def test_captions_name_the_colour_side_and_ground_of_their_scene() -> None:
    scenes = {s.name: s for s in plan_scenes()}
    for image, caption in read_captions_csv(FIXTURE / "captions.txt"):
        scene, words = scenes[image], caption.lower()
        assert re.search(rf"\b{scene.colour}\b", words), caption
        assert re.search(rf"\b{scene.side}\b", words), caption
        assert any(phrase in words for phrase in GROUND_PHRASES[scene.ground]), caption
        other_colours = set(COLOURS) - {scene.colour}
        assert not any(re.search(rf"\b{c}\b", words) for c in other_colours), caption


def test_pictures_show_the_colour_and_side_their_captions_say() -> None:
    for scene in plan_scenes():
        image = pixels(FIXTURE / "Images" / scene.name)
        ground = np.median(image[-16:].reshape(-1, 3), axis=0)
        lower = image[image.shape[0] // 3:]
        ball = np.abs(lower - ground).sum(-1) > 150
        half = image.shape[1] // 2
        assert (ball[:, :half].sum() > ball[:, half:].sum()) == (scene.side == "left"), scene
        mean = lower[ball].mean(0)
        assert min(COLOURS, key=lambda c: np.linalg.norm(mean - COLOURS[c])) == scene.colour, scene


def test_captions_exercise_cleaning_and_survive_it() -> None:
    captions = [caption for _, caption in read_captions_csv(FIXTURE / "captions.txt")]
    for mark in (",", '"', "'", "!", "-", "1"):
        assert any(mark in caption for caption in captions), mark
    assert any(re.search(r"\b[A-Z]{2,}\b", caption) for caption in captions)
    assert all(len(re.findall(r"[a-z]{2,}", c.lower().replace("'", ""))) >= 3 for c in captions)


def test_fixture_is_small() -> None:
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 2_000_000


def test_original_layout(tmp_path: Path) -> None:
    out = write_original_layout(FIXTURE, tmp_path / "flickr8k")
    assert sorted(p.name for p in (out / "Flicker8k_Dataset").iterdir()) == image_names(FIXTURE)
    for name in SPLIT_FILES.values():
        assert (out / "Flickr8k_text" / name).read_bytes() == (FIXTURE / name).read_bytes()
    lines = (out / "Flickr8k_text" / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    keys, captions = zip(*(line.split("\t") for line in lines))
    bogus = [key for key in keys if ".jpg.1#" in key]
    assert len(bogus) == 1 and bogus[0].split(".1#")[0] in image_names(FIXTURE)
    numbered = {tuple(key.split("#")): caption for key, caption in zip(keys, captions) if key not in bogus}
    rows = read_captions_csv(FIXTURE / "captions.txt")
    assert numbered == {(image, str(i % 5)): caption for i, (image, caption) in enumerate(rows)}
    images = [key.split("#")[0] for key in keys]
    assert sum(a == b for a, b in zip(images, images[1:])) < len(images) // 10  # rows not grouped by image
