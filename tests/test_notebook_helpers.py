import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.errors import DatasetError, WorkFolderError
from helpers.machinery import device, find_data, notebook
from helpers.machinery.find_data import resolve_data
from helpers.machinery.notebook import (
    FALLBACK_REPOSITORY,
    banner,
    ensure_prepared,
    notebook_workspace,
    repository,
    start,
)
from helpers.machinery.paths import fixture_dir
from helpers.machinery.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
REAL_FIXTURE = fixture_dir()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder, kagglehub cache and course data/ folder (with the fixture) that hold no Flickr8k."""
    home, data = tmp_path / "home", tmp_path / "course" / "data"
    home.mkdir()
    shutil.copytree(REAL_FIXTURE, data / "fixture")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    monkeypatch.setenv("COURSE_DATA_DIR", str(data))
    monkeypatch.delenv("KAGGLEHUB_CACHE", raising=False)
    monkeypatch.delenv("COURSE_DATA", raising=False)
    return home


def test_fixture_mode(isolated):
    folder, is_fixture = resolve_data("fixture")
    assert is_fixture and folder == fixture_dir() and (folder / "captions.txt").is_file()


def test_mode_defaults_to_the_environment(isolated, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", "fixture")
    assert resolve_data() == (fixture_dir(), True)


@pytest.mark.parametrize("layout", ["kaggle_dir", "original_dir"])
def test_explicit_folder_in_either_layout(layout, request, isolated):
    folder = request.getfixturevalue(layout)
    assert resolve_data(str(folder)) == (folder, False)


def test_relative_folder_is_also_looked_up_in_the_course_folder(isolated, kaggle_dir, tmp_path, monkeypatch):
    shutil.copytree(kaggle_dir, fixture_dir().parent / "flickr8k")
    monkeypatch.chdir(tmp_path)  # like a kernel started in notebooks/
    assert resolve_data("data/flickr8k") == (fixture_dir().parent / "flickr8k", False)


def test_explicit_folder_that_is_the_fixture_counts_as_fixture(isolated):
    assert resolve_data(str(fixture_dir())) == (fixture_dir(), True)


def test_missing_folder_says_how_to_get_flickr8k(isolated, tmp_path):
    with pytest.raises(DatasetError, match="Dataset folder not found") as error:
        resolve_data(str(tmp_path / "nowhere"))
    assert "kaggle.com/datasets/adityajn105/flickr8k" in str(error.value)


def test_folder_with_a_zip_says_unzip_it(isolated, tmp_path):
    (tmp_path / "flickr").mkdir()
    (tmp_path / "flickr" / "Flickr8k_Dataset.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="unzip it"):
        resolve_data(str(tmp_path / "flickr"))


@pytest.mark.parametrize("mode", [None, "auto", "AUTO", ""])
def test_auto_falls_back_to_the_fixture(isolated, mode):
    assert resolve_data(mode) == (fixture_dir(), True)


def test_auto_finds_flickr8k_in_the_home_folder(isolated, kaggle_dir):
    shutil.copytree(kaggle_dir, isolated / "flickr8k")
    assert resolve_data("auto") == (isolated / "flickr8k", False)


def test_auto_prefers_the_course_data_folder(isolated, kaggle_dir, original_dir):
    shutil.copytree(kaggle_dir, isolated / "flickr8k")
    shutil.copytree(original_dir, fixture_dir().parent / "flickr8k")
    assert resolve_data("auto") == (fixture_dir().parent / "flickr8k", False)


def test_auto_finds_the_newest_kagglehub_download(isolated, kaggle_dir):
    versions = isolated / ".cache" / "kagglehub" / "datasets" / "adityajn105" / "flickr8k" / "versions"
    for version in ("1", "2", "10"):
        shutil.copytree(kaggle_dir, versions / version)
    assert resolve_data("auto") == (versions / "10", False)


def test_auto_skips_an_unusable_folder_and_says_so(isolated, capsys):
    (isolated / "flickr8k").mkdir()  # downloaded but not unzipped, say
    assert resolve_data("auto") == (fixture_dir(), True)
    assert f"Skipping {isolated / 'flickr8k'}" in capsys.readouterr().out


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine with 2 CPU cores and no GPU, off Colab."""
    monkeypatch.setattr(device, "gpus", lambda ask_tensorflow=None: [])
    monkeypatch.setattr(device, "cpu_cores", lambda: 2)
    monkeypatch.setattr(find_data, "IN_COLAB", False)


def test_banner_names_the_fixture_how_to_switch_and_the_offline_encoder_once(isolated, no_gpu, capsys):
    banner(*resolve_data("fixture"))
    first, second, third = capsys.readouterr().out.strip().splitlines()
    images = len(list((fixture_dir() / "Images").glob("*.jpg")))
    assert "FIXTURE" in first and f"{images} small synthetic pictures" in first and 'DATA' in first
    assert "MobileNetV2 with ImageNet weights that ship with the course" in second and "Xception" in second
    assert third == "Device: CPU only (2 cores)."


