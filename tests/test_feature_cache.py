"""The feature cache and extract_features: keyed by image key, append-only parts, fingerprints of the pictures,
resumable, never half-written, and read a few rows at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.encoders import build_encoder
from helpers.errors import SettingError, WorkFolderError
from helpers.images import load_image
from helpers.machinery.extraction import extract_features
from helpers.machinery.feature_cache import CacheSetting, DamagedCacheError, FeatureSet, read_cache
from helpers.machinery.progress import progress_bar

SIZE = 71
FEATURE_DIM = 2048
NOISE = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder("xception", "none", image_size=SIZE)


class MeanColour:
    """A stand-in encoder for plumbing tests: each image's mean colour, repeated to 2048 numbers (or the real
    `inner` encoder's output). It counts its calls, and can fail (or look at the disk) on a given call."""

    input_shape = (None, SIZE, SIZE, 3)
    output_shape = (None, FEATURE_DIM)

    def __init__(self, inner=None, fail_on_call: int | None = None, on_call=None):
        self.inner, self.calls, self.fail_on_call, self.on_call = inner, 0, fail_on_call, on_call

    def predict_on_batch(self, pixels):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a run
        if self.inner is not None:
            return self.inner.predict_on_batch(pixels)
        means = np.asarray(pixels).mean(axis=(1, 2))
        return np.tile(means, FEATURE_DIM // 3 + 1)[:, :FEATURE_DIM]


class NoEncoder:
    """An encoder that must not be called."""

    input_shape = (None, SIZE, SIZE, 3)

    def predict_on_batch(self, pixels):
        raise AssertionError("the encoder was called, but everything should come from the cache")


def save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def make_images(folder: Path, count: int) -> list[Path]:
    """`count` different PNG pictures (lossless, so identical pixels stay identical)."""
    rng = np.random.default_rng(count)
    return [save(folder / f"img{i}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for i in range(count)]


def extract(images, cache, model, **options):
    return extract_features(images, cache, image_size=SIZE, progress=False, model=model, **options)


def test_cache_names_differ_per_setting():
    assert CacheSetting.of("xception", "none").name == "xception_none_299"
    assert CacheSetting.of("xception", "imagenet", 299, "none").name == "xception_imagenet_299_grid"
    assert CacheSetting.of("vgg16", "/data/my weights.h5").name == "vgg16_my_weights.h5_224"
    names = {CacheSetting.of(e, w, s, p).name for e in ("xception", "resnet50") for w in ("none", "imagenet", "x.h5")
             for s in (75, 299) for p in ("avg", "none")}
    assert len(names) == 24


def test_extract_features_end_to_end(tmp_path, encoder, capsys):
    red = save(tmp_path / "red.png", np.full((20, 20, 3), (220, 30, 30), np.uint8))
    red_again = save(tmp_path / "red_again.png", np.full((20, 20, 3), (220, 30, 30), np.uint8))
    blue = save(tmp_path / "blue.png", np.full((20, 20, 3), (20, 40, 230), np.uint8))
    noise = save(tmp_path / "noise.JPG", NOISE)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    images = {"a/red.png": red, "a/red_again.png": red_again, "b/blue.png": blue, "noise": noise,
              "empty": tmp_path / "empty.jpg", "text": tmp_path / "text.jpg"}
    cache = tmp_path / "work" / "xception_none_71"

    result = extract(images, cache, encoder, batch_size=4)
    assert "2 of 6 images could not be read" in capsys.readouterr().out
    assert set(result) == {"a/red.png", "a/red_again.png", "b/blue.png", "noise"}  # keyed as given
    assert result.row_shape == (FEATURE_DIM,) and result["noise"].dtype == np.float32
    np.testing.assert_array_equal(result["a/red.png"], result["a/red_again.png"])
    assert not np.array_equal(result["a/red.png"], result["b/blue.png"])
    assert set(result.failed) == {"empty", "text"} and "empty" in result.failed["empty"]
    assert (result.meta["encoder"], result.meta["weights"], result.meta["image_size"]) == ("xception", "none", SIZE)

    # the features match a direct call of the encoder (same batch of 4, same order: sorted keys)
    zeros = np.zeros((SIZE, SIZE, 3), np.float32)  # what a failed image is in its batch
    batch = np.stack([load_image(red, SIZE), load_image(red_again, SIZE), load_image(blue, SIZE), zeros])
    direct = encoder.predict_on_batch(batch)
    np.testing.assert_array_equal(result["a/red.png"], direct[0])
    np.testing.assert_array_equal(result["b/blue.png"], direct[2])

    loaded = read_cache(cache)
    assert loaded.failed == result.failed and loaded.pictures["noise"]["size"] == noise.stat().st_size
    keys = ["noise", "a/red.png", "b/blue.png"]
    np.testing.assert_array_equal(loaded.stack(keys), result.stack(keys))
    with pytest.raises(WorkFolderError, match="No features for 1 image.*text"):
        loaded.stack(["a/red.png", "text"])
    assert loaded.stack([]).shape == (0, FEATURE_DIM)

    # a second call reads everything from the cache (the bad images are only re-checked, not encoded)
    again = extract(images, cache, NoEncoder())
    np.testing.assert_array_equal(again.stack(keys), loaded.stack(keys))


def test_a_picture_replaced_under_the_same_name_is_encoded_again(tmp_path):
    paths = make_images(tmp_path, 3)
    cache = tmp_path / "cache"
    first = extract(paths, cache, MeanColour())
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))  # touched only
    extract(paths, cache, NoEncoder())  # same bytes: the SHA-1 says nothing changed
    save(paths[1], np.zeros((24, 32, 3), np.uint8))  # a new picture under an old name
    encoder = MeanColour()
    second = extract(paths, cache, encoder)
    assert encoder.calls == 1
    np.testing.assert_array_equal(second["img0.png"], first["img0.png"])
    assert not np.array_equal(second["img1.png"], first["img1.png"])
    np.testing.assert_allclose(second["img1.png"][:3], -1.0)  # black, preprocessed


def test_parts_are_appended_never_rewritten(tmp_path):
    paths = make_images(tmp_path, 6)
    cache = tmp_path / "cache"
    extract(paths[:2], cache, MeanColour(), batch_size=2)
    first_part = (cache / "part-0000.npy").read_bytes()
    extract(paths, cache, MeanColour(), batch_size=2, checkpoint_seconds=0)
    assert (cache / "part-0000.npy").read_bytes() == first_part
    index = json.loads((cache / "index.json").read_text())
    assert index["parts"] == ["part-0000.npy", "part-0001.npy", "part-0002.npy"]  # one a checkpoint
    assert sorted(index["images"]) == [p.name for p in paths]
    part = np.load(cache / "part-0001.npy", allow_pickle=False)  # plain arrays: no pickle anywhere
    assert part.shape == (2, FEATURE_DIM) and part.dtype == np.float32


def test_resume_after_interruption_equals_clean_run(tmp_path, encoder):
    paths = make_images(tmp_path, 5)
    clean = extract(paths, tmp_path / "clean", encoder, batch_size=2)
    on_disk = {}

    def look_at_disk(call):
        if call == 2:  # before the second batch: the first one is already checkpointed
            on_disk.update(dict.fromkeys(read_cache(tmp_path / "resumed")))

    interrupted = MeanColour(encoder, fail_on_call=3, on_call=look_at_disk)
    with pytest.raises(KeyboardInterrupt):
        extract(paths, tmp_path / "resumed", interrupted, batch_size=2, checkpoint_seconds=0)
    assert set(on_disk) == {"img0.png", "img1.png"}
    assert set(read_cache(tmp_path / "resumed")) == {f"img{i}.png" for i in range(4)}

    resumed_encoder = MeanColour(encoder)
    resumed = extract(paths, tmp_path / "resumed", resumed_encoder, batch_size=2)
    assert resumed_encoder.calls == 1  # only the last batch (img4) was left
    keys = [p.name for p in paths]
    np.testing.assert_array_equal(resumed.stack(keys), clean.stack(keys))
    np.testing.assert_array_equal(read_cache(tmp_path / "resumed").stack(keys), clean.stack(keys))


def test_new_images_are_added_and_others_kept(tmp_path):
    paths = make_images(tmp_path, 4)
    cache = tmp_path / "features"
    first = extract(paths[:2], cache, MeanColour())
    counting = MeanColour()
    second = extract(paths[1:], cache, counting, batch_size=2)
    assert set(second) == {"img1.png", "img2.png", "img3.png"}  # what was asked for
    assert counting.calls == 2  # batches [img1, img2] (img2 is new) and [img3]
    np.testing.assert_array_equal(second["img1.png"], first["img1.png"])
    assert set(read_cache(cache)) == {f"img{i}.png" for i in range(4)}  # img0 kept


def test_fixed_image_is_retried(tmp_path):
    path = tmp_path / "later.jpg"
    path.write_bytes(b"")
    cache = tmp_path / "features"
    assert extract([path], cache, MeanColour()).failed
    save(path, NOISE)
    result = extract([path], cache, MeanColour())
    assert set(result) == {"later.jpg"} and not result.failed and not read_cache(cache).failed


def test_a_cache_of_another_setting_is_refused_and_named(tmp_path):
    paths = make_images(tmp_path, 1)
    extract(paths, tmp_path / "features", MeanColour())
    with pytest.raises(WorkFolderError, match="holds features of another encoder setting") as caught:
        extract_features(paths, tmp_path / "features", weights="imagenet", image_size=SIZE, model=NoEncoder())
    assert "features" in str(caught.value) and "xception_imagenet_71" in str(caught.value)


@pytest.mark.parametrize("damage", ["index is junk", "half a part", "index names a missing part"])
def test_damaged_cache_is_moved_aside_and_rebuilt(tmp_path, damage, capsys):
    paths = make_images(tmp_path, 2)
    cache = tmp_path / "features"
    extract(paths[:1], cache, MeanColour())
    if damage == "index is junk":
        (cache / "index.json").write_text("{not json")
    elif damage == "half a part":
        part = cache / "part-0000.npy"
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    else:
        (cache / "part-0000.npy").unlink()
    with pytest.raises(DamagedCacheError, match="Delete that folder"):
        read_cache(cache)
    result = extract(paths, cache, MeanColour())
    assert set(result) == {"img0.png", "img1.png"} and "moved it aside to features.damaged" in capsys.readouterr().out
    assert (tmp_path / "features.damaged").is_dir() and set(read_cache(cache)) == {"img0.png", "img1.png"}


def test_missing_cache_says_which_stage_to_run(tmp_path):
    with pytest.raises(WorkFolderError, match="python -m helpers features"):
        read_cache(tmp_path / "nothing")


def test_same_file_name_in_two_folders_is_an_error_unless_keyed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = save(tmp_path / "a" / "x.png", NOISE), save(tmp_path / "b" / "x.png", NOISE)
    with pytest.raises(SettingError, match="x.png") as caught:
        extract([first, second], tmp_path / "f", NoEncoder())
    assert str(tmp_path / "a") in str(caught.value) and str(tmp_path / "b") in str(caught.value)
    assert list(extract([first, first], tmp_path / "f", MeanColour())) == ["x.png"]  # the same file twice is fine
    keyed = extract({"a/x.png": first, "b/x.png": second}, tmp_path / "g", MeanColour())
    assert sorted(keyed) == ["a/x.png", "b/x.png"]


def test_encoder_of_another_size_is_refused(tmp_path, encoder):
    with pytest.raises(SettingError, match="build_encoder"):
        extract_features(make_images(tmp_path, 1), tmp_path / "f", image_size=SIZE + 8, progress=False, model=encoder)


def test_grids_are_half_precision_and_stream_a_few_rows_at_a_time(tmp_path):
    grids = build_encoder("xception", "none", image_size=SIZE, pooling="none")
    paths = make_images(tmp_path, 3)
    result = extract(paths, tmp_path / "grid", grids, pooling="none")
    assert result.row_shape == (3, 3, FEATURE_DIM) and result.meta["dtype"] == "float16"
    assert result["img2.png"].dtype == np.float16
    stacked = read_cache(tmp_path / "grid").stack(["img2.png", "img0.png"], dtype=None)
    assert stacked.dtype == np.float16 and stacked.shape == (2, 3, 3, FEATURE_DIM)
    pixels = np.stack([load_image(p, SIZE) for p in paths])
    np.testing.assert_allclose(stacked[1], grids.predict_on_batch(pixels)[0].astype(np.float16), rtol=1e-3)


def test_feature_set_stack_keeps_order_and_from_arrays():
    features = FeatureSet.from_arrays({"a": np.zeros(4, np.float32), "b": np.ones(4, np.float32)})
    np.testing.assert_array_equal(features.stack(["b", "a", "b"])[:, 0], [1, 0, 1])
    assert dict(features.subset(["b"]).items()).keys() == {"b"}


def test_progress_bar_honours_tqdm_disable(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(3, enabled=True, desc="x").disable
    monkeypatch.delenv("TQDM_DISABLE")
    assert progress_bar(3, enabled=False, desc="x").disable
    assert not progress_bar(3, enabled=True, desc="x").disable


def test_one_pass_gives_vectors_and_grids_and_the_store_shares_them(tmp_path, monkeypatch):
    """The course encodes with the grid model: a vector is its grid's mean. With a store (COURSE_FEATURE_STORE),
    that one pass files both poolings by picture SHA-1, so other work folders (and the grid cache) skip the
    encoder."""
    images = {f"sub/{p.name}": p for p in make_images(tmp_path, 3)}
    store = tmp_path / "store"
    vectors = extract_features(images, tmp_path / "a" / "vectors", image_size=SIZE, progress=False, store=store)
    assert sorted(p.name for p in store.iterdir()) == ["xception_none_71", "xception_none_71_grid"]
    grid = build_encoder("xception", "none", image_size=SIZE, pooling="none")
    pixels = np.stack([load_image(images[k], SIZE) for k in sorted(images)])
    expected = np.asarray(grid.predict_on_batch(pixels), dtype="float32")
    np.testing.assert_allclose(vectors.stack(sorted(images)), expected.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr("helpers.machinery.extraction.shared_encoder", lambda *a: NoEncoder())
    again = extract_features(images, tmp_path / "b" / "vectors", image_size=SIZE, progress=False, store=store)
    np.testing.assert_array_equal(again.stack(sorted(images)), vectors.stack(sorted(images)))
    grids = extract_features(images, tmp_path / "b" / "grids", image_size=SIZE, pooling="none", progress=False,
                             store=store)
    assert grids.meta["dtype"] == "float16" and grids.row_shape == expected.shape[1:]
    np.testing.assert_array_equal(grids.stack(sorted(images), dtype=None), expected.astype("float16"))
    assert read_cache(tmp_path / "b" / "grids").pictures.keys() == images.keys()
