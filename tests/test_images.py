"""Reading awkward image files: every mode Pillow knows becomes RGB, and every unreadable file an ImageError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.errors import CourseError, ImageError
from helpers.images import find_image_files, load_image

SIZE = 71  # Xception's smallest input: fast, and the size does not matter to these tests
RNG = np.random.default_rng(0)
NOISE = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # a 40-wide, 20-high RGB picture


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
    assert image.min() >= -1.0 and image.max() <= 1.0
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
    assert name in str(caught.value) and isinstance(caught.value, CourseError)


def test_decompression_bomb_raises_image_error(tmp_path, monkeypatch):
    save(tmp_path / "bomb.png", NOISE)  # 800 pixels: a bomb when the limit is 100 (error above 2x)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="bomb") as caught:
        load_image(tmp_path / "bomb.png", SIZE)
    assert "bomb.png" in str(caught.value)


def test_truncated_images_stay_errors():
    assert not __import__("PIL.ImageFile").ImageFile.LOAD_TRUNCATED_IMAGES


def test_find_image_files_in_folders_and_names_what_gave_none(tmp_path):
    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    for name in ("b.jpg", "inner/a.PNG"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("not a picture")
    (tmp_path / "empty").mkdir()
    files, problems = find_image_files([folder, str(tmp_path / "empty"), "https://example.org/x.jpg",
                                        tmp_path / "missing.jpg"])
    assert files == [folder / "b.jpg", folder / "inner" / "a.PNG"]  # a Path or a str, sorted, folders searched
    assert [p.split(": ", 1)[1] for p in problems] == [
        "a folder with no image files (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)",
        "a web address; download the picture first, then caption the file", "no such file or folder"]
