"""Feature extraction speed: the course's batched pipeline from image files vs one `model.predict` per image, for
Xception (the course's encoder on Flickr8k) and MobileNetV2 (the offline one, whose weights ship with the course).

Xception runs with weights="none" (same architecture and FLOPs as the ImageNet one, no download), MobileNetV2 with
its shipped ImageNet weights, both on the same JPEG files (Flickr-sized, 500x375, written by `write_images`),
including decoding and resizing.

- Course: `extract_features` (tf.data decoding in parallel, batches of 32, `predict_on_batch`, npz cache).
- Tutorials: for each file, `load_image` then `model.predict(x[None])`.

Also the achieved GFLOP/s (each network's multiply-adds, counted from its layers by `multiply_adds`: 8.4 G for
Xception at 299 px, 0.30 G for MobileNetV2 at 224) against this machine's float32 matmul peak, measured in the same
run with `matmul_peak`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

ENCODERS = {"xception": "none", "mobilenet_v2": "imagenet"}  # encoder -> the weights measured (no download)


def multiply_adds(model) -> int:
    """Multiply-adds of one image through `model`: every convolution and dense layer, at its output's size."""
    import keras

    total = 0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.SeparableConv2D
                          | keras.layers.Dense):
            continue
        shape = layer.output.shape
        positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        if isinstance(layer, keras.layers.SeparableConv2D):
            height, width, channels, multiplier = layer.depthwise_kernel.shape
            total += positions * channels * multiplier * (height * width + shape[-1])
        else:  # a depthwise kernel is (h, w, channels, multiplier): one multiply-add per number, as a dense one
            total += positions * int(np.prod(layer.kernel.shape))
    return total


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


def measure(course_images: int = 64, baseline_images: int = 16, batch_size: int = 32, peak_n: int = 4096,
            encoders: tuple[str, ...] = tuple(ENCODERS)) -> dict:
    """Per encoder: images/s of both ways (after a warm-up each), their GFLOP/s, share of the matmul peak."""
    peak = matmul_peak(peak_n)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        paths = write_images(Path(tmp) / "images", max(course_images, baseline_images) + batch_size)
        results = {name: measure_encoder(name, paths, Path(tmp) / name, course_images, baseline_images, batch_size)
                   for name in encoders}
    for result in results.values():
        for side in (result["course"], result["baseline"]):
            side["gflops"] = side["images_per_s"] * 2 * result["gmacs"]  # a multiply-add is two operations
            side["share_of_peak"] = side["gflops"] / peak["gflops"]
    return {"matmul_peak": peak, "encoders": results}


def measure_encoder(name: str, paths: list[Path], folder: Path, course_images: int, baseline_images: int,
                    batch_size: int) -> dict:
    """One encoder, both ways, on the same files: the course's batched cache and `predict` per image."""
    from helpers.encoders import build_encoder
    from helpers.images import load_image
    from helpers.machinery.extraction import extract_features

    weights = ENCODERS[name]
    encoder = build_encoder(name, weights)
    warm, course_paths = paths[:batch_size], paths[batch_size:batch_size + course_images]
    baseline_paths = paths[batch_size:batch_size + baseline_images]
    options = dict(encoder=name, weights=weights, batch_size=batch_size, progress=False, model=encoder)
    extract_features(warm, folder / "warm", **options)
    start = time.perf_counter()
    extract_features(course_paths, folder / "course", **options)
    course_s = time.perf_counter() - start
    encoder.predict(load_image(warm[0], encoder=name)[None], verbose=0)  # warm-up
    start = time.perf_counter()
    for path in baseline_paths:
        encoder.predict(load_image(path, encoder=name)[None], verbose=0)
    baseline_s = time.perf_counter() - start
    course = {"images_per_s": course_images / course_s, "images": course_images, "seconds": course_s,
              "batch_size": batch_size}
    baseline = {"images_per_s": baseline_images / baseline_s, "images": baseline_images, "seconds": baseline_s}
    return {"course": course, "baseline": baseline, "weights": weights, "gmacs": multiply_adds(encoder) / 1e9,
            "image_size": encoder.input_shape[1], "speedup": course["images_per_s"] / baseline["images_per_s"],
            "flickr8k_minutes": 8000 / course["images_per_s"] / 60}  # the 8,000 photos of the splits
