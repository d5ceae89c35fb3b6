"""Feature extraction speed: the course's batched pipeline from image files vs one `model.predict` per image.

Both use the same Xception (weights="none": same architecture and FLOPs as the ImageNet one, no download)
on the same JPEG files (Flickr-sized, 500x375, written by `write_images`), including decoding and resizing.

- Course: `extract_features` (tf.data decoding in parallel, batches of 32, `predict_on_batch`, npz cache).
- Tutorials: for each file, `load_image` then `model.predict(x[None])`.

Also the achieved GFLOP/s (Xception: about 8.4 GMACs = 16.8 GFLOP per 299x299 image) against this
machine's float32 matmul peak, measured in the same run with `matmul_peak`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

XCEPTION_GFLOP = 2 * 8.4  # multiply-adds counted as two operations


def write_images(folder: Path, count: int, size: tuple[int, int] = (500, 375), seed: int = 0) -> list[Path]:
    """`count` JPEGs of smooth random colour (so they compress like photos), Flickr8k's typical size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        paths.append(folder / f"{i:05d}_bench.jpg")
        image.save(paths[-1], quality=90)
    return paths


def matmul_peak(n: int = 4096, reps: int = 3) -> dict:
    """Float32 GFLOP/s of an n x n `tf.matmul` (best of `reps`, after one warm-up)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    tf.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9, "n": n, "reps": reps, "best_s": best}


def measure(course_images: int = 64, baseline_images: int = 16, batch_size: int = 32, peak_n: int = 4096) -> dict:
    """Images/s of both ways (after a warm-up each), their GFLOP/s and the matmul peak."""
    from helpers.encoders import build_encoder
    from helpers.extraction import extract_features
    from helpers.images import load_image

    peak = matmul_peak(peak_n)
    encoder = build_encoder("xception", "none")
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        tmp = Path(tmp)
        paths = write_images(tmp / "images", max(course_images, baseline_images) + batch_size)
        warm, course_paths = paths[:batch_size], paths[batch_size:batch_size + course_images]
        baseline_paths = paths[batch_size:batch_size + baseline_images]
        extract_features(warm, tmp / "warm", weights="none", batch_size=batch_size, progress=False, model=encoder)
        start = time.perf_counter()
        extract_features(course_paths, tmp / "course", weights="none", batch_size=batch_size, progress=False,
                         model=encoder)
        course_s = time.perf_counter() - start
        encoder.predict(load_image(warm[0])[None], verbose=0)  # warm-up
        start = time.perf_counter()
        for path in baseline_paths:
            encoder.predict(load_image(path)[None], verbose=0)
        baseline_s = time.perf_counter() - start
    course = {"images_per_s": course_images / course_s, "images": course_images, "seconds": course_s,
              "batch_size": batch_size}
    baseline = {"images_per_s": baseline_images / baseline_s, "images": baseline_images, "seconds": baseline_s}
    for side in (course, baseline):
        side["gflops"] = side["images_per_s"] * XCEPTION_GFLOP
        side["share_of_peak"] = side["gflops"] / peak["gflops"]
    return {"course": course, "baseline": baseline, "matmul_peak": peak,
            "speedup": course["images_per_s"] / baseline["images_per_s"],
            "flickr8k_minutes": 8000 / course["images_per_s"] / 60}  # the 8,000 photos of the splits
