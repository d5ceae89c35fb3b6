"""The benchmarks (bench/): synthetic data, the report, and each measurement in a tiny configuration.

No timing assertions: the figures depend on the machine. Only that every function runs and returns
positive numbers under the expected keys.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench import fixture_run, report
from bench.synthetic import caption_lengths, describe, flickr8k_like


def test_synthetic_split_is_flickr8k_like():
    captions, features = flickr8k_like(6000)
    stats = describe(captions)
    assert stats["images"] == 6000 and stats["captions"] == 30000
    assert (stats["median_length"], stats["p95_length"], stats["max_length"]) == (10, 18, 36)  # Flickr8k train's
    assert stats["word_types"][1] == 7325  # Flickr8k's train words after cleaning: 7,329 tokens with the reserved
    assert abs(stats["word_types"][5] - 2525) < 100  # a long tail, as in the real captions
    vector = next(iter(features.values()))
    assert vector.shape == (2048,) and vector.dtype == np.float32


def test_synthetic_data_is_deterministic():
    assert flickr8k_like(20)[0] == flickr8k_like(20)[0]
    assert caption_lengths(1000).min() >= 1


FAKE = {
    "features": {"matmul_peak": {"gflops": 250.0}, "encoders": {"xception": {
        "course": {"images_per_s": 6.0, "gflops": 100.0, "share_of_peak": 0.4},
        "baseline": {"images_per_s": 3.0, "gflops": 50.0, "share_of_peak": 0.2},
        "weights": "none", "image_size": 299, "gmacs": 8.4, "speedup": 2.0, "flickr8k_minutes": 22.0}}},
    "training": {"captions": 30000, "speedup": 10.0,
                 "course": {"tokens_per_s": 4000.0, "epoch_s": 90.0, "epoch_measured": True, "vocab_size": 7500},
                 "baseline": {"tokens_per_s": 400.0, "epoch_s": 900.0},
                 "levers": {"min_count5": {"tokens_per_s": 6000.0, "epoch_s": 60.0, "vocab_size": 2700,
                                           "batch_size": 64}}},
    "decoding": {"steps": 39, "speedup_greedy": 300.0,
                 "greedy": {"captions_per_s": 300.0}, "beam": {"captions_per_s": 80.0, "beam_width": 3},
                 "predict_loop": {"captions_per_s": 1.0}, "predict_on_batch_loop": {"captions_per_s": 10.0}},
    "memory": {"images": 6000, "course_peak_mb": 1000.0, "materialised_mb": 9000.0, "generator_peak_mb": 900.0,
               "floor_peak_mb": 700.0},
    "fixture": {"helpers_run": {"seconds": 40.0, "returncode": 0}, "nbval": {"skipped": "only 2 notebooks"}},
}


def test_report_rows_table_json_and_markdown(tmp_path):
    rows = report.rows(FAKE)
    assert {row["stage"] for row in rows} == {"features", "training", "decoding", "memory", "fixture"}
    assert all(set(row) == set(report.COLUMNS) for row in rows)
    greedy = next(row for row in rows if row["measure"].startswith("batched greedy ("))
    assert greedy["ratio"] == pytest.approx(300.0) and greedy["met"] is True
    paths = report.write(FAKE, tmp_path, {"cpu": "Test CPU", "cores": 2, "tensorflow": "2.x", "date": "today"})
    saved = json.loads(paths["json"].read_text())
    assert set(saved) == {"machine", "rows", "results"} and saved["machine"]["cpu"] == "Test CPU"
    markdown = paths["markdown"].read_text()
    assert "Test CPU, 2 cores" in markdown and "| stage | measure |" in markdown
    assert "skipped" in report.text_table(rows)


def test_report_leaves_out_missing_stages():
    assert [row["stage"] for row in report.rows({"decoding": FAKE["decoding"]})] == ["decoding"] * 3


def test_training_measurements_tiny():
    from bench.training import baseline_speed, course_speed

    captions, features = flickr8k_like(40)
    course = course_speed(captions, features, steps=2, warmup_steps=1, batch_size=16)
    baseline = baseline_speed(captions, features, images=2, warmup_images=1)
    for result in (course, baseline):
        assert result["tokens_per_s"] > 0 and result["epoch_s"] > 0 and result["timed_tokens"] > 0
    assert course["epoch_tokens"] == baseline["epoch_tokens"]


def test_flops_per_token_are_written_out():
    """The training step's FLOPs per token at the full Flickr8k vocabulary, as bench/README.md counts them."""
    from bench.training import flops_per_token

    flops = flops_per_token(7329, tokens_per_caption=11.67)
    assert flops["forward_macs"] == pytest.approx({"lstm": 524_288, "decoder_dense": 65_536, "output": 1_876_224,
                                                   "image_dense": 524_288 / 11.67})
    assert flops["training_flops"] == pytest.approx(3 * 2 * (524_288 + 65_536 + 1_876_224 + 524_288 / 11.67))
    readme = (Path(__file__).resolve().parent.parent / "bench" / "README.md").read_text(encoding="utf-8")
    assert f"{flops['training_flops'] / 1e6:.1f} MFLOP" in readme


