"""What the course promises about a work folder: nothing trained or finished is lost, nothing stale or mismatched
is used, and everything a learner can get wrong ends in one line that names the file and the fix.

Each test starts from a copy of a small trained work folder and checks both the message and that the files
that were there before are unchanged (by hash) when the course refuses.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import pytest
from PIL import Image

from helpers.errors import WorkFolderError
from helpers.machinery import cli, pipeline
from helpers.machinery.files import write_json
from helpers.machinery.fixture_layouts import write_fixture_layout
from helpers.machinery.paths import fixture_dir
from helpers.machinery.prepare import PREPARED, save_vocabulary
from helpers.machinery.workspace import Workspace
from helpers.vocabulary import Vocabulary

SIZE = 71  # Xception's smallest input: fast
TRAIN = ["--image-size", str(SIZE), "--units", "16", "--epochs", "2"]
pytestmark = [pytest.mark.slow,  # a minute or more in all: scheduled early (conftest.py)
              pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")]


def hashes(folder: Path) -> dict[str, str]:
    """SHA-1 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args: str) -> int:
    return cli.main(list(args))


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory) -> Path:
    """The fixture prepared, encoded and trained for two epochs in a small work folder."""
    out = tmp_path_factory.mktemp("trained")
    assert run("prepare", "--out", str(out)) == 0
    assert run("features", "--out", str(out), "--image-size", str(SIZE)) == 0
    assert run("train", "--out", str(out), *TRAIN) == 0
    return out


@pytest.fixture
def work(trained_folder, tmp_path) -> Path:
    """A copy of the trained work folder to change."""
    return Path(shutil.copytree(trained_folder, tmp_path / "work"))


def refused(capsys, *args: str) -> str:
    """Run a command that must be refused: exit code 2, one `error:` line, no traceback. Returns the message."""
    code = run(*args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def dot_files(folder: Path) -> list[str]:
    """Hidden files anywhere under `folder`: the temporary files of atomic writes."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def assert_full_disk(message: str, stage: str, folder: Path, name: str, size: int) -> None:
    """One line that names the stage, the folder and the file, and asks for about the room the write takes."""
    assert message.startswith(f"error: the disk is full (No space left on device): `python -m helpers {stage}` "
                              "needs about "), message
    assert f" free in {folder} to write {name}, and " in message and message.count("\n") == 1, message
    assert message.rstrip().endswith("then run it again; what was saved before is intact"), message
    number, unit = re.search(r"needs about ([\d.]+) (bytes|KB|MB|GB) free", message).groups()
    asked = float(number) * {"bytes": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
    assert 0.95 * size <= asked <= 1.2 * size, (asked, size)


def full_disk_save(sizes: list[int], measure: Path):
    """A stand-in for keras.Model.save on a full disk: it measures what the real save writes (into `measure`),
    then writes the first bytes of the model and fails as h5py and zipfile do, naming no file."""
    real_save = keras.Model.save

    def save(self, path, *args, **kwargs):
        real_save(self, measure)
        sizes.append(measure.stat().st_size)
        Path(path).write_bytes(b"PK\x03\x04 the first bytes of a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_a_matching_folder_evaluates(work, capsys):
    assert run("evaluate", "--out", str(work)) == 0
    assert "BLEU on" in capsys.readouterr().out
    config = json.loads((work / "model.json").read_text())
    assert config["status"] == "complete" and config["fingerprints"] == json.loads(
        (work / "dataset.json").read_text())["fingerprints"]


# --- 1. Every write is atomic -------------------------------------------------------------------------


def test_refused_arguments_change_nothing_on_disk(work, capsys):
    before = hashes(work)
    for args in (["train", "--epochs", "0"], ["train", "--batch-size", "-1"], ["evaluate", "--beam", "0"],
                 ["features", "--batch-size", "0"], ["prepare", "--min-count", "0"]):
        with pytest.raises(SystemExit) as stopped:
            run(*args, "--out", str(work))
        assert stopped.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    beam = refused(capsys, "evaluate", "--beam", "500", "--out", str(work))
    assert "beam width must be a whole number from 1" in beam
    assert "leaves no word" in refused(capsys, "prepare", "--min-count", "100000", "--out", str(work))
    assert hashes(work) == before


def test_a_full_disk_during_training_keeps_the_model_that_was_there(work, capsys, monkeypatch):
    before = hashes(work)

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(b"PK\x03\x04 half a model")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", disk_full)
    message = refused(capsys, "train", "--out", str(work), *TRAIN)
    assert "the disk is full" in message and "what was saved before is intact" in message
    after = hashes(work)
    assert after["model.keras"] == before["model.keras"] and after["model.json"] == before["model.json"]
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_prepare_writes_its_three_files_together(work, kaggle_dir, monkeypatch, capsys):
    """A full disk while the new files are written leaves all three old ones; were a rename of the three to fail
    between two files, dataset.json's fingerprints would tell the next stage so."""
    before = hashes(work)
    written = []
    real_write = Path.write_bytes

    def full_on_second(self, data):
        written.append(self.name)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_on_second)
    assert "the disk is full" in refused(capsys, "prepare", "--data", str(kaggle_dir), "--out", str(work))
    monkeypatch.undo()
    after = hashes(work)
    assert {k: after[k] for k in ("captions.json", "vocab.json", "dataset.json")} == \
        {k: before[k] for k in ("captions.json", "vocab.json", "dataset.json")}
    assert not [p for p in work.iterdir() if p.name.startswith(".")]

    from helpers.machinery import files

    real_replace = os.replace
    def fail_at_vocab(src, dst):
        if Path(dst).name == "vocab.json":  # the rename after captions.json's fails
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", fail_at_vocab)
    with pytest.raises(OSError):
        pipeline_prepare(work, data_dir=kaggle_dir)
    monkeypatch.undo()
    assert "captions.json in" in refused(capsys, "train", "--out", str(work), *TRAIN)


