import contextlib
import json
import subprocess
import sys

from helpers.machinery.cli import main
from helpers.vocabulary import Vocabulary


def test_prepare_writes_captions_and_vocabulary(kaggle_dir, tmp_path, capsys):
    out = tmp_path / "work"
    assert main(["prepare", "--data", str(kaggle_dir), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and summary["captions"] == 9
    assert summary["splits"] == {"train": 2, "dev": 1, "test": 1}
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
    assert "Loaded 4 images, 9 captions (kaggle layout)" in capsys.readouterr().out
    assert main(["prepare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Dataset folder not found") and "kaggle.com" in error


def test_python_dash_m_helpers_is_the_entry_point(kaggle_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "helpers", "prepare", "--data", str(kaggle_dir), "--out",
                           str(tmp_path), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["layout"] == "kaggle"


def test_fixture_subcommand_regenerates_the_shipped_fixture(tmp_path, capsys):
    from helpers.machinery.paths import fixture_dir

    assert main(["fixture", str(tmp_path)]) == 0
    for name in ("captions.txt", "scenes.json"):
        assert (tmp_path / name).read_bytes() == (fixture_dir() / name).read_bytes()


def test_every_option_says_what_it_does_and_its_default(capsys):
    """Each subcommand's options all have a help text, and --help shows the defaults of those with a value."""
    import argparse
    import re

    from helpers.machinery.cli import _parser
    from helpers.machinery.paths import fixture_dir

    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"prepare", "features", "train", "evaluate", "caption", "run", "fixture"} <= set(commands)
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help text"
        with contextlib.suppress(SystemExit):  # --help exits
            main([name, "--help"])
        text = re.sub(r"\s+", " ", capsys.readouterr().out)
        if name in ("train", "run"):
            assert "captions per training batch (default: 64)" in text and "(default: 30)" in text
        if name == "features":
            assert "images per encoder call (lower it if memory runs out) (default: 32)" in text
    fixture = next(a for a in commands["fixture"]._actions if a.dest == "folder")
    assert fixture.default == fixture_dir()
