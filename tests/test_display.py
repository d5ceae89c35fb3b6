import datetime

import matplotlib
import pytest
from PIL import Image

from helpers.display import demo_image, plot_history, running_interactively, sentence_bleus, upload_box

matplotlib.use("Agg")


def test_plot_history_draws_both_curves_and_marks_the_best_epoch():
    import matplotlib.pyplot as plt

    fig = plot_history({"loss": [3.0, 2.0, 1.5, 1.2], "val_loss": [2.5, 1.8, 1.9, 2.0]})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines if not line.get_label().startswith("_")] == ["train loss", "dev loss"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert any("epoch 2" in text.get_text() for text in ax.texts)
    plt.close(fig)


def test_plot_history_without_dev_loss():
    import matplotlib.pyplot as plt

    fig = plot_history({"loss": [2.0, 1.0]})
    assert len(fig.axes[0].lines) == 1
    plt.close(fig)


def test_sentence_bleus_per_caption():
    refs = [["a red ball on the left of the grass"], ["a blue ball on the right"]]
    scores = sentence_bleus(refs, ["a red ball on the left of the grass", "a dog"])
    assert scores[0] == pytest.approx(1.0)
    assert 0.0 <= scores[1] < 0.1
    assert sentence_bleus([["the cat sat"]], [""])[0] == 0.0  # empty caption: 0, no exception
    assert sentence_bleus([["a red ball"]], ["a red ball <end>"], order=1)[0] == pytest.approx(1.0)


def test_sentence_bleus_checks_lengths():
    with pytest.raises(ValueError):
        sentence_bleus([["a"]], ["a", "b"])


def test_demo_image_puts_the_blob_on_the_chosen_side(tmp_path):
    left = demo_image(tmp_path / "left.png")
    right = demo_image(tmp_path / "right.png", blob="blue", ground="yellow", left=False)
    with Image.open(left) as im:
        assert im.size == (320, 240)
        assert im.getpixel((80, 120)) == (255, 0, 0) and im.getpixel((240, 120)) == (0, 128, 0)
    with Image.open(right) as im:
        assert im.getpixel((240, 120)) == (0, 0, 255) and im.getpixel((80, 120)) == (255, 255, 0)


def test_no_upload_box_without_a_person(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    assert not running_interactively()
    assert upload_box(lambda path: None) is None


def test_upload_box_saves_the_file_and_calls_back():
    seen = []
    box = upload_box(lambda path: seen.append(path.read_bytes()), interactive=True)
    upload = box.children[0]
    upload.value = ({"name": "../photo.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc"),
                     "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert seen == [b"abc"]