def pipeline_prepare(work: Path, **options):
    from helpers.machinery.prepare import prepare

    return prepare(Workspace(work), **options)


def test_a_full_disk_during_prepare_asks_room_for_its_three_files(work, capsys, monkeypatch):
    before = hashes(work)
    size = sum((work / name).stat().st_size for name in PREPARED)  # the same data again: the same three files
    real_write = Path.write_bytes

    def full(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    message = refused(capsys, "prepare", "--out", str(work))
    monkeypatch.undo()
    assert_full_disk(message, "prepare", work, "captions.json", size)
    assert hashes(work) == before and not dot_files(work)


def test_a_prepare_stopped_by_a_full_disk_while_archiving_leaves_no_archive_folder(work, capsys, monkeypatch):
    """Another vocabulary moves the model to archive/<date-time>/ with copies of the prepared files it needs:
    the disk fills up while they are copied, so that folder goes again, and the model stays where it was."""
    before = hashes(work)
    size = sum((work / name).stat().st_size for name in PREPARED)

    def full(source, target):
        Path(target).write_bytes(Path(source).read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr("helpers.machinery.prepare.shutil.copy2", full)
    message = refused(capsys, "prepare", "--min-count", "2", "--out", str(work))
    assert_full_disk(message, "prepare", work, "captions.json", 2 * size)  # the new files, and the copies
    assert not (work / "archive").exists() and hashes(work) == before and not dot_files(work)


def test_a_cache_part_cut_short_by_a_full_disk_leaves_the_cache_as_it_was(work, capsys, monkeypatch):
    """NumPy reports a short write with its own OSError, without errno: `N requested and M written`."""
    from helpers.machinery import feature_cache

    before = hashes(work)
    sizes = []

    def cut_short(file, array, **kwargs):
        sizes.append(array.nbytes)
        Path(file).write_bytes(b"\x93NUMPY" + bytes(4089))
        raise OSError(f"{array.nbytes} requested and 4096 written")

    monkeypatch.setattr(feature_cache.np, "save", cut_short)
    message = refused(capsys, "features", "--image-size", "64", "--out", str(work))  # a new cache: all to encode
    cache = work / pipeline.feature_setting(Workspace(work), image_size=64).name
    assert_full_disk(message, "features", cache, "part-0000.npy", sizes[-1])
    assert sizes[-1] == 440 * 1280 * 4  # every fixture image's MobileNetV2 vector, in float32
    assert hashes(work) == before and not dot_files(work)


def test_a_full_disk_at_the_checkpoint_asks_room_for_the_model(work, tmp_path, capsys, monkeypatch):
    before, sizes = hashes(work), []
    monkeypatch.setattr(keras.Model, "save", full_disk_save(sizes, tmp_path / "measured.keras"))
    message = refused(capsys, "train", "--out", str(work), *TRAIN)
    assert_full_disk(message, "train", work, "model.keras", sizes[0])
    assert hashes(work) == before and not dot_files(work)  # the model, its record and history as they were


def test_a_full_disk_while_fine_tuning_keeps_the_first_stage_model(work, tmp_path, capsys, monkeypatch):
    stage_one, sizes = {}, []
    real_fine_tune = cli.fine_tune

    def fine_tune_on_a_full_disk(*args, **kwargs):
        stage_one.update(hashes(work))
        monkeypatch.setattr(keras.Model, "save", full_disk_save(sizes, tmp_path / "measured.keras"))
        return real_fine_tune(*args, **kwargs)

    monkeypatch.setattr(cli, "fine_tune", fine_tune_on_a_full_disk)
    message = refused(capsys, "train", "--fine-tune", "--fine-tune-epochs", "1", "--out", str(work), *TRAIN[:-1], "1")
    assert_full_disk(message, "train --fine-tune", work, "model.fine_tuning.keras", sizes[0])
    assert hashes(work) == stage_one and not dot_files(work)


def test_a_full_disk_while_evaluate_writes_its_scores(work, capsys, monkeypatch):
    before, sizes = hashes(work), []
    real_write = Path.write_bytes

    def full(self, data):
        sizes.append(len(data))
        real_write(self, data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    message = refused(capsys, "evaluate", "--out", str(work))
    monkeypatch.undo()
    assert_full_disk(message, "evaluate", work, "evaluation_test.json", sizes[0])
    assert hashes(work) == before and not dot_files(work)


KILLED_WHILE_SAVING = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import keras
    from helpers.machinery import cli

    def killed_while_saving(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\\x03\\x04 the first bytes of a model")
        os.kill(os.getpid(), 9)  # kill -9: no cleanup, no finally

    keras.Model.save = killed_while_saving
    cli.main(["train", "--out", sys.argv[1], "--image-size", "71", "--units", "16", "--epochs", "1"])
""")


def test_temporary_files_of_killed_saves_are_removed_by_the_next_run(work):
    before = hashes(work)
    done = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(work)], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]
    [left] = dot_files(work)
    assert re.fullmatch(r"\.model\.keras\.\d+\.tmp\.keras", left)
    assert {k: v for k, v in hashes(work).items() if k != left} == before
    for name in ("captions.json", "evaluation_test.json"):  # as a killed prepare or evaluate leaves them
        (work / f".{name}.4194303.tmp").write_text("the first bytes")
    assert run("train", "--out", str(work), *TRAIN) == 0
    assert run("prepare", "--out", str(work)) == 0 and run("evaluate", "--out", str(work)) == 0
    assert dot_files(work) == []


def test_a_model_on_disk_is_never_seen_half_written(trained_folder, tmp_path):
    """While `train` runs in another process, a reader keeps loading model.keras: it always loads."""
    work = Path(shutil.copytree(trained_folder, tmp_path / "work"))
    trainer = subprocess.Popen([sys.executable, "-m", "helpers", "train", "--out", str(work), *TRAIN[:-1], "4"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    loads = 0
    while trainer.poll() is None:
        keras.models.load_model(work / "model.keras", safe_mode=True)  # raises if half-written
        loads += 1
    assert trainer.returncode == 0, trainer.stderr.read()[-2000:]
    assert loads > 0


# --- 2. The stages of a work folder are tied together --------------------------------------------------


def test_a_vocabulary_replaced_by_hand_is_refused(work, capsys):
    before = hashes(work)
    vocab = Vocabulary.load(work / "vocab.json")
    reordered = Vocabulary(vocab.words[:4] + tuple(reversed(vocab.words[4:])), vocab.max_length)
    write_json(work / "vocab.json", reordered.as_json())
    message = refused(capsys, "evaluate", "--out", str(work))
    assert "vocab.json" in message and "do not match dataset.json" in message and "helpers prepare" in message
    assert {k: v for k, v in hashes(work).items() if k != "vocab.json"} == \
        {k: v for k, v in before.items() if k != "vocab.json"}


def test_captions_of_another_dataset_copied_in_are_refused(work, tmp_path, capsys, kaggle_dir):
    other = Workspace(tmp_path / "other")
    pipeline_prepare(other.root, data_dir=kaggle_dir)
    shutil.copy(other.path("captions.json"), work / "captions.json")
    message = refused(capsys, "evaluate", "--out", str(work))
    assert "captions.json" in message and "do not match dataset.json" in message


def test_a_new_vocabulary_moves_the_trained_model_to_the_archive(work, capsys):
    model_before = hashes(work)["model.keras"]
    old = Vocabulary.load(work / "vocab.json")
    vocab = Vocabulary(old.words[:4] + tuple(reversed(old.words[4:])), old.max_length)  # the same words, other ids
    archived = save_vocabulary(Workspace(work), vocab, min_count=2)
    assert archived is not None and archived.parent == work / "archive"
    assert f"moved it, with the files it needs, to {archived}" in capsys.readouterr().out
    assert hashes(archived)["model.keras"] == model_before and not (work / "model.keras").exists()
    assert "model.keras is missing: run `python -m helpers train`" in refused(capsys, "evaluate", "--out", str(work))
    # the archive is a work folder of its own: it evaluates once its features are encoded again
    assert "No feature cache" in refused(capsys, "evaluate", "--out", str(archived))
    assert run("features", "--out", str(archived), "--image-size", str(SIZE)) == 0
    assert run("evaluate", "--out", str(archived)) == 0


def test_prepare_again_with_the_same_data_keeps_the_model(work, capsys):
    before = hashes(work)
    assert run("prepare", "--out", str(work)) == 0
    assert not (work / "archive").exists() and hashes(work)["model.keras"] == before["model.keras"]
    assert run("evaluate", "--out", str(work)) == 0


def test_pictures_replaced_under_the_same_names_are_refused_then_encoded_again(work, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(fixture_dir(), images)
    assert run("prepare", "--data", str(images), "--out", str(work)) == 0  # same captions: the model stays
    capsys.readouterr()
    test_key = sorted(json.loads((work / "captions.json").read_text())["test"])[0]
    Image.new("RGB", (160, 160), (250, 0, 250)).save(images / "Images" / test_key)
    message = refused(capsys, "evaluate", "--out", str(work))
    assert f"picture(s) changed since their features were computed, e.g. {images / 'Images' / test_key}" in message
    assert "python -m helpers features" in message
    assert run("features", "--out", str(work), "--image-size", str(SIZE)) == 0
    assert run("evaluate", "--out", str(work)) == 0


def test_a_model_trained_on_pictures_encoded_again_since_says_so(work, tmp_path, capsys):
    images = tmp_path / "images"
    shutil.copytree(fixture_dir(), images)
    assert run("prepare", "--data", str(images), "--out", str(work)) == 0  # same captions: the model stays
    model = {k: v for k, v in hashes(work).items() if k.startswith("model.")}
    train_key = sorted(json.loads((work / "captions.json").read_text())["train"])[0]
    Image.new("RGB", (160, 160), (250, 0, 250)).save(images / "Images" / train_key)
    assert run("features", "--out", str(work), "--image-size", str(SIZE)) == 0  # encodes it again
    capsys.readouterr()
    note = (f"Note: {work / 'model.keras'} was trained on the old pictures: `features` has encoded train or dev "
            "pictures again since (changed ones, or ones that had no features). Train again")
    assert run("evaluate", "--out", str(work)) == 0 and note in capsys.readouterr().out
    assert run("caption", str(images / "Images" / train_key), "--out", str(work)) == 0
    assert note in capsys.readouterr().out
    assert {k: v for k, v in hashes(work).items() if k.startswith("model.")} == model
    assert run("train", "--out", str(work), *TRAIN) == 0  # what the note advises
    capsys.readouterr()
    assert run("evaluate", "--out", str(work)) == 0 and "old pictures" not in capsys.readouterr().out


def test_resume_refuses_a_checkpoint_of_other_settings(work, capsys):
    message = refused(capsys, "train", "--resume", "--out", str(work), *TRAIN[:3], "32", "--epochs", "1")
    assert "Cannot resume" in message and "units: 16 then, 32 now" in message and "without --resume" in message


KILLED_AFTER_EPOCH = textwrap.dedent("""
    import os, sys
    import keras
    from helpers import training
    from helpers.machinery import cli

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == int(sys.argv[2]):
                os.kill(os.getpid(), 9)  # kill -9: no cleanup, no finally

    real = training.train_model
    training.train_model = lambda *a, **k: real(*a, **{**k, "callbacks": [*k.get("callbacks", []), Kill()]})
    cli.main(["train", "--out", sys.argv[1], "--image-size", "71", "--units", "16", "--epochs", "4"])
""")


def test_kill_9_between_epochs_leaves_a_folder_that_evaluates_and_resumes(work, capsys):
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_EPOCH, str(work), "1"], capture_output=True, text=True)
    assert done.returncode == -9
    config = json.loads((work / "model.json").read_text())
    assert config["status"] == "training" and config["best_epoch"] in (1, 2)
    assert run("evaluate", "--out", str(work)) == 0
    assert "did not finish; `python -m helpers train --resume" in capsys.readouterr().out
    assert run("train", "--resume", "--out", str(work), *TRAIN[:-1], "1") == 0
    assert json.loads((work / "model.json").read_text())["status"] == "complete"


def test_a_model_newer_than_its_record_says_to_resume(work, capsys):
    config = json.loads((work / "model.json").read_text())
    (work / "model.json").write_text(json.dumps({**config, "model_sha1": "0" * 40}))
    message = refused(capsys, "evaluate", "--out", str(work))
    assert "from different moments of training" in message and "train --resume" in message


# --- 3. Inputs cannot reach outside the dataset --------------------------------------------------------


def test_image_names_outside_the_images_folder_are_skipped_and_reported(kaggle_dir, tmp_path, capsys):
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(secret)
    with (kaggle_dir / "captions.txt").open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["../../secret.jpg", "A secret picture ."], [str(secret), "The same, by its path ."],
                                 ["bell\x07name\x1b[31m.jpg", "A name with control characters ."]])
    (kaggle_dir / "Flickr_8k.trainImages.txt").write_text("1000_aaa.jpg\n2000_bbb.jpg\n../../secret.jpg\n")
    assert run("prepare", "--data", str(kaggle_dir), "--out", str(tmp_path / "work")) == 0
    out = capsys.readouterr().out
    assert "climbs out of the images folder" in out and "is an absolute path, outside the images folder" in out
    assert "\x07" not in out and "\x1b" not in out and "bell\\x07name\\x1b[31m.jpg" in out
    captions = json.loads((tmp_path / "work" / "captions.json").read_text())
    assert not any("secret" in key for split in captions.values() for key in split)


def test_split_lists_are_read_one_name_a_line(kaggle_dir, tmp_path):
    from helpers.machinery.dataset import load_dataset

    Image.new("RGB", (8, 8)).save(kaggle_dir / "Images" / "my photo.jpg")
    with (kaggle_dir / "captions.txt").open("a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerow(["my photo.jpg", "A photo with a space in its name ."])
    (kaggle_dir / "Flickr_8k.trainImages.txt").write_text("1000_aaa.jpg\nmy photo.jpg\n")
    assert load_dataset(kaggle_dir).splits["train"] == ["1000_aaa.jpg", "my photo.jpg"]


# --- 4. Arguments and data are validated up front -------------------------------------------------------


def test_an_empty_split_is_refused_naming_the_split_files(kaggle_dir, tmp_path, capsys):
    (kaggle_dir / "Flickr_8k.devImages.txt").write_text("nothing_here.jpg\n")
    message = refused(capsys, "prepare", "--data", str(kaggle_dir), "--out", str(tmp_path / "w"))
    assert "The dev split" in message and str(kaggle_dir / "Flickr_8k.devImages.txt") in message
    assert not (tmp_path / "w" / "captions.json").exists()


def test_a_captions_file_that_is_not_utf8_is_refused(kaggle_dir, tmp_path, capsys):
    path = kaggle_dir / "captions.txt"
    path.write_bytes(path.read_bytes().replace(b"dress", "caf\xe9".encode("latin-1")))
    message = refused(capsys, "prepare", "--data", str(kaggle_dir), "--out", str(tmp_path / "w"))
    assert str(path) in message and "is not UTF-8 text" in message and "save it as UTF-8" in message


def test_an_unbalanced_quote_is_reported_with_its_line(kaggle_dir, tmp_path, capsys):
    path = kaggle_dir / "captions.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, '1000_aaa.jpg,"A quote that never closes .')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("prepare", "--data", str(kaggle_dir), "--out", str(tmp_path / "w"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    [broken] = [s for s in summary["skipped"] if "unbalanced quote" in s["reason"]]
    assert broken["item"] == "line 3" and "joins lines 3 to 4 into one row" in broken["reason"]  # up to the next quote
    assert summary["captions"] == 9  # every other row was read again after the broken one


def test_train_says_when_no_train_picture_could_be_read(tmp_path, capsys):
    """Running features again cannot help here: train says that the pictures are unreadable, and where features
    recorded why."""
    data = write_fixture_layout("kaggle", tmp_path / "data", every=5)
    train = (data / "Flickr_8k.trainImages.txt").read_text().split()
    for name in train:
        (data / "Images" / name).write_bytes(b"<html>404 Not Found</html>")
    out = tmp_path / "work"
    assert run("prepare", "--data", str(data), "--out", str(out)) == 0
    assert run("features", "--image-size", str(SIZE), "--out", str(out)) == 0
    before = hashes(out)
    message = refused(capsys, "train", "--out", str(out), *TRAIN)
    index = out / pipeline.feature_setting(Workspace(out), image_size=SIZE).name / "index.json"
    assert f"None of the {len(train)} train pictures could be read, so none has features" in message
    assert f'(kept under "failed" in {index}), e.g. {train[0]}: not an image format Pillow can read' in message
    assert "Replace those pictures" in message and "first" not in message
    assert hashes(out) == before


def test_caption_says_what_to_do_with_urls_and_fails_when_it_captioned_nothing(work, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run("caption", "https://example.com/dog.jpg", str(tmp_path / "empty"), str(tmp_path / "nowhere.jpg"),
               "--out", str(work)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "https://example.com/dog.jpg: a web address; download the picture first, then caption the file"
    assert "a folder with no image files" in lines[1] and "no such file or folder" in lines[2]
    assert lines[-1].startswith("error: No image was captioned")
    image = fixture_dir() / "Images" / sorted(os.listdir(fixture_dir() / "Images"))[0]
    assert run("caption", str(image), "https://example.com/dog.jpg", "--out", str(work)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{image}: ") and "download the picture first" in captured.err


# --- 5. One family of errors, caught in one place -------------------------------------------------------


@pytest.mark.parametrize("name, damage, expected", [
    ("captions.json", b'{"train": {', "captions.json is damaged"),
    ("dataset.json", b"\x00\x01", "dataset.json is damaged"),
    ("model.keras", b"not a zip", "model.keras is damaged"),
    ("model.json", b"[1, 2", "model.json is damaged"),
])
def test_damaged_work_files_are_named_with_the_stage_that_rewrites_them(work, capsys, name, damage, expected):
    if name == "model.keras":  # keep model.json's record in step, so the damage itself is what is found
        config = json.loads((work / "model.json").read_text())
        (work / name).write_bytes(damage)
        (work / "model.json").write_text(json.dumps({**config, "model_sha1": hashlib.sha1(damage).hexdigest()}))
    else:
        (work / name).write_bytes(damage)
    message = refused(capsys, "evaluate", "--out", str(work))
    assert expected in message and "run `python -m helpers" in message


def flip_a_byte_of_the_weights(path: Path) -> None:
    """One bit pattern changed in the middle of the weights inside the .keras archive (a bad disk, a bad copy)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "cut off": lambda path: path.write_bytes(path.read_bytes()[:path.stat().st_size // 2]),
    "emptied": lambda path: path.write_bytes(b""),
    "bits flipped": flip_a_byte_of_the_weights,
    "not a zip": lambda path: path.write_text("my notes, saved under the wrong name"),
}


@pytest.mark.parametrize("damage, reason", [
    ("cut off", "BadZipFile: File is not a zip file"),
    ("emptied", "BadZipFile: File is not a zip file"),
    ("bits flipped", "BadZipFile: model.weights.h5 in it fails its CRC check"),
    ("not a zip", "BadZipFile: File is not a zip file"),
])
def test_a_damaged_checkpoint_is_called_damaged_not_interrupted(work, capsys, damage, reason):
    """Its SHA-1 no longer matches its record, as after a save that was stopped; but it is no whole zip, so the
    advice is to train again, not --resume (which could not load it)."""
    DAMAGES[damage](work / "model.keras")
    before = hashes(work)
    expected = (f"error: {work / 'model.keras'} is damaged ({reason}): run `python -m helpers train` again (not "
                "--resume: it needs a whole checkpoint and its record).\n")
    assert refused(capsys, "evaluate", "--out", str(work)) == expected
    assert refused(capsys, "caption", str(fixture_dir() / "Images"), "--out", str(work)) == expected
    assert refused(capsys, "train", "--resume", "--out", str(work), *TRAIN) == expected
    assert hashes(work) == before


@pytest.mark.parametrize("edit, reason", [
    (lambda record: "", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    (lambda record: json.dumps({k: v for k, v in record.items() if k != "encoder"}),
     "its encoder is missing or not what training writes"),
    (lambda record: json.dumps({**record, "fingerprints": None, "image_size": "71"}),
     "its image_size, fingerprints are missing or not what training writes"),
    (lambda record: json.dumps(list(record)), "a JSON list, not a record of training"),
])
def test_an_emptied_or_edited_record_is_called_damaged(work, capsys, edit, reason):
    (work / "model.json").write_text(edit(json.loads((work / "model.json").read_text())))
    before = hashes(work)
    expected = f"error: {work / 'model.json'} is damaged ({reason}): run `python -m helpers train` again"
    assert refused(capsys, "evaluate", "--out", str(work)).startswith(expected)
    assert refused(capsys, "train", "--resume", "--out", str(work), *TRAIN).startswith(expected)
    assert hashes(work) == before


def test_a_damaged_model_points_to_the_copy_in_the_archive_and_that_advice_works(work, capsys):
    kept = work / "archive" / "20261201-101500"
    kept.mkdir(parents=True)
    for name in ("model.keras", "model.json", "history.json", *PREPARED):
        shutil.copy2(work / name, kept / name)
    DAMAGES["cut off"](work / "model.keras")
    message = refused(capsys, "evaluate", "--out", str(work))
    assert message.endswith(f"(not --resume: it needs a whole checkpoint and its record), or use the copy in {kept} "
                            f"(--out {kept}).\n")
    assert run("features", "--image-size", str(SIZE), "--out", str(kept)) == 0
    assert run("evaluate", "--out", str(kept)) == 0


def test_a_work_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, monkeypatch):
    """--out a new folder inside a read-only one (or on a read-only file system) is refused like a read-only
    folder is."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.parent == locked:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = locked / "new" / "deeper"
    assert refused(capsys, "prepare", "--out", str(out)) == (
        f"error: cannot make the work folder {out}: Read-only file system when making {locked / 'new'}; use --out "
        "with a folder you can write to (COURSE_WORK_DIR in a notebook)\n")
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write in any folder")
def test_a_work_folder_in_a_folder_without_write_permission_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        message = refused(capsys, "features", "--out", str(locked / "new"))
    finally:
        locked.chmod(0o755)
    assert f"cannot make the work folder {locked / 'new'}: Permission denied when making {locked / 'new'}" in message


def test_an_out_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert "is a file, not a folder" in refused(capsys, "prepare", "--out", str(tmp_path / "afile"))


def test_permission_errors_on_work_files_are_one_line(work, capsys, monkeypatch):
    from helpers.machinery import files

    def denied(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(files, "write_bytes", denied)
    monkeypatch.setattr("helpers.machinery.workspace.write_json", lambda path, data: denied(path, data))
    assert "the folder is read-only for you" in refused(capsys, "evaluate", "--out", str(work))


def test_a_genuine_bug_still_shows_its_traceback(work, monkeypatch):
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run("evaluate", "--out", str(work))


# --- Interrupted stages --------------------------------------------------------------------------------


class CtrlC(keras.callbacks.Callback):
    """Raise KeyboardInterrupt in the middle of epoch `epoch` (0-based), as Ctrl-C or a stopped cell does."""

    def __init__(self, epoch: int):
        super().__init__()
        self.at, self.epoch = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.at and batch == 1:
            raise KeyboardInterrupt


def test_ctrl_c_during_train_says_what_was_saved_and_resume_continues(work, monkeypatch, capsys):
    from helpers import training

    real_train_model = training.train_model
    monkeypatch.setattr(training, "train_model",
                        lambda *a, **k: real_train_model(*a, **{**k, "callbacks": [*k["callbacks"], CtrlC(epoch=1)]}))
    assert run("train", "--out", str(work), *TRAIN[:-1], "4") == 130
    err = capsys.readouterr().err
    assert "interrupted: the best epoch so far (epoch 1) is saved in" in err and "train --resume" in err
    assert json.loads((work / "model.json").read_text())["status"] == "training"
    model, vocab, _ = pipeline.load_trained(Workspace(work))  # usable as it is
    assert model.output_shape[-1] == len(vocab)
    monkeypatch.setattr(training, "train_model", real_train_model)
    assert run("train", "--out", str(work), "--resume", *TRAIN[:-1], "1") == 0
    assert "Trained 1 epoch (2 in all)" in capsys.readouterr().out
    history = json.loads((work / "history.json").read_text())
    assert len(history["loss"]) == 2  # the interrupted run's finished epoch, then the resumed one


def test_ctrl_c_during_features_says_a_rerun_continues(work, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "extract_features", interrupted)
    assert run("features", "--out", str(work), "--image-size", str(SIZE)) == 130
    assert "run the same command again" in capsys.readouterr().err


def test_troubleshooting_guide_quotes_messages_the_course_really_prints():
    root = Path(__file__).resolve().parent.parent
    guide = (root / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    source = "".join(p.read_text(encoding="utf-8") for p in (root / "helpers").rglob("*.py"))
    for quoted in ("is not a dataset folder in a layout the course knows", "unzip it into this folder first",
                   "holds no caption rows", "could not be read and have no features", "is not the published",
                   "do not match dataset.json", "changed after", "from different moments of training",
                   "picture(s) changed since their features were computed", "the best epoch so far",
                   "run the same command again", "ImageNet weights", "is not UTF-8 text", "unbalanced quote",
                   "the disk is full", "is damaged", "is a file, not a folder", "climbs out of the images folder",
                   "with the files it needs, to", "leaves no word", "beam width must be",
                   "No image was captioned", "download the picture first", "needs a newer TensorFlow/Keras",
                   "The demo needs Gradio", "choose another with --port", "No photo yet", "try a JPEG or PNG photo",
                   "No photo to search", "--fine-tune trains the merge or inject decoder", "is fine-tuned already",
                   "the disk is full (", "then run it again; what was saved before is intact",
                   "cannot make the work folder", "fails its CRC check", "it needs a whole checkpoint and its record",
                   "or use the copy in", "could be read, so none has features", "has no split lists of its own",
                   "was trained on the old pictures", "not what training writes", "ran out of memory (",
                   "Google Drive was not mounted", "Keeping the work on Google Drive", "this Colab runtime has no GPU",
                   "METEOR skipped: Java started, then failed", "could not be started", "this machine trains in"):
        assert quoted in guide, f"docs/troubleshooting.md does not quote {quoted!r}"
        assert quoted in source, f"the course no longer prints {quoted!r}"


def test_a_copied_model_evaluates_and_resumes_on_its_own(work, capsys):
    folder = Workspace(work)
    copy = folder.copy_model("model", "snapshot")
    assert [p.read_bytes() for p in (copy.keras, copy.record, copy.history)] == \
        [p.read_bytes() for p in (folder.model().keras, folder.model().record, folder.model().history)]
    assert run("evaluate", "--model", "snapshot", "--out", str(work)) == 0
    before = folder.model().keras.read_bytes()
    assert run("train", "--model", "snapshot", "--resume", *TRAIN[:4], "--epochs", "1", "--out", str(work)) == 0
    assert folder.model().keras.read_bytes() == before  # the original is untouched
    assert len(json.loads(copy.history.read_text())["loss"]) == 3
    with pytest.raises(WorkFolderError, match="run `python -m helpers train` --model nothing first"):
        folder.copy_model("nothing", "other")
