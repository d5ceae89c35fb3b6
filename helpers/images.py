"""Read one image file as a CNN encoder expects it: decoded, upright, RGB, resized, preprocessed (notebook 03).

Any file Pillow can open works (JPEG, PNG of any mode, 16-bit, transparent, EXIF-rotated); anything else raises
an `ImageError` that says which file and why, so one bad photo never stops a run over thousands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from helpers.encoders import DEFAULT_ENCODER, encoder_spec
from helpers.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grayscale image to 0..255."""
    pixels = np.nan_to_num(pixels.astype(np.float64))
    if mode.startswith("I;16") or (mode == "I" and pixels.max() > 255):
        pixels = pixels / 257.0  # 0..65535 -> 0..255
    elif mode == "F" and pixels.min() >= 0 and pixels.max() <= 1:
        pixels = pixels * 255.0  # 0..1 -> 0..255
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparent pixels become white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = Image.fromarray(_to_uint8(np.asarray(image), image.mode), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return image.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """Decode an image file, upright (EXIF orientation applied), as RGB; ImageError if it can't be."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageError(path, "the file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that truncated data fails here (LOAD_TRUNCATED_IMAGES stays False)
            return _to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise ImageError(path, f"refused as a possible decompression bomb ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise ImageError(path, f"not an image format Pillow can read (is it really a {path.suffix} file?)") from error
    except (OSError, SyntaxError, EOFError) as error:  # how Pillow reports damaged data
        raise ImageError(path, f"truncated or damaged image data ({error or type(error).__name__})") from error
    except Exception as error:  # anything else Pillow cannot make sense of (an unusual mode, a broken plugin)
        raise ImageError(path, f"cannot decode it ({type(error).__name__}: {error})") from error


def load_image(path: str | Path, image_size: int | None = None, encoder: str = DEFAULT_ENCODER) -> np.ndarray:
    """Read an image as `encoder` expects it: RGB, image_size x image_size (its own size by default), preprocessed.

    For Xception that is 299 x 299, float32 in [-1, 1] (`x / 127.5 - 1`, what keras' `preprocess_input` does).
    """
    spec = encoder_spec(encoder)
    size = image_size or spec.image_size
    rgb = read_rgb(path).resize((size, size), Image.Resampling.BILINEAR)
    return spec.preprocess(np.asarray(rgb, dtype=np.float32))


def find_image_files(arguments: list[str | Path]) -> tuple[list[Path], list[str]]:
    """The image files named or inside the folders named, and a problem line for each argument that gave none."""
    files, problems = [], []
    for argument in arguments:
        path = Path(argument).expanduser()
        if "://" in str(argument):
            problems.append(f"{argument}: a web address; download the picture first, then caption the file")
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files += found
            if not found:
                problems.append(f"{argument}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{argument}: no such file or folder")
    return files, problems
