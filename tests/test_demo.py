"""`python -m helpers demo`: what each tab asks of the model (in Python), its errors, and the page itself in a
real headless Chromium (tests/browser.py): a photo uploaded and captioned, a folder searched, a screenshot of
each tab kept under the test's temporary folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import matplotlib.figure
import pytest

from helpers.errors import SettingError, WorkFolderError
from helpers.machinery import cli, pipeline
from helpers.machinery.demo import CaptionDemo, caption_line
from helpers.machinery.paths import fixture_dir
from helpers.machinery.workspace import Workspace
from tests import browser

SIZE = "71"  # Xception's smallest input: fast
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Workspace:
    """The fixture with two small models trained a few epochs: attention (model.keras) and merge (merge.keras)."""
    out = str(tmp_path_factory.mktemp("demo"))
    small = ["--image-size", SIZE, "--units", "32", "--epochs", "4", "--out", out]
    for args in (["prepare", "--out", out], ["features", "--grid", "--image-size", SIZE, "--out", out],
                 ["train", "--decoder", "attention", *small], ["features", "--image-size", SIZE, "--out", out],
                 ["train", "--model", "merge", *small]):
        assert cli.main(args) == 0, args
    return Workspace(out)


@pytest.fixture(scope="module")
def photo() -> Path:
    test = (fixture_dir() / "Flickr_8k.testImages.txt").read_text().split()
    return fixture_dir() / "Images" / test[0]


@pytest.fixture
def folder(tmp_path, photo) -> Path:
    """Four test photos under new names, and a broken one among them."""
    test = (fixture_dir() / "Flickr_8k.testImages.txt").read_text().split()
    for number, name in enumerate(test[:4]):
        shutil.copy(fixture_dir() / "Images" / name, tmp_path / f"photo_{number}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    return tmp_path


def test_without_gradio_it_says_how_to_install_it_before_loading_anything(work, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    monkeypatch.setattr(pipeline, "load_trained", lambda *a, **k: pytest.fail("the model was loaded first"))
    assert cli.main(["demo", "--out", str(work.root)]) == 2
    assert 'pip install -e ".[demo]"' in capsys.readouterr().err


@pytest.mark.parametrize("name", ["model", "merge"])
def test_caption_is_the_command_lines_with_its_score(work, photo, name):
    demo = CaptionDemo(work, name)
    found = demo.caption(photo, beam_width=3)
    for width, search in ((1, "greedy"), (3, "beam")):
        expected, _ = pipeline.caption_files(work, [photo], width, name)
        assert found[search]["caption"] == expected[str(photo)]
        words = len(found[search]["caption"].split())
        assert found[search]["log_prob"] < 0 and found[search]["per_word"] == pytest.approx(
            found[search]["log_prob"] / (words + 1))
    assert caption_line(found["greedy"]).startswith(found["greedy"]["caption"] + "   (log-probability -")
    if name == "merge":
        assert found["figure"] is None
    else:  # the picture, then one panel per word and one for <end>
        assert isinstance(found["figure"], matplotlib.figure.Figure)
        drawn = [ax for ax in found["figure"].axes if ax.images]
        assert len(drawn) == len(found["beam"]["caption"].split()) + 2


def test_search_a_folder_skips_a_broken_photo_and_names_it(work, folder):
    result = CaptionDemo(work).search("a red ball on the grass", str(folder), top=10)
    assert result["images"] == 4 and len(result["results"]) == 4
    assert {Path(r["image"]).name for r in result["results"]} == {f"photo_{n}.jpg" for n in range(4)}
    assert [Path(name).name for name in result["failed"]] == ["broken.jpg"]


def test_bad_input_gets_a_message(work, tmp_path):
    demo = CaptionDemo(work)
    with pytest.raises(SettingError, match="No photo yet"):
        demo.caption(None)
    (tmp_path / "odd.jpg").write_bytes(b"\x00" * 100)
    with pytest.raises(SettingError, match="odd.jpg could not be read"):
        demo.caption(tmp_path / "odd.jpg")
    with pytest.raises(SettingError, match="no words to search"):
        demo.search("  ", "")
    with pytest.raises(SettingError, match="zebra, giraffe"):
        demo.search("zebra giraffe", "")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingError, match="a folder with no image files"):
        demo.search("a ball", str(tmp_path / "empty"))
    with pytest.raises(WorkFolderError, match="nothing.keras is missing"):
        CaptionDemo(work, "nothing")


@pytest.mark.slow
@pytest.mark.skipif(not (browser.CHROMIUM and browser.DRIVER) and not os.environ.get("CI"),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_the_page_in_a_real_browser(work, photo, folder, tmp_path_factory):
    shots = tmp_path_factory.mktemp("demo_page")  # the screenshots and the server's output, beside the photos
    port = browser.free_port()
    server = browser.start_demo(work.root, port, shots / "demo.log")
    try:
        seen = browser.use_demo(f"http://127.0.0.1:{port}", photo, "a red ball on the grass", folder, shots)
    finally:
        server.terminate()
        server.wait(30)
    expected = CaptionDemo(work).caption(photo, beam_width=3)
    assert seen["greedy"] == caption_line(expected["greedy"]) and seen["beam"] == caption_line(expected["beam"])
    assert seen["attention_panels"] >= 1
    assert seen["results"] == 4 and "The best 4 of 4 photos" in seen["notes"] and "Skipped broken.jpg" in seen["notes"]
    for tab in ("caption", "search"):
        shot = shots / f"demo_{tab}.png"
        assert shot.stat().st_size > 10_000, shot  # a page, not a blank
    print(f"\nscreenshots of the demo: {shots}")
