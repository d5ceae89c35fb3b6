"""Tests of helpers.features: reading awkward images, the encoder, and the resumable feature cache."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.features import (
    FEATURE_DIM,
    WEIGHTS_URL,
    CorruptCacheError,
    FeatureSet,
    ImageError,
    StaleCacheError,
    UntrainedEncoderWarning,
    WeightsUnavailableError,
    _progress_bar,
    build_encoder,
    extract_features,
    feature_cache_name,
    load_features,
    load_image,
)

SIZE = 71  # Xception's smallest input: fast, and the size does not matter to these tests
RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # a 40-wide, 20-high RGB picture


@pytest.fixture(scope="module")
def untrained():
    """One random-weights encoder for the whole module, and the warnings its build gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = build_encoder("none", image_size=SIZE)
    return encoder, caught


@pytest.fixture
def encoder(untrained):
    return untrained[0]


class Spy:
    """Wraps an encoder: counts its calls, and can fail (or look at the disk) on a given call."""

    def __init__(self, inner, fail_on_call: int | None = None, on_call=None):
        self.inner, self.fail_on_call, self.on_call, self.calls = inner, fail_on_call, on_call, 0
        self.input_shape = inner.input_shape

    def predict_on_batch(self, pixels):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a run
        return self.inner.predict_on_batch(pixels)


