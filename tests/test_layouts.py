"""Flickr30k, MS-COCO and Karpathy split files, written small in their real formats (with the real files' quirks)."""

import json
from pathlib import Path

import pytest

from helpers.errors import DatasetError
from helpers.machinery.cli import main
from helpers.machinery.dataset import detect_layout, load_dataset
from tests.conftest import CAPTIONS, token_rows, write_image

# The same captions as the Flickr8k fixtures, with the split Karpathy's JSON gives them below.
KARPATHY_SPLIT = {"1000_aaa.jpg": "train", "2000_bbb.jpg": "restval", "3000_ccc.jpg": "test", "4000_ddd.jpg": "val"}
MERGED = ("2000_bbb.jpg", 1)  # the row written like the real results.csv line 19,999: `name| 1 caption`


def sorted_captions(data) -> dict[str, list[str]]:
    return {name: sorted(caps) for name, caps in data.captions.items()}


def karpathy_json(images: list[dict], dataset: str) -> str:
    return json.dumps({"images": images, "dataset": dataset})


def karpathy_entry(filename: str, split: str, captions: list[str], filepath: str | None = None) -> dict:
    entry = {"filename": filename, "split": split,
             "sentences": [{"raw": c, "tokens": c.lower().rstrip(" .").split()} for c in captions]}
    return entry if filepath is None else {"filepath": filepath, **entry}


@pytest.fixture
def flickr30k_kaggle_dir(tmp_path: Path) -> Path:
    """Kaggle Flickr30k: flickr30k_images/flickr30k_images/*.jpg + flickr30k_images/results.csv, pipes and spaces."""
    root = tmp_path / "flickr30k_kaggle"
    lines = ["image_name| comment_number| comment"]
    for name, caps in CAPTIONS.items():
        write_image(root / "flickr30k_images" / "flickr30k_images" / name)
        for k, caption in enumerate(caps):
            lines.append(f"{name}| {k} {caption}" if (name, k) == MERGED else f"{name}| {k}| {caption}")
    lines.append("3000_ccc.jpg| 2|")  # a row with no caption
    (root / "flickr30k_images" / "results.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def flickr30k_token_dir(tmp_path: Path) -> Path:
    """Original Flickr30k: flickr30k-images/ + results_20130124.token (the Flickr8k token format)."""
    root = tmp_path / "flickr30k_token"
    for name in CAPTIONS:
        write_image(root / "flickr30k-images" / name)
    (root / "results_20130124.token").write_text("\n".join(token_rows()) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def karpathy_dir(tmp_path: Path) -> Path:
    """Karpathy's dataset_flickr30k.json + images/."""
    root = tmp_path / "karpathy"
    for name in CAPTIONS:
        write_image(root / "images" / name)
    images = [karpathy_entry(name, KARPATHY_SPLIT[name], caps) for name, caps in CAPTIONS.items()]
    (root / "dataset_flickr30k.json").write_text(karpathy_json(images, "flickr30k"), encoding="utf-8")
    return root


@pytest.fixture
def karpathy_coco_dir(tmp_path: Path) -> Path:
    """Karpathy's dataset_coco.json: images in images/train2014/ and images/val2014/, one of each split."""
    root = tmp_path / "coco_karpathy"
    entries = [("train2014", "COCO_train2014_000000000009.jpg", "train"),
               ("val2014", "COCO_val2014_000000000042.jpg", "restval"),
               ("val2014", "COCO_val2014_000000000073.jpg", "val"),
               ("val2014", "COCO_val2014_000000000074.jpg", "test")]
    for folder, name, _ in entries:
        write_image(root / "images" / folder / name)
    images = [karpathy_entry(name, split, ["A cat sits on a red sofa .", "A CAT on a couch"], folder)
              for folder, name, split in entries]
    images[0]["sentences"].append({"raw": "", "tokens": []})
    (root / "dataset_coco.json").write_text(karpathy_json(images, "coco"), encoding="utf-8")
    return root


@pytest.fixture
def coco2017_dir(tmp_path: Path) -> Path:
    """COCO 2017: annotations/captions_{train,val}2017.json + train2017/ (20 images) and val2017/ (2 images)."""
    root = tmp_path / "coco2017"
    for folder, ids in (("train2017", range(1, 21)), ("val2017", (101, 102))):
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 24, "width": 32} for i in ids]
        annotations = [{"id": 1000 * i + k, "image_id": i, "caption": caption}
                       for i in ids
                       for k, caption in enumerate(["A man riding a wave on a surfboard.", "Surfer, 2 waves "])]
        if folder == "train2017":
            annotations.append({"id": 99999, "image_id": 555, "caption": "An annotation for no image."})
        for image in images:
            write_image(root / folder / image["file_name"])
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"captions_{folder}.json").write_text(
            json.dumps({"info": {}, "images": images, "annotations": annotations}), encoding="utf-8")
    return root


def test_flickr30k_kaggle_csv_repairs_the_merged_row_and_reports_it(flickr30k_kaggle_dir):
    data = load_dataset(flickr30k_kaggle_dir)
    assert data.layout == "flickr30k-kaggle"
    assert data.images_dir == flickr30k_kaggle_dir / "flickr30k_images" / "flickr30k_images"
    assert data.caption_count == sum(len(c) for c in CAPTIONS.values())
    assert data.raw_captions["1000_aaa.jpg"][0] == "A child in a pink dress , climbing stairs ."
    assert data.raw_captions[MERGED[0]][MERGED[1]] == CAPTIONS[MERGED[0]][MERGED[1]]
    [repaired] = [n for n in data.notes if n.startswith("Repaired")]
    assert "results.csv line 6" in repaired and "read as comment 1" in repaired
    assert [(s.item, s.reason.split(" (")[0]) for s in data.skipped] == [("line 11", "row has no caption")]


