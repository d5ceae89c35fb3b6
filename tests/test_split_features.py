import numpy as np

from helpers import pipeline
from helpers.features import FeatureSet
from helpers.workspace import Workspace


def test_features_are_keyed_like_the_captions_even_with_folders_in_names(tmp_path, monkeypatch):
    work = Workspace(tmp_path)
    work.write_json("captions.json", {"train": {"train2017/a.jpg": ["a dog"]}, "dev": {}, "test": {"val2017/b.jpg": ["a cat"], "val2017/c.jpg": ["x"]}})
    cached = FeatureSet({"a.jpg": np.ones(4, "float32"), "b.jpg": np.zeros(4, "float32")}, {}, {})
    monkeypatch.setattr(pipeline, "load_features", lambda path: cached)
    features = pipeline.split_features(work, "none", 299)
    assert sorted(features) == ["train2017/a.jpg", "val2017/b.jpg"]  # c.jpg has no features: left out, not an error
    assert features["train2017/a.jpg"] is cached.features["a.jpg"]
