"""Work that survives a Colab runtime: `keep_work_on_drive()` mounts Google Drive and points the work folder and the
feature store at it, so that the next process (the next notebook, a reconnected runtime) finds what the last one
made, and `train --resume` goes on. Tested without Colab: a fake `google.colab.drive` "mounts" a folder of the
test's that outlives each process; off Colab the call does nothing at all."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from helpers.errors import WorkFolderError
from helpers.machinery import cli, extraction, find_data, pipeline
from helpers.machinery.feature_cache import read_cache
from helpers.machinery.notebook import DRIVE_FOLDER, ensure_prepared, keep_work_on_drive, notebook_workspace
from helpers.machinery.paths import default_work_dir, feature_store, fixture_dir
from helpers.machinery.prepare import prepare
from helpers.machinery.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SIZE = "71"  # small pictures: fast
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


@pytest.fixture
def settings(monkeypatch):
    """COURSE_WORK_DIR and COURSE_FEATURE_STORE as the test run set them, restored afterwards."""
    for name in ("COURSE_WORK_DIR", "COURSE_FEATURE_STORE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    return {name: os.environ[name] for name in ("COURSE_WORK_DIR", "COURSE_FEATURE_STORE")}


@pytest.fixture
def colab(tmp_path, monkeypatch, settings) -> list[str]:
    """On Colab, with a Google Drive (a folder of the test's) that `drive.mount` mounts; the mount calls are listed."""
    mounts: list[str] = []

    def mount(mount_point: str) -> None:
        mounts.append(mount_point)
        (Path(mount_point) / "MyDrive").mkdir(parents=True, exist_ok=True)

    drive = types.ModuleType("google.colab.drive")
    drive.mount = mount
    package = types.ModuleType("google.colab")
    package.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.setattr(find_data, "IN_COLAB", True)
    return mounts


def test_off_colab_it_does_nothing_and_says_nothing(settings, monkeypatch, capsys):
    monkeypatch.setattr(find_data, "IN_COLAB", False)
    monkeypatch.setitem(sys.modules, "google.colab", None)  # importing it would fail
    assert keep_work_on_drive() is None
    assert capsys.readouterr().out == ""
    assert {name: os.environ[name] for name in settings} == settings


def test_on_colab_the_work_and_the_features_go_to_drive(colab, tmp_path, capsys):
    drive = tmp_path / "drive"
    kept = drive / "MyDrive" / DRIVE_FOLDER
    for _ in range(2):  # a notebook run twice: mounted again, the same folders
        assert keep_work_on_drive(mount_point=drive) == kept / "work"
        assert capsys.readouterr().out == (
            f"Keeping the work on Google Drive: the work folder is {kept / 'work'} and the features are shared in "
            f"{kept / 'features'}, so the next notebook and a new runtime find them.\n")
    assert colab == [str(drive), str(drive)]
    assert default_work_dir() == kept / "work" and feature_store() == kept / "features"
    assert notebook_workspace().root == kept / "work" and (kept / "features").is_dir()


def test_on_colab_with_no_folder_the_work_stays_on_the_runtime(colab, settings, capsys):
    assert keep_work_on_drive(None) is None
    assert colab == [] and capsys.readouterr().out == ""
    assert {name: os.environ[name] for name in settings} == settings


def test_a_refused_mount_says_how_to_go_on(colab, tmp_path, settings, monkeypatch):
    def refused(mount_point: str) -> None:
        raise ValueError("mount failed")

    monkeypatch.setattr(sys.modules["google.colab.drive"], "mount", refused)
    with pytest.raises(WorkFolderError) as error:
        keep_work_on_drive(mount_point=tmp_path / "drive")
    assert str(error.value) == (
        "Google Drive was not mounted (ValueError: mount failed): run this cell again and allow the access Colab "
        "asks for, or call keep_work_on_drive(None) to keep the work on this runtime's disk (lost when it "
        "disconnects).")
    assert {name: os.environ[name] for name in settings} == settings


def test_a_drive_folder_that_cannot_be_made_is_one_line(colab, tmp_path, settings):
    drive = tmp_path / "drive"
    (drive / "MyDrive").mkdir(parents=True)
    (drive / "MyDrive" / "taken").write_text("a file, not a folder")
    with pytest.raises(WorkFolderError, match=r"^cannot make .*taken/work to keep the work in \(.*\): check that "):
        keep_work_on_drive("taken", mount_point=drive)
    assert {name: os.environ[name] for name in settings} == settings


TRAIN = ["--image-size", SIZE, "--units", "16", "--epochs", "1"]


def test_a_new_process_finds_the_work_and_training_resumes(colab, tmp_path, monkeypatch, capsys):
    drive = tmp_path / "drive"
    work = keep_work_on_drive(mount_point=drive)  # as the cell at the top of a notebook does
    for args in (["prepare"], ["features", "--image-size", SIZE], ["train", *TRAIN]):  # no --out: the settings'
        assert cli.main(args) == 0
    assert "Trained 1 epoch; best dev loss" in capsys.readouterr().out
    # This process (a runtime) is gone; the next one, with the settings the cell gives it, finds the work on the drive.
    again = subprocess.run([sys.executable, "-m", "helpers", "train", "--resume", *TRAIN], capture_output=True,
                           text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Trained 1 epoch (2 in all)" in again.stdout
    setting = pipeline.feature_setting(Workspace(work), image_size=int(SIZE)).name
    assert (feature_store() / setting / "index.json").is_file()  # the shared store is on the drive too
    assert ensure_prepared(notebook_workspace(), fixture_dir())["images"] > 0  # the next notebook's first step
    assert capsys.readouterr().out.startswith(f"Found notebook 01's captions.json in {work}.")
    _, vocab, config = pipeline.load_trained(Workspace(work))
    assert config["status"] == "complete" and config["epochs_run"] == 2 and len(vocab) > 4

    # Another work folder (a notebook's own) takes the features from the store on the drive: nothing is encoded.
    def no_encoder(*args, **kwargs):
        raise AssertionError("a picture was encoded again")

    monkeypatch.setattr(extraction, "shared_encoder", no_encoder)
    other = Workspace(tmp_path / "elsewhere")
    prepare(other, fixture_dir())
    found = pipeline.extract(other, image_size=int(SIZE), progress=False)
    kept = read_cache(Workspace(work).path(setting))
    keys = sorted(found)
    assert keys == sorted(kept) and len(keys) > 0
    np.testing.assert_array_equal(found.stack(keys), kept.stack(keys))