def test_all_formats_clean_the_same_captions_identically(kaggle_dir, flickr30k_kaggle_dir, flickr30k_token_dir,
                                                         karpathy_dir):
    loaded = [load_dataset(d) for d in (kaggle_dir, flickr30k_kaggle_dir, flickr30k_token_dir, karpathy_dir)]
    assert [d.layout for d in loaded] == ["kaggle", "flickr30k-kaggle", "flickr30k-token", "karpathy"]
    assert all(sorted_captions(d) == sorted_captions(loaded[0]) for d in loaded)
    assert all(d.image_path(n).is_file() for d in loaded for n in d.captions)


def test_karpathy_split_maps_val_to_dev_and_restval_to_train(karpathy_dir):
    data = load_dataset(karpathy_dir)
    assert data.splits == {"train": ["1000_aaa.jpg", "2000_bbb.jpg"], "dev": ["4000_ddd.jpg"], "test": ["3000_ccc.jpg"]}
    assert any("val -> dev, restval -> train" in n for n in data.notes)


def test_flickr30k_uses_karpathy_json_when_present_else_a_seeded_split(flickr30k_token_dir, karpathy_dir):
    seeded = load_dataset(flickr30k_token_dir)
    assert any("seeded split" in n and "dataset_flickr30k.json" in n for n in seeded.notes)
    assert sorted(n for names in seeded.splits.values() for n in names) == sorted(CAPTIONS)
    assert load_dataset(flickr30k_token_dir).splits == seeded.splits  # deterministic
    (flickr30k_token_dir / "dataset_flickr30k.json").write_bytes((karpathy_dir / "dataset_flickr30k.json").read_bytes())
    assert load_dataset(flickr30k_token_dir).splits == load_dataset(karpathy_dir).splits


def test_coco_karpathy_keys_keep_the_folder(karpathy_coco_dir):
    data = load_dataset(karpathy_coco_dir)
    assert data.layout == "karpathy" and data.images_dir == karpathy_coco_dir / "images"
    assert data.splits == {"train": ["train2014/COCO_train2014_000000000009.jpg",
                                     "val2014/COCO_val2014_000000000042.jpg"],
                           "dev": ["val2014/COCO_val2014_000000000073.jpg"],
                           "test": ["val2014/COCO_val2014_000000000074.jpg"]}
    assert all(data.image_path(n).is_file() for n in data.captions)
    assert data.captions["val2014/COCO_val2014_000000000074.jpg"] == ["a cat sits on a red sofa", "a cat on a couch"]
    assert [(s.item, s.reason) for s in data.skipped] == [("image 0 sentence 2", "row has no caption")]


def test_coco2017_carves_a_seeded_dev_set_out_of_train(coco2017_dir):
    data = load_dataset(coco2017_dir)
    assert data.layout == "coco2017" and data.images_dir == coco2017_dir
    assert {s: len(n) for s, n in data.splits.items()} == {"train": 18, "dev": 2, "test": 2}
    assert all(n.startswith("train2017/") for n in data.splits["train"] + data.splits["dev"])
    assert data.splits["test"] == ["val2017/000000000101.jpg", "val2017/000000000102.jpg"]
    assert load_dataset(coco2017_dir).splits == data.splits
    assert data.captions["val2017/000000000101.jpg"] == ["a man riding a wave on a surfboard", "surfer waves"]
    [orphan] = data.skipped
    assert orphan.file == "captions_train2017.json" and "image id 555" in orphan.reason


def test_missing_images_and_unknown_layouts_are_explained(karpathy_coco_dir, tmp_path):
    (karpathy_coco_dir / "images" / "val2014" / "COCO_val2014_000000000073.jpg").unlink()
    data = load_dataset(karpathy_coco_dir)
    assert "val2014/COCO_val2014_000000000073.jpg" not in data.captions and data.splits["dev"] == []
    assert sum("COCO_val2014_000000000073.jpg not found" in s.reason for s in data.skipped) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError) as error:
        detect_layout(tmp_path / "empty")
    for layout in ("flickr30k-kaggle", "flickr30k-token", "karpathy", "coco2017", "docs/datasets.md"):
        assert layout in str(error.value)


def test_karpathy_json_without_its_images_names_the_folders_it_tried(karpathy_dir):
    (karpathy_dir / "images").rename(karpathy_dir / "pictures")
    with pytest.raises(DatasetError, match="none of its first images were found in images/"):
        load_dataset(karpathy_dir)


@pytest.mark.parametrize("folder, images, captions", [
    ("flickr30k_kaggle_dir", 4, 9), ("flickr30k_token_dir", 4, 9), ("karpathy_dir", 4, 9),
    ("karpathy_coco_dir", 4, 8), ("coco2017_dir", 22, 44)])
def test_cli_prepare_reads_every_layout(folder, images, captions, request, tmp_path, capsys):
    data_dir = request.getfixturevalue(folder)
    assert main(["prepare", "--data", str(data_dir), "--out", str(tmp_path / "work"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["images"], summary["captions"], summary["unsplit_images"]) == (images, captions, 0)
    saved = json.loads((tmp_path / "work" / "captions.json").read_text())
    assert sum(len(caps) for split in saved.values() for caps in split.values()) == captions
