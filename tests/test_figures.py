import datetime

import matplotlib
import pytest

from helpers.machinery import figures
from helpers.machinery.figures import plot_history
from helpers.machinery.notebook import running_interactively, upload_box

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


def test_no_upload_box_without_a_person(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    assert not running_interactively()
    assert upload_box(lambda path: None) is None


def test_upload_box_saves_the_file_and_calls_back():
    seen = []
    box = upload_box(lambda path: seen.append(path.read_bytes()), interactive=True)
    upload = box.children[0]
    upload.value = ({"name": "../photo.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc"),
                     "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)},)
    assert seen == [b"abc"]


def test_show_captioned_draws_one_panel_per_image(kaggle_dir):
    images = sorted((kaggle_dir / "Images").glob("*.jpg"))[:3]
    fig = figures.show_captioned(images, ["one caption", ["two", "captions"], "a " * 40], ncols=2)
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes] == [p.name for p in images]
    with pytest.raises(ValueError, match="3 images but 2 captions"):
        figures.show_captioned(images, ["a", "b"])


def test_draw_model_draws_one_box_per_layer_and_one_arrow_per_connection():
    from helpers.decoders.merge import build_merge_model

    model = build_merge_model(12, feature_dim=8, units=4, embedding_dim=4)
    fig = figures.draw_model(model)
    ax = fig.axes[0]
    assert len(ax.patches) == len(model.layers)
    texts = [t.get_text() for t in ax.texts]
    assert all(layer.name in texts for layer in model.layers)
    assert len([child for child in ax.get_children() if type(child).__name__ == "Annotation"]) == 10  # graph edges
    assert any("(None, None, 12)" in t for t in texts)


@pytest.mark.parametrize("size", [2.5, 3.2])
def test_captions_side_by_side_do_not_run_into_the_next_panel(kaggle_dir, size):
    images = sorted((kaggle_dir / "Images").glob("*.jpg"))[:2]
    long = "a little girl in a pink dress climbs into a wooden playhouse " * 2
    fig = figures.show_captioned(images, [long, long], ncols=2, size=size)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    first = fig.axes[0].texts[0].get_window_extent(renderer)
    second = fig.axes[1].texts[0].get_window_extent(renderer)
    assert first.x1 < second.x0, (first, second)
    assert first.width > 0.8 * (second.x0 - first.x0)  # and the lines are as long as the panel allows


def test_a_monitored_dev_score_gets_its_own_axis_and_the_saved_mark():
    fig = plot_history({"loss": [3.0, 2.0, 1.5, 1.2], "val_loss": [2.5, 1.8, 1.7, 1.6],
                        "val_cider": [0.2, 0.9, 0.7, 0.6]})
    loss_axis, score_axis = fig.axes
    texts = [t.get_text() for axis in fig.axes for t in axis.texts]
    assert "best dev loss 1.600\n(epoch 4)" in texts and "best dev CIDEr-D 0.900\n(epoch 2, saved)" in texts
    assert score_axis.get_ylabel().startswith("dev CIDEr-D") and len(score_axis.lines) == 2  # the curve and its mark
