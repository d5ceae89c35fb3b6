import csv
import shutil

import pytest

from helpers.errors import DatasetError
from helpers.machinery.dataset import detect_layout, load_dataset
from helpers.machinery.layouts.flickr8k import read_kaggle_captions
from tests.conftest import CAPTIONS, write_image


def test_kaggle_layout_parses_commas_and_quotes_as_csv(kaggle_dir):
    data = load_dataset(kaggle_dir)
    assert data.layout == "kaggle"
    assert data.raw_captions["1000_aaa.jpg"][0] == "A child in a pink dress , climbing stairs ."
    assert data.captions["1000_aaa.jpg"][1] == "a girl says hello to dogs"
    assert data.caption_count == sum(len(c) for c in CAPTIONS.values())


def test_both_layouts_give_identical_cleaned_captions(kaggle_dir, original_dir):
    kaggle, original = load_dataset(kaggle_dir), load_dataset(original_dir)
    assert original.layout == "original"
    assert {n: sorted(c) for n, c in kaggle.captions.items()} == {n: sorted(c) for n, c in original.captions.items()}
    assert kaggle.splits == original.splits


def test_bogus_token_row_is_dropped_and_reported(original_dir):
    data = load_dataset(original_dir)
    assert "1000_aaa.jpg.1" not in data.captions
    [bogus] = [s for s in data.skipped if "1000_aaa.jpg.1" in s.reason]
    assert bogus.file == "Flickr8k.token.txt" and bogus.item.startswith("line ")


def test_missing_image_is_reported_by_name(kaggle_dir):
    (kaggle_dir / "Images" / "2000_bbb.jpg").unlink()
    data = load_dataset(kaggle_dir)
    assert "2000_bbb.jpg" not in data.captions
    assert data.splits["train"] == ["1000_aaa.jpg"]
    reasons = [s.reason for s in data.skipped]
    assert len(reasons) == 2 and all("2000_bbb.jpg not found" in r for r in reasons)


def test_empty_and_blank_captions_are_reported_not_kept(kaggle_dir):
    with (kaggle_dir / "captions.txt").open("a", newline="") as f:
        csv.writer(f).writerows([["1000_aaa.jpg", "!!! 2 ..."], ["1000_aaa.jpg", ""], []])
    data = load_dataset(kaggle_dir)
    assert all(c for caps in data.captions.values() for c in caps)
    reasons = sorted(s.reason for s in data.skipped)
    assert len(reasons) == 2
    assert "no words left after cleaning" in reasons[0] and "'!!! 2 ...'" in reasons[0]
    assert reasons[1] == "row has no caption"


def test_bom_and_windows_line_endings(kaggle_dir):
    path = kaggle_dir / "captions.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    rows, skipped = read_kaggle_captions(path)
    assert rows[0][:2] == ("1000_aaa.jpg", "A child in a pink dress , climbing stairs .") and not skipped


def test_wrong_header_names_the_file(kaggle_dir):
    (kaggle_dir / "captions.txt").write_text("name|text\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="captions.txt should start with the header"):
        load_dataset(kaggle_dir)


def test_kaggle_without_split_files_uses_the_official_lists(kaggle_dir):
    for f in kaggle_dir.glob("Flickr_8k.*"):
        f.unlink()
    data = load_dataset(kaggle_dir)
    assert data.splits == {"train": [], "dev": [], "test": []}  # these made-up names are in no official list


def test_official_split_lists_ship_with_the_course():
    from helpers.machinery.paths import official_splits_dir

    lists = {s: (official_splits_dir() / f"Flickr_8k.{s}Images.txt").read_text().split()
             for s in ("train", "dev", "test")}
    assert [len(v) for v in lists.values()] == [6000, 1000, 1000]
    assert not set(lists["train"]) & set(lists["test"]) and not set(lists["dev"]) & set(lists["test"])


def test_nested_images_folder_from_some_unzippers(kaggle_dir):
    shutil.move(kaggle_dir / "Images", kaggle_dir / "tmp")
    (kaggle_dir / "Images").mkdir()
    shutil.move(kaggle_dir / "tmp", kaggle_dir / "Images" / "Images")
    assert detect_layout(kaggle_dir).images_dir == kaggle_dir / "Images" / "Images"
    assert len(load_dataset(kaggle_dir).captions) == len(CAPTIONS)


def test_missing_folder_names_it_and_says_how_to_download(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value) and "kaggle.com" in str(error.value)


def test_unknown_layout_lists_what_was_found(tmp_path):
    (tmp_path / "archive.zip").write_bytes(b"PK")
    write_image(tmp_path / "Images" / "x.jpg")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    assert "Found: Images/, archive.zip" in message and "unzip it" in message and "no captions file" in message


def test_captions_without_images(kaggle_dir):
    shutil.rmtree(kaggle_dir / "Images")
    with pytest.raises(DatasetError, match="no folder of images"):
        load_dataset(kaggle_dir)


def test_fixture_in_both_layouts_cleans_identically(tmp_path):
    from helpers.machinery.fixture_layouts import write_fixture_layout
    from helpers.machinery.paths import fixture_dir

    kaggle = load_dataset(fixture_dir())
    original = load_dataset(write_fixture_layout("original", tmp_path / "original"))
    assert (kaggle.layout, original.layout) == ("kaggle", "original")
    assert len(kaggle.captions) == 440 and kaggle.caption_count == 2200 and not kaggle.skipped
    assert {n: sorted(c) for n, c in kaggle.captions.items()} == {n: sorted(c) for n, c in original.captions.items()}
    assert kaggle.splits == original.splits
    # the real token file's quirk: five captions of 2258277193_586949ec62.jpg, an image Flickr8k does not ship
    assert [s.item for s in original.skipped] == ["line 1101", "line 2202", "line 2203", "line 2204", "line 2205"]
    assert all("2258277193_586949ec62.jpg" in s.reason and "not found" in s.reason for s in original.skipped)
