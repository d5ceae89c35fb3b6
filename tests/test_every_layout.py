"""Every dataset layout the course reads runs the whole command-line pipeline (on a tiny copy of the fixture), and
every notebook runs on the MS-COCO 2017 and Karpathy copies (tests/test_notebooks_rerun.py runs them)."""

from __future__ import annotations

import json

import pytest

from helpers.machinery import cli
from helpers.machinery.dataset import load_dataset
from helpers.machinery.fixture_layouts import MISSING_IMAGE, WRITERS, write_fixture_layout
from helpers.machinery.paths import fixture_dir, is_fixture_folder


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_each_copy_reads_back_as_the_fixture(layout, tmp_path):
    fixture = load_dataset(fixture_dir())
    copy = load_dataset(write_fixture_layout(layout, tmp_path / layout))
    assert copy.layout == layout and is_fixture_folder(copy.root)
    by_file = {key.rsplit("/", 1)[-1]: sorted(caps) for key, caps in copy.captions.items()}
    assert by_file == {key: sorted(caps) for key, caps in fixture.captions.items()}  # whatever the layout's keys
    assert all(copy.image_path(key).is_file() for key in copy.captions)
    assert all(copy.splits[s] for s in ("train", "dev", "test"))


def test_the_original_copy_has_the_real_token_files_quirk(tmp_path):
    copy = load_dataset(write_fixture_layout("original", tmp_path / "original"))
    dropped = [s for s in copy.skipped if MISSING_IMAGE in s.reason]
    assert len(dropped) == 5 and sum(f"{MISSING_IMAGE}.1 not found" in s.reason for s in dropped) == 1


def test_every_fifth_image_makes_a_tiny_copy(tmp_path):
    fixture = load_dataset(fixture_dir())
    tiny = load_dataset(write_fixture_layout("karpathy", tmp_path / "tiny", every=5))
    assert tiny.splits == {split: keys[::5] for split, keys in fixture.splits.items()}


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_the_command_line_runs_on_every_layout(layout, tmp_path, capsys):
    data = write_fixture_layout(layout, tmp_path / "data", every=5)
    out = tmp_path / "work"
    assert cli.main(["run", "--data", str(data), "--out", str(out), "--epochs", "2", "--units", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prepare"]["layout"] == layout and 0 <= result["bleu1"] <= 1
    evaluation = json.loads((out / "evaluation_test.json").read_text())
    assert evaluation["images"] == result["prepare"]["splits"]["test"]
    assert set(evaluation["captions"]) == set(json.loads((out / "captions.json").read_text())["test"])