def test_feature_measurement_tiny():
    from bench import features

    result = features.measure(course_images=2, baseline_images=1, batch_size=2, peak_n=256)
    assert result["matmul_peak"]["gflops"] > 0 and set(result["encoders"]) == {"xception", "mobilenet_v2"}
    for encoder in result["encoders"].values():
        assert encoder["course"]["images_per_s"] > 0 and encoder["baseline"]["images_per_s"] > 0
        assert encoder["course"]["share_of_peak"] > 0
    # the multiply-adds counted from the layers: Xception's 8.4 G, and MobileNetV2's 300 M (Sandler et al., Table 4)
    gmacs = {name: encoder["gmacs"] for name, encoder in result["encoders"].items()}
    assert 8.3 < gmacs["xception"] < 8.4 and 0.29 < gmacs["mobilenet_v2"] < 0.31, gmacs


def test_decoding_measurement_tiny():
    from bench import decoding

    result = decoding.measure(images=4, loop_images=1, batch_size=4, beam_width=2)
    for name in ("greedy", "beam", "predict_loop", "predict_on_batch_loop"):
        assert result[name]["captions_per_s"] > 0
    assert result["greedy"]["mean_words"] == result["steps"]  # <end> ruled out: the worst case
    assert result["speedup_greedy"] > 0


def test_memory_worker_and_size_tiny():
    from bench import memory

    assert memory._worker("course", 20, 1)["peak_rss_mb"] > 0
    from helpers.tutorial_baselines import progressive_bytes
    from helpers.vocabulary import Vocabulary

    captions, _ = flickr8k_like(20)
    vocab = Vocabulary.build(c for caps in captions.values() for c in caps)
    assert progressive_bytes(captions, vocab) > 0


def test_fine_tune_measurement_tiny():
    from bench import fine_tune

    result = fine_tune.measure(image_size=71, batch=2, steps=1, frozen_steps=2)
    for side in ("frozen", "end_to_end"):
        assert result[side]["images_per_s"] > 0 and result[side]["peak_rss_mb"] > 0
        assert result[side]["flickr8k_epoch_min"] == pytest.approx(6000 / result[side]["images_per_s"] / 60)
    rows = [r for r in report.rows({"fine_tune": result}) if r["stage"] == "fine-tune"]
    assert len(rows) == 3 and rows[0]["ratio"] == pytest.approx(result["slowdown"])


def test_fixture_run_skips_nbval_with_few_notebooks(monkeypatch, tmp_path):
    monkeypatch.setattr(fixture_run, "_timed", lambda command, env: {"seconds": 1.0, "returncode": 0, "tail": ""})
    monkeypatch.setattr(fixture_run, "ROOT", tmp_path)
    (tmp_path / "notebooks").mkdir()
    assert "skipped" in fixture_run.measure(nbval=True)["nbval"]
    assert fixture_run.measure(nbval=False)["helpers_run"]["seconds"] == 1.0


def test_flickr8k_text_figures_from_a_captions_file(tmp_path):
    """The figures the course quotes about Flickr8k's captions, computed by the course's own code (on a small file
    written like the real ones: the real file cannot ship)."""
    from bench import flickr8k_text
    from helpers.machinery.paths import official_splits_dir

    train = (official_splits_dir() / "Flickr_8k.trainImages.txt").read_text().split()[:3]
    dev = (official_splits_dir() / "Flickr_8k.devImages.txt").read_text().split()[:1]
    rows = [(train[0], "A boy in a red T-shirt runs ."), (train[0], "A"), (train[1], "A dog , running on grass"),
            *[(train[2], "A boy runs on the grass .")] * 10, (dev[0], "A girl in a T-shirt runs"),
            ("9_extra.jpg", "A cat")]
    path = tmp_path / "captions.txt"
    path.write_text("image,caption\n" + "".join(f'{n},"{c}"\n' for n, c in rows), encoding="utf-8")
    result = flickr8k_text.measure(path)
    assert (result["rows"], result["images"], result["images_in_no_split"]) == (15, 5, 1)
    assert result["captions_empty_after_cleaning"] == ["A"] and result["hyphenated_kept_whole"] == ["t-shirt"]
    assert result["train_captions"] == 12 and result["length_max"] == 7  # "a boy in a red t-shirt runs"
    assert result["vocabulary_tokens"][1] == 4 + len({"a", "boy", "in", "red", "t-shirt", "runs", "dog", "running",
                                                      "on", "grass", "the"})
    assert result["dev_words_unknown"][1] == 1 / 6  # "girl"
    assert result["vocabulary_tokens"][10] == 4 + len({"a", "boy", "runs", "on", "the", "grass"})
    assert flickr8k_text.lines(result)[0] == "captions.txt: 15 caption rows of 5 images (1 in no official split)"