class MeanColour:
    """A stand-in encoder for plumbing tests: each image's mean colour, repeated to 2048 numbers."""

    input_shape = (None, SIZE, SIZE, 3)

    def __init__(self):
        self.calls = 0

    def predict_on_batch(self, pixels):
        self.calls += 1
        means = np.asarray(pixels).mean(axis=(1, 2))
        return np.tile(means, FEATURE_DIM // 3 + 1)[:, :FEATURE_DIM]


class NoEncoder:
    """An encoder that must not be called."""

    input_shape = (None, SIZE, SIZE, 3)

    def predict_on_batch(self, pixels):
        raise AssertionError("the encoder was called, but everything should come from the cache")


def save(path: Path, pixels: np.ndarray, **kwargs) -> Path:
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def solid(colour, size=(20, 20)) -> np.ndarray:
    return np.full((*size, 3), colour, dtype=np.uint8)


def palette_with_transparency() -> Image.Image:
    """A palette image, left half red (index 0), right half index 1, which is made transparent."""
    image = Image.new("P", (10, 10), 0)
    image.putpalette([255, 0, 0, 0, 0, 0])
    image.paste(1, (5, 0, 10, 10))
    return image


def make_images(folder: Path, count: int) -> list[Path]:
    """`count` different PNG pictures (lossless, so identical pixels stay identical)."""
    rng = np.random.default_rng(count)
    return [save(folder / f"img{i}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Names and settings
# ---------------------------------------------------------------------------------------------

def test_feature_cache_name_differs_per_setting():
    assert feature_cache_name("none", 299) == "xception_none_299.npz"
    assert feature_cache_name("imagenet", 299) == "xception_imagenet_299.npz"
    assert feature_cache_name("/data/my weights.h5", 299) == "xception_my_weights.h5_299.npz"
    names = {feature_cache_name(w, s) for w in ("none", "imagenet", "x.h5") for s in (71, 299)}
    assert len(names) == 6


def test_weights_url_is_the_one_keras_uses():
    from keras.src.applications import xception

    assert xception.WEIGHTS_PATH_NO_TOP == WEIGHTS_URL


def test_importing_features_does_not_import_tensorflow():
    code = "import sys, helpers.features; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------------------------

def test_load_image_rgb_jpeg(tmp_path):
    image = load_image(save(tmp_path / "a.jpg", NOISE), SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
    assert -1.0 <= image.min() < -0.5 and 0.5 < image.max() <= 1.0  # preprocessed to [-1, 1]
    assert load_image(tmp_path / "a.jpg").shape == (299, 299, 3)


def test_upper_case_extension_reads_like_lower_case(tmp_path):
    save(tmp_path / "a.jpg", NOISE)
    (tmp_path / "B.JPG").write_bytes((tmp_path / "a.jpg").read_bytes())
    np.testing.assert_array_equal(load_image(tmp_path / "B.JPG", SIZE), load_image(tmp_path / "a.jpg", SIZE))


@pytest.mark.parametrize(
    "name, write, expected_rgb",
    [
        ("gray.png", lambda p: save(p, np.full((10, 10), 128, np.uint8)), (128, 128, 128)),
        ("bw.png", lambda p: Image.new("1", (10, 10), 1).save(p), (255, 255, 255)),
        ("one_pixel.png", lambda p: save(p, solid((255, 0, 0), (1, 1))), (255, 0, 0)),
        # transparent pixels are composited on white
        ("clear.png", lambda p: Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(p), (255, 255, 255)),
        ("half.png", lambda p: Image.new("RGBA", (10, 10), (0, 0, 0, 128)).save(p), (127, 127, 127)),
        ("gray_alpha.png", lambda p: Image.new("LA", (10, 10), (0, 0)).save(p), (255, 255, 255)),
        ("palette.png", lambda p: palette_with_transparency().save(p, transparency=1), (255, 128, 128)),
        ("palette_opaque.gif", lambda p: Image.new("RGB", (10, 10), (0, 0, 255)).convert("P").save(p),
         (0, 0, 255)),
        ("cmyk.jpg", lambda p: Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(p, quality=100), (255, 0, 0)),
        # 16-bit: scaled to 8 bits (128 * 257 -> 128), not clipped to white
        ("deep.png", lambda p: Image.fromarray(np.full((10, 10), 128 * 257, np.uint16)).save(p), (128, 128, 128)),
        ("float.tiff", lambda p: Image.fromarray(np.full((10, 10), 0.5, np.float32)).save(p), (128, 128, 128)),
    ],
)
def test_load_image_any_mode_gives_rgb(tmp_path, name, write, expected_rgb):
    write(tmp_path / name)
    image = load_image(tmp_path / name, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
    assert -1.0 <= image.min() and image.max() <= 1.0
    expected = np.array(expected_rgb, np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), expected, atol=4 / 127.5)


def test_sixteen_bit_png_is_mode_i16(tmp_path):
    """The test above really covers Pillow's I;16 mode."""
    Image.fromarray(np.full((10, 10), 1000, np.uint16)).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")


def test_exif_orientation_is_applied(tmp_path):
    """Stored 40 wide x 20 high, left half dark; orientation 6 (rotate 90 clockwise) puts the dark half on top."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "rotated.jpg", pixels, exif=exif.tobytes())
    save(tmp_path / "plain.jpg", pixels)

    plain = load_image(tmp_path / "plain.jpg", SIZE).mean(axis=2)
    assert plain[:, : SIZE // 3].mean() < -0.9 and plain[:, -SIZE // 3:].mean() > 0.9  # dark left, bright right
    rotated = load_image(tmp_path / "rotated.jpg", SIZE).mean(axis=2)
    assert rotated[: SIZE // 3].mean() < -0.9 and rotated[-SIZE // 3:].mean() > 0.9  # dark top, bright bottom
    assert abs(rotated[:, : SIZE // 3].mean() - rotated[:, -SIZE // 3:].mean()) < 0.1


def truncated_jpeg(path: Path) -> Path:
    data = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (100, 150, 3), dtype=np.uint8)).save(data, "JPEG")
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    "name, write, reason",
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty"),
        ("text.jpg", lambda p: p.write_text("not a picture\n"), "not an image"),
        ("cut.jpg", truncated_jpeg, "truncated"),
        ("missing.jpg", lambda p: None, "no such file"),
    ],
)
def test_unreadable_image_raises_image_error(tmp_path, name, write, reason):
    write(tmp_path / name)
    with pytest.raises(ImageError, match=reason) as caught:
        load_image(tmp_path / name, SIZE)
    assert name in str(caught.value) and isinstance(caught.value, ValueError)


def test_decompression_bomb_raises_image_error(tmp_path, monkeypatch):
    save(tmp_path / "bomb.png", NOISE)  # 800 pixels: a bomb when the limit is 100 (error above 2x)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="bomb") as caught:
        load_image(tmp_path / "bomb.png", SIZE)
    assert "bomb.png" in str(caught.value)


def test_truncated_images_stay_errors():
    assert not __import__("PIL.ImageFile").ImageFile.LOAD_TRUNCATED_IMAGES


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

def test_untrained_encoder_warns_and_outputs_2048(untrained):
    encoder, caught = untrained
    assert encoder.output_shape == (None, FEATURE_DIM)
    assert any(issubclass(w.category, UntrainedEncoderWarning) and "UNTRAINED" in str(w.message) for w in caught)


def test_imagenet_weights_offline_says_how_to_get_them(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception(f"URL fetch failure on {WEIGHTS_URL}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(WeightsUnavailableError) as caught:
        build_encoder("imagenet", image_size=SIZE)
    message = str(caught.value)
    assert WEIGHTS_URL in message and "--weights PATH" in message and "--weights none" in message
    assert ".keras" in message and "models" in message


def test_weights_from_a_local_file(tmp_path, encoder):
    with warnings.catch_warnings():  # Keras 3.15's own saving code trips a NumPy 2 DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        encoder.save_weights(tmp_path / "mine.weights.h5")
    loaded = build_encoder(tmp_path / "mine.weights.h5", image_size=SIZE)
    paths = make_images(tmp_path, 2)
    result = extract_features(paths, tmp_path / feature_cache_name("mine.weights.h5", SIZE),
                              weights=str(tmp_path / "mine.weights.h5"), image_size=SIZE, progress=False,
                              encoder=loaded)
    assert result.meta["weights"] == "mine.weights.h5"
    pixels = np.stack([load_image(p, SIZE) for p in paths])
    np.testing.assert_array_equal(result.matrix(["img0.png", "img1.png"]), encoder.predict_on_batch(pixels))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        build_encoder(tmp_path / "nowhere.h5")


# ---------------------------------------------------------------------------------------------
# extract_features and its cache
# ---------------------------------------------------------------------------------------------

def test_extract_features_end_to_end(tmp_path, encoder):
    red = save(tmp_path / "red.png", solid((220, 30, 30)))
    red_again = save(tmp_path / "red_again.png", solid((220, 30, 30)))
    blue = save(tmp_path / "blue.png", solid((20, 40, 230)))
    noise = save(tmp_path / "noise.JPG", NOISE)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    cache = tmp_path / "work" / feature_cache_name("none", SIZE)

    with pytest.warns(UserWarning, match=r"2 of 6 images could not be read") as caught:
        result = extract_features([red, red_again, blue, noise, empty, text], cache, weights="none",
                                  image_size=SIZE, batch_size=4, progress=False, encoder=encoder)
    assert "empty.jpg" in str(caught[-1].message)

    assert set(result.features) == {"red.png", "red_again.png", "blue.png", "noise.JPG"}
    for vector in result.features.values():
        assert vector.shape == (FEATURE_DIM,) and vector.dtype == np.float32 and np.isfinite(vector).all()
    np.testing.assert_array_equal(result.features["red.png"], result.features["red_again.png"])
    assert not np.array_equal(result.features["red.png"], result.features["blue.png"])
    assert not np.array_equal(result.features["blue.png"], result.features["noise.JPG"])
    assert set(result.failed) == {"empty.jpg", "text.jpg"}
    assert "empty" in result.failed["empty.jpg"] and "not an image" in result.failed["text.jpg"]
    assert result.meta == {"encoder": "xception", "weights": "none", "image_size": SIZE, "feature_dim": FEATURE_DIM}

    # the features match a direct call of the encoder (same batch of 4, same order: sorted names)
    zeros = np.zeros((SIZE, SIZE, 3), np.float32)  # what a failed image (empty.jpg) is in its batch
    batch = np.stack([load_image(blue, SIZE), zeros, load_image(noise, SIZE), load_image(red, SIZE)])
    direct = encoder.predict_on_batch(batch)
    np.testing.assert_array_equal(result.features["blue.png"], direct[0])
    np.testing.assert_array_equal(result.features["red.png"], direct[3])

    # the cache round-trips
    loaded = load_features(cache)
    assert loaded.meta == result.meta and loaded.failed == result.failed
    names = ["noise.JPG", "red.png", "blue.png"]
    matrix = loaded.matrix(names)
    assert matrix.shape == (3, FEATURE_DIM) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, result.matrix(names))
    with pytest.raises(KeyError, match="text.jpg"):
        loaded.matrix(["red.png", "text.jpg"])
    assert loaded.matrix([]).shape == (0, FEATURE_DIM)

    # a second call reads everything from the cache (the bad images are only re-checked, not encoded)
    with pytest.warns(UserWarning, match="2 of 6"):
        again = extract_features([red, red_again, blue, noise, empty, text], cache, image_size=SIZE,
                                 progress=False, encoder=NoEncoder())
    np.testing.assert_array_equal(again.matrix(names), matrix)


def test_resume_after_interruption_equals_clean_run(tmp_path, encoder):
    paths = make_images(tmp_path, 5)
    clean = extract_features(paths, tmp_path / "clean.npz", image_size=SIZE, batch_size=2, progress=False,
                             encoder=encoder)

    on_disk = {}

    def look_at_disk(call):
        if call == 2:  # before the second batch: the first one is already checkpointed
            on_disk.update(load_features(tmp_path / "resumed.npz").features)

    interrupted = Spy(encoder, fail_on_call=3, on_call=look_at_disk)
    with pytest.raises(KeyboardInterrupt):
        extract_features(paths, tmp_path / "resumed.npz", image_size=SIZE, batch_size=2, progress=False,
                         encoder=interrupted, checkpoint_seconds=0)
    assert set(on_disk) == {"img0.png", "img1.png"}
    assert set(load_features(tmp_path / "resumed.npz").features) == {f"img{i}.png" for i in range(4)}

    resumed_encoder = Spy(encoder)
    resumed = extract_features(paths, tmp_path / "resumed.npz", image_size=SIZE, batch_size=2, progress=False,
                               encoder=resumed_encoder)
    assert resumed_encoder.calls == 1  # only the last batch (img4) was left
    names = [p.name for p in paths]
    assert np.array_equal(resumed.matrix(names), clean.matrix(names))
    assert np.array_equal(load_features(tmp_path / "resumed.npz").matrix(names), clean.matrix(names))


def test_new_images_are_added_and_others_kept(tmp_path):
    paths = make_images(tmp_path, 4)
    cache = tmp_path / "features.npz"
    first = extract_features(paths[:2], cache, image_size=SIZE, progress=False, encoder=MeanColour())
    assert set(first.features) == {"img0.png", "img1.png"}

    fake = MeanColour()
    second = extract_features(paths[1:], cache, image_size=SIZE, batch_size=2, progress=False, encoder=fake)
    assert set(second.features) == {"img1.png", "img2.png", "img3.png"}  # what was asked for
    assert fake.calls == 2  # batches [img1, img2] (img2 is new) and [img3]
    np.testing.assert_array_equal(second.features["img1.png"], first.features["img1.png"])
    assert set(load_features(cache).features) == {f"img{i}.png" for i in range(4)}  # img0 kept


def test_fixed_image_is_retried(tmp_path):
    path = tmp_path / "later.jpg"
    path.write_bytes(b"")
    cache = tmp_path / "features.npz"
    with pytest.warns(UserWarning, match="1 of 1"):
        assert extract_features([path], cache, image_size=SIZE, progress=False, encoder=MeanColour()).failed
    save(path, NOISE)
    result = extract_features([path], cache, image_size=SIZE, progress=False, encoder=MeanColour())
    assert set(result.features) == {"later.jpg"} and not result.failed
    assert not load_features(cache).failed


def test_stale_cache_raises_and_names_the_file(tmp_path):
    paths = make_images(tmp_path, 1)
    cache = tmp_path / "features.npz"
    extract_features(paths, cache, weights="none", image_size=SIZE, progress=False, encoder=MeanColour())
    with pytest.raises(StaleCacheError, match="weights") as caught:
        extract_features(paths, cache, weights="imagenet", image_size=SIZE, progress=False, encoder=NoEncoder())
    assert "features.npz" in str(caught.value) and "Delete it" in str(caught.value)
    with pytest.raises(StaleCacheError, match="image_size"):
        extract_features(paths, cache, weights="none", image_size=SIZE + 1, progress=False, encoder=NoEncoder())


@pytest.mark.parametrize("damage", ["zip header then junk", "half a cache", "text"])
def test_corrupt_cache_is_moved_aside(tmp_path, damage):
    paths = make_images(tmp_path, 2)
    cache = tmp_path / "features.npz"
    if damage == "half a cache":
        extract_features(paths[:1], cache, image_size=SIZE, progress=False, encoder=MeanColour())
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    else:
        cache.write_bytes(b"PK\x03\x04 junk" if damage.startswith("zip") else b"hello")
    damaged = cache.read_bytes()
    with pytest.raises(CorruptCacheError, match="features.npz"):
        load_features(cache)
    with pytest.warns(UserWarning, match="moved it aside"):
        result = extract_features(paths, cache, image_size=SIZE, progress=False, encoder=MeanColour())
    assert set(result.features) == {"img0.png", "img1.png"}
    assert (tmp_path / "features.npz.corrupt").read_bytes() == damaged
    assert set(load_features(cache).features) == {"img0.png", "img1.png"}


def test_cache_holds_no_pickle(tmp_path):
    paths = make_images(tmp_path, 2)
    (tmp_path / "bad.jpg").write_bytes(b"")
    cache = tmp_path / "features.npz"
    with pytest.warns(UserWarning):
        extract_features([*paths, tmp_path / "bad.jpg"], cache, image_size=SIZE, progress=False,
                         encoder=MeanColour())
    with np.load(cache, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["failed_names", "failed_reasons", "features", "meta", "names"]
        assert npz["features"].dtype == np.float32 and npz["names"].dtype.kind == "U"
        assert list(npz["failed_names"]) == ["bad.jpg"]


def test_missing_cache_says_which_stage_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m helpers features"):
        load_features(tmp_path / "nothing.npz")


def test_same_file_name_in_two_folders_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = save(tmp_path / "a" / "x.png", NOISE), save(tmp_path / "b" / "x.png", NOISE)
    with pytest.raises(ValueError, match="x.png") as caught:
        extract_features([first, second], tmp_path / "f.npz", image_size=SIZE, encoder=NoEncoder())
    assert str(tmp_path / "a") in str(caught.value) and str(tmp_path / "b") in str(caught.value)
    # the same file listed twice is fine
    result = extract_features([first, first], tmp_path / "f.npz", image_size=SIZE, progress=False,
                              encoder=MeanColour())
    assert list(result.features) == ["x.png"]


def test_untrained_encoder_is_seeded(tmp_path, encoder):
    """Without an encoder, extract_features builds one; weights="none" gives the same one every time."""
    paths = make_images(tmp_path, 1)
    with pytest.warns(UntrainedEncoderWarning):
        built = extract_features(paths, tmp_path / "built.npz", image_size=SIZE, progress=False)
    given = extract_features(paths, tmp_path / "given.npz", image_size=SIZE, progress=False, encoder=encoder)
    np.testing.assert_array_equal(built.matrix(["img0.png"]), given.matrix(["img0.png"]))


def test_encoder_of_another_size_is_refused(tmp_path, encoder):
    with pytest.raises(ValueError, match="build_encoder"):
        extract_features(make_images(tmp_path, 1), tmp_path / "f.npz", image_size=SIZE + 8, progress=False,
                         encoder=encoder)


def test_progress_bar_honours_tqdm_disable(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = _progress_bar(3, enabled=True)
    assert bar.disable
    bar.close()
    monkeypatch.delenv("TQDM_DISABLE")
    bar = _progress_bar(3, enabled=False)
    assert bar.disable
    bar.close()


def test_feature_set_matrix_keeps_order():
    features = FeatureSet({"a": np.zeros(FEATURE_DIM, np.float32), "b": np.ones(FEATURE_DIM, np.float32)})
    np.testing.assert_array_equal(features.matrix(["b", "a", "b"])[:, 0], [1, 0, 1])
