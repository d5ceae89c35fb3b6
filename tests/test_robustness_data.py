"""What learners' dataset folders, caption files and photos really look like: each ends in a clear message
or a correct result. (Cases already covered elsewhere: test_dataset.py and test_features.py.)"""

from __future__ import annotations

import csv
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.dataset import DOWNLOAD_HELP, DatasetError, detect_layout, load_dataset
from helpers.features import FEATURE_DIM, extract_features, load_features
from tests.conftest import CAPTIONS, write_image

SIZE = 71


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
    layout, images, _ = detect_layout(original_dir)
    assert (layout, images) == ("original", original_dir / "Flickr8k_Dataset" / "Flicker8k_Dataset")
    assert len(load_dataset(original_dir).captions) == len(CAPTIONS)


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
                       "line 7": "caption of 3000_ccc.jpg is empty after cleaning: '犬が走る'"}


def test_captions_that_all_clean_to_nothing_give_a_clear_error(kaggle_dir, tmp_path):
    from helpers.pipeline import prepare
    from helpers.workspace import Workspace

    with (kaggle_dir / "captions.txt").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["image", "caption"], ["1000_aaa.jpg", "!!!"], ["2000_bbb.jpg", "42"]])
    with pytest.raises(ValueError, match="no captions"):
        prepare(Workspace(tmp_path / "work"), kaggle_dir)


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

    def predict_on_batch(self, pixels):
        means = np.asarray(pixels).mean(axis=(1, 2))
        return np.tile(means, FEATURE_DIM // 3 + 1)[:, :FEATURE_DIM]


def test_odd_images_get_features_and_bad_ones_are_listed_with_reasons(tmp_path):
    paths, bad = odd_images(tmp_path / "photos")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = extract_features(paths, tmp_path / "cache.npz", image_size=SIZE, batch_size=3, progress=False,
                                 encoder=MeanColour())
    assert sorted(found.features) == sorted(p.name for p in paths if p.name not in bad)
    assert sorted(found.failed) == sorted(bad)
    for name, reason in bad.items():
        assert reason in found.failed[name], found.failed[name]
    assert np.isfinite(found.matrix(sorted(found.features))).all()
    np.testing.assert_allclose(found.features["big.jpg"][:3], np.array([40, 140, 240]) / 127.5 - 1, atol=0.02)
    [message] = [str(w.message) for w in caught if "could not be read" in str(w.message)]
    assert message.startswith("3 of 8 images could not be read") and "cut.jpg: truncated" in message
    assert sorted(load_features(tmp_path / "cache.npz").failed) == sorted(bad)  # kept in the cache too


def test_captioning_own_odd_photos_lists_the_bad_ones(tmp_path, monkeypatch):
    """`caption_files` (what `python -m helpers caption` calls) captions the good photos and names the bad."""
    from helpers import pipeline

    paths, bad = odd_images(tmp_path / "photos")
    monkeypatch.setattr(pipeline, "load_trained", lambda work: ("model", "vocab", {"weights": "none",
                                                                                   "image_size": SIZE}))
    monkeypatch.setattr(pipeline, "generate", lambda model, features, vocab, beam: [f"{len(f)}" for f in features])
    real_extract = pipeline.extract_features
    monkeypatch.setattr(pipeline, "extract_features",
                        lambda *args, **kwargs: real_extract(*args, **{**kwargs, "encoder": MeanColour()}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captions, failed = pipeline.caption_files(None, paths)
    assert sorted(captions) == sorted(p.name for p in paths if p.name not in bad)
    assert sorted(failed) == sorted(bad)


# --- Feature extraction killed while it saves ---------------------------------------------------------


def test_killed_while_saving_leaves_the_last_complete_cache(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing the cache: the file on disk is the previous complete one, never half of
    the new one, and a rerun ends with exactly the features of a clean run."""
    from helpers import features as features_module

    folder = tmp_path / "photos"
    folder.mkdir()
    paths = [write_image(folder / f"img{i}.png", (10 * i, 100, 200 - 10 * i)) for i in range(6)]
    clean = extract_features(paths, tmp_path / "clean.npz", image_size=SIZE, batch_size=2, progress=False,
                             encoder=MeanColour())
    cache = tmp_path / "cache.npz"
    extract_features(paths[:2], cache, image_size=SIZE, batch_size=2, progress=False, encoder=MeanColour())
    before = cache.read_bytes()

    real_savez = np.savez

    def savez_then_killed(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(file.tell() // 2)  # half of the new file is on disk when Ctrl-C lands
        raise KeyboardInterrupt

    monkeypatch.setattr(features_module.np, "savez", savez_then_killed)
    with pytest.raises(KeyboardInterrupt):
        extract_features(paths, cache, image_size=SIZE, batch_size=2, progress=False, encoder=MeanColour(),
                         checkpoint_seconds=0)
    monkeypatch.setattr(features_module.np, "savez", real_savez)
    assert cache.read_bytes() == before and sorted(load_features(cache).features) == ["img0.png", "img1.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    resumed = extract_features(paths, cache, image_size=SIZE, batch_size=2, progress=False, encoder=MeanColour())
    names = [p.name for p in paths]
    np.testing.assert_array_equal(resumed.matrix(names), clean.matrix(names))


def test_troubleshooting_guide_quotes_messages_the_course_really_prints():
    guide = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    source = "".join(p.read_text(encoding="utf-8") for p in (Path(__file__).resolve().parent.parent / "helpers").glob("*.py"))
    for quoted in ("is not a Flickr8k folder in a layout the course knows", "unzip it into this folder first",
                   "holds no caption rows", "could not be read and have no features", "is not the published",
                   "the vocabulary was rebuilt after training", "come from different runs",
                   "was not written by the encoder", "the best epoch so far is saved in",
                   "run the same command again", "Could not get Xception's ImageNet weights"):
        assert quoted in guide and quoted in source, quoted
    assert "docs/troubleshooting.md" in DOWNLOAD_HELP