def test_start_seeds_finds_the_data_says_which_and_names_the_work_folder(isolated, no_gpu, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    folder, is_fixture, work = start("fixture", seed=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert (folder, is_fixture) == resolve_data("fixture") and is_fixture
    assert work.root == tmp_path / "work"
    assert "seed 3" in lines[0] and "FIXTURE" in lines[1] and lines[-1] == f"Work folder: {tmp_path / 'work'}"
    assert np.random.get_state()[1][0] == np.random.RandomState(3).get_state()[1][0]  # NumPy seeded with it


def test_banner_names_the_flickr8k_folder(isolated, kaggle_dir, no_gpu, capsys):
    banner(kaggle_dir, False)
    assert capsys.readouterr().out.strip() == (f"Using kaggle data from {kaggle_dir} (4 images).\n"
                                               "Device: CPU only (2 cores).")


def test_banner_on_colab_without_a_gpu_says_how_to_get_one(isolated, kaggle_dir, no_gpu, monkeypatch, capsys):
    monkeypatch.setattr(find_data, "IN_COLAB", True)
    banner(kaggle_dir, False)
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "Device: CPU only (2 cores): this Colab runtime has no GPU. For one, choose Runtime > Change runtime type > "
        "T4 GPU, then run the notebook again from the top (a new runtime starts with an empty disk: "
        "keep_work_on_drive() keeps your work).")


def test_banner_names_the_gpu_without_importing_tensorflow(tmp_path):
    (tmp_path / "0000:00:04.0").mkdir()
    (tmp_path / "0000:00:04.0" / "information").write_text("Model: \t\t Tesla T4\n", encoding="utf-8")
    code = ("import sys, helpers.machinery.device as d, helpers.machinery.notebook as n, "
            "helpers.machinery.find_data as f; "
            f"d.NVIDIA_DRIVER = d.Path({str(tmp_path)!r}); n.banner(*f.resolve_data('fixture')); "
            "print('tensorflow' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                            env=env)
    assert result.stdout.strip().splitlines()[-2:] == ["Device: GPU (Tesla T4).", "False"]


def test_notebook_workspace_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORK_DIR", str(tmp_path / "work"))
    work = notebook_workspace()
    assert isinstance(work, Workspace) and work.root == tmp_path / "work" and work.root.is_dir()


def test_ensure_prepared_runs_prepare_once_per_dataset(isolated, kaggle_dir, tmp_path, capsys):
    work = Workspace(tmp_path / "work")
    with pytest.raises(WorkFolderError, match="notebook 01"):
        work.require("captions.json")
    ensure_prepared(work, fixture_dir())
    assert "Running notebook 01's prepare stage" in capsys.readouterr().out
    assert work.path("captions.json").is_file()

    ensure_prepared(work, fixture_dir())
    assert "Found notebook 01's captions.json" in capsys.readouterr().out

    summary = ensure_prepared(work, kaggle_dir)
    assert "another dataset" in capsys.readouterr().out
    assert summary["images"] == 4 and set(work.read_json("captions.json")["train"]) == {"1000_aaa.jpg", "2000_bbb.jpg"}


def test_setup_seeds_and_prints_versions(capsys):
    notebook.setup(3)
    first = random.random()
    notebook.setup(3)
    assert random.random() == first
    out = capsys.readouterr().out
    assert "Python" in out and "NumPy" in out and "TensorFlow" in out and "seed 3" in out


def test_importing_and_setup_do_not_import_tensorflow():
    code = ("import sys, helpers.machinery.notebook as n, helpers.machinery.find_data as f, helpers.machinery.figures; "
            "n.setup(0); "
            "n.banner(*f.resolve_data('fixture')); "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip().endswith("False")


def test_repository_is_the_pyproject_setting():
    tomllib = pytest.importorskip("tomllib")
    setting = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["course"]["repository"]
    assert repository() == setting
    assert setting == FALLBACK_REPOSITORY, "run tools/set_repository.py to bring helpers/machinery/notebook.py in line"


def test_repository_falls_back_without_pyproject(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook, "_course_pyprojects", lambda: [tmp_path / "pyproject.toml"])
    assert repository() == FALLBACK_REPOSITORY


def test_repository_is_read_without_tomllib(tmp_path, monkeypatch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[tool.course]\n# comment\nrepository = "me/course"\n\n[tool.other]\n'
                         'repository = "not/this"\n', encoding="utf-8")
    assert notebook.read_repository(pyproject) == "me/course"
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    assert notebook.read_repository(pyproject) == "me/course"
    pyproject.write_text('[tool.other]\nrepository = "not/this"\n', encoding="utf-8")
    assert notebook.read_repository(pyproject) is None
