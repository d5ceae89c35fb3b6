import json
import subprocess
import sys

from helpers.cli import main
from helpers.vocabulary import Vocabulary


def test_prepare_writes_captions_and_vocabulary(kaggle_dir, tmp_path, capsys):
    out = tmp_path / "work"
    assert main(["prepare", "--data", str(kaggle_dir), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["captions"] == 7
    assert summary["splits"] == {"train": 2, "dev": 0, "test": 1}
    captions = json.loads((out / "captions.json").read_text())
    assert captions["test"] == {"3000_ccc.jpg": ["a mans bike red and blue", "the end of the race"]}
    vocab = Vocabulary.load(out / "vocab.json")
    assert summary["vocab_size"] == len(vocab) and summary["max_length"] == vocab.max_length == 9
    assert "race" not in vocab.words  # test words never enter the vocabulary


def test_prepare_reports_skipped_rows(original_dir, tmp_path, capsys):
    assert main(["prepare", "--data", str(original_dir), "--out", str(tmp_path), "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)["skipped"]
    assert [s["file"] for s in skipped] == ["Flickr8k.token.txt"]
    assert "1000_aaa.jpg.1 not found" in skipped[0]["reason"]


def test_prepare_text_summary_and_bad_folder_message(kaggle_dir, tmp_path, capsys):
    assert main(["prepare", "--data", str(kaggle_dir), "--out", str(tmp_path)]) == 0
    assert "Loaded 3 images, 7 captions (kaggle layout)" in capsys.readouterr().out
    assert main(["prepare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Dataset folder not found") and "kaggle.com" in error


def test_python_dash_m_helpers_is_the_entry_point(kaggle_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "helpers", "prepare", "--data", str(kaggle_dir), "--out",
                           str(tmp_path), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["layout"] == "kaggle"


def test_fixture_subcommand_regenerates_the_shipped_fixture(tmp_path, capsys):
    from helpers.paths import fixture_dir

    assert main(["fixture", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "captions.txt").read_bytes() == (fixture_dir() / "captions.txt").read_bytes()
