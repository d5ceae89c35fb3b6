"""What learners' dataset folders, caption files and photos really look like: each ends in a clear message
or a correct result. (Cases already covered elsewhere: test_dataset.py and test_features.py.)"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.errors import DatasetError
from helpers.machinery.dataset import DOWNLOAD_HELP, detect_layout, load_dataset
from helpers.machinery.extraction import extract_features
from helpers.machinery.feature_cache import read_cache
from helpers.machinery.prepare import prepare
from helpers.machinery.workspace import Workspace
from tests.conftest import CAPTIONS, SPLITS, write_image, write_splits

SIZE = 71
FEATURE_DIM = 2048


def assert_helpful(error: pytest.ExceptionInfo, path: Path, *found: str) -> None:
    """The message names the folder, what it holds, and how to get the data (for CLI and notebook users)."""
    message = str(error.value)
    assert str(path) in message, message
    assert all(text in message for text in found), message
    assert "kaggle.com" in message and "--data" in message and "COURSE_DATA=fixture" in message


# --- Dataset folders --------------------------------------------------------------------------------


def test_empty_folder_says_it_is_empty(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert_helpful(error, tmp_path, "the folder is empty")


def test_download_help_fits_the_command_line_and_the_notebooks():
    assert "leave out --data" in DOWNLOAD_HELP and "COURSE_DATA=fixture" in DOWNLOAD_HELP


def test_kaggle_zip_not_unpacked(tmp_path):
    (tmp_path / "archive.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    assert_helpful(error, tmp_path, "archive.zip", "unzip it")


def test_images_without_captions(kaggle_dir):
    (kaggle_dir / "captions.txt").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset(kaggle_dir)
    assert_helpful(error, kaggle_dir, "Images/", "no captions file")


def test_token_file_without_images(original_dir):
    shutil.rmtree(original_dir / "Flicker8k_Dataset")
    with pytest.raises(DatasetError) as error:
        load_dataset(original_dir)
    assert_helpful(error, original_dir, "Flickr8k_text/", "no folder of images")


def test_empty_images_folder_counts_as_no_images(kaggle_dir):
    for image in (kaggle_dir / "Images").iterdir():
        image.unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset(kaggle_dir)
    assert_helpful(error, kaggle_dir, "no folder of images")


def test_nested_original_images_folder_from_some_unzippers(original_dir):
    """Flickr8k_Dataset.zip unzipped into its own folder: Flickr8k_Dataset/Flicker8k_Dataset/*.jpg."""
    (original_dir / "Flickr8k_Dataset").mkdir()
    shutil.move(original_dir / "Flicker8k_Dataset", original_dir / "Flickr8k_Dataset" / "Flicker8k_Dataset")
    found = detect_layout(original_dir)
    assert (found.layout, found.images_dir) == ("original", original_dir / "Flickr8k_Dataset" / "Flicker8k_Dataset")
    assert len(load_dataset(original_dir).captions) == len(CAPTIONS)


def test_original_split_lists_at_the_folders_root_are_read(original_dir):
    """The original release keeps them in Flickr8k_text/; some copies have them beside it instead."""
    for path in (original_dir / "Flickr8k_text").glob("Flickr_8k.*"):
        path.rename(original_dir / path.name)
    assert load_dataset(original_dir).splits == SPLITS


@pytest.mark.parametrize("layout, place", [("kaggle", ""), ("original", "Flickr8k_text")])
def test_a_dataset_of_other_images_without_split_lists_is_told_how_to_give_its_own(request, tmp_path, layout, place):
    root = request.getfixturevalue(f"{layout}_dir")
    for path in root.rglob("Flickr_8k.*"):
        path.unlink()
    work = Workspace(tmp_path / "work")
    with pytest.raises(DatasetError) as error:
        prepare(work, root)
    assert str(error.value) == (
        f"The train and dev and test splits of {root} have no image with captions: it has no split lists of its own, "
        "and the official Flickr8k lists name none of its images. Write the names of the images of each split, one "
        f"a line, to {root / place / 'Flickr_8k.trainImages.txt'}, Flickr_8k.devImages.txt and "
        "Flickr_8k.testImages.txt beside it, then run prepare again.")
    assert not work.path("captions.json").exists()
    write_splits(root / place)  # as the message says
    assert prepare(work, root)["splits"] == {split: len(keys) for split, keys in SPLITS.items()}


# --- Caption files -----------------------------------------------------------------------------------


def test_header_only_captions_file_is_a_clear_error(kaggle_dir):
    (kaggle_dir / "captions.txt").write_text("image,caption\n", encoding="utf-8")
    with pytest.raises(DatasetError) as error:
        load_dataset(kaggle_dir)
    assert_helpful(error, kaggle_dir / "captions.txt", "holds no caption rows")


def test_empty_token_file_is_a_clear_error(original_dir):
    (original_dir / "Flickr8k_text" / "Flickr8k.token.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="Flickr8k.token.txt holds no caption rows"):
        load_dataset(original_dir)


def test_every_quirk_at_once_is_loaded_or_reported_row_by_row(kaggle_dir):
    """BOM, Windows line endings, blank lines, a row without a caption, non-ASCII text, a comma in a caption."""
    rows = [["image", "caption"], ["1000_aaa.jpg", "Un café au bord de l'eau , été ."], [],
            ["2000_bbb.jpg"], ["2000_bbb.jpg", "   "], ["3000_ccc.jpg", "Ein Hund rennt über die Wiese"],
            ["3000_ccc.jpg", "犬が走る"], ["1000_aaa.jpg", "A dog, a cat and a bird"]]
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    (kaggle_dir / "captions.txt").write_bytes(b"\xef\xbb\xbf" + text.getvalue().encode("utf-8"))

    data = load_dataset(kaggle_dir)
    assert data.captions["1000_aaa.jpg"] == ["un cafe au bord de leau ete", "a dog a cat and a bird"]
    assert data.captions["3000_ccc.jpg"] == ["ein hund rennt uber die wiese"]
    reasons = {s.item: s.reason for s in data.skipped}
    assert reasons == {"line 4": "row has no caption", "line 5": "row has no caption",
                       "line 7": "caption of 3000_ccc.jpg has no words left after cleaning: '犬が走る'"}


def test_captions_that_all_clean_to_nothing_give_a_clear_error(kaggle_dir, tmp_path):
    from helpers.machinery.prepare import prepare
    from helpers.machinery.workspace import Workspace

    with (kaggle_dir / "captions.txt").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["image", "caption"], ["1000_aaa.jpg", "!!!"], ["2000_bbb.jpg", "42"]])
    with pytest.raises(DatasetError, match="The train and dev and test splits .* have no image with captions"):
        prepare(Workspace(tmp_path / "work"), kaggle_dir)
    assert not (tmp_path / "work" / "captions.json").exists()


# --- Images: good ones get features, bad ones are listed with the reason, extraction carries on -------


def odd_images(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Every kind of file learners feed the encoder, and the reason expected for the unreadable ones."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    good = {
        "deep16.png": lambda p: Image.fromarray(rng.integers(0, 65535, (12, 9), dtype=np.uint16)).save(p),
        "cmyk.jpg": lambda p: Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(p),
        "palette.gif": lambda p: Image.new("RGB", (10, 10), (0, 0, 255)).convert("P").save(p),
        "tiny.png": lambda p: Image.new("RGB", (1, 1), (9, 99, 199)).save(p),
        "big.jpg": lambda p: Image.new("RGB", (4000, 3000), (40, 140, 240)).save(p, quality=50),
    }
    bad = {"empty.jpg": "empty", "notes.jpg": "not an image format", "cut.jpg": "truncated"}
    for name, write in good.items():
        write(folder / name)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n")
    data = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(data, "JPEG")
    (folder / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return sorted(folder.iterdir()), bad


class MeanColour:
    """A stand-in encoder: each image's mean colour, repeated to 2048 numbers."""

    input_shape = (None, SIZE, SIZE, 3)
    output_shape = (None, FEATURE_DIM)

    def predict_on_batch(self, pixels):
        means = np.asarray(pixels).mean(axis=(1, 2))
        return np.tile(means, FEATURE_DIM // 3 + 1)[:, :FEATURE_DIM]


def extract(paths, cache, **options):
    """extract_features with the stand-in encoder at SIZE pixels, no progress bar."""
    return extract_features(paths, cache, image_size=SIZE, progress=False, model=MeanColour(), **options)


def test_odd_images_get_features_and_bad_ones_are_listed_with_reasons(tmp_path, capsys):
    paths, bad = odd_images(tmp_path / "photos")
    found = extract(paths, tmp_path / "cache", batch_size=3)
    assert sorted(found) == sorted(p.name for p in paths if p.name not in bad)
    assert sorted(found.failed) == sorted(bad)
    for name, reason in bad.items():
        assert reason in found.failed[name], found.failed[name]
    assert np.isfinite(found.stack(sorted(found))).all()
    np.testing.assert_allclose(found["big.jpg"][:3], np.array([40, 140, 240]) / 127.5 - 1, atol=0.02)
    [message] = [line for line in capsys.readouterr().out.splitlines() if "could not be read" in line]
    assert message.startswith("3 of 8 images could not be read") and "cut.jpg: truncated" in message
    assert sorted(read_cache(tmp_path / "cache").failed) == sorted(bad)  # kept in the cache too


# --- Feature extraction killed while it saves ---------------------------------------------------------


def test_killed_while_saving_leaves_the_last_complete_cache(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing a part of the cache: the index still names only complete rows, nothing
    half-written is left behind, and a rerun ends with exactly the features of a clean run."""
    from helpers.machinery import feature_cache

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [write_image(folder / f"img{i}.png", (10 * i, 100, 200 - 10 * i)) for i in range(6)]
    clean = extract(paths, tmp_path / "clean", batch_size=2)
    cache = tmp_path / "cache"
    extract(paths[:2], cache, batch_size=2)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}

    real_save = np.save

    def save_then_killed(file, array, **kwargs):
        real_save(file, array, **kwargs)
        with open(file, "r+b") as half:
            half.truncate(Path(file).stat().st_size // 2)  # half of the new part is on disk when Ctrl-C lands
        raise KeyboardInterrupt

    monkeypatch.setattr(feature_cache.np, "save", save_then_killed)
    with pytest.raises(KeyboardInterrupt):
        extract(paths, cache, batch_size=2, checkpoint_seconds=0)
    monkeypatch.setattr(feature_cache.np, "save", real_save)
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before  # the temporary part was removed
    assert sorted(read_cache(cache)) == ["img0.png", "img1.png"]

    resumed = extract(paths, cache, batch_size=2)
    names = [p.name for p in paths]
    np.testing.assert_array_equal(resumed.stack(names), clean.stack(names))
