"""Searching images by words: the log-probability of a query under each image (checked against the logits by
hand, for every decoder), its normalisations, the overlap ranking, recall@K, and search and retrieval on a model
trained on the fixture, through Python and the command line."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from helpers import retrieval
from helpers.decoders import DECODERS, decoder_spec
from helpers.decoders.attention import location_stats
from helpers.errors import SettingError
from helpers.machinery import cli, search_stage
from helpers.machinery.paths import fixture_dir
from helpers.machinery.workspace import Workspace
from helpers.vocabulary import RESERVED, Vocabulary

SIZE = 71  # Xception's smallest input: fast
FEATURE_DIM, GRID = 8, 2
WORDS = ["a", "dog", "cat", "red", "ball", "runs", "on", "the", "grass", "snow", "box", "jumps"]
QUERIES = ["a red ball", "dog", "a dog runs on the grass", "cat cat"]
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary(RESERVED + tuple(WORDS), max_length=6)


def untrained(name: str, vocab: Vocabulary) -> tuple[keras.Model, np.ndarray]:
    """A small decoder with random weights, and 5 images (vectors, or grids for attention) to score."""
    keras.utils.set_random_seed(0)
    shape = (FEATURE_DIM,) if DECODERS[name].pooling == "avg" else (GRID, GRID, FEATURE_DIM)
    images = np.random.default_rng(0).normal(size=(5, *shape)).astype("float32")
    normaliser = {"stats": location_stats(dict(enumerate(images)))} if name == "attention" \
        else {"train_features": images}
    model = decoder_spec(name).build(len(vocab), feature_dim=FEATURE_DIM, units=16, embedding_dim=16, **normaliser)
    return model, images


def by_hand(model: keras.Model, image: np.ndarray, ids: list[int]) -> float:
    """log P(words <end> | image) from the model's logits for `<start> words`, one position at a time."""
    logits = np.asarray(model({"image": image[None], "caption": np.array([ids[:-1]], "int32")}), "float64")[0]
    log_probs = logits - logits.max(axis=-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))
    return float(sum(log_probs[t, target] for t, target in enumerate(ids[1:])))


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_the_log_prob_matrix_is_each_pairs_sum_of_log_softmax(name, vocab):
    model, images = untrained(name, vocab)
    ids = [vocab.encode(q) for q in QUERIES]
    matrix = retrieval.caption_log_probs(model, images, ids)
    assert matrix.shape == (len(QUERIES), len(images)) and (matrix < 0).all()
    expected = [[by_hand(model, image, q) for image in images] for q in ids]
    np.testing.assert_allclose(matrix, expected, rtol=1e-4)
    # Batches that cut across queries and images, and a partial last one, give the same matrix.
    np.testing.assert_allclose(retrieval.caption_log_probs(model, images, ids, batch_size=3), matrix, rtol=1e-5)


def test_normalisations_shift_by_a_query_or_an_image_constant(vocab):
    model, images = untrained("merge", vocab)
    ids = [vocab.encode(q) for q in QUERIES]
    log_probs = retrieval.caption_log_probs(model, images, ids)
    average = retrieval.caption_log_probs(model, images.mean(axis=0, keepdims=True), ids)[:, 0]
    prior = np.linspace(-3, -1, len(images))
    pmi = retrieval.normalise(log_probs, "pmi", average)
    np.testing.assert_allclose(pmi - log_probs, np.repeat(-average[:, None], len(images), axis=1))
    np.testing.assert_array_equal(pmi.argsort(axis=1), log_probs.argsort(axis=1))  # each query ranks alike
    np.testing.assert_allclose(retrieval.normalise(log_probs, "image", prior=prior) - log_probs,
                               np.repeat(-prior[None], len(QUERIES), axis=0))
    with pytest.raises(SettingError, match="none, pmi, image"):
        retrieval.normalise(log_probs, "softmax")