def _quiet(*args, **kwargs) -> None:
    """A `log` that prints nothing."""


@pytest.mark.slow
def test_the_real_benchmark_runs_every_stage_on_the_fixture(tmp_path):
    """`python -m bench --real` on the first 8 images of each fixture split, tiny: every stage in its own process,
    every model scored on dev and test at every width, results.json, results.md and the gallery."""
    from bench import real
    from helpers.machinery.paths import fixture_dir

    settings = real.Settings(str(fixture_dir()), str(tmp_path / "real"), image_size=64, seeds=(0,), epochs=1,
                             fine_tune_epochs=1, limit=8, units=16, meteor=False)
    results = real.run(settings, log=_quiet)
    saved = json.loads((tmp_path / "real" / "results.json").read_text())
    assert set(saved["stages"]) == set(real.stage_names(settings)) == {
        "prepare", "features", "train_merge_s0", "train_inject", "train_attention", "frozen", "fine_tune", "evaluate"}
    for figures in saved["stages"].values():
        assert figures["seconds"] > 0 and figures["process_seconds"] > figures["seconds"]
        assert figures["cpu_seconds"] > 0 and len(figures["code"]) == 10
        assert figures["peak_rss_mb"] > 100  # TensorFlow alone is several hundred MiB; prepare reads the captions
    assert saved["data"]["splits"] == {"train": 8, "dev": 8, "test": 8}
    assert saved["encoder"]["encoder"] == "mobilenet_v2" and saved["encoder"]["image_size"] == 64
    assert set(saved["scores"]) == set(real.all_models(settings))
    for name, splits in saved["scores"].items():
        dev = {int(width): scores["cider"] for width, scores in splits["dev"].items()}
        assert saved["chosen_width"][name] in (1, 3, 5) and dev[saved["chosen_width"][name]] == max(dev.values())
        for scores in splits["test"].values():
            assert all(0 <= scores[k] <= 1 for k in ("bleu1", "bleu2", "bleu3", "bleu4"))
            assert scores["cider"] >= 0 and scores["meteor"] is None and 1 <= scores["distinct_captions"] <= 8
            assert 0 <= scores["vs_the_humans_references"]["bleu1"] <= 1
    assert all(0 <= saved["human"][k] <= 1 for k in ("bleu1", "bleu4")) and saved["rounds"] == 5
    assert saved["comparisons"]["fine-tuned - frozen"]["1"]["bleu1"]["seed_spread"] == 0  # one seed
    test_keys = set(json.loads((tmp_path / "real" / "work" / "captions.json").read_text())["test"])
    page = (tmp_path / "real" / "gallery.html").read_text()
    shown = {Path(src.split('"')[0]).name for src in page.split('src="file://')[1:]}
    assert shown == test_keys  # fewer than 24 test photos: all of them, linked where they are
    assert not list((tmp_path / "real").rglob("*.jpg"))  # linked, never copied
    markdown = (tmp_path / "real" / "results.md").read_text()
    assert "| merge_s0 | greedy" in markdown and "human vs the other 4" in markdown
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "real" / "stages").iterdir()}
    assert real.run(settings, log=_quiet)["scores"] == results["scores"]  # resumed: nothing redone
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "real" / "stages").iterdir()}
    with pytest.raises(SystemExit, match="other settings"):
        real.run(dataclasses.replace(settings, epochs=2))


def test_a_limited_view_links_the_original_layout_and_writes_short_split_lists(original_dir, tmp_path):
    from bench.real import limited_view
    from helpers.machinery.dataset import load_dataset

    view = limited_view(original_dir, tmp_path / "view", 1)
    assert (view / "Flickr8k_text" / "Flickr8k.token.txt").is_symlink() and (view / "Flicker8k_Dataset").is_symlink()
    data = load_dataset(view)
    assert data.layout == "original" and {s: len(keys) for s, keys in data.splits.items()} == {
        "train": 1, "dev": 1, "test": 1}
    assert data.captions == load_dataset(original_dir).captions