def test_recall_and_median_rank_on_a_hand_made_matrix():
    scores = np.array([[0.9, 0.1, 0.2, 0.3],    # right image 0: first
                       [0.5, 0.4, 0.8, 0.1],    # right image 1: third
                       [0.2, 0.2, 0.2, 0.1]])   # right image 0: tied with two others, places 1-3
    result = retrieval.recall_at_k(scores, [0, 1, 0], ks=(1, 2, 3))
    assert result["r@1"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert result["r@2"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert result["r@3"] == pytest.approx(1.0)
    assert result["median_rank"] == 2.0  # ranks 1, 3 and 2 (the middle of the tie)


@pytest.mark.parametrize("images", [1, 7, 60, 1000])
def test_random_baseline_is_k_over_n_and_the_middle_rank(images):
    baseline = retrieval.random_baseline(images)
    assert baseline == {"r@1": 1 / images, "r@5": min(5 / images, 1), "r@10": min(10 / images, 1),
                        "median_rank": (images + 1) / 2}
    if images < 100:  # every score equal: a random ranking, exactly
        tied = retrieval.recall_at_k(np.zeros((images, images)), list(range(images)))
        assert tied == pytest.approx(baseline)


def test_overlap_is_the_f1_of_content_words():
    scores = retrieval.overlap_scores(["A red ball on the snow", "a dog"], ["a red box on the snow", "a red ball"])
    np.testing.assert_allclose(scores, [[2 * 2 / 6, 2 * 2 / 5], [0, 0]])


def test_queries_without_known_words_are_refused(vocab):
    assert retrieval.query_ids(vocab, "A red zebra, ball!") == (vocab.encode("a red zebra ball"), ["zebra"])
    with pytest.raises(SettingError, match="no words"):
        retrieval.query_ids(vocab, " ?! ")
    with pytest.raises(SettingError, match="zebra, giraffe"):
        retrieval.query_ids(vocab, "zebra giraffe")


# --- On a model trained on the fixture -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Workspace:
    """The fixture prepared, encoded at 71 px, and a small merge model trained on it (about a minute)."""
    out = tmp_path_factory.mktemp("retrieval")
    assert cli.main(["prepare", "--out", str(out)]) == 0
    assert cli.main(["features", "--out", str(out), "--image-size", str(SIZE)]) == 0
    assert cli.main(["train", "--out", str(out), "--image-size", str(SIZE), "--units", "64", "--epochs", "15"]) == 0
    return Workspace(out)


@pytest.fixture(scope="module")
def scores(work) -> dict:
    return search_stage.retrieval_scores(work)


def test_log_prob_ranking_beats_random(scores, capsys):
    with capsys.disabled():
        print("\n" + search_stage.retrieval_table(scores))
    assert scores["images"] == 60 and scores["queries"] == 300 and scores["literature"] is None
    random = scores["random"]
    for ranking in ("log-prob", "overlap", "first caption"):
        found = scores["rankings"][ranking]
        assert found["r@5"] > 2 * random["r@5"] and found["median_rank"] < random["median_rank"], ranking
    assert scores["rankings"]["first caption"] != scores["rankings"]["log-prob"]  # 60 queries, not 300
    assert scores["normalisations"]["none"] == scores["normalisations"]["pmi"]  # a per-query shift ranks alike
    assert scores["rankings"]["log-prob"] == scores["normalisations"][retrieval.DEFAULT_NORMALISATION]


def test_search_ranks_images_of_the_scene_above_the_median(work):
    scenes = json.loads((fixture_dir() / "scenes.json").read_text(encoding="utf-8"))["images"]
    test = {key: scene for key, scene in scenes.items() if scene["split"] == "test"}
    for colour, shape, ground in [("green", "ball", "snow"), ("red", "box", "grass"), ("yellow", "cone", "sand")]:
        result = search_stage.search(work, f"a {colour} {shape} on the {ground}", top=len(test))
        order = [os.path.basename(r["image"]) for r in result["results"]]
        assert sorted(order) == sorted(test)
        matching = [rank for rank, key in enumerate(order, start=1) if test[key]["ground"] == ground
                    and any(t["colour"] == colour and t["shape"] == shape for t in test[key]["things"])]
        assert matching and np.mean(matching) < (len(test) + 1) / 2, (colour, shape, ground, matching)
    assert [r["rank"] for r in result["results"]] == list(range(1, len(test) + 1))
    found = [r["score"] for r in result["results"]]
    assert found == sorted(found, reverse=True)


def test_a_folder_is_encoded_once(work, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((fixture_dir() / "Images").glob("*.jpg"))[:6]:
        shutil.copy2(path, folder)
    (folder / "broken.jpg").write_text("not a picture")
    files = sorted(folder.iterdir())
    first = search_stage.search(work, "a dog on the grass", files, top=3)
    assert first["features_from_cache"] is False and first["images"] == 6
    assert list(first["failed"]) == [str(folder / "broken.jpg")]
    [cache] = work.path("search").glob("*.npz")
    index = next(work.path("photos").glob("*/index.json"))
    before = cache.stat().st_mtime_ns, index.stat().st_mtime_ns
    second = search_stage.search(work, "a dog on the grass", files, top=3)
    assert second["features_from_cache"] is True and second["results"] == first["results"]
    assert (cache.stat().st_mtime_ns, index.stat().st_mtime_ns) == before  # nothing encoded, nothing written
    os.utime(files[0], ns=(files[0].stat().st_atime_ns, files[0].stat().st_mtime_ns + 10**9))
    assert search_stage.search(work, "a dog on the grass", files, top=3)["features_from_cache"] is False


def test_the_command_line_searches_and_scores(work, scores, capsys):
    assert cli.main(["search", "a red ball on the snow", "--top", "3", "--out", str(work.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Best 3 of 60 images for 'a red ball on the snow'") and len(lines) == 4
    assert lines[1].split()[0] == "1" and lines[1].split()[2].endswith(".jpg")
    folder = fixture_dir() / "Images"
    assert cli.main(["search", "red ball", str(folder), "--top", "2", "--json", "--out", str(work.root)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["images"] == len(list(folder.glob("*.jpg"))) and len(found["results"]) == 2
    assert cli.main(["evaluate", "--retrieval", "--json", "--out", str(work.root)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["rankings"] == scores["rankings"]
    assert cli.main(["evaluate", "--retrieval", "--out", str(work.root)]) == 0
    assert "random" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "trained", "says"), [
    (["search", "a dog"], False, "run `python -m helpers train`"),
    (["evaluate", "--retrieval"], False, "run `python -m helpers train`"),
    (["search", "zebra giraffe"], True, "(zebra, giraffe)"),
    (["search", " ?! "], True, "no words"),
    (["search", "a dog", "/no/such/folder", "--normalisation", "image"], True, "no such file or folder")])
def test_refusals_are_one_line(work, tmp_path, capsys, args, trained, says):
    assert cli.main([*args, "--out", str(work.root if trained else tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
